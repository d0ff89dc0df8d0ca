import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type AgentEvent,
  type AgentMethod,
  type AgentRequest,
  type AgentResults,
  type RoomRequest,
  agentSubjects,
} from '../core/agent-protocol.js';
import type { Bus } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { AppError, describeIssues } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { EaPolicy } from '../core/subjects.js';
import type { RtpCapabilities } from '../protocol/media-parameters.js';
import { type AgentProbes, type ClientMethod, type ClientRequest, clientRequestSchemas } from '../protocol/signaling.js';
import { Cascade } from './cascade.js';
import type { Peer, PeerObjectKind } from './peer.js';

interface RoomEvents {
  close: [];
}

type Owned<M extends AgentMethod> = Omit<AgentRequest<M>, 'roomId' | 'peerId' | 'gatewayId'>;

/** One opening of the room's router on an agent: the agent knows it by its epoch. */
interface RouterOpening {
  epoch: string;
  ready: Promise<void>;
  /** The router exists (ensureRouter answered). */
  open: boolean;
}
type AgentEventFrom = AgentEvent & { agentId: string };

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
type PeerLimits = Config['gateway']['limits'];

const LIMIT_OF: Record<PeerObjectKind, keyof PeerLimits> = {
  transports: 'maxTransportsPerPeer',
  producers: 'maxProducersPerPeer',
  consumers: 'maxConsumersPerPeer',
  dataProducers: 'maxDataProducersPerPeer',
  dataConsumers: 'maxDataConsumersPerPeer',
};
/** Methods with the same name and data on both protocols. */
type SharedMethod = Extract<ClientMethod, AgentMethod>;

const FORWARDED: ReadonlySet<string> = new Set<SharedMethod>([
  'pauseConsumer',
  'resumeConsumer',
  'setConsumerPreferredLayers',
  'setConsumerPriority',
  'requestConsumerKeyFrame',
  'getTransportStats',
  'getProducerStats',
  'getConsumerStats',
  'getDataProducerStats',
  'getDataConsumerStats',
]);

/** Requests a peer may send before `join`. */
const BEFORE_JOIN: ReadonlySet<string> = new Set<ClientMethod>([
  'getAgentProbes',
  'reportAgentRtts',
  'getRouterRtpCapabilities',
  'join',
  'createWebRtcTransport',
  'connectWebRtcTransport',
  'leave',
]);

/**
 * A room on this gateway: its peers, and its routers on the agents carrying
 * them. ROOM-BEST puts every peer on one agent; TTL-BEST puts each on the
 * agent nearest to it, and the Cascade links the room's routers so media
 * crosses agents only where someone consumes it. It implements the
 * mediasoup-demo room logic (who consumes whom) by asking the agents over
 * the bus, and lives from the first peer to the last.
 */
export class Room extends EventEmitter<RoomEvents> {
  readonly peers = new Map<string, Peer>();
  closed = false;
  readonly id: string;
  readonly serviceId: string;
  readonly policy: EaPolicy;
  /** The routers' RTP capabilities (every agent uses the same codecs), known once the first router exists. */
  rtpCapabilities: unknown;
  /** The agents with a router of this room, each with its opening. */
  private readonly routers = new Map<string, RouterOpening>();
  private readonly cascade: Cascade;
  /** The ROOM-BEST choice in progress. */
  private choosing: Promise<unknown> = Promise.resolve();
  /** The loudest producer each agent last reported; the room's speaker is the loudest of them. */
  private readonly speakers = new Map<string, { producerId: string; volume?: number }>();
  private speakerId: string | null = null;
  private readonly logger: Logger;

  constructor(private readonly options: RoomOptions) {
    super();
    this.id = options.id;
    this.serviceId = options.serviceId;
    this.policy = options.policy;
    this.logger = options.logger.child({ room: options.id });
    this.cascade = new Cascade(options.id, (agentId, method, data) => this.call(agentId, method, data), options.enableSrtp, this.logger);
  }

  /** The agents carrying this room. */
  get agentIds(): ReadonlySet<string> {
    return new Set(this.routers.keys());
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

  /**
   * One request to one agent, naming this gateway; bus failures become
   * AGENT_UNAVAILABLE, agent errors keep their codes. ROOM_NOT_FOUND from an
   * agent whose router was open means that router is gone, however it went
   * and whether or not its routerClosed arrived: its peers are told and
   * disconnected to rejoin, and the next peer placed there opens a new one.
   */
  private call<M extends AgentMethod>(
    agentId: string,
    method: M,
    data: RoomRequest<M>,
    timeoutMs = this.options.agentTimeoutMs,
  ): Promise<AgentResults[M]> {
    const opening = this.routers.get(agentId);
    return this.options.bus
      .request<AgentResults[M]>(agentSubjects.rpc(agentId), { method, data: { ...data, gatewayId: this.options.gatewayId } }, { timeoutMs })
      .catch((err: unknown) => {
        if (err instanceof AppError && err.code.startsWith('BUS_')) {
          throw new AppError('AGENT_UNAVAILABLE');
        }
        if (err instanceof AppError && err.code === 'ROOM_NOT_FOUND' && opening?.open && this.routers.get(agentId) === opening) {
          this.agentLost(agentId, 'router-lost', false);
        }
        throw err;
      });
  }

  /** Calls the agent carrying `peer`, placing the peer first if needed. */
  private async agent<M extends AgentMethod>(method: M, peer: Peer, data: Owned<M>): Promise<AgentResults[M]> {
    const agentId = await this.placed(peer);
    return this.call(agentId, method, { roomId: this.id, peerId: peer.id, ...data } as RoomRequest<M>);
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
          this.logger.warn({ peer: peer.id, agent: agentId }, 'agent did not open the room in time; trying the next');
          continue;
        }
        if (peer.closed) throw new AppError('PEER_CLOSED');
        this.options.onPlaced(agentId, peer);
        this.logger.debug({ peer: peer.id, agent: agentId }, 'peer placed');
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
    if (this.policy !== 'ROOM-BEST') return this.options.place(this, peer);
    const choice = this.choosing.then(async () => {
      const choices = await this.options.place(this, peer);
      if (choices[0] !== undefined) this.ensureRouter(choices[0], this.options.agentTimeoutMs).catch(() => undefined);
      return choices;
    });
    this.choosing = choice.catch(() => undefined);
    return choice;
  }

  /** Opens the room on `agentId` once; each opening has a fresh epoch, so the agent never hands back an older router. */
  private ensureRouter(agentId: string, timeoutMs: number): Promise<void> {
    const existing = this.routers.get(agentId);
    if (existing) return existing.ready;
    const epoch = randomBytes(8).toString('hex');
    const ready = this.call(agentId, 'ensureRouter', { roomId: this.id, epoch }, timeoutMs).then(({ rtpCapabilities }) => {
      this.rtpCapabilities ??= rtpCapabilities;
      opening.open = true;
    });
    const opening: RouterOpening = { epoch, ready, open: false };
    this.routers.set(agentId, opening);
    ready.catch(() => {
      if (this.routers.get(agentId) === opening) this.routers.delete(agentId);
      // The request may still arrive late and open a router nobody would close; this follows it on the same path.
      this.closeRouterOn(agentId, epoch);
    });
    return ready;
  }

  /** The last peer on `agentId` left: its router (and with it its links) goes. */
  private releaseRouter(agentId: string): void {
    if (this.closed || !this.routers.has(agentId)) return;
    for (const peer of this.peers.values()) if (peer.agentId === agentId) return;
    this.dropRouter(agentId, true);
  }

  /** Forgets the room's router on `agentId` and the links to it; `closeIt`: the agent is asked to close it too. */
  private dropRouter(agentId: string, closeIt: boolean): void {
    const opening = this.routers.get(agentId);
    this.routers.delete(agentId);
    this.speakers.delete(agentId);
    this.cascade.agentGone(agentId);
    if (closeIt && opening) this.closeRouterOn(agentId, opening.epoch);
  }

  private closeRouterOn(agentId: string, epoch: string): void {
    this.call(agentId, 'closeRouter', { roomId: this.id, epoch }).catch((err: unknown) =>
      this.logger.debug({ err, agent: agentId }, 'closeRouter failed'),
    );
  }

  /**
   * The room's router on `agentId` is gone or unreachable (agent removed,
   * worker died, agent closing): its peers are told and disconnected to
   * rejoin, which places them anew; peers on other agents keep their media,
   * minus what came from the lost agent.
   */
  agentLost(agentId: string, reason: string, routerMayRemain: boolean): void {
    if (!this.routers.has(agentId)) return;
    this.logger.warn({ agent: agentId, reason }, 'room lost a media agent');
    this.dropRouter(agentId, routerMayRemain);
    for (const peer of [...this.peers.values()]) {
      if (peer.agentId !== agentId) continue;
      peer.notify('mediaAgentLost', { reason });
      this.options.mediaLost(peer, reason);
      this.removePeer(peer, reason);
    }
  }

  /** Adds a peer; one holding its id leaves, after the newcomer is in, so a room of one is never emptied (closed) by it. */
  addPeer(peer: Peer): void {
    const previous = this.peers.get(peer.id);
    this.peers.set(peer.id, peer);
    if (previous) this.removePeer(previous, 'replaced');
  }

  joinedPeers(except?: Peer): Peer[] {
    return [...this.peers.values()].filter((p) => p.joined && p !== except && !p.closed);
  }

  /** A peer leaves (request, dropped socket, kick): its media goes, the others are told. */
  removePeer(peer: Peer, reason: string): void {
    if (peer.closed) return;
    peer.closed = true;
    if (this.peers.get(peer.id) === peer) this.peers.delete(peer.id);
    this.logger.debug({ peer: peer.id, reason }, 'peer left');
    if (peer.joined) for (const other of this.joinedPeers()) other.notify('peerClosed', { peerId: peer.id });
    for (const consumerId of peer.consumers.keys()) this.cascade.release(consumerId);
    const agentId = peer.agentId;
    if (agentId !== undefined && this.routers.has(agentId) && !this.closed) {
      this.call(agentId, 'closePeer', { roomId: this.id, peerId: peer.id }).catch((err: unknown) =>
        this.logger.debug({ err }, 'closePeer failed'),
      );
    }
    if (this.peers.size === 0) this.close();
    else if (agentId !== undefined) this.releaseRouter(agentId);
  }

  /** Ends the room: its routers go, and every remaining peer is disconnected by its owner. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [agentId, opening] of this.routers) this.closeRouterOn(agentId, opening.epoch);
    this.routers.clear();
    this.emit('close');
  }

  /** Dispatches a validated client request. */
  async handle(peer: Peer, method: string, rawData: unknown): Promise<unknown> {
    if (peer.closed) throw new AppError('PEER_CLOSED');
    if (!Object.hasOwn(clientRequestSchemas, method)) {
      throw new AppError('UNKNOWN_METHOD', `unknown method "${method}"`);
    }
    const parsed = clientRequestSchemas[method as ClientMethod].safeParse(rawData ?? {});
    if (!parsed.success) throw new AppError('INVALID_REQUEST', `invalid ${method}: ${describeIssues(parsed.error.issues)}`);
    const data = parsed.data as never;
    if (!BEFORE_JOIN.has(method) && !peer.joined) {
      throw new AppError('NOT_JOINED', `${method} requires join first`);
    }
    // Requests the agent answers as they are (it checks the named object belongs to this peer).
    if (FORWARDED.has(method)) return this.agent(method as SharedMethod, peer, data);
    switch (method as ClientMethod) {
      case 'getAgentProbes':
        return peer.placement ? { probes: [], timeoutMs: 0 } : this.options.probes(this);
      case 'reportAgentRtts':
        // Too late once placed: the peer's media is already on an agent.
        if (!peer.placement) peer.reportedRtts = (data as ClientRequest<'reportAgentRtts'>).rtts;
        return null;
      case 'getRouterRtpCapabilities':
        await this.placed(peer);
        return this.rtpCapabilities;
      case 'pauseProducer':
      case 'resumeProducer':
        return this.setProducerPaused(peer, (data as ClientRequest<'pauseProducer'>).producerId, method === 'pauseProducer');
      case 'join':
        return this.join(peer, data);
      case 'createWebRtcTransport':
        return this.createWebRtcTransport(peer, data);
      case 'connectWebRtcTransport': {
        const d = data as ClientRequest<'connectWebRtcTransport'>;
        await this.connectOnce(peer, d.transportId, () => this.agent('connectWebRtcTransport', peer, d));
        return null;
      }
      case 'restartIce': {
        const d = data as ClientRequest<'restartIce'>;
        this.ownTransport(peer, d.transportId);
        return (await this.agent('restartIce', peer, d)).iceParameters;
      }
      case 'produce':
        return this.produce(peer, data);
      case 'closeProducer': {
        const d = data as ClientRequest<'closeProducer'>;
        await this.agent('closeProducer', peer, d);
        peer.producers.delete(d.producerId);
        return null;
      }
      case 'produceData':
        return this.produceData(peer, data);
      case 'changeDisplayName': {
        const d = data as ClientRequest<'changeDisplayName'>;
        const oldDisplayName = peer.displayName;
        peer.displayName = d.displayName;
        for (const other of this.joinedPeers(peer)) {
          other.notify('peerDisplayNameChanged', { peerId: peer.id, displayName: d.displayName, oldDisplayName });
        }
        return null;
      }
      case 'leave':
        this.removePeer(peer, 'leave');
        return null;
    }
  }

  private ownTransport(peer: Peer, transportId: string): { consuming: boolean; connected: boolean } {
    const transport = peer.transports.get(transportId);
    if (!transport) throw new AppError('TRANSPORT_NOT_FOUND', `transport ${transportId} not found`);
    return transport;
  }

  /** Gives a transport its remote end, once (mediasoup refuses a second connect); a failed connect may be retried. */
  private async connectOnce(peer: Peer, transportId: string, connect: () => Promise<unknown>): Promise<void> {
    const transport = this.ownTransport(peer, transportId);
    if (transport.connected) throw new AppError('ALREADY_CONNECTED', `transport ${transportId} is already connected`);
    transport.connected = true;
    try {
      await connect();
    } catch (err) {
      transport.connected = false;
      throw err;
    }
  }

  /**
   * Creates one more of a peer's `kind` unless it holds its limit already,
   * creations in flight included, so requests sent together cannot pass it
   * together. `keep` records what was created in the same turn as the
   * reservation ends.
   */
  private async withinLimit<T, R>(peer: Peer, kind: PeerObjectKind, create: () => Promise<T>, keep: (created: T) => R): Promise<R> {
    const limit = this.options.peerLimits[LIMIT_OF[kind]];
    if (peer[kind].size + peer.creating[kind] >= limit) {
      throw new AppError('PEER_LIMIT_REACHED', `a peer may hold at most ${limit} ${kind}`);
    }
    peer.creating[kind]++;
    let created: T;
    try {
      created = await create();
    } finally {
      peer.creating[kind]--;
    }
    return keep(created);
  }

  async join(peer: Peer, d: ClientRequest<'join'>): Promise<{ peers: unknown[] }> {
    if (peer.joined) throw new AppError('ALREADY_JOINED');
    await this.placed(peer);
    if (peer.joined) throw new AppError('ALREADY_JOINED');
    if (d.displayName !== undefined) peer.displayName = d.displayName;
    peer.device = d.device ?? {};
    peer.rtpCapabilities = d.rtpCapabilities;
    peer.sctpCapabilities = d.sctpCapabilities;
    peer.joined = true;
    const others = this.joinedPeers(peer);
    for (const other of others) {
      for (const producerId of other.producers.keys()) void this.createConsumer(peer, other, producerId);
      for (const dataProducerId of other.dataProducers.keys()) void this.createDataConsumer(peer, other, dataProducerId);
      other.notify('newPeer', peer.info);
    }
    return { peers: others.map((p) => p.info) };
  }

  createWebRtcTransport(peer: Peer, d: ClientRequest<'createWebRtcTransport'>): Promise<unknown> {
    return this.withinLimit(
      peer,
      'transports',
      async () => {
        const info = await this.agent('createWebRtcTransport', peer, {
          producing: d.producing ?? false,
          consuming: d.consuming ?? false,
          forceTcp: d.forceTcp,
          sctpCapabilities: d.sctpCapabilities,
        });
        if (peer.closed) {
          void this.agent('closeTransport', peer, { transportId: info.id }).catch(() => undefined);
          throw new AppError('PEER_CLOSED');
        }
        return info;
      },
      (info) => {
        peer.transports.set(info.id, { consuming: d.consuming ?? false, connected: false });
        return info;
      },
    );
  }

  async produce(peer: Peer, d: ClientRequest<'produce'>): Promise<{ id: string }> {
    if (!peer.permissions.publish) {
      throw new AppError('PRODUCE_NOT_ALLOWED', `this token's role (${peer.role}) may not publish`);
    }
    this.ownTransport(peer, d.transportId);
    const id = await this.withinLimit(
      peer,
      'producers',
      () => this.agent('produce', peer, d),
      (result) => {
        peer.producers.set(result.id, { kind: d.kind });
        return result.id;
      },
    );
    for (const other of this.joinedPeers(peer)) void this.createConsumer(other, peer, id);
    return { id };
  }

  async produceData(peer: Peer, d: ClientRequest<'produceData'>): Promise<{ id: string }> {
    if (!peer.permissions.publishData) {
      throw new AppError('PRODUCE_NOT_ALLOWED', `this token's role (${peer.role}) may not publish data (publishData)`);
    }
    this.ownTransport(peer, d.transportId);
    const id = await this.withinLimit(
      peer,
      'dataProducers',
      () => this.agent('produceData', peer, d),
      (result) => {
        peer.dataProducers.set(result.id, { label: result.label, protocol: result.protocol });
        return result.id;
      },
    );
    for (const other of this.joinedPeers(peer)) void this.createDataConsumer(other, peer, id);
    return { id };
  }

  /**
   * A consumer of `producerId` for `consumerPeer`, on the consumer's agent.
   * When the producer lives on another agent it is piped over first, and the
   * pipe is held for as long as this consumer exists. Null when the peer's
   * RTP capabilities cannot receive it.
   */
  private consume(consumerPeer: Peer, producerId: string, transportId: string, rtpCapabilities: RtpCapabilities) {
    return this.withinLimit(
      consumerPeer,
      'consumers',
      async () => {
        const to = await this.placed(consumerPeer);
        const from = this.producerOwner(producerId)?.agentId;
        if (from === undefined) throw new AppError('PRODUCER_NOT_FOUND', `producer ${producerId} not found`);
        const pipe = from === to ? undefined : await this.cascade.hold(producerId, from, to);
        let info: AgentResults['consume'] = null;
        try {
          info = await this.agent('consume', consumerPeer, { transportId, producerId, rtpCapabilities });
        } finally {
          if (pipe !== undefined && !info) this.cascade.drop(pipe);
        }
        if (info && pipe !== undefined) this.cascade.bind(info.id, pipe);
        return info;
      },
      (info) => {
        if (!info) return null;
        if (consumerPeer.closed) {
          // Left while this was being set up: removePeer has already released the others.
          this.cascade.release(info.id);
          return null;
        }
        consumerPeer.consumers.set(info.id, producerId);
        return info;
      },
    );
  }

  /** mediasoup-demo flow: consumer created paused, client told by request, then resumed once it is ready. */
  async createConsumer(consumerPeer: Peer, producerPeer: Peer, producerId: string): Promise<void> {
    const transportId = consumerPeer.consumingTransportId;
    if (!consumerPeer.permissions.subscribe || !consumerPeer.rtpCapabilities || !transportId || !consumerPeer.connection) return;
    try {
      const info = await this.consume(consumerPeer, producerId, transportId, consumerPeer.rtpCapabilities);
      if (!info) return;
      await consumerPeer.connection.request('newConsumer', {
        peerId: producerPeer.id,
        producerId,
        id: info.id,
        kind: info.kind,
        rtpParameters: info.rtpParameters,
        type: info.type,
        appData: info.appData,
        producerPaused: info.producerPaused,
      });
      await this.agent('resumeConsumer', consumerPeer, { consumerId: info.id });
    } catch (err) {
      this.logger.debug({ err, consumerPeer: consumerPeer.id, producerId }, 'consumer not established');
    }
  }

  /** Pauses or resumes a producer, and its piped copies on other agents so their consumers see the same state. */
  private async setProducerPaused(peer: Peer, producerId: string, paused: boolean): Promise<null> {
    await this.agent(paused ? 'pauseProducer' : 'resumeProducer', peer, { producerId });
    await Promise.all(
      this.cascade.receiversOf(producerId).map((agentId) =>
        this.call(agentId, 'setPipedProducerPaused', { roomId: this.id, producerId, paused }).catch((err: unknown) =>
          this.logger.debug({ err, agentId, producerId }, 'piped producer not updated'),
        ),
      ),
    );
    return null;
  }

  async createDataConsumer(consumerPeer: Peer, producerPeer: Peer, dataProducerId: string): Promise<void> {
    const transportId = consumerPeer.consumingTransportId;
    if (!consumerPeer.permissions.subscribe || !consumerPeer.sctpCapabilities || !transportId || !consumerPeer.connection) return;
    // Data channels are not piped between agents: only peers on the producer's agent receive them.
    if (producerPeer.agentId !== consumerPeer.agentId) return;
    try {
      const info = await this.withinLimit(
        consumerPeer,
        'dataConsumers',
        () => this.agent('consumeData', consumerPeer, { transportId, dataProducerId }),
        (created) => {
          consumerPeer.dataConsumers.add(created.id);
          return created;
        },
      );
      await consumerPeer.connection.request('newDataConsumer', {
        peerId: producerPeer.id,
        dataProducerId,
        id: info.id,
        sctpStreamParameters: info.sctpStreamParameters,
        label: info.label,
        protocol: info.protocol,
        appData: info.appData,
      });
    } catch (err) {
      this.logger.debug({ err, consumerPeer: consumerPeer.id, dataProducerId }, 'data consumer not established');
    }
  }

  /** Media events from the agent, turned into protoo notifications to the peer they concern. */
  onAgentEvent(event: AgentEventFrom): void {
    if (!this.routers.has(event.agentId)) return;
    switch (event.type) {
      case 'activeSpeaker':
        this.onSpeaker(event.agentId, event.producerId, event.volume);
        return;
      case 'routerClosed':
        // About an earlier opening (already replaced): nothing of ours was on it. (Agents before epochs name none.)
        if (event.epoch !== undefined && event.epoch !== this.routers.get(event.agentId)?.epoch) return;
        this.agentLost(event.agentId, event.reason, false);
        return;
      // Whoever owned them, their pipes must follow (the owner may have left already).
      case 'consumerClosed':
        this.cascade.release(event.consumerId);
        break;
      case 'producerClosed':
        this.cascade.producerClosed(event.producerId);
        break;
    }
    const peer = this.peers.get(event.peerId);
    if (!peer) return;
    switch (event.type) {
      case 'consumerClosed':
        peer.consumers.delete(event.consumerId);
        peer.notify('consumerClosed', { consumerId: event.consumerId });
        break;
      case 'consumerPaused':
      case 'consumerResumed':
        peer.notify(event.type, { consumerId: event.consumerId });
        break;
      case 'consumerScore':
        peer.notify('consumerScore', { consumerId: event.consumerId, score: event.score });
        break;
      case 'consumerLayersChanged': {
        const layers = event.layers as { spatialLayer?: number; temporalLayer?: number } | undefined;
        peer.notify('consumerLayersChanged', {
          consumerId: event.consumerId,
          spatialLayer: layers?.spatialLayer ?? null,
          temporalLayer: layers?.temporalLayer ?? null,
        });
        break;
      }
      case 'producerScore':
        peer.notify('producerScore', { producerId: event.producerId, score: event.score });
        break;
      case 'producerClosed':
        peer.producers.delete(event.producerId);
        break;
      case 'dataConsumerClosed':
        peer.dataConsumers.delete(event.dataConsumerId);
        peer.notify('dataConsumerClosed', { dataConsumerId: event.dataConsumerId });
        break;
      case 'downlinkBwe':
        peer.notify('downlinkBwe', event.bwe);
        break;
    }
  }

  /** Each agent reports the loudest of its own producers; the room's speaker is the loudest of those. */
  private onSpeaker(agentId: string, producerId: string | null, volume: number | undefined): void {
    if (producerId === null) this.speakers.delete(agentId);
    else this.speakers.set(agentId, { producerId, volume });
    let loudest: { producerId: string; volume?: number } | undefined;
    for (const s of this.speakers.values()) if (!loudest || (s.volume ?? -127) > (loudest.volume ?? -127)) loudest = s;
    const owner = loudest ? this.producerOwner(loudest.producerId) : undefined;
    const speakerId = owner?.id ?? null;
    if (speakerId === null && this.speakerId === null) return;
    this.speakerId = speakerId;
    for (const peer of this.joinedPeers()) peer.notify('activeSpeaker', { peerId: speakerId, volume: loudest?.volume });
  }

  private producerOwner(producerId: string): Peer | undefined {
    for (const peer of this.peers.values()) if (peer.producers.has(producerId)) return peer;
    return undefined;
  }

  /** Broadcaster (plain RTP) operations, for the HTTP ingest API. */
  broadcaster = {
    createPlainTransport: (peer: Peer, comedia: boolean, rtcpMux: boolean) =>
      this.withinLimit(
        peer,
        'transports',
        () => this.agent('createPlainTransport', peer, { comedia, rtcpMux }),
        (info) => {
          peer.transports.set(info.id, { consuming: false, connected: false });
          return info;
        },
      ),
    connectPlainTransport: (peer: Peer, transportId: string, ip: string, port: number, rtcpPort?: number) =>
      this.connectOnce(peer, transportId, () => this.agent('connectPlainTransport', peer, { transportId, ip, port, rtcpPort })),
    /** Plain-RTP egress (recording, restreaming): consumes a producer and starts it at once. */
    consume: async (peer: Peer, transportId: string, producerId: string) => {
      if (!peer.permissions.record) {
        throw new AppError('RECORD_NOT_ALLOWED', `this token's role (${peer.role}) may not stream out (record)`);
      }
      this.ownTransport(peer, transportId);
      const rtpCapabilities = peer.rtpCapabilities ?? (this.rtpCapabilities as RtpCapabilities);
      const info = await this.consume(peer, producerId, transportId, rtpCapabilities);
      if (!info) throw new AppError('CANNOT_CONSUME');
      await this.agent('resumeConsumer', peer, { consumerId: info.id });
      return info;
    },
    stats: (peer: Peer, kind: 'producer' | 'consumer', id: string) =>
      kind === 'producer'
        ? this.agent('getProducerStats', peer, { producerId: id })
        : this.agent('getConsumerStats', peer, { consumerId: id }),
  };
}
