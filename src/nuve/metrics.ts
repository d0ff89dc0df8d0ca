import type { onRequestAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { Bus } from '../core/bus/bus.js';
import { AppError } from '../core/errors.js';
import { METRICS_SUBJECT, aggregateMetrics } from '../core/metrics.js';
import type { OpsAuth } from '../core/ops-auth.js';
import type { GatewayRegistry } from './gateway-registry.js';
import type { RateLimitStats } from './rate-limit.js';
import { sharedResult } from './shared-result.js';

/** How long a cluster scrape's result is served to later scrapes: one gather per second at most, however many scrape. */
const CLUSTER_SCRAPE_REUSE_MS = 1000;

/**
 * Nuve's metrics and the two scrape endpoints: `/metrics` (this process) and
 * `/metrics/cluster` (every process on the bus, summed), so one scrape
 * target shows the whole cluster. Both need the ops bearer token.
 */
export const metricsPlugin = fp<{
  registry: Registry;
  bus: Bus;
  gateways: GatewayRegistry;
  rateLimitStats: RateLimitStats;
  ops: OpsAuth;
}>(async (app, { registry, bus, gateways, rateLimitStats, ops }) => {
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

  const opsOnly: onRequestAsyncHookHandler = async (request, reply) => {
    if (ops.allows(request.headers.authorization)) return;
    reply.header('WWW-Authenticate', 'Bearer realm="mediasoup-signal ops"');
    throw new AppError('OPS_UNAUTHORIZED');
  };
  // Scrapes are authenticated instead of counted: they must work while the API is saturated.
  const scrape = { schema: { hide: true }, config: { rateLimitExempt: true }, onRequest: opsOnly };

  app.get('/metrics', scrape, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  // A gather asks every process of the cluster: concurrent scrapes share one, and reuse it for a second.
  const clusterMetrics = sharedResult(async () => {
    const parts = await bus.gather<MetricObjectWithValues<MetricValue<string>>[]>(METRICS_SUBJECT, {}, { timeoutMs: 1000 });
    return aggregateMetrics(parts);
  }, CLUSTER_SCRAPE_REUSE_MS);
  app.get('/metrics/cluster', scrape, async (_request, reply) => reply.type(registry.contentType).send(await clusterMetrics()));
});
