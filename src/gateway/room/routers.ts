import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type AgentMethod,
  type AgentRequest,
  type AgentResults,
  type RoomRequest,
  agentSubjects,
} from '../../core/agent-protocol.js';
import type { Bus } from '../../core/bus/bus.js';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { EaPolicy } from '../../core/subjects.js';
import type { Peer } from '../peer.js';

/** A request about one of a peer's objects, as the room writes it: the room, peer and gateway are added. */
type Owned<M extends AgentMethod> = Omit<AgentRequest<M>, 'roomId' | 'peerId' | 'gatewayId'>;

/** One opening of the room's router on an agent: the agent knows it by its epoch. */
interface RouterOpening {
  epoch: string;
  ready: Promise<void>;
  /** The router exists (ensureRouter answered). */
  open: boolean;
}

interface RoomRoutersEvents {
  /** The room's router on this agent is forgotten (its last peer left, or it was lost): what linked to it goes too. */
  gone: [agentId: string];
  /** The router went without being asked to (agent removed, worker died, …): its peers have no media left. */
  lost: [agentId: string, reason: string];
}

export interface RoomRoutersOptions {
  roomId: string;
  gatewayId: string;
  policy: EaPolicy;
  bus: Bus;
  logger: Logger;
  agentTimeoutMs: number;
  /** How long opening the room's router on an agent may take before the next choice is tried. */
  fallbackAfterMs: number;
  /** The gateway's placement policy: the agents `peer` may go to, best first. */
  choices: (peer: Peer) => Promise<string[]>;
  /** Told where a peer went. */
  onPlaced: (agentId: string, peer: Peer) => void;
}

/**
 * Where a room lives on the media agents: one router per agent carrying its
 * peers, each opening known to its agent by a fresh epoch, and the peers'
 * placement onto them. Every request of the room to an agent goes through
 * here, so that an agent that no longer knows an open router is noticed
 * however the router went (`lost`).
 */
export class RoomRouters extends EventEmitter<RoomRoutersEvents> {
  /** The routers' RTP capabilities (every agent uses the same codecs), known once the first router exists. */
  rtpCapabilities: unknown;
  private readonly openings = new Map<string, RouterOpening>();
  /** The ROOM-BEST choice in progress. */
  private choosing: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: RoomRoutersOptions) {
    super();
  }

  /** The agents carrying this room. */
  get agentIds(): ReadonlySet<string> {
    return new Set(this.openings.keys());
  }

  has(agentId: string): boolean {
    return this.openings.has(agentId);
  }

  /**
   * One request to one agent, naming this gateway; bus failures become
   * AGENT_UNAVAILABLE, agent errors keep their codes. ROOM_NOT_FOUND from an
   * agent whose router was open means that router is gone, however it went
   * and whether or not its routerClosed arrived: it is `lost`, and the next
   * peer placed there opens a new one.
   */
  call<M extends AgentMethod>(
    agentId: string,
    method: M,
    data: RoomRequest<M>,
    timeoutMs = this.options.agentTimeoutMs,
  ): Promise<AgentResults[M]> {
    const opening = this.openings.get(agentId);
    return this.options.bus
      .request<AgentResults[M]>(agentSubjects.rpc(agentId), { method, data: { ...data, gatewayId: this.options.gatewayId } }, { timeoutMs })
      .catch((err: unknown) => {
        if (err instanceof AppError && err.code.startsWith('BUS_')) {
          throw new AppError('AGENT_UNAVAILABLE');
        }
        if (err instanceof AppError && err.code === 'ROOM_NOT_FOUND' && opening?.open && this.openings.get(agentId) === opening) {
          this.lose(agentId, 'router-lost', false);
        }
        throw err;
      });
  }

  /** Calls the agent carrying `peer` about one of its objects, placing the peer first if needed. */
  async forPeer<M extends AgentMethod>(method: M, peer: Peer, data: Owned<M>): Promise<AgentResults[M]> {
    const agentId = await this.placed(peer);
    return this.call(agentId, method, { roomId: this.options.roomId, peerId: peer.id, ...data } as RoomRequest<M>);
  }

  /**
   * The peer's agent, chosen once (by the gateway's policy) with the room's
   * router ready on it. A choice that does not answer within
   * `fallbackAfterMs` (unreachable since it was measured) gives way to the
   * next, so a silent agent delays a join by that much at most.
   */
  placed(peer: Peer): Promise<string> {
    peer.placement ??= (async () => {
      const choices = await this.choose(peer);
      for (const [i, agentId] of choices.entries()) {
        const last = i === choices.length - 1;
        // Counted on its agent from now on, so a router being emptied is not closed under it.
        peer.agentId = agentId;
        try {
          await this.ensureRouter(agentId, last ? this.options.agentTimeoutMs : this.options.fallbackAfterMs);
        } catch (err) {
          peer.agentId = undefined;
          if (last || !(err instanceof AppError && err.code === 'AGENT_UNAVAILABLE')) throw err;
          this.options.logger.warn({ peer: peer.id, agent: agentId }, 'agent did not open the room in time; trying the next');
          continue;
        }
        if (peer.closed) throw new AppError('PEER_CLOSED');
        this.options.onPlaced(agentId, peer);
        this.options.logger.debug({ peer: peer.id, agent: agentId }, 'peer placed');
        return agentId;
      }
      throw new AppError('NO_AGENT_AVAILABLE');
    })().catch((err: unknown) => {
      // A later request may try again (an agent may have appeared).
      peer.placement = undefined;
      throw err;
    });
    return peer.placement;
  }

  /**
   * ROOM-BEST choices are made one at a time, each opening its router before
   * the next is made, so peers arriving together in a new room share one
   * agent. TTL-BEST choices wait for distances and stay concurrent.
   */
  private choose(peer: Peer): Promise<string[]> {
    if (this.options.policy !== 'ROOM-BEST') return this.options.choices(peer);
    const choice = this.choosing.then(async () => {
      const choices = await this.options.choices(peer);
      if (choices[0] !== undefined) this.ensureRouter(choices[0], this.options.agentTimeoutMs).catch(() => undefined);
      return choices;
    });
    this.choosing = choice.catch(() => undefined);
    return choice;
  }

  /** Opens the room on `agentId` once; each opening has a fresh epoch, so the agent never hands back an older router. */
  private ensureRouter(agentId: string, timeoutMs: number): Promise<void> {
    const existing = this.openings.get(agentId);
    if (existing) return existing.ready;
    const epoch = randomBytes(8).toString('hex');
    const ready = this.call(agentId, 'ensureRouter', { roomId: this.options.roomId, epoch }, timeoutMs).then(({ rtpCapabilities }) => {
      this.rtpCapabilities ??= rtpCapabilities;
      opening.open = true;
    });
    const opening: RouterOpening = { epoch, ready, open: false };
    this.openings.set(agentId, opening);
    ready.catch(() => {
      if (this.openings.get(agentId) === opening) this.openings.delete(agentId);
      // The request may still arrive late and open a router nobody would close; this follows it on the same path.
      this.closeRouterOn(agentId, epoch);
    });
    return ready;
  }

  /** The room's last peer on `agentId` left: its router (and with it its links) goes. */
  release(agentId: string): void {
    if (this.closed || !this.openings.has(agentId)) return;
    this.drop(agentId, true);
  }

  /**
   * The agent reports the room's router closed. A report about an earlier
   * opening (already replaced) concerns nothing of ours; agents older than
   * epochs name none.
   */
  routerClosed(agentId: string, epoch: string | undefined, reason: string): void {
    if (epoch !== undefined && epoch !== this.openings.get(agentId)?.epoch) return;
    this.lose(agentId, reason, false);
  }

  /**
   * The room's router on `agentId` is gone or unreachable (agent removed,
   * worker died, agent closing): it is forgotten, closed on the agent too when
   * it may remain there, and its peers' owner is told (`lost`).
   */
  lose(agentId: string, reason: string, routerMayRemain: boolean): void {
    if (!this.openings.has(agentId)) return;
    this.options.logger.warn({ agent: agentId, reason }, 'room lost a media agent');
    this.drop(agentId, routerMayRemain);
    this.emit('lost', agentId, reason);
  }

  /** Closes every router of the room; later releases and losses find none. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [agentId, opening] of this.openings) this.closeRouterOn(agentId, opening.epoch);
    this.openings.clear();
  }

  /** Forgets the room's router on `agentId`; `closeIt`: the agent is asked to close it too. */
  private drop(agentId: string, closeIt: boolean): void {
    const opening = this.openings.get(agentId);
    this.openings.delete(agentId);
    this.emit('gone', agentId);
    if (closeIt && opening) this.closeRouterOn(agentId, opening.epoch);
  }

  private closeRouterOn(agentId: string, epoch: string): void {
    this.call(agentId, 'closeRouter', { roomId: this.options.roomId, epoch }).catch((err: unknown) =>
      this.options.logger.debug({ err, agent: agentId }, 'closeRouter failed'),
    );
  }
}
