import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Distinct service/method label pairs kept; past it calls count under `_other` (a bounded label set). */
const MAX_LABEL_PAIRS = 500;
/** Codes that mean the name was not a real service or method: counted without it. */
const UNKNOWN_NAME_CODES = new Set(['SERVICE_NOT_RUNNING', 'SERVICE_METHOD_NOT_FOUND']);
/** Label children kept ready (prom-client validates labels on every lookup: ~4 % of a call at the gateway). */
const MAX_CHILDREN = 5000;

interface Children {
  calls: Counter.Internal;
  latency: Histogram.Internal<'service' | 'method'>;
}

/**
 * The gateway's service-call flow counters: calls by service, method and
 * outcome code, their latency, and the connections able to call (clients with
 * the `rpc` scope and trusted servers). No per-user or per-connection label:
 * names a client invented count as `_unknown`, so clients cannot grow the series.
 */
export class ServiceCallMetrics {
  private readonly calls: Counter<'service' | 'method' | 'code'>;
  private readonly latency: Histogram<'service' | 'method'>;
  private readonly pairs = new Set<string>();
  private readonly children = new Map<string, Children>();

  constructor(registry: Registry, callers: () => number) {
    this.calls = new Counter({
      name: 'mss_gateway_service_calls_total',
      help: 'Service calls relayed by the gateway (clients and trusted servers), by service, method and outcome code',
      labelNames: ['service', 'method', 'code'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: 'mss_gateway_service_call_seconds',
      help: 'Service call round trips through the gateway, by service and method',
      labelNames: ['service', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 10],
      registers: [registry],
    });
    // Present from the start (at zero), so dashboards and rate() see the series before the first call.
    this.calls.inc({ service: '_unknown', method: '_unknown', code: 'SERVICE_NOT_RUNNING' }, 0);
    this.latency.zero({ service: '_unknown', method: '_unknown' });
    new Gauge({
      name: 'mss_gateway_service_callers',
      help: 'Connections that may call services now (client sessions with the rpc scope, trusted servers)',
      registers: [registry],
      collect() {
        this.set(callers());
      },
    });
  }

  observe(service: string, method: string, code: string, seconds: number): void {
    const key = `${service}\u0000${method}\u0000${code}`;
    let children = this.children.get(key);
    if (!children) {
      children = this.childrenFor(service, method, code);
      if (this.children.size < MAX_CHILDREN) this.children.set(key, children);
    }
    children.calls.inc();
    children.latency.observe(seconds);
  }

  private childrenFor(service: string, method: string, code: string): Children {
    let labels: { service: string; method: string };
    if (code === 'SERVICE_NOT_RUNNING') labels = { service: '_unknown', method: '_unknown' };
    else if (UNKNOWN_NAME_CODES.has(code)) labels = { service, method: '_unknown' };
    else {
      const pair = `${service}\u0000${method}`;
      if (!this.pairs.has(pair) && this.pairs.size < MAX_LABEL_PAIRS) this.pairs.add(pair);
      labels = this.pairs.has(pair) ? { service, method } : { service: '_other', method: '_other' };
    }
    return { calls: this.calls.labels({ ...labels, code }), latency: this.latency.labels(labels) };
  }
}
