import { EventEmitter } from 'node:events';
import {
  type AgentEvent,
  type AgentMethod,
  type AgentRequest,
  type AgentResults,
  agentSubjects,
} from '../core/agent-protocol.js';
import type { Bus } from '../core/bus/bus.js';
import { AppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { type ClientMethod, type ClientRequest, clientRequestSchemas } from '../protocol/signaling.js';
import type { Peer } from './peer.js';

interface RoomEvents {
  close: [];
}

type Owned<M extends AgentMethod> = Omit<AgentRequest<M>, 'roomId' | 'peerId'>;
/** Methods with the same name and data on both protocols. */
type SharedMethod = Extract<ClientMethod, AgentMethod>;

const FORWARDED: ReadonlySet<string> = new Set<SharedMethod>([
  'pauseProducer',
  'resumeProducer',
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

/**
 * A room on this gateway: its peers and the agent whose router carries its
 * media. It implements the mediasoup-demo room logic (who consumes whom) by
 * asking the agent over the bus. It lives from the first peer to the last.
 */
export class Room extends EventEmitter<RoomEvents> {
  readonly peers = new Map<string, Peer>();
  closed = false;

  private constructor(
    readonly id: string,
    readonly serviceId: string,
    readonly agentId: string,
    readonly rtpCapabilities: unknown,
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly agentTimeoutMs: number,
  ) {
    super();
  }

  static async open(opts: {
    id: string;
    serviceId: string;
    agentId: string;
    gatewayId: string;
    bus: Bus;
    logger: Logger;
    agentTimeoutMs: number;
  }): Promise<Room> {
    const { rtpCapabilities } = await opts.bus.request<AgentResults['ensureRouter']>(
      agentSubjects.rpc(opts.agentId),
      { method: 'ensureRouter', data: { roomId: opts.id, gatewayId: opts.gatewayId } },
      { timeoutMs: opts.agentTimeoutMs },
    );
    return new Room(
      opts.id,
      opts.serviceId,
      opts.agentId,
      rtpCapabilities,
      opts.bus,
      opts.logger.child({ room: opts.id }),
      opts.agentTimeoutMs,
    );
  }

  /** Calls the agent for `peer`; agent errors keep their codes. */
  private agent<M extends AgentMethod>(method: M, peer: Peer | undefined, data: Owned<M>): Promise<AgentResults[M]> {
    const payload = { roomId: this.id, ...(peer ? { peerId: peer.id } : {}), ...data };
    return this.bus
      .request<AgentResults[M]>(agentSubjects.rpc(this.agentId), { method, data: payload }, { timeoutMs: this.agentTimeoutMs })
      .catch((err: unknown) => {
        if (err instanceof AppError && err.code.startsWith('BUS_')) {
          throw new AppError('AGENT_UNAVAILABLE', 'the media agent does not answer', 503);
        }
        throw err;
      });
  }

  addPeer(peer: Peer): void {
    const previous = this.peers.get(peer.id);
    if (previous) this.removePeer(previous, 'replaced');
    this.peers.set(peer.id, peer);
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
    if (!this.closed) {
      this.agent('closePeer', peer, {}).catch((err: unknown) => this.logger.debug({ err }, 'closePeer failed'));
    }
    if (this.peers.size === 0) this.close();
  }

  /** Ends the room: the router goes, and every remaining peer is disconnected by its owner. */
  close(notifyAgent = true): void {
    if (this.closed) return;
    this.closed = true;
    if (notifyAgent) {
      this.bus
        .request(agentSubjects.rpc(this.agentId), { method: 'closeRouter', data: { roomId: this.id } }, { timeoutMs: this.agentTimeoutMs })
        .catch((err: unknown) => this.logger.debug({ err }, 'closeRouter failed'));
    }
    this.emit('close');
  }

  /** Dispatches a validated client request. */
  async handle(peer: Peer, method: string, rawData: unknown): Promise<unknown> {
    if (peer.closed) throw new AppError('PEER_CLOSED', 'peer has left the room', 410);
    if (!Object.hasOwn(clientRequestSchemas, method)) {
      throw new AppError('UNKNOWN_METHOD', `unknown method "${method}"`, 400);
    }
    const parsed = clientRequestSchemas[method as ClientMethod].safeParse(rawData ?? {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AppError('INVALID_REQUEST', `invalid ${method}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim(), 400);
    }
    const data = parsed.data as never;
    if (method !== 'getRouterRtpCapabilities' && method !== 'join' && method !== 'createWebRtcTransport' &&
      method !== 'connectWebRtcTransport' && method !== 'leave' && !peer.joined) {
      throw new AppError('NOT_JOINED', `${method} requires join first`, 409);
    }
    // Requests the agent answers as they are (it checks the named object belongs to this peer).
    if (FORWARDED.has(method)) return this.agent(method as SharedMethod, peer, data);
    switch (method as ClientMethod) {
      case 'getRouterRtpCapabilities':
        return this.rtpCapabilities;
      case 'join':
        return this.join(peer, data);
      case 'createWebRtcTransport':
        return this.createWebRtcTransport(peer, data);
      case 'connectWebRtcTransport': {
        const d = data as ClientRequest<'connectWebRtcTransport'>;
        this.ownTransport(peer, d.transportId);
        return this.agent('connectWebRtcTransport', peer, d);
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

  private ownTransport(peer: Peer, transportId: string): void {
    if (!peer.transports.has(transportId)) {
      throw new AppError('TRANSPORT_NOT_FOUND', `transport ${transportId} not found`, 404);
    }
  }

  async join(peer: Peer, d: ClientRequest<'join'>): Promise<{ peers: unknown[] }> {
    if (peer.joined) throw new AppError('ALREADY_JOINED', 'peer already joined', 409);
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

  async createWebRtcTransport(peer: Peer, d: ClientRequest<'createWebRtcTransport'>): Promise<unknown> {
    const info = await this.agent('createWebRtcTransport', peer, {
      producing: d.producing ?? false,
      consuming: d.consuming ?? false,
      forceTcp: d.forceTcp,
      sctpCapabilities: d.sctpCapabilities,
    });
    if (peer.closed) {
      void this.agent('closeTransport', peer, { transportId: info.id }).catch(() => undefined);
      throw new AppError('PEER_CLOSED', 'peer left', 410);
    }
    peer.transports.set(info.id, { consuming: d.consuming ?? false });
    return info;
  }

  async produce(peer: Peer, d: ClientRequest<'produce'>): Promise<{ id: string }> {
    if (peer.role !== 'presenter') {
      throw new AppError('PRODUCE_NOT_ALLOWED', 'this token has the viewer role: it may only subscribe', 403);
    }
    this.ownTransport(peer, d.transportId);
    const { id } = await this.agent('produce', peer, d);
    peer.producers.set(id, { kind: d.kind });
    for (const other of this.joinedPeers(peer)) void this.createConsumer(other, peer, id);
    return { id };
  }

  async produceData(peer: Peer, d: ClientRequest<'produceData'>): Promise<{ id: string }> {
    if (peer.role !== 'presenter') {
      throw new AppError('PRODUCE_NOT_ALLOWED', 'this token has the viewer role: it may only subscribe', 403);
    }
    this.ownTransport(peer, d.transportId);
    const result = await this.agent('produceData', peer, d);
    peer.dataProducers.set(result.id, { label: result.label, protocol: result.protocol });
    for (const other of this.joinedPeers(peer)) void this.createDataConsumer(other, peer, result.id);
    return { id: result.id };
  }

  /** mediasoup-demo flow: consumer created paused, client told by request, then resumed once it is ready. */
  async createConsumer(consumerPeer: Peer, producerPeer: Peer, producerId: string): Promise<void> {
    const transportId = consumerPeer.consumingTransportId;
    if (!consumerPeer.rtpCapabilities || !transportId || !consumerPeer.connection) return;
    try {
      const info = await this.agent('consume', consumerPeer, {
        transportId,
        producerId,
        rtpCapabilities: consumerPeer.rtpCapabilities,
      });
      if (!info) return;
      consumerPeer.consumers.add(info.id);
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

  async createDataConsumer(consumerPeer: Peer, producerPeer: Peer, dataProducerId: string): Promise<void> {
    const transportId = consumerPeer.consumingTransportId;
    if (!consumerPeer.sctpCapabilities || !transportId || !consumerPeer.connection) return;
    try {
      const info = await this.agent('consumeData', consumerPeer, { transportId, dataProducerId });
      consumerPeer.dataConsumers.add(info.id);
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
  onAgentEvent(event: AgentEvent): void {
    if (event.type === 'activeSpeaker') {
      const owner = event.producerId === null ? undefined : this.producerOwner(event.producerId);
      for (const peer of this.joinedPeers()) {
        peer.notify('activeSpeaker', { peerId: owner?.id ?? null, volume: event.volume });
      }
      return;
    }
    if (event.type === 'routerClosed') return;
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

  private producerOwner(producerId: string): Peer | undefined {
    for (const peer of this.peers.values()) if (peer.producers.has(producerId)) return peer;
    return undefined;
  }

  /** Broadcaster (plain RTP) operations, for the HTTP ingest API. */
  broadcaster = {
    createPlainTransport: async (peer: Peer, comedia: boolean, rtcpMux: boolean) => {
      const info = await this.agent('createPlainTransport', peer, { comedia, rtcpMux });
      peer.transports.set(info.id, { consuming: false });
      return info;
    },
    connectPlainTransport: async (peer: Peer, transportId: string, ip: string, port: number, rtcpPort?: number) => {
      this.ownTransport(peer, transportId);
      await this.agent('connectPlainTransport', peer, { transportId, ip, port, rtcpPort });
    },
    /** Plain-RTP egress (recording, restreaming): consumes a producer and starts it at once. */
    consume: async (peer: Peer, transportId: string, producerId: string) => {
      this.ownTransport(peer, transportId);
      const info = await this.agent('consume', peer, {
        transportId,
        producerId,
        rtpCapabilities: (peer.rtpCapabilities ?? this.rtpCapabilities) as Record<string, unknown>,
      });
      if (!info) throw new AppError('CANNOT_CONSUME', 'these RTP capabilities cannot receive that producer', 400);
      peer.consumers.add(info.id);
      await this.agent('resumeConsumer', peer, { consumerId: info.id });
      return info;
    },
    stats: (peer: Peer, kind: 'producer' | 'consumer', id: string) =>
      kind === 'producer'
        ? this.agent('getProducerStats', peer, { producerId: id })
        : this.agent('getConsumerStats', peer, { consumerId: id }),
  };
}
