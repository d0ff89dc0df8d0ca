import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { version as mediasoupVersion } from 'mediasoup';
import {
  type AgentDump,
  type AgentEvent,
  type AgentHeartbeat,
  type AgentLoad,
  type AgentMethod,
  type AgentRequest,
  agentRequestSchemas,
  agentRpcSchema,
  agentSubjects,
} from '../core/agent-protocol.js';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { waitUntilEmpty } from '../core/drain.js';
import { OpsAuth } from '../core/ops-auth.js';
import { type OpsServer, startOpsServer } from '../core/ops-routes.js';
import { AppError } from '../core/errors.js';
import { HeartbeatPublisher } from '../core/heartbeat-publisher.js';
import { BusSilence } from '../core/heartbeat-table.js';
import { subjects } from '../core/subjects.js';
import type { Logger } from '../core/logger.js';
import type { Registry } from 'prom-client';
import { startProbeServer } from './distance.js';
import { type Handlers, agentHandlers } from './handlers/index.js';
import { MediaRoom, roomKey } from './media-room.js';
import { AgentMetrics } from './metrics.js';
import { WorkerPool } from './worker-pool.js';

/**
 * Requests carrying what a client described (RTP, DTLS, SCTP parameters). The
 * worker refuses some only against its state (an SSRC or MID already in use on
 * the transport): that refusal is the client's error too.
 */
const CLIENT_DESCRIBED: ReadonlySet<AgentMethod> = new Set<AgentMethod>([
  'connectWebRtcTransport',
  'connectPlainTransport',
  'produce',
  'produceData',
  'consume',
]);

/**
 * The media role: mediasoup workers and the rooms' routers on them. It does
 * what gateways ask over the bus and tells them what happens to their peers'
 * media. It never talks to clients.
 */
export class Agent {
  readonly pool: WorkerPool;
  /** Gateways' rooms, by roomKey (gateway, room). */
  private readonly rooms = new Map<string, MediaRoom>();
  /** Openings in progress, by roomKey: concurrent ensureRouter calls of one opening share its router. */
  private readonly pendingRooms = new Map<string, { epoch: string; room: Promise<MediaRoom> }>();
  private readonly subscriptions: Subscription[] = [];
  private readonly presence: HeartbeatPublisher;
  private orphanTimer?: NodeJS.Timeout;
  /** When each gateway that owns rooms here was last heard of. */
  private readonly gatewaySeen = new Map<string, number>();
  private gatewaySilence?: BusSilence;
  private state: 'available' | 'draining' = 'available';
  private drainWatch?: ReturnType<typeof waitUntilEmpty>;
  private probeServer?: OpsServer;
  private clientProbeServer?: Server;
  private cpu = 0;
  private metrics?: AgentMetrics;
  private metricsRegistry?: Registry;
  private readonly handlers: Handlers;
  /** Tells gateways a restarted agent from the one they knew under the same id. */
  private readonly incarnation = randomBytes(8).toString('hex');

  constructor(
    private readonly config: Config,
    private readonly bus: Bus,
    private readonly logger: Logger,
  ) {
    const a = config.agent;
    this.pool = new WorkerPool(
      {
        numWorkers: a.numWorkers,
        logLevel: a.workerLogLevel,
        listenIp: a.listenIp,
        announcedAddress: a.announcedAddress,
        webRtcBasePort: a.webRtcBasePort,
        plainRtpMinPort: a.plainRtpMinPort,
        plainRtpMaxPort: a.plainRtpMaxPort,
        spareRouters: a.spareRouters,
      },
      logger,
    );
    this.handlers = this.createHandlers();
    this.presence = new HeartbeatPublisher(bus, {
      heartbeat: agentSubjects.heartbeat,
      down: agentSubjects.down,
      hello: agentSubjects.hello,
      id: a.id,
      intervalMs: a.heartbeatMs,
      payload: () => this.heartbeat(),
      // Measured after publishing, so a slow worker never delays the liveness signal.
      afterBeat: () =>
        void this.pool.cpuUsage().then((cpu) => {
          this.cpu = Math.round(cpu * 1000) / 1000;
        }),
    });
  }

  get id(): string {
    return this.config.agent.id;
  }

  async start(): Promise<void> {
    await this.pool.start();
    this.subscriptions.push(
      this.bus.respond(agentSubjects.rpc(this.id), (payload) => this.handle(payload)),
      this.bus.subscribe(subjects.gatewayHeartbeat, (payload) => {
        const id = (payload as { id?: unknown } | null)?.id;
        if (typeof id === 'string' && this.gatewaySeen.has(id)) this.gatewaySeen.set(id, Date.now());
      }),
      this.bus.subscribe(subjects.gatewayDown, (payload) => {
        const id = (payload as { id?: unknown } | null)?.id;
        if (typeof id === 'string') this.closeRoomsOf(id, 'gateway-stopped');
      }),
    );
    const silence = new BusSilence(this.bus);
    this.gatewaySilence = silence;
    this.orphanTimer = setInterval(() => {
      const timeoutMs = this.config.agent.gatewayTimeoutMs;
      for (const [id, seen] of this.gatewaySeen) if (silence.expired(seen, timeoutMs)) this.closeRoomsOf(id, 'gateway-silent');
    }, 1000);
    this.orphanTimer.unref();
    if (this.config.agent.healthPort !== undefined) await this.startProbes(this.config.agent.healthPort);
    if (this.config.agent.clientProbePort !== undefined) {
      this.clientProbeServer = await startProbeServer(this.config.agent.listenIp, this.config.agent.clientProbePort);
    }
    this.presence.start();
  }

  registerMetrics(registry: Registry): void {
    this.metricsRegistry = registry;
    this.metrics = new AgentMetrics(registry, {
      load: () => this.load(),
      draining: () => this.state === 'draining',
      rooms: () => this.rooms.values(),
    });
  }

  /**
   * Graceful stop, step one: gateways stop placing rooms here at once (the
   * draining state is announced immediately); existing media goes on.
   * Resolves when the last room closed or the grace period ended.
   */
  drain(graceMs = this.config.agent.drainGraceSec * 1000): Promise<'empty' | 'grace'> {
    if (!this.drainWatch) {
      this.state = 'draining';
      this.presence.beat();
      this.drainWatch = waitUntilEmpty(() => this.rooms.size === 0, graceMs);
      this.logger.info({ rooms: this.rooms.size, graceMs }, 'draining');
    }
    return this.drainWatch.done;
  }

  /**
   * Kubernetes-style probes: /health while the process runs, /ready while it
   * takes new rooms; /metrics, and /drain (the preStop hook), with the ops token.
   */
  private async startProbes(port: number): Promise<void> {
    this.probeServer = await startOpsServer(port, this.logger, {
      auth: new OpsAuth(this.config.ops),
      ready: () => this.state === 'available',
      drain: () => void this.drain(),
      remaining: () => {
        const { routers, peers } = this.load();
        return { routers, peers };
      },
      metrics: () => this.metricsRegistry,
    });
  }

  /** Where the probe server listens (healthPort 0 picks a free port). */
  get healthPort(): number | undefined {
    return this.probeServer?.port;
  }

  async close(): Promise<void> {
    void this.probeServer?.close();
    this.clientProbeServer?.close();
    this.clientProbeServer?.closeAllConnections();
    clearInterval(this.orphanTimer);
    this.gatewaySilence?.stop();
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    for (const room of [...this.rooms.values()]) room.close('agent-closing');
    this.rooms.clear();
    this.presence.stop();
    this.pool.close();
  }

  load(): AgentLoad {
    let routers = 0;
    let transports = 0;
    let producers = 0;
    let consumers = 0;
    let peers = 0;
    for (const room of this.rooms.values()) {
      routers += room.routers.length;
      transports += room.objects.transport.size;
      producers += room.objects.producer.size;
      consumers += room.objects.consumer.size;
      peers += room.peerCount;
    }
    return { workers: this.pool.size, routers, transports, producers, consumers, peers, cpu: this.cpu };
  }

  /**
   * A gateway stopped or went silent with rooms here: nobody would ever close
   * them, so the agent does (the gateway is told, should it be alive after all).
   * Only that gateway's rooms go: the same room reopened by another gateway
   * has routers of its own.
   */
  private closeRoomsOf(gatewayId: string, reason: 'gateway-stopped' | 'gateway-silent'): void {
    this.gatewaySeen.delete(gatewayId);
    for (const room of [...this.rooms.values()]) {
      if (room.gatewayId !== gatewayId) continue;
      this.logger.warn({ room: room.roomId, gateway: gatewayId, reason }, 'closing orphaned room');
      room.close(reason);
    }
  }

  /** Where clients time their round trip to this agent, if they can. */
  private get clientProbeUrl(): string | undefined {
    const a = this.config.agent;
    if (a.clientProbeUrl) return a.clientProbeUrl;
    if (a.clientProbePort === undefined) return undefined;
    const host = a.announcedAddress ?? a.listenIp;
    return `http://${host.includes(':') ? `[${host}]` : host}:${a.clientProbePort}/probe`;
  }

  private heartbeat(): AgentHeartbeat {
    return {
      id: this.id,
      incarnation: this.incarnation,
      state: this.state,
      load: this.load(),
      ...(this.clientProbeUrl ? { probeUrl: this.clientProbeUrl } : {}),
      mediasoupVersion,
    };
  }

  private async handle(payload: unknown): Promise<unknown> {
    const envelope = agentRpcSchema.safeParse(payload);
    if (!envelope.success || !Object.hasOwn(agentRequestSchemas, envelope.data.method)) {
      throw new AppError('UNKNOWN_METHOD', 'unknown agent method');
    }
    const method = envelope.data.method as AgentMethod;
    const parsed = agentRequestSchemas[method].safeParse(envelope.data.data);
    if (!parsed.success) {
      throw new AppError('INVALID_REQUEST', `invalid ${method} request: ${parsed.error.issues[0]?.message ?? ''}`);
    }
    try {
      return await (this.handlers[method] as (req: unknown) => unknown)(parsed.data);
    } catch (err) {
      if (err instanceof AppError) throw err;
      // mediasoup rejects bad parameters with TypeError/UnsupportedError; closed objects with InvalidStateError.
      const name = (err as Error).name;
      if (name === 'TypeError' || name === 'UnsupportedError' || (name === 'Error' && CLIENT_DESCRIBED.has(method))) {
        throw new AppError('INVALID_PARAMETERS', (err as Error).message);
      }
      if (name === 'InvalidStateError') throw new AppError('INVALID_STATE', (err as Error).message);
      throw err;
    }
  }

  /** The gateway's room; ROOM_NOT_FOUND tells the gateway its router here is gone (it then moves the peers). */
  private room(r: { roomId: string; gatewayId: string }): MediaRoom {
    const room = this.rooms.get(roomKey(r));
    if (!room) throw new AppError('ROOM_NOT_FOUND', `room ${r.roomId} has no router on this agent`);
    return room;
  }

  /**
   * The router of one opening of a gateway's room, created on first use. A
   * router of an earlier opening is closed first (its gateway has forgotten
   * it, and told its peers): a router is never handed to a second opening, so
   * nothing meant for the old one can ever close the new one.
   */
  private ensureRoom(r: AgentRequest<'ensureRouter'>): Promise<MediaRoom> {
    this.gatewaySeen.set(r.gatewayId, Date.now());
    const key = roomKey(r);
    const existing = this.rooms.get(key);
    const pending = this.pendingRooms.get(key);
    if (pending?.epoch === r.epoch) return pending.room;
    if (!pending && existing?.epoch === r.epoch) return Promise.resolve(existing);
    // One opening at a time per key: the one in progress (or the one in place) goes first, then is replaced.
    const previous = pending ? pending.room.catch(() => undefined) : Promise.resolve(existing);
    const room = previous.then(async (old) => {
      old?.close();
      const created = await MediaRoom.create(
        r,
        this.pool,
        this.config.agent.routerConsumerLimit,
        (e) => this.publish(r.gatewayId, e),
        this.logger,
      );
      this.rooms.set(key, created);
      created.router.observer.once('close', () => {
        if (this.rooms.get(key) === created) this.rooms.delete(key);
        this.drainWatch?.poke();
      });
      return created;
    });
    const entry = { epoch: r.epoch, room };
    this.pendingRooms.set(key, entry);
    void room.finally(() => this.pendingRooms.get(key) === entry && this.pendingRooms.delete(key)).catch(() => undefined);
    return room;
  }

  private publish(gatewayId: string, event: AgentEvent): void {
    this.bus.publish(agentSubjects.events(gatewayId), { ...event, agentId: this.id });
  }

  /** The request table (src/agent/handlers), reaching this agent's rooms through its context. */
  private createHandlers(): Handlers {
    return agentHandlers({
      config: this.config.agent,
      metrics: () => this.metrics,
      room: (r) => this.room(r),
      openRoom: (r) => this.rooms.get(roomKey(r)),
      ensureRoom: (r) => this.ensureRoom(r),
      opening: (r) => this.pendingRooms.get(roomKey(r))?.room,
      dump: () => this.dump(),
    });
  }

  /** Object counts as the mediasoup workers themselves report them (not our bookkeeping). */
  async dump(): Promise<AgentDump> {
    const result: AgentDump = {
      agentId: this.id,
      workers: 0,
      routers: 0,
      spareRouters: 0,
      transports: 0,
      producers: 0,
      consumers: 0,
      dataProducers: 0,
      dataConsumers: 0,
      pipeTransports: 0,
      srtpPipeTransports: 0,
      pipedProducers: 0,
      pipedDataProducers: 0,
      pipeDataConsumers: 0,
    };
    for (const slot of this.pool.all()) {
      // A worker that dies meanwhile (its channel closes under the request) has nothing left to count.
      const workerDump = slot.worker.closed ? undefined : await slot.worker.dump().catch(() => undefined);
      if (!workerDump) continue;
      result.workers++;
      for (const routerId of workerDump.routerIds) {
        if (this.pool.isSpare(routerId)) result.spareRouters++;
        else result.routers++;
      }
    }
    // Every router of every room, whichever worker: the pipes between a room's routers count as their transports,
    // producers and consumers (what the workers hold), the links to other agents once per room.
    for (const room of this.rooms.values()) {
      for (const { router } of room.routers) {
        const d = router.closed ? undefined : await router.dump().catch(() => undefined);
        if (!d) continue;
        result.transports += d.transportIds.length;
        result.producers += d.mapProducerIdConsumerIds.length;
        result.consumers += d.mapConsumerIdProducerId.length;
        result.dataProducers += d.mapDataProducerIdDataConsumerIds.length;
        result.dataConsumers += d.mapDataConsumerIdDataProducerId.length;
      }
      result.pipeTransports += room.links.size;
      for (const link of room.links.values()) if (link.srtpParameters) result.srtpPipeTransports++;
      result.pipedProducers += room.linkMedia.arrivedCount;
      result.pipedDataProducers += room.linkData.arrivedCount;
      result.pipeDataConsumers += room.linkData.sentCount;
    }
    return result;
  }
}
