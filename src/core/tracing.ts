import {
  type Context,
  INVALID_SPAN_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { Config } from './config.js';

export const tracer = trace.getTracer('mediasoup-signal');

let provider: NodeTracerProvider | undefined;

/**
 * Installs the process's tracer provider (once per process) when tracing is
 * enabled; otherwise the API stays a no-op and spans cost next to nothing.
 */
export function startTracing(config: Config['tracing'], role: string): { flush(): Promise<void> } {
  if (config.enabled && !provider) {
    provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.role': role }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: config.otlpUrl }), { scheduledDelayMillis: 1000 })],
    });
    provider.register();
  }
  return { flush: async () => provider?.forceFlush() };
}

/** Bus payloads carry the W3C trace context in this field (JSON on both the in-process bus and NATS). */
export const TRACE_FIELD = '_trace';

export function injectTrace(payload: unknown): unknown {
  if (!trace.getActiveSpan() || typeof payload !== 'object' || payload === null || Array.isArray(payload)) return payload;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return { ...payload, [TRACE_FIELD]: carrier };
}

/** Splits the trace context off a received payload. */
export function extractTrace(payload: unknown): { payload: unknown; ctx: Context } {
  if (typeof payload !== 'object' || payload === null || !(TRACE_FIELD in payload)) return { payload, ctx: context.active() };
  const { [TRACE_FIELD]: carrier, ...rest } = payload as Record<string, unknown>;
  return { payload: rest, ctx: propagation.extract(context.active(), (carrier ?? {}) as Record<string, string>) };
}

const NOT_RECORDING: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** Runs `fn` in a new active span, ending it with the outcome; with tracing off, just runs it (hot paths). */
export function inSpan<T>(name: string, kind: SpanKind, fn: (span: Span) => Promise<T> | T, parent?: Context): Promise<T> {
  if (!provider) {
    // No span, no async frame and no context lookup: this runs once per request of every kind.
    try {
      return Promise.resolve(fn(NOT_RECORDING));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return tracer.startActiveSpan(name, { kind }, parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      span.setAttribute('error.code', String((err as { code?: unknown }).code ?? 'unknown'));
      throw err;
    } finally {
      span.end();
    }
  });
}

export { SpanKind, SpanStatusCode };
