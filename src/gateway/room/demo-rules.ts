import type { AgentEvent, AgentResults } from '../../core/agent-protocol.js';
import type { Config } from '../../core/config.js';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { RtpCapabilities } from '../../protocol/media-parameters.js';
import type { ClientRequest, ClientResponses } from '../../protocol/signaling.js';
import type { Cascade } from '../cascade.js';
import type { Peer, PeerObjectKind } from '../peer.js';
import type { RoomRouters } from './routers.js';

export type PeerLimits = Config['gateway']['limits'];
export type AgentEventFrom = AgentEvent & { agentId: string };

const LIMIT_OF: Record<PeerObjectKind, keyof PeerLimits> = {
  transports: 'maxTransportsPerPeer',
  producers: 'maxProducersPerPeer',
  consumers: 'maxConsumersPerPeer',
  dataProducers: 'maxDataProducersPerPeer',
  dataConsumers: 'maxDataConsumersPerPeer',
};

export interface DemoRulesContext {
  roomId: string;
  /** The room's peers, by id (the room adds and removes them). */
  peers: ReadonlyMap<string, Peer>;
  routers: RoomRouters;
  cascade: Cascade;
  peerLimits: PeerLimits;
  logger: Logger;
}

/**
 * The mediasoup-demo room semantics on top of the room's routers: who
 * consumes whom (every joined peer everything the others produce, created
 * paused, offered with `newConsumer`, resumed once accepted), what the others
 * are told (newPeer, peerClosed, peerDisplayNameChanged, activeSpeaker), the
 * agents' media events as notifications, and what one peer may hold at once.
 * A consumer (data consumer) on another agent than its producer (data
 * producer) holds a pipe of the Cascade for as long as it lives.
 */
export class DemoRules {
  private readonly routers: RoomRouters;
  private readonly cascade: Cascade;
  private readonly logger: Logger;
  /** The loudest producer each agent last reported; the room's speaker is the loudest of them. */
  private readonly speakers = new Map<string, { producerId: string; volume?: number }>();
  private speakerId: string | null = null;
  /**
   * The joined peers the others know of (newPeer sent, listed in joins), in join order: every
   * peer, except listeners (joined with `listener: true`) until they publish. Publishers are
   * always here, so a join walks only these to offer their media.
   */
  private readonly announced = new Set<Peer>();
  /** Which peer owns each producer, so a consume finds it without scanning the room. */
  private readonly producerOwners = new Map<string, Peer>();

  constructor(private readonly ctx: DemoRulesContext) {
    this.routers = ctx.routers;
    this.cascade = ctx.cascade;
    this.logger = ctx.logger;
  }

  joinedPeers(except?: Peer): Peer[] {
    return [...this.ctx.peers.values()].filter((p) => p.joined && p !== except && !p.closed);
  }

  /**
   * A peer is in the room for the others (a client's `join`, a broadcaster's creation): told to
   * every joined peer unless it is a listener, which stays unknown to them until it publishes.
   * Answers the peers it may know of: those announced.
   */
  enter(peer: Peer, listener: boolean): Peer[] {
    const others = [...this.announced];
    peer.joined = true;
    if (!listener) this.announce(peer);
    return others;
  }

  /** Tells every other joined peer of `peer` (once): mediasoup-demo's newPeer. */
  private announce(peer: Peer): void {
    if (this.announced.has(peer) || peer.closed) return;
    this.announced.add(peer);
    for (const other of this.ctx.peers.values()) {
      if (other !== peer && other.joined && !other.closed) other.notify('newPeer', peer.info);
    }
  }

  /** A peer left (it is no longer among the room's peers): the others are told if they knew of it, and its media goes. */
  peerLeft(peer: Peer): void {
    if (this.announced.delete(peer)) for (const other of this.joinedPeers()) other.notify('peerClosed', { peerId: peer.id });
    for (const producerId of peer.producers.keys()) this.producerOwners.delete(producerId);
    for (const consumerId of peer.consumers.keys()) this.cascade.release(consumerId);
    for (const dataConsumerId of peer.dataConsumers) this.cascade.release(dataConsumerId);
    const agentId = peer.agentId;
    if (agentId !== undefined && this.routers.has(agentId)) {
      this.routers.call(agentId, 'closePeer', { roomId: this.ctx.roomId, peerId: peer.id }).catch((err: unknown) =>
        this.logger.debug({ err }, 'closePeer failed'),
      );
    }
  }

  /** The room's router on `agentId` is gone: its loudest producer no longer speaks. */
  routerGone(agentId: string): void {
    this.speakers.delete(agentId);
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
    const limit = this.ctx.peerLimits[LIMIT_OF[kind]];
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

  async join(peer: Peer, d: ClientRequest<'join'>): Promise<ClientResponses['join']> {
    if (peer.joined) throw new AppError('ALREADY_JOINED');
    await this.routers.placed(peer);
    if (peer.joined) throw new AppError('ALREADY_JOINED');
    if (d.displayName !== undefined) peer.displayName = d.displayName;
    peer.device = d.device ?? {};
    peer.rtpCapabilities = d.rtpCapabilities;
    peer.sctpCapabilities = d.sctpCapabilities;
    const others = this.enter(peer, d.listener === true);
    for (const other of others) {
      for (const producerId of other.producers.keys()) void this.createConsumer(peer, other, producerId);
      for (const dataProducerId of other.dataProducers.keys()) void this.createDataConsumer(peer, other, dataProducerId);
    }
    return { peers: others.map((p) => p.info) };
  }

  createWebRtcTransport(peer: Peer, d: ClientRequest<'createWebRtcTransport'>): Promise<ClientResponses['createWebRtcTransport']> {
    return this.withinLimit(
      peer,
      'transports',
      async () => {
        const info = await this.routers.forPeer('createWebRtcTransport', peer, {
          producing: d.producing ?? false,
          consuming: d.consuming ?? false,
          forceTcp: d.forceTcp,
          sctpCapabilities: d.sctpCapabilities,
        });
        if (peer.closed) {
          void this.routers.forPeer('closeTransport', peer, { transportId: info.id }).catch(() => undefined);
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

  async connectWebRtcTransport(peer: Peer, d: ClientRequest<'connectWebRtcTransport'>): Promise<null> {
    await this.connectOnce(peer, d.transportId, () => this.routers.forPeer('connectWebRtcTransport', peer, d));
    return null;
  }

  async restartIce(peer: Peer, d: ClientRequest<'restartIce'>): Promise<ClientResponses['restartIce']> {
    this.ownTransport(peer, d.transportId);
    return (await this.routers.forPeer('restartIce', peer, d)).iceParameters;
  }

  async produce(peer: Peer, d: ClientRequest<'produce'>): Promise<ClientResponses['produce']> {
    if (!peer.permissions.publish) {
      throw new AppError('PRODUCE_NOT_ALLOWED', `this token's role (${peer.role}) may not publish`);
    }
    this.ownTransport(peer, d.transportId);
    const id = await this.withinLimit(
      peer,
      'producers',
      () => this.routers.forPeer('produce', peer, d),
      (result) => {
        peer.producers.set(result.id, { kind: d.kind });
        this.producerOwners.set(result.id, peer);
        return result.id;
      },
    );
    // A listener that starts publishing becomes known first, so its consumers name a peer the others have.
    this.announce(peer);
    for (const other of this.joinedPeers(peer)) void this.createConsumer(other, peer, id);
    return { id };
  }

  async closeProducer(peer: Peer, d: ClientRequest<'closeProducer'>): Promise<null> {
    await this.routers.forPeer('closeProducer', peer, d);
    peer.producers.delete(d.producerId);
    this.producerOwners.delete(d.producerId);
    return null;
  }

  /** Pauses or resumes a producer, and its piped copies on other agents so their consumers see the same state. */
  async setProducerPaused(peer: Peer, producerId: string, paused: boolean): Promise<null> {
    await this.routers.forPeer(paused ? 'pauseProducer' : 'resumeProducer', peer, { producerId });
    const producer = peer.producers.get(producerId);
    if (producer) producer.paused = paused;
    await Promise.all(
      this.cascade.receiversOf(producerId).map((agentId) =>
        this.routers.call(agentId, 'setPipedProducerPaused', { roomId: this.ctx.roomId, producerId, paused }).catch((err: unknown) =>
          this.logger.debug({ err, agentId, producerId }, 'piped producer not updated'),
        ),
      ),
    );
    return null;
  }

  async produceData(peer: Peer, d: ClientRequest<'produceData'>): Promise<ClientResponses['produceData']> {
    if (!peer.permissions.publishData) {
      throw new AppError('PRODUCE_NOT_ALLOWED', `this token's role (${peer.role}) may not publish data (publishData)`);
    }
    this.ownTransport(peer, d.transportId);
    const id = await this.withinLimit(
      peer,
      'dataProducers',
      () => this.routers.forPeer('produceData', peer, d),
      (result) => {
        peer.dataProducers.set(result.id, { label: result.label, protocol: result.protocol });
        return result.id;
      },
    );
    this.announce(peer);
    for (const other of this.joinedPeers(peer)) void this.createDataConsumer(other, peer, id);
    return { id };
  }

  changeDisplayName(peer: Peer, d: ClientRequest<'changeDisplayName'>): null {
    const oldDisplayName = peer.displayName;
    peer.displayName = d.displayName;
    // Nobody knows of a listener yet: its name is news to no one.
    if (!this.announced.has(peer)) return null;
    for (const other of this.joinedPeers(peer)) {
      other.notify('peerDisplayNameChanged', { peerId: peer.id, displayName: d.displayName, oldDisplayName });
    }
    return null;
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
        const to = await this.routers.placed(consumerPeer);
        const from = this.producerOwner(producerId)?.agentId;
        if (from === undefined) throw new AppError('PRODUCER_NOT_FOUND', `producer ${producerId} not found`);
        const pipe = from === to ? undefined : await this.cascade.hold(producerId, from, to);
        let info: AgentResults['consume'] = null;
        try {
          info = await this.routers.forPeer('consume', consumerPeer, { transportId, producerId, rtpCapabilities });
        } finally {
          if (pipe !== undefined && !info) this.cascade.drop(pipe);
        }
        if (info && pipe !== undefined) this.cascade.bind(info.id, pipe);
        return info;
      },
      (info) => {
        if (!info) return null;
        if (consumerPeer.closed) {
          // Left while this was being set up: peerLeft has already released the others.
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
      await this.routers.forPeer('resumeConsumer', consumerPeer, { consumerId: info.id });
    } catch (err) {
      this.logger.debug({ err, consumerPeer: consumerPeer.id, producerId }, 'consumer not established');
    }
  }

  /**
   * A data consumer of `dataProducerId` for `consumerPeer`, on the consumer's
   * agent; a data producer on another agent is piped over first, and the pipe
   * held for as long as this data consumer exists (as `consume` does for media).
   */
  private consumeData(consumerPeer: Peer, producerPeer: Peer, dataProducerId: string, transportId: string) {
    return this.withinLimit(
      consumerPeer,
      'dataConsumers',
      async () => {
        const to = await this.routers.placed(consumerPeer);
        const from = producerPeer.agentId;
        if (from === undefined) throw new AppError('DATAPRODUCER_NOT_FOUND', `dataProducer ${dataProducerId} not found`);
        const pipe = from === to ? undefined : await this.cascade.holdData(dataProducerId, from, to);
        let info: AgentResults['consumeData'] | undefined;
        try {
          info = await this.routers.forPeer('consumeData', consumerPeer, { transportId, dataProducerId });
        } finally {
          if (pipe !== undefined && !info) this.cascade.drop(pipe);
        }
        if (pipe !== undefined) this.cascade.bind(info.id, pipe);
        return info;
      },
      (info) => {
        if (consumerPeer.closed) {
          // Left while this was being set up: peerLeft has already released the others.
          this.cascade.release(info.id);
          throw new AppError('PEER_CLOSED');
        }
        consumerPeer.dataConsumers.add(info.id);
        return info;
      },
    );
  }

  async createDataConsumer(consumerPeer: Peer, producerPeer: Peer, dataProducerId: string): Promise<void> {
    const transportId = consumerPeer.consumingTransportId;
    if (!consumerPeer.permissions.subscribe || !consumerPeer.sctpCapabilities || !transportId || !consumerPeer.connection) return;
    try {
      const info = await this.consumeData(consumerPeer, producerPeer, dataProducerId, transportId);
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

  /** Media events from a router of the room (not its closing, which the routers handle), as protoo notifications. */
  onAgentEvent(event: Exclude<AgentEventFrom, { type: 'routerClosed' }>): void {
    switch (event.type) {
      case 'activeSpeaker':
        this.onSpeaker(event.agentId, event.producerId, event.volume);
        return;
      // Whoever owned them, their pipes must follow (the owner may have left already).
      case 'consumerClosed':
        this.cascade.release(event.consumerId);
        break;
      case 'producerClosed':
        this.cascade.producerClosed(event.producerId);
        break;
      case 'dataConsumerClosed':
        this.cascade.release(event.dataConsumerId);
        break;
      case 'dataProducerClosed':
        this.cascade.dataProducerClosed(event.dataProducerId);
        break;
    }
    const peer = this.ctx.peers.get(event.peerId);
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
        this.producerOwners.delete(event.producerId);
        break;
      case 'dataConsumerClosed':
        peer.dataConsumers.delete(event.dataConsumerId);
        peer.notify('dataConsumerClosed', { dataConsumerId: event.dataConsumerId });
        break;
      case 'dataProducerClosed':
        peer.dataProducers.delete(event.dataProducerId);
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
    return this.producerOwners.get(producerId);
  }

  /** Broadcaster (plain RTP) operations, for the HTTP ingest API. */
  readonly broadcaster = {
    createPlainTransport: (peer: Peer, comedia: boolean, rtcpMux: boolean) =>
      this.withinLimit(
        peer,
        'transports',
        () => this.routers.forPeer('createPlainTransport', peer, { comedia, rtcpMux }),
        (info) => {
          peer.transports.set(info.id, { consuming: false, connected: false });
          return info;
        },
      ),
    connectPlainTransport: (peer: Peer, transportId: string, ip: string, port: number, rtcpPort?: number) =>
      this.connectOnce(peer, transportId, () => this.routers.forPeer('connectPlainTransport', peer, { transportId, ip, port, rtcpPort })),
    /** Plain-RTP egress (recording, restreaming): consumes a producer and starts it at once. */
    consume: async (peer: Peer, transportId: string, producerId: string) => {
      if (!peer.permissions.record) {
        throw new AppError('RECORD_NOT_ALLOWED', `this token's role (${peer.role}) may not stream out (record)`);
      }
      this.ownTransport(peer, transportId);
      const rtpCapabilities = peer.rtpCapabilities ?? (this.routers.rtpCapabilities as RtpCapabilities);
      const info = await this.consume(peer, producerId, transportId, rtpCapabilities);
      if (!info) throw new AppError('CANNOT_CONSUME');
      await this.routers.forPeer('resumeConsumer', peer, { consumerId: info.id });
      return info;
    },
    stats: (peer: Peer, kind: 'producer' | 'consumer', id: string) =>
      kind === 'producer'
        ? this.routers.forPeer('getProducerStats', peer, { producerId: id })
        : this.routers.forPeer('getConsumerStats', peer, { consumerId: id }),
  };
}
