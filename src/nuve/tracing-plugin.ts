import { type Span, context, propagation, trace } from '@opentelemetry/api';
import fp from 'fastify-plugin';
import { SpanKind, SpanStatusCode, tracer } from '../core/tracing.js';

declare module 'fastify' {
  interface FastifyRequest {
    otelSpan?: Span;
  }
}

/**
 * A server span per Nuve request, continuing an incoming `traceparent`. The
 * rest of the request runs inside it (callback-style hook), so bus requests
 * made by handlers become its children.
 */
export const tracingPlugin = fp(async (app) => {
  app.decorateRequest('otelSpan', undefined);
  app.addHook('onRequest', (request, _reply, done) => {
    const parent = propagation.extract(context.active(), request.headers);
    const span = tracer.startSpan(`${request.method} ${request.routeOptions.url ?? 'unknown'}`, { kind: SpanKind.SERVER }, parent);
    request.otelSpan = span;
    context.with(trace.setSpan(parent, span), done);
  });
  app.addHook('onResponse', async (request, reply) => {
    const span = request.otelSpan;
    if (!span) return;
    span.setAttribute('http.response.status_code', reply.statusCode);
    if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
});
