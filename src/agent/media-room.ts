import type { types } from 'mediasoup';
import type { AgentEvent, RouterClosedReason } from '../core/agent-protocol.js';
import { AppError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { RoomRouter, placePeer } from './room-router.js';
import { LinkTraffic } from './link-traffic.js';
import { RouterPipes } from './router-pipes.js';
import type { WorkerPool, WorkerSlot } from './worker-pool.js';

/** Who an object belongs to; the agent refuses requests naming another peer's objects. */
export interface Owner {
  roomId: string;
  peerId: string;
}

/**
 * A bound peer's router (once placed) and the consumers it is expected to
 * create there and has not yet, counted in that router's `expected`.
 */
interface Seat {
  at?: RoomRouter;
  expected: number;
  /** Whether a transport of the peer already said what it would consume: its later ones add nothing. */
  announced: boolean;
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
 * A gateway's room on this agent (one opening of it: `epoch`): its routers,
 * one per worker it uses (the home router first, the one the gateway and the
 * links to other agents know), and every transport/producer/consumer of its
 * peers, indexed by id with their owner and the router they live on. A peer
 * is bound to one router with its first transport (`routerConsumerLimit`
 * decides which); what it consumes from another router is piped over on
 * demand (`pipes`). Closing the room closes every router, which closes
 * everything in them; a router that goes for any reason but its gateway's own
 * request is reported to the gateway (`routerClosed`), so no peer is left
 * without media and without knowing it.
 */
export class MediaRoom {
  readonly objects: Record<Kind, Map<string, { owner: Owner; object: Closable; at: RoomRouter }>> = {
    transport: new Map(),
    producer: new Map(),
    consumer: new Map(),
    dataProducer: new Map(),
    dataConsumer: new Map(),
  };
  /** Cascade: the PipeTransport to this room's router on each other agent. */
  readonly links = new Map<string, types.PipeTransport>();
  private readonly pendingLinks = new Map<string, Promise<types.PipeTransport>>();
  /** Cascade: producers sent over the links and copies arriving from them. */
  readonly linkMedia = new LinkTraffic<types.Consumer, types.Producer>();
  /** Cascade: the same for data producers, over the links' SCTP associations. */
  readonly linkData = new LinkTraffic<types.DataConsumer, types.DataProducer>();
  /** The room's producers and data producers piped between its routers here. */
  readonly pipes = new RouterPipes();
  /** Every router of the room, the home router first. */
  readonly routers: RoomRouter[];
  /** Each peer's router, from its first transport until its last one closes, with its seat there. */
  private readonly bindings = new Map<string, { bound: Promise<RoomRouter>; seat: Seat }>();
  /** Each peer's open transports: a leave and the load report touch one peer's, not the room's. */
  private readonly transportsOfPeer = new Map<string, Set<Closable>>();
  /** A router being added: peers placed meanwhile wait for it instead of adding another. */
  private adding?: Promise<RoomRouter>;
  /** The loudest producer each router's observer last reported (none: silence there). */
  private readonly loudest = new Map<RoomRouter, { producerId: string; volume: number }>();
  closed = false;

  private constructor(
    readonly roomId: string,
    readonly gatewayId: string,
    readonly epoch: string,
    private readonly home: RoomRouter,
    private readonly pool: WorkerPool,
    private readonly routerConsumerLimit: number,
    private readonly emitEvent: (event: AgentEvent) => void,
    private readonly logger: Logger,
  ) {
    this.routers = [home];
    this.watch(home);
  }

  static async create(
    opening: { roomId: string; gatewayId: string; epoch: string },
    pool: WorkerPool,
    routerConsumerLimit: number,
    emitEvent: (event: AgentEvent) => void,
    logger: Logger,
  ): Promise<MediaRoom> {
    const { roomId, gatewayId, epoch } = opening;
    const home = await RoomRouter.create(pool, pool.leastLoaded(), { roomId, gatewayId });
    return new MediaRoom(roomId, gatewayId, epoch, home, pool, routerConsumerLimit, emitEvent, logger);
  }

  /** The home router: the one the gateway knows (its capabilities), and where links to other agents end. */
  get router(): types.Router {
    return this.home.router;
  }

  get peerCount(): number {
    return this.transportsOfPeer.size;
  }

  /** Producers a peer joining now would be offered: the room's on this agent and those piped in from other agents so far. */
  get producerCount(): number {
    return this.objects.producer.size + this.linkMedia.arrivedCount;
  }

  /**
   * The router `peerId`'s transports go on: the one it is bound to, or a
   * placement that binds it. `expected`: the consumers this transport is
   * expected to bring (0 for a plain ingest one); only the peer's first transport
   * that expects any counts, and it counts on its router from now until those
   * consumers exist or the peer leaves, so that peers placed meanwhile see it.
   */
  routerFor(peerId: string, expected: number): Promise<RoomRouter> {
    const binding = this.bindings.get(peerId);
    if (binding) {
      this.expect(binding.seat, expected);
      return binding.bound;
    }
    const seat: Seat = { expected: 0, announced: false };
    // Expected before placed: sit() counts it on the router it is placed on, in the same step.
    this.expect(seat, expected);
    const bound = this.place(seat);
    this.bindings.set(peerId, { bound, seat });
    bound.catch(() => this.bindings.get(peerId)?.bound === bound && this.unbind(peerId));
    return bound;
  }

  private expect(seat: Seat, expected: number): void {
    if (expected === 0 || seat.announced) return;
    seat.announced = true;
    seat.expected = expected;
    if (seat.at) seat.at.expected += expected;
  }

  /** Binds the seat to `at`, its expected consumers with it: synchronously with the placement, before any other peer's. */
  private sit(seat: Seat, at: RoomRouter): RoomRouter {
    seat.at = at;
    at.expected += seat.expected;
    return at;
  }

  /** Takes back what is left of the seat's expected consumers (they came, or will not). */
  private release(seat: Seat, consumers: number): void {
    const n = Math.min(consumers, seat.expected);
    seat.expected -= n;
    if (seat.at) seat.at.expected -= n;
  }

  private async place(seat: Seat): Promise<RoomRouter> {
    for (;;) {
      if (this.closed) throw new AppError('ROOM_NOT_FOUND', `room ${this.roomId} is closed`);
      const placement = placePeer(this.routers, this.pool.all(), this.routerConsumerLimit);
      if ('router' in placement) return this.sit(seat, placement.router);
      if (this.adding) {
        // Every router is full and one is on its way: the peer goes where the placement says once it is there.
        await this.adding.catch(() => undefined);
        continue;
      }
      const adding = this.addRouter(placement.worker, seat);
      this.adding = adding;
      try {
        return await adding;
      } finally {
        this.adding = undefined;
      }
    }
  }

  /** A router on `slot` for the room, with `seat` bound to it before the peers waiting for it place themselves. */
  private async addRouter(slot: WorkerSlot, seat: Seat): Promise<RoomRouter> {
    const added = await RoomRouter.create(this.pool, slot, { roomId: this.roomId, gatewayId: this.gatewayId });
    if (this.closed) {
      added.router.close();
      throw new AppError('ROOM_NOT_FOUND', `room ${this.roomId} is closed`);
    }
    this.routers.push(added);
    this.sit(seat, added);
    this.watch(added);
    this.logger.debug({ room: this.roomId, worker: slot.index, routers: this.routers.length }, 'room spread to another worker');
    return added;
  }

  private watch(at: RoomRouter): void {
    // Gone under the room (its worker died, or anything but close() closed it): the room's gateway must move its peers.
    at.router.on('workerclose', () => this.close('worker-died'));
    at.router.observer.once('close', () => this.close('router-closed'));
  }

  /** The audio level observer of the router `at`, for an audio producer there; its reports make the room's speaker. */
  audioLevels(at: RoomRouter): Promise<types.AudioLevelObserver> {
    return at.audioLevels((observer) => {
      observer.on('volumes', ([loudest]) => {
        if (!loudest) return;
        this.loudest.set(at, { producerId: loudest.producer.id, volume: loudest.volume });
        this.emitSpeaker();
      });
      observer.on('silence', () => {
        this.loudest.delete(at);
        this.emitSpeaker();
      });
    });
  }

  /** The loudest producer over all the room's routers (each observer sees only its own router's). */
  private emitSpeaker(): void {
    let speaker: { producerId: string; volume: number } | undefined;
    for (const s of this.loudest.values()) if (!speaker || s.volume > speaker.volume) speaker = s;
    this.emit(
      speaker
        ? { type: 'activeSpeaker', roomId: this.roomId, producerId: speaker.producerId, volume: speaker.volume }
        : { type: 'activeSpeaker', roomId: this.roomId, producerId: null },
    );
  }

  /** Looks up an object of a kind and checks that `owner` may touch it. */
  get<T>(kind: Kind, id: string, owner: Owner): T {
    return this.entry<T>(kind, id, owner).object;
  }

  /** An object `owner` may touch, with the router it lives on. */
  entry<T>(kind: Kind, id: string, owner: Owner): { object: T; at: RoomRouter } {
    const entry = this.objects[kind].get(id);
    if (!entry || entry.owner.peerId !== owner.peerId) {
      throw new AppError(NOT_FOUND_CODES[kind], `${kind} ${id} not found`);
    }
    return { object: entry.object as T, at: entry.at };
  }

  track(
    kind: Kind,
    owner: Owner,
    object: Closable & { id: string; observer: { once(e: 'close', f: () => void): unknown } },
    at: RoomRouter,
  ): void {
    this.objects[kind].set(object.id, { owner, object, at });
    object.observer.once('close', () => {
      this.objects[kind].delete(object.id);
      if (kind === 'consumer') {
        at.consumers--;
        at.slot.consumers--;
      }
      if (kind === 'transport') this.transportClosed(owner.peerId, object);
    });
    if (kind === 'consumer') {
      at.consumers++;
      at.slot.consumers++;
      // An expected consumer that came: it now counts as what it is.
      const binding = this.bindings.get(owner.peerId);
      if (binding) this.release(binding.seat, 1);
    }
    if (kind === 'transport') {
      let transports = this.transportsOfPeer.get(owner.peerId);
      if (!transports) this.transportsOfPeer.set(owner.peerId, (transports = new Set()));
      transports.add(object);
    }
  }

  /** A peer without transports is unbound, what it was still expected to consume with it: if it comes back it is placed anew. */
  private transportClosed(peerId: string, transport: Closable): void {
    const transports = this.transportsOfPeer.get(peerId);
    transports?.delete(transport);
    if (transports && transports.size > 0) return;
    this.transportsOfPeer.delete(peerId);
    this.unbind(peerId);
  }

  private unbind(peerId: string): void {
    const binding = this.bindings.get(peerId);
    // All of it: a placement still on its way then sits with nothing expected.
    if (binding) this.release(binding.seat, binding.seat.expected);
    this.bindings.delete(peerId);
  }

  /** A producer consumers here may use, with its router: a peer's own, or one piped in from another agent (home). */
  findProducer(producerId: string): { producer: types.Producer; at: RoomRouter } | undefined {
    const own = this.objects.producer.get(producerId);
    if (own) return { producer: own.object as types.Producer, at: own.at };
    const piped = this.linkMedia.copy(producerId);
    return piped && { producer: piped, at: this.home };
  }

  /** A data producer peers here may consume, with its router: a peer's own, or one piped in from another agent (home). */
  findDataProducer(dataProducerId: string): { dataProducer: types.DataProducer; at: RoomRouter } | undefined {
    const own = this.objects.dataProducer.get(dataProducerId);
    if (own) return { dataProducer: own.object as types.DataProducer, at: own.at };
    const piped = this.linkData.copy(dataProducerId);
    return piped && { dataProducer: piped, at: this.home };
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

  closePeer(peerId: string): void {
    const transports = this.transportsOfPeer.get(peerId);
    // Closing its last transport unbinds the peer; one whose first transport never came is unbound here.
    if (!transports) this.unbind(peerId);
    for (const transport of [...(transports ?? [])]) transport.close();
  }

  emit(event: AgentEvent): void {
    if (!this.closed) this.emitEvent(event);
  }

  /**
   * Closes the routers and everything in them. Without a reason its gateway
   * asked for it; with one, the agent decided (or the router went under it)
   * and the gateway is told, so that its peers there rejoin.
   */
  close(reason?: RouterClosedReason): void {
    if (this.closed) return;
    if (reason) this.emitEvent({ type: 'routerClosed', roomId: this.roomId, epoch: this.epoch, reason });
    this.closed = true;
    for (const at of this.routers) at.router.close();
    this.logger.debug({ room: this.roomId, gateway: this.gatewayId, reason }, 'media room closed');
  }
}
