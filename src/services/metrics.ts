import { Counter, Histogram, type Registry } from 'prom-client';
import type { ServiceInstanceHost } from './instance.js';

/**
 * A service instance's flow counters: calls it answered by method and outcome
 * code, and its handlers' time. Labels are bounded: a method the service does
 * not have counts as `_unknown`.
 */
export class ServiceMetrics {
  private readonly handled: Counter<'service' | 'method' | 'code'>;
  private readonly duration: Histogram<'service' | 'method'>;

  /** Several services in one process share the registry's counters (their `service` label tells them apart). */
  constructor(registry: Registry) {
    const handled = registry.getSingleMetric('mss_service_handled_total');
    const duration = registry.getSingleMetric('mss_service_handle_seconds');
    if (handled instanceof Counter && duration instanceof Histogram) {
      this.handled = handled as Counter<'service' | 'method' | 'code'>;
      this.duration = duration as Histogram<'service' | 'method'>;
      return;
    }
    this.handled = new Counter({
      name: 'mss_service_handled_total',
      help: 'Service calls answered by this process, by service, method and outcome code (OK or the error code)',
      labelNames: ['service', 'method', 'code'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'mss_service_handle_seconds',
      help: 'Time from a call reaching the service instance to its answer, by service and method',
      labelNames: ['service', 'method'],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: [registry],
    });
  }

  /** Counts the instance's calls from now on. */
  watch(host: ServiceInstanceHost): void {
    const service = host.definition.name;
    const methods = host.definition.methods;
    host.observer = (method, code, seconds) => {
      const label = Object.hasOwn(methods, method) ? method : '_unknown';
      this.handled.inc({ service, method: label, code });
      this.duration.observe({ service, method: label }, seconds);
    };
  }
}
