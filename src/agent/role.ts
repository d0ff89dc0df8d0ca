import type { Role } from '../core/role.js';
import { Agent } from './agent.js';

declare module '../core/role.js' {
  interface RoleInstances {
    agent: Agent;
  }
}

/** Media agent: mediasoup workers; gateways place their rooms' media on it over the bus. */
export const agentRole: Role<Agent> = {
  name: 'agent',
  after: [],
  create: async (ctx) => new Agent(ctx.config, await ctx.bus(), ctx.logger),
  registerMetrics: (agent, registry) => agent.registerMetrics(registry),
  start: (agent) => agent.start(),
  drain: (agent) => agent.drain(),
  close: (agent) => agent.close(),
  describe: (agent) => [`Media agent:   ${agent.id} with ${agent.pool.size} mediasoup worker(s)`],
};
