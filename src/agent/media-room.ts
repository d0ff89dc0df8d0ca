import type { types } from 'mediasoup';
import type { AgentEvent, RouterClosedReason } from '../core/agent-protocol.js';
import { AppError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { mediaCodecs } from './media-codecs.js';
import type { WorkerSlot } from './worker-pool.js';

/** Who an object belongs to; the agent refuses requests naming another peer's objects. */
export interface Owner {
  roomId: string;
  peerId: string;
}

type Kind = 'transport' | 'producer' | 'consumer' | 'dataProducer' | 'dataConsumer';

const NOT_FOUND_CODES = {
  transport: 'TRANSPORT_NOT_FOUND',
  producer: 'PRODUCER_NOT_FOUND',
  consumer: 'CONSUMER_NOT_FOUND',
  dataProducer: 'DATAPRODUCER_NOT_FOUND',
  dataConsumer: 'DATACONSUMER_NOT_FOUND',
} as const satisfies Record<Kind, ErrorCode>;
interface Closable {
  closed: boolean;
  close(): void;
}

/** Where a gateway's room lives on this agent: rooms of the same id opened by two gateways are two rooms. */
export function roomKey(r: { gatewayId: string; roomId: string }): string {
  return JSON.stringify([r.gatewayId, r.roomId]);
}

/**
 * A gateway's room on this agent (one opening of it: `epoch`): one router on
 * one worker, its audio level observer, and every transport/producer/consumer
 * of its peers, indexed by id with their owner. Closing the room closes the
 * router, which closes everything in it; a router that goes for any reason
 * but its gateway's own request is reported to the gateway (`routerClosed`),
 * so no peer is left without media and without knowing it.
 */
export class MediaRoom {
  readonly objects: Record<Kind, Map<string, { owner: Owner; object: Closable }>> = {
    transport: new Map(),
    producer: new Map(),
    consumer: new Map(),
    dataProducer: new Map(),
    dataConsumer: new Map(),
  };
  /** Cascade: the PipeTransport to this room's router on each other agent. */
  readonly links = new Map<string, types.PipeTransport>();
  private readonly pendingLinks = new Map<string, Promise<types.PipeTransport>>();
  /** Local producers sent over a link, by `${remoteAgentId}|${producerId}`. */
  readonly pipeConsumers = new Map<string, types.Consumer>();
  /** Producers arriving over a link, under their original id. */
  readonly pipedProducers = new Map<string, { producer: types.Producer; remoteAgentId: string }>();
  closed = false;

  private constructor(
    readonly roomId: string,
    readonly gatewayId: string,
    readonly epoch: string,
    readonly slot: WorkerSlot,
    readonly router: types.Router,
    readonly audioLevelObserver: types.AudioLevelObserver,
    private readonly emitEvent: (event: AgentEvent) => void,
    private readonly logger: Logger,
  ) {}

  static async create(
    opening: { roomId: string; gatewayId: string; epoch: string },
    slot: WorkerSlot,
    emitEvent: (event: AgentEvent) => void,
    logger: Logger,
  ): Promise<MediaRoom> {
    const { roomId, gatewayId, epoch } = opening;
    const router = await slot.worker.createRouter({ mediaCodecs, appData: { roomId, gatewayId } });
    const audioLevelObserver = await router.createAudioLevelObserver({ maxEntries: 1, threshold: -80, interval: 800 });
    const room = new MediaRoom(roomId, gatewayId, epoch, slot, router, audioLevelObserver, emitEvent, logger);
    audioLevelObserver.on('volumes', (volumes) => {
      const [loudest] = volumes;
      if (loudest) emitEvent({ type: 'activeSpeaker', roomId, producerId: loudest.producer.id, volume: loudest.volume });
    });
    // Gone under the room (its worker died, or anything but close() closed it): the room's gateway must move its peers.
    router.on('workerclose', () => room.close('worker-died'));
    router.observer.once('close', () => room.close('router-closed'));
    audioLevelObserver.on('silence', () => emitEvent({ type: 'activeSpeaker', roomId, producerId: null }));
    return room;
  }

  get peerIds(): Set<string> {
    const ids = new Set<string>();
    for (const { owner } of this.objects.transport.values()) ids.add(owner.peerId);
    return ids;
  }

  /** Looks up an object of a kind and checks that `owner` may touch it. */
  get<T>(kind: Kind, id: string, owner: Owner): T {
    const entry = this.objects[kind].get(id);
    if (!entry || entry.owner.peerId !== owner.peerId) {
      throw new AppError(NOT_FOUND_CODES[kind], `${kind} ${id} not found`);
    }
    return entry.object as T;
  }

  track(kind: Kind, owner: Owner, object: Closable & { id: string; observer: { once(e: 'close', f: () => void): unknown } }): void {
    this.objects[kind].set(object.id, { owner, object });
    object.observer.once('close', () => {
      this.objects[kind].delete(object.id);
      if (kind === 'consumer') this.slot.consumers--;
    });
    if (kind === 'consumer') this.slot.consumers++;
  }

  /** A producer consumers here may use: a peer's own, or one piped in from another agent. */
  findProducer(producerId: string): types.Producer | undefined {
    const own = this.objects.producer.get(producerId)?.object as types.Producer | undefined;
    return own ?? this.pipedProducers.get(producerId)?.producer;
  }

  /** The link to `remoteAgentId`, created once (concurrent calls share it). */
  async link(remoteAgentId: string, options: types.PipeTransportOptions): Promise<types.PipeTransport> {
    const existing = this.links.get(remoteAgentId);
    if (existing && !existing.closed) return existing;
    let pending = this.pendingLinks.get(remoteAgentId);
    if (!pending) {
      pending = this.router.createPipeTransport({ ...options, appData: { remoteAgentId } }).then((transport) => {
        this.links.set(remoteAgentId, transport);
        transport.observer.once('close', () => {
          if (this.links.get(remoteAgentId) === transport) this.links.delete(remoteAgentId);
        });
        return transport;
      });
      this.pendingLinks.set(remoteAgentId, pending);
      void pending.finally(() => this.pendingLinks.delete(remoteAgentId)).catch(() => undefined);
    }
    return pending;
  }

  existingLink(remoteAgentId: string): types.PipeTransport {
    const transport = this.links.get(remoteAgentId);
    if (!transport) throw new AppError('LINK_NOT_FOUND', `no link to agent ${remoteAgentId} in room ${this.roomId}`);
    return transport;
  }

  trackPipeConsumer(remoteAgentId: string, consumer: types.Consumer): void {
    const key = `${remoteAgentId}|${consumer.producerId}`;
    this.pipeConsumers.set(key, consumer);
    consumer.observer.once('close', () => {
      if (this.pipeConsumers.get(key) === consumer) this.pipeConsumers.delete(key);
    });
  }

  trackPipedProducer(remoteAgentId: string, producer: types.Producer): void {
    this.pipedProducers.set(producer.id, { producer, remoteAgentId });
    producer.observer.once('close', () => {
      if (this.pipedProducers.get(producer.id)?.producer === producer) this.pipedProducers.delete(producer.id);
    });
  }

  /** Stops sending `producerId` to `remoteAgentId` and receiving it from there; either may not exist. */
  unpipe(remoteAgentId: string, producerId: string): void {
    this.pipeConsumers.get(`${remoteAgentId}|${producerId}`)?.close();
    const piped = this.pipedProducers.get(producerId);
    if (piped?.remoteAgentId === remoteAgentId) piped.producer.close();
  }

  closePeer(peerId: string): void {
    for (const [, entry] of this.objects.transport) if (entry.owner.peerId === peerId) entry.object.close();
  }

  emit(event: AgentEvent): void {
    if (!this.closed) this.emitEvent(event);
  }

  /**
   * Closes the router and everything in it. Without a reason its gateway
   * asked for it; with one, the agent decided (or the router went under it)
   * and the gateway is told, so that its peers there rejoin.
   */
  close(reason?: RouterClosedReason): void {
    if (this.closed) return;
    if (reason) this.emitEvent({ type: 'routerClosed', roomId: this.roomId, epoch: this.epoch, reason });
    this.closed = true;
    this.router.close();
    this.logger.debug({ room: this.roomId, gateway: this.gatewayId, reason }, 'media room closed');
  }

  // ── Data cascade: data producers piped over the links' SCTP associations ──

  /** Local data producers sent over a link, by `${remoteAgentId}|${dataProducerId}`. */
  readonly pipeDataConsumers = new Map<string, types.DataConsumer>();
  /** Data producers arriving over a link, under their original id. */
  readonly pipedDataProducers = new Map<string, { dataProducer: types.DataProducer; remoteAgentId: string }>();

  /** A data producer peers here may consume: a peer's own, or one piped in from another agent. */
  findDataProducer(dataProducerId: string): types.DataProducer | undefined {
    const own = this.objects.dataProducer.get(dataProducerId)?.object as types.DataProducer | undefined;
    return own ?? this.pipedDataProducers.get(dataProducerId)?.dataProducer;
  }

  trackPipeDataConsumer(remoteAgentId: string, dataConsumer: types.DataConsumer): void {
    const key = `${remoteAgentId}|${dataConsumer.dataProducerId}`;
    this.pipeDataConsumers.set(key, dataConsumer);
    dataConsumer.observer.once('close', () => {
      if (this.pipeDataConsumers.get(key) === dataConsumer) this.pipeDataConsumers.delete(key);
    });
  }

  trackPipedDataProducer(remoteAgentId: string, dataProducer: types.DataProducer): void {
    this.pipedDataProducers.set(dataProducer.id, { dataProducer, remoteAgentId });
    dataProducer.observer.once('close', () => {
      if (this.pipedDataProducers.get(dataProducer.id)?.dataProducer === dataProducer) this.pipedDataProducers.delete(dataProducer.id);
    });
  }

  /**
   * Stops sending `dataProducerId` to `remoteAgentId` and receiving it from
   * there; either may not exist. Closing the piped copy closes the data
   * consumers of it here, which the gateway then hears about.
   */
  unpipeData(remoteAgentId: string, dataProducerId: string): void {
    this.pipeDataConsumers.get(`${remoteAgentId}|${dataProducerId}`)?.close();
    const piped = this.pipedDataProducers.get(dataProducerId);
    if (piped?.remoteAgentId === remoteAgentId) piped.dataProducer.close();
  }
}
