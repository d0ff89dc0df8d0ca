import { measureTcpRtt } from '../distance.js';
import type { HandlerContext, Handlers } from './context.js';

/** A gateway's room here (its router, one per opening) and the agent itself (its counts, its distance to a client). */
export function routerHandlers(ctx: HandlerContext): Pick<Handlers, 'ensureRouter' | 'closeRouter' | 'closePeer' | 'dump' | 'probeClient'> {
  return {
    ensureRouter: async (r) => {
      const room = await ctx.ensureRoom(r);
      return { rtpCapabilities: room.router.rtpCapabilities };
    },
    closeRouter: async (r) => {
      // A router still being created (its ensureRouter came just before) is closed once it exists.
      await ctx.opening(r)?.catch(() => undefined);
      const room = ctx.openRoom(r);
      // Only the opening named: a late close of an earlier one never takes the router of the next.
      if (room?.epoch === r.epoch) room.close();
      return null;
    },
    closePeer: (r) => {
      ctx.openRoom(r)?.closePeer(r.peerId);
      return null;
    },
    dump: () => ctx.dump(),
    probeClient: async (r) => ({ rttMs: await measureTcpRtt(r.address, r.port, r.timeoutMs) }),
  };
}
