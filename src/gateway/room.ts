import { EventEmitter } from 'node:events';
import type { Bus } from '../core/bus/bus.js';
import type { Logger } from '../core/logger.js';
import type { EaPolicy } from '../core/subjects.js';
import type { AgentProbes, ClientRequest, ClientResponses } from '../protocol/signaling.js';
import { Cascade } from './cascade.js';
import type { Peer } from './peer.js';
import type { RoomEventInput } from './room-events.js';
import { type AgentEventFrom, DemoRules, type PeerLimits } from './room/demo-rules.js';
import { type ClientHandlers, dispatchRequest, roomHandlers } from './room/requests.js';
import { RoomRouters } from './room/routers.js';

interface RoomEvents {
  close: [];
  /** Something the tenant's webhooks hear about (joins, leaves, tracks, the room's end). */
  event: [RoomEventInput];
}

export interface RoomOptions {
  id: string;
  serviceId: string;
  policy: EaPolicy;
  gatewayId: string;
  bus: Bus;
  logger: Logger;
  agentTimeoutMs: number;
  /** PipeTransports between this room's agents use SRTP. */
  enableSrtp: boolean;
  /** The gateway's placement policy: the agents a peer of this room may go to, best first. */
  place: (room: Room, peer: Peer) => Promise<string[]>;
  /** A peer's media agent or router is gone: the gateway ends its session so that it comes back (the room removes it next). */
  mediaLost: (peer: Peer, reason: string) => void;
  /** Told where a peer went (metrics, load accounting, the peer's `mediasoup-version`). */
  onPlaced: (agentId: string, peer: Peer) => void;
  /** How long opening the room's router on an agent may take before the next choice is tried. */
  fallbackAfterMs: number;
  /** TTL-BEST: the agents a client may time itself against before being placed. */
  probes: (room: Room) => AgentProbes;
  /** What one peer may hold at once. */
  peerLimits: PeerLimits;
}

/**
 * A room on this gateway, from its first peer to its last: the facade the
 * gateway uses. Its parts: `RoomRouters` (its routers on the agents and the
 * peers' placement onto them), the `Cascade` linking those routers,
 * `DemoRules` (mediasoup-demo semantics: who consumes whom, what the others
 * are told) and the request table (`room/requests.ts`). The room owns its
 * peers' lifecycle the mediasoup way: it observes each peer's `close`, and its
 * own `close()` closes its routers and the peers still in it.
 */
export class Room extends EventEmitter<RoomEvents> {
  readonly peers = new Map<string, Peer>();
  closed = false;
  readonly id: string;
  readonly serviceId: string;
  readonly policy: EaPolicy;
  private readonly routers: RoomRouters;
  private readonly cascade: Cascade;
  private readonly rules: DemoRules;
  private readonly handlers: ClientHandlers;
  private readonly logger: Logger;
  /** Broadcaster (plain RTP) operations, for the HTTP ingest API. */
  readonly broadcaster: DemoRules['broadcaster'];
  /** Producers a closeProducer request is closing: the request reports them, not the agent's producerClosed. */
  private readonly closingProducers = new Set<string>();

  constructor(private readonly options: RoomOptions) {
    super();
    this.id = options.id;
    this.serviceId = options.serviceId;
    this.policy = options.policy;
    this.logger = options.logger.child({ room: options.id });
    this.routers = new RoomRouters({
      roomId: options.id,
      gatewayId: options.gatewayId,
      policy: options.policy,
      bus: options.bus,
      logger: this.logger,
      agentTimeoutMs: options.agentTimeoutMs,
      fallbackAfterMs: options.fallbackAfterMs,
      choices: (peer) => options.place(this, peer),
      onPlaced: options.onPlaced,
    });
    this.cascade = new Cascade(options.id, (agentId, method, data) => this.routers.call(agentId, method, data), options.enableSrtp, this.logger);
    this.rules = new DemoRules({
      roomId: options.id,
      peers: this.peers,
      routers: this.routers,
      cascade: this.cascade,
      peerLimits: options.peerLimits,
      logger: this.logger,
    });
    this.handlers = roomHandlers(this.rules, this.routers, () => options.probes(this));
    this.broadcaster = this.rules.broadcaster;
    this.routers.on('gone', (agentId) => {
      this.rules.routerGone(agentId);
      this.cascade.agentGone(agentId);
    });
    this.routers.on('lost', (agentId, reason) => this.moveOff(agentId, reason));
  }

  /** The routers' RTP capabilities, known once the first router exists. */
  get rtpCapabilities(): unknown {
    return this.routers.rtpCapabilities;
  }

  /** The agents carrying this room. */
  get agentIds(): ReadonlySet<string> {
    return this.routers.agentIds;
  }

  /** Links and pipes of the cascade, for metrics. */
  get cascadeSize(): { links: number; pipes: number } {
    return this.cascade.size;
  }

  /** Consumers of this gateway's peers on `agentId` (spill threshold). */
  consumersOn(agentId: string): number {
    let n = 0;
    for (const peer of this.peers.values()) if (peer.agentId === agentId) n += peer.consumers.size;
    return n;
  }

  /** The peer's agent, with the room's router ready on it (placed once). */
  placed(peer: Peer): Promise<string> {
    return this.routers.placed(peer);
  }

  /** The room's router on `agentId` is gone or unreachable: its peers are moved (`routerMayRemain`: the agent is asked to close it). */
  agentLost(agentId: string, reason: string, routerMayRemain: boolean): void {
    this.routers.lose(agentId, reason, routerMayRemain);
  }

  /**
   * The peers on a lost router are told and disconnected to rejoin, which
   * places them anew; peers on other agents keep their media, minus what came
   * from the lost agent.
   */
  private moveOff(agentId: string, reason: string): void {
    for (const peer of [...this.peers.values()]) {
      if (peer.agentId !== agentId) continue;
      peer.notify('mediaAgentLost', { reason });
      this.options.mediaLost(peer, reason);
      peer.close(reason);
    }
  }

  /** Adds a peer; one holding its id leaves, after the newcomer is in, so a room of one is never emptied (closed) by it. */
  addPeer(peer: Peer): void {
    const previous = this.peers.get(peer.id);
    this.peers.set(peer.id, peer);
    peer.once('close', (reason) => this.onPeerClose(peer, reason));
    previous?.close('replaced');
  }

  joinedPeers(except?: Peer): Peer[] {
    return this.rules.joinedPeers(except);
  }

  /** A peer leaves (request, dropped socket, kick): the same as closing it. */
  removePeer(peer: Peer, reason: string): void {
    peer.close(reason);
  }

  /** A peer closed: its media goes, the others are told; the last one closes the room, the last on an agent its router there. */
  private onPeerClose(peer: Peer, reason: string): void {
    if (this.peers.get(peer.id) === peer) this.peers.delete(peer.id);
    // Its tracks end with it: a receiver's view of them stays consistent without inferring it from the leave.
    for (const [id, { kind }] of peer.producers) this.report('track_unpublished', peer, { track: { id, kind }, reason });
    this.report(peer.joined ? 'participant_left' : 'participant_connection_aborted', peer, { reason });
    this.logger.debug({ peer: peer.id, reason }, 'peer left');
    const last = this.peers.size === 0;
    // The last one's media goes with the room's routers, closed first (as close() does): no closePeer
    // to its agent before the closeRouter, which is one agent request less for every short visit.
    if (last) this.routers.close();
    this.rules.peerLeft(peer);
    const agentId = peer.agentId;
    if (last) this.close();
    else if (agentId !== undefined && !this.hasPeerOn(agentId)) this.routers.release(agentId);
  }

  /** Whether a peer is still on `agentId`: stops at the first, so a large room's leaves stay cheap (no copy of the room per leave). */
  private hasPeerOn(agentId: string): boolean {
    for (const p of this.peers.values()) if (p.agentId === agentId) return true;
    return false;
  }

  /** Ends the room: its routers go, and the peers still in it are closed (their owners end their sessions). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.routers.close();
    for (const peer of [...this.peers.values()]) peer.close('room closed');
    this.report('room_finished');
    this.emit('close');
  }

  /** Dispatches a client request (validated, then its method's handler); what it changed is reported. */
  async handle(peer: Peer, method: string, rawData: unknown): Promise<unknown> {
    // Read before: after closeProducer the producer is gone from the peer.
    const closing = method === 'closeProducer' ? this.trackOf(peer, (rawData as { producerId?: unknown } | null)?.producerId) : undefined;
    if (closing) this.closingProducers.add(closing.id);
    let result: unknown;
    try {
      result = await dispatchRequest(this.handlers, peer, method, rawData);
    } finally {
      if (closing) this.closingProducers.delete(closing.id);
    }
    if (method === 'join') this.report('participant_joined', peer);
    else if (method === 'produce') this.published(peer, (result as ClientResponses['produce']).id);
    else if (method === 'changeDisplayName') this.report('participant_metadata_changed', peer);
    else if (closing) this.report('track_unpublished', peer, { track: closing, reason: 'closed' });
    return result;
  }

  /** Used by the broadcaster API, which has no protoo connection. */
  async produce(peer: Peer, d: ClientRequest<'produce'>): Promise<ClientResponses['produce']> {
    const result = await this.rules.produce(peer, d);
    this.published(peer, result.id);
    return result;
  }

  /** A broadcaster is in the room (a client's `join` request does the same through its handler); `listener`: see DemoRules.enter. */
  enter(peer: Peer, listener: boolean): void {
    this.rules.enter(peer, listener);
    this.report('participant_joined', peer);
  }

  private published(peer: Peer, producerId: string): void {
    const track = this.trackOf(peer, producerId);
    if (track) this.report('track_published', peer, { track });
  }

  private trackOf(peer: Peer, producerId: unknown): { id: string; kind: 'audio' | 'video' } | undefined {
    const producer = typeof producerId === 'string' ? peer.producers.get(producerId) : undefined;
    return producer && { id: producerId as string, kind: producer.kind };
  }

  /** Pauses or resumes a producer for the app's room API (the publisher is told by the caller). */
  setProducerPaused(peer: Peer, producerId: string, paused: boolean): Promise<null> {
    return this.rules.setProducerPaused(peer, producerId, paused);
  }

  /** Closes a producer for the app's room API (publishing revoked); reported like the publisher's own close. */
  async closeProducer(peer: Peer, producerId: string, reason: string): Promise<void> {
    const track = this.trackOf(peer, producerId);
    if (track) this.closingProducers.add(producerId);
    try {
      await this.rules.closeProducer(peer, { producerId });
    } finally {
      this.closingProducers.delete(producerId);
    }
    if (track) this.report('track_unpublished', peer, { track, reason });
  }

  /** Tells the tenant's webhook (through the gateway's publisher) what happened here. */
  report(type: RoomEventInput['type'], peer?: Peer, extra: Pick<RoomEventInput, 'track' | 'reason' | 'metadata'> = {}): void {
    this.emit('event', {
      type,
      serviceId: this.serviceId,
      roomId: this.id,
      ...(peer && { participant: { id: peer.id, identity: peer.userName, name: peer.displayName, role: peer.role } }),
      ...extra,
    });
  }

  /** Media events from the room's routers, turned into protoo notifications to the peer they concern. */
  onAgentEvent(event: AgentEventFrom): void {
    if (!this.routers.has(event.agentId)) return;
    if (event.type === 'routerClosed') return this.routers.routerClosed(event.agentId, event.epoch, event.reason);
    // A producer the agent closed (its transport went): reported once, while its owner still holds it.
    const owner = event.type === 'producerClosed' ? this.peers.get(event.peerId) : undefined;
    const track =
      owner && event.type === 'producerClosed' && !this.closingProducers.has(event.producerId) ? this.trackOf(owner, event.producerId) : undefined;
    this.rules.onAgentEvent(event);
    if (owner && track) this.report('track_unpublished', owner, { track, reason: 'closed' });
  }
}
