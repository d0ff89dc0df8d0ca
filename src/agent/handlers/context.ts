import type { AgentDump, AgentMethod, AgentRequest, AgentResults } from '../../core/agent-protocol.js';
import type { Config } from '../../core/config.js';
import type { MediaRoom, Owner } from '../media-room.js';
import type { AgentMetrics } from '../metrics.js';

/** One handler per agent request method, taking that method's validated request. */
export type Handlers = { [M in AgentMethod]: (req: AgentRequest<M>) => Promise<AgentResults[M]> | AgentResults[M] };

/** What the handlers reach of their agent: its rooms (checked per gateway), its configuration, its metrics. */
export interface HandlerContext {
  config: Config['agent'];
  /** Registered after the agent is built, so read at each use. */
  metrics: () => AgentMetrics | undefined;
  /** The gateway's room; ROOM_NOT_FOUND tells the gateway its router here is gone (it then moves the peers). */
  room: (r: { roomId: string; gatewayId: string }) => MediaRoom;
  /** The gateway's room if it is open here, for requests that are fine with nothing to do. */
  openRoom: (r: { roomId: string; gatewayId: string }) => MediaRoom | undefined;
  /** The router of one opening of a gateway's room, created on first use. */
  ensureRoom: (r: AgentRequest<'ensureRouter'>) => Promise<MediaRoom>;
  /** An opening of the gateway's room in progress, if any. */
  opening: (r: { roomId: string; gatewayId: string }) => Promise<MediaRoom> | undefined;
  dump: () => Promise<AgentDump>;
}

/** The owner an object is tracked under: the room and peer of the request that created it. */
export const ownerOf = (r: Owner): Owner => ({ roomId: r.roomId, peerId: r.peerId });
