import type { Role } from '../core/role.js';
import { Nuve } from './nuve.js';
import { RedisReplayGuard } from './replay-guard.js';
import { openNuveStore } from './store/store.js';

declare module '../core/role.js' {
  interface RoleInstances {
    nuve: Nuve;
  }
}

/** Management: REST API, tenants, rooms, tokens, the gateway registry; its tables on the process's database. */
export const nuveRole: Role<Nuve> = {
  name: 'nuve',
  after: [],
  async create(ctx) {
    const { config } = ctx;
    const bus = await ctx.bus();
    const store = await openNuveStore(await ctx.database());
    const redis = await ctx.redis();
    return new Nuve({
      config,
      bus,
      store,
      logger: ctx.logger,
      replay: redis && new RedisReplayGuard(redis, config.nuve.authWindowSec * 1000),
      redis,
      metrics: ctx.metrics,
    });
  },
  start: (nuve) => nuve.start(),
  // Nuve holds no calls: draining is finishing the requests in flight.
  drain: (nuve) => nuve.close(),
  async close(nuve) {
    await nuve.close();
    await nuve.store.close();
  },
  describe(nuve) {
    const su = nuve.superServiceRecord;
    return [
      `Nuve API:      ${nuve.url}  (OpenAPI: ${nuve.url}/openapi.json)`,
      `superService:  id=${su.id} key=${su.key}`,
      ...(nuve.config.nuve.devEndpoints ? [`Playground:    ${nuve.url}/  (dev endpoints on; SDK at /sdk/mediasoup-signal.mjs)`] : []),
    ];
  },
};
