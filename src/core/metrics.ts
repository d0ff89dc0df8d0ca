import { AggregatorRegistry, Histogram, type MetricObjectWithValues, type MetricValue, Registry, collectDefaultMetrics } from 'prom-client';
import type { Bus, ConnectivityListener, MessageHandler, RequestHandler, RequestOptions, SubscribeOptions, Subscription } from './bus/bus.js';
import { SpanKind, extractTrace, inSpan, injectTrace } from './tracing.js';

/** Every process answers this (gather) with its metrics, so one Nuve endpoint can show the cluster. */
export const METRICS_SUBJECT = 'metrics.collect';

/** The process's metrics registry (one per process; roles add their own metrics to it). */
export function createMetricsRegistry(role: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ process_role: role });
  collectDefaultMetrics({ register: registry, prefix: 'mss_' });
  return registry;
}

/** Sums the same metric (by labels) across processes; histograms merge bucket by bucket. */
export async function aggregateMetrics(parts: MetricObjectWithValues<MetricValue<string>>[][]): Promise<string> {
  // Default labels differ per process (role), which would keep series apart; drop them to sum.
  const stripped = parts.map((metrics) =>
    metrics.map((m) => ({
      ...m,
      values: m.values.map((v) => {
        const { process_role: _role, ...labels } = v.labels as Record<string, string>;
        return { ...v, labels };
      }),
    })),
  );
  return AggregatorRegistry.aggregate(stripped as never).metrics();
}

const KEPT_TOKENS = new Set(['rpc', 'media', 'token', 'consume', 'heartbeat', 'down', 'hello', 'collect']);
/** Kinds of the subjects seen lately: a process talks on few subjects, and every bus request needs one. */
const subjectKinds = new Map<string, string>();

/** Normalises a subject for a metric label: ids become `*` so label cardinality stays bounded. */
function subjectKind(subject: string): string {
  let kind = subjectKinds.get(subject);
  if (kind === undefined) {
    kind = subject
      .split('.')
      .map((t, i) => (i > 0 && !KEPT_TOKENS.has(t) ? '*' : t))
      .join('.');
    if (subjectKinds.size >= 1024) subjectKinds.clear();
    subjectKinds.set(subject, kind);
  }
  return kind;
}

/** A Bus that records request latency and outcome and carries trace context; everything else passes through. */
export class InstrumentedBus implements Bus {
  private readonly latency: Histogram<'subject' | 'method' | 'outcome'>;

  constructor(
    private readonly inner: Bus,
    registry: Registry,
  ) {
    this.latency = new Histogram({
      name: 'mss_bus_request_duration_seconds',
      help: 'Bus request round trips by subject kind, method and outcome',
      labelNames: ['subject', 'method', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3],
      registers: [registry],
    });
  }

  async request<T>(subject: string, payload: unknown, options?: RequestOptions): Promise<T> {
    const kind = subjectKind(subject);
    const method = String((payload as { method?: unknown } | null)?.method ?? '');
    const end = this.latency.startTimer({ subject: kind, method });
    return inSpan(`bus ${kind} ${method}`.trim(), SpanKind.CLIENT, async () => {
      try {
        const result = await this.inner.request<T>(subject, injectTrace(payload), options);
        end({ outcome: 'ok' });
        return result;
      } catch (err) {
        end({ outcome: (err as { code?: string }).code ?? 'error' });
        throw err;
      }
    });
  }

  publish(subject: string, payload: unknown): void {
    this.inner.publish(subject, payload);
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): Subscription {
    return this.inner.subscribe(subject, handler, options);
  }

  /** Handlers run in a server span that continues the requester's trace. */
  respond(subject: string, handler: RequestHandler, options?: SubscribeOptions): Subscription {
    return this.inner.respond(
      subject,
      (raw, actual) => {
        const { payload, ctx } = extractTrace(raw);
        const method = String((payload as { method?: unknown } | null)?.method ?? '');
        return inSpan(`handle ${subjectKind(actual)} ${method}`.trim(), SpanKind.SERVER, () => handler(payload, actual), ctx);
      },
      options,
    );
  }

  gather<T>(subject: string, payload: unknown, options?: RequestOptions): Promise<T[]> {
    return this.inner.gather<T>(subject, payload, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  get connected(): boolean {
    return this.inner.connected;
  }

  onConnectivity(listener: ConnectivityListener): () => void {
    return this.inner.onConnectivity(listener);
  }
}
