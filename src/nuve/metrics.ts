import fp from 'fastify-plugin';
import { Counter, Gauge, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { Bus } from '../core/bus/bus.js';
import { METRICS_SUBJECT, aggregateMetrics } from '../core/metrics.js';
import type { GatewayRegistry } from './gateway-registry.js';
import type { RateLimitStats } from './rate-limit.js';

/**
 * Nuve's metrics and the two scrape endpoints: `/metrics` (this process) and
 * `/metrics/cluster` (every process on the bus, summed), so one scrape
 * target shows the whole cluster.
 */
export const metricsPlugin = fp<{
  registry: Registry;
  bus: Bus;
  gateways: GatewayRegistry;
  rateLimitStats: RateLimitStats;
}>(async (app, { registry, bus, gateways, rateLimitStats }) => {
  const registers = [registry];
  const requests = new Counter({
    name: 'mss_nuve_http_requests_total',
    help: 'Nuve API requests by route and status',
    labelNames: ['method', 'route', 'status'],
    registers,
  });
  new Gauge({
    name: 'mss_nuve_gateways',
    help: 'Registered gateways by state',
    labelNames: ['state'],
    registers,
    collect() {
      const list = gateways.list();
      this.set({ state: 'available' }, list.filter((g) => g.state === 'available').length);
      this.set({ state: 'draining' }, list.filter((g) => g.state === 'draining').length);
    },
  });
  new Counter({
    name: 'mss_nuve_rate_limited_total',
    help: 'Requests refused by the Nuve rate limits',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(rateLimitStats.rejected)) this.inc({ reason }, n);
    },
  });
  new Gauge({ name: 'mss_nuve_rate_limit_queued', help: 'Requests waiting in the rate-limit queue', registers, collect() { this.set(rateLimitStats.queued); } });

  app.addHook('onResponse', async (request, reply) => {
    requests.inc({ method: request.method, route: request.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );

  app.get('/metrics/cluster', { schema: { hide: true } }, async (_request, reply) => {
    const parts = await bus.gather<MetricObjectWithValues<MetricValue<string>>[]>(METRICS_SUBJECT, {}, { timeoutMs: 1000 });
    return reply.type(registry.contentType).send(await aggregateMetrics(parts));
  });
});
