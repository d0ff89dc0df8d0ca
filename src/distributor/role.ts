import type { Role } from '../core/role.js';
import { Distributor } from './distributor.js';

declare module '../core/role.js' {
  interface RoleInstances {
    distributor: Distributor;
  }
}

/**
 * Online-push distributor: tells a user who comes online about the calls going on in its groups.
 * Any number run side by side, each owning the users the ring of live distributors gives it.
 */
export const distributorRole: Role<Distributor> = {
  name: 'distributor',
  // Embedded, it starts once Nuve (the calls) and push (the notification) answer, and stops before them.
  after: ['nuve', 'push'],
  create: async (ctx) => new Distributor(ctx.config, await ctx.bus(), ctx.logger),
  registerMetrics: (distributor, registry) => distributor.registerMetrics(registry),
  start: (distributor) => distributor.start(),
  drain: (distributor) => distributor.drain(),
  close: (distributor) => distributor.close(),
  describe: (distributor) => [`Distributor:   ${distributor.id} (weight ${distributor.weight})`],
};
