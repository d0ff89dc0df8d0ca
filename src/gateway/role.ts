import type { Role } from '../core/role.js';
import { Gateway } from './gateway.js';

declare module '../core/role.js' {
  interface RoleInstances {
    gateway: Gateway;
  }
}

/** Signaling gateway: clients' WebSockets and room logic, over Nuve (tokens) and agents (media). */
export const gatewayRole: Role<Gateway> = {
  name: 'gateway',
  // In one process it announces itself and admits clients only once Nuve can consume their tokens and the agent can take their rooms.
  after: ['nuve', 'agent'],
  create: async (ctx) => new Gateway(ctx.config, await ctx.bus(), ctx.logger),
  registerMetrics: (gateway, registry) => gateway.registerMetrics(registry),
  start: (gateway) => gateway.start(),
  drain: (gateway) => gateway.drain(),
  close: (gateway) => gateway.close(),
  describe: (gateway) => [`Gateway:       ${gateway.publicUrl}  (WebSocket ?token=...)`],
};
