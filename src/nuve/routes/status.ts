import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../core/errors.js';
import type { AgentHeartbeat } from '../../core/agent-protocol.js';
import type { HeartbeatTable } from '../../core/heartbeat-table.js';
import { authPlugin } from '../auth.js';
import type { NuveContext } from '../context.js';

/**
 * `GET /status`: a read-only snapshot of the cluster as this Nuve sees it on
 * the bus — gateways (registry), media agents with their load (heartbeats)
 * and totals. It carries no secrets (no keys, tokens or user names). With
 * `nuve.devEndpoints` (the embedded playground) it is open; otherwise it
 * needs MAuth of the superService.
 */
export const statusRoutes: FastifyPluginAsyncZod<{ ctx: NuveContext; agents?: HeartbeatTable<AgentHeartbeat> }> = async (app, { ctx, agents }) => {
  const open = ctx.config.nuve.devEndpoints;
  if (!open) {
    await app.register(authPlugin, { ctx });
    app.addHook('preHandler', async (request) => {
      if (!request.service.isSuper) throw new AppError('FORBIDDEN', 'the status API is for the superService');
    });
  }

  app.get(
    '/status',
    {
      schema: {
        summary: 'Cluster status (read-only)',
        description:
          'Gateways, media agents (workers, routers, transports, producers, consumers, peers, CPU) and totals, ' +
          'from the bus heartbeats. Open with nuve.devEndpoints (embedded playground), else superService MAuth.',
        tags: ['status'],
        ...(open ? { security: [] } : {}),
      },
    },
    async (_request, reply) => {
      const now = Date.now();
      const gateways = ctx.registry
        .list()
        .sort((a, b) => a.id.localeCompare(b.id))
        .map((g) => ({ id: g.id, url: g.url, state: g.state, weight: g.weight, rooms: g.rooms, peers: g.peers, lastSeenMs: now - g.lastSeen }));
      const agentList = (agents?.list() ?? []).map((a) => ({ id: a.id, state: a.state, ...a.load, lastSeenMs: now - a.lastSeen }));
      const sum = <T>(list: T[], pick: (item: T) => number) => list.reduce((n, item) => n + pick(item), 0);
      reply.header('cache-control', 'no-store');
      return {
        time: new Date(now).toISOString(),
        gateways,
        agents: agentList,
        totals: {
          gateways: gateways.length,
          agents: agentList.length,
          workers: sum(agentList, (a) => a.workers),
          rooms: sum(gateways, (g) => g.rooms),
          peers: sum(gateways, (g) => g.peers),
          routers: sum(agentList, (a) => a.routers),
          transports: sum(agentList, (a) => a.transports),
          producers: sum(agentList, (a) => a.producers),
          consumers: sum(agentList, (a) => a.consumers),
        },
      };
    },
  );
};
