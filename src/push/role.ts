import type { Role } from '../core/role.js';
import { MemoryLocations, RedisLocations } from './locations.js';
import { Push } from './push.js';
import { PushStore } from './store.js';

declare module '../core/role.js' {
  interface RoleInstances {
    push: Push;
  }
}

/**
 * Push: reaches a tenant's online users through their gateways (unsafe and
 * safe pushes, restore on connect). Its tables on the process's database; its
 * location registry in Redis when the cluster has one, else in memory (one
 * push role, embedded).
 */
export const pushRole: Role<Push> = {
  name: 'push',
  // Needs no other role; registered before the gateway, so embedded it answers before the first push session opens.
  after: [],
  async create(ctx) {
    const { config } = ctx;
    const bus = await ctx.bus();
    const store = await PushStore.open(await ctx.database());
    const redis = await ctx.redis();
    const ttlMs = config.push.locationTtlMs;
    const locations = redis ? new RedisLocations(redis, ttlMs) : new MemoryLocations(ttlMs);
    return new Push(config.push, bus, ctx.logger, store, locations);
  },
  registerMetrics: (push, registry) => push.registerMetrics(registry),
  start: (push) => push.start(),
  // It holds no calls: pushes in flight finish within their bus timeout.
  drain: async () => undefined,
  close: (push) => push.close(),
};
