import { randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import { agentEventSchema, agentSubjects } from '../core/agent-protocol.js';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { AppError, frameworkRefusal, httpRefusal, sendError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { type GatewayRpc, type RoomUser, type TokenGrant, gatewayRpcSchema, subjects } from '../core/subjects.js';
import { waitUntilEmpty } from '../core/drain.js';
import { OpsAuth } from '../core/ops-auth.js';
import { OnlineEventSender, senderOptions } from '../core/online-events.js';
import { opsRoutes } from '../core/ops-routes.js';
import { AgentRegistry } from './agent-registry.js';
import { broadcasterRoutes } from './broadcasters.js';
import type { Channel, ChannelContext, ChannelHandler } from './edge/channel.js';
import { ClientEdge } from './edge/edge.js';
import type { GatewayLimits } from './edge/limits.js';
import type { TokenGate } from './edge/token-gate.js';
import { GatewayMetrics } from './metrics.js';
import type { Registry } from 'prom-client';
import { Peer } from './peer.js';
import { PushSessions } from './push-sessions.js';
import { ServiceCalls } from './service-calls.js';
import { ClientDistance, placeWithRoom, rankByDistance } from './placement.js';
import { GatewayPresence } from './presence.js';
import { Room } from './room.js';
import { RoomEventPublisher } from './room-events.js';
import { listParticipants, sendData, setRoomMetadata, setTrackMuted, updateParticipant } from './room/admin.js';
import { type AgentProbes, clientRequestSchemas } from '../protocol/signaling.js';

/**
 * The signaling role ("EC"): clients' WebSockets (protoo, through the client
 * edge, where room signaling is one channel), rooms and peers, placement of
 * rooms on media agents, broadcaster ingest over HTTP. It talks to Nuve and
 * agents only through the bus.
 */
export class Gateway {
  readonly agents: AgentRegistry;
  private readonly rooms = new Map<string, Room>();
  private presence?: GatewayPresence;
  private drainWatch?: ReturnType<typeof waitUntilEmpty>;
  readonly edge: ClientEdge;
  private metrics?: GatewayMetrics;
  private metricsRegistry?: Registry;
  private readonly subscriptions: Subscription[] = [];
  private readonly push: PushSessions;
  /** Users whose push session opened here, on their way to the distributors. */
  readonly online: OnlineEventSender;
  /** Calls to business services: the `call` channel and the trusted servers' edge. */
  readonly services: ServiceCalls;
  private http?: FastifyInstance;
  /** How each WebSocket peer's session may be resumed once, should its media agent be lost. */
  private readonly resumptions = new WeakMap<Peer, (peerId: string) => void>();
  /** Broadcaster peers by id, with the secret their HTTP calls must carry. */
  readonly broadcasters = new Map<string, { peer: Peer; room: Room; secret: Buffer }>();
  /** Room events on their way to Nuve's webhook outbox. */
  readonly events: RoomEventPublisher;

  constructor(
    readonly config: Config,
    private readonly bus: Bus,
    private readonly logger: Logger,
  ) {
    this.edge = new ClientEdge(config.gateway, bus, logger, config.services.clientPingMs);
    this.events = new RoomEventPublisher(bus, config.gateway.id, logger, { requestTimeoutMs: config.bus.requestTimeoutMs });
    this.edge.register(this.roomSignaling());
    this.online = new OnlineEventSender(bus, logger, 'gateway', senderOptions(config));
    this.push = new PushSessions(bus, config.gateway.id, logger, config.push.locationTtlMs, (session) => this.online.online(session.serviceId, session.userName));
    this.edge.register(this.push.channel());
    this.services = new ServiceCalls(config, bus, logger);
    this.edge.register(this.services.channel());
    this.agents = new AgentRegistry(bus, logger, config.gateway.agentSuspectMs, config.gateway.agentRemoveMs);
    this.agents.on('removed', (agent, why) => {
      const reason = why === 'restarted' ? 'agent-restarted' : 'agent-removed';
      for (const room of [...this.rooms.values()]) room.agentLost(agent.id, reason, true);
    });
  }

  get limits(): GatewayLimits {
    return this.edge.limits;
  }

  get tokens(): TokenGate {
    return this.edge.tokens;
  }

  get id(): string {
    return this.config.gateway.id;
  }

  /** The URL put in tokens: configured, else the address actually bound (port 0 in tests). */
  get publicUrl(): string {
    return this.config.gateway.publicUrl ?? this.url;
  }

  get url(): string {
    const address = this.http?.server.address();
    if (!address || typeof address === 'string') throw new Error('gateway not listening');
    return `ws://${address.address}:${address.port}`;
  }

  peerCount(): number {
    let n = 0;
    for (const room of this.rooms.values()) n += room.peers.size;
    return n;
  }

  roomCount(): number {
    return this.rooms.size;
  }

  async start(): Promise<void> {
    this.agents.start();
    this.online.start();
    this.push.start();
    await this.services.start();
    this.subscriptions.push(
      this.bus.respond(subjects.gatewayRpc(this.id), (payload) => this.onNuveRpc(payload)),
      this.bus.subscribe(agentSubjects.events(this.id), (payload) => {
        const parsed = agentEventSchema.safeParse(payload);
        if (!parsed.success) return;
        const event = parsed.data;
        this.rooms.get(event.roomId)?.onAgentEvent(event);
      }),
    );

    const app = Fastify({
      loggerInstance: this.logger as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: this.config.gateway.maxMessageBytes,
      frameworkErrors: (err, _request, reply) => sendError(reply as FastifyReply, frameworkRefusal(err)),
    });
    // Unknown routes and refused bodies answer like every other refusal: JSON with a catalogued code.
    app.setNotFoundHandler((_request, reply) => sendError(reply, new AppError('NOT_FOUND', 'no such route')));
    app.setErrorHandler((err, request, reply) => {
      const refusal = httpRefusal(err);
      if (refusal) return sendError(reply, refusal);
      request.log.error({ err }, 'gateway HTTP request failed');
      return sendError(reply, new AppError('INTERNAL'));
    });
    // Probes (open) and metrics and drain (ops token; the drain is started by the Kubernetes preStop hook).
    await app.register(opsRoutes, {
      auth: new OpsAuth(this.config.ops),
      ready: () => !this.draining,
      drain: () => void this.drain(),
      remaining: () => ({ rooms: this.rooms.size, peers: this.peerCount() }),
      metrics: () => this.metricsRegistry,
      status: () => ({ id: this.id, services: this.services.status() }),
    });
    await app.register(broadcasterRoutes, { gateway: this });
    app.server.on('upgrade', (req, socket, head) => void this.edge.upgrade(req, socket, head));
    await app.listen({ host: this.config.gateway.host, port: this.config.gateway.port });
    this.http = app;
    this.presence = new GatewayPresence(
      this.bus,
      this.logger,
      { id: this.id, url: this.publicUrl, weight: this.config.gateway.weight },
      this.config.gateway.keepaliveMs,
      () => ({ rooms: this.rooms.size, peers: this.peerCount() }),
    );
    this.presence.start();
  }

  registerMetrics(registry: Registry): void {
    this.metrics = new GatewayMetrics(registry, {
      rooms: () => this.rooms.size,
      peers: () => this.peerCount(),
      draining: () => this.draining,
      agents: () => ({ known: this.agents.list().length, candidates: this.agents.candidates().length }),
      cascade: () => {
        const total = { links: 0, pipes: 0 };
        for (const room of this.rooms.values()) {
          total.links += room.cascadeSize.links;
          total.pipes += room.cascadeSize.pipes;
        }
        return total;
      },
      rejected: () => this.limits.rejected,
    });
    this.services.registerMetrics(registry);
    this.metricsRegistry = registry;
    this.online.registerMetrics(registry);
  }

  get draining(): boolean {
    return this.drainWatch !== undefined;
  }

  /**
   * Graceful stop, step one: Nuve stops choosing this gateway for new rooms,
   * existing rooms go on. Resolves when the last client has left or the
   * grace period ended; the caller then closes.
   */
  drain(graceMs = this.config.gateway.drainGraceSec * 1000): Promise<'empty' | 'grace'> {
    if (!this.drainWatch) {
      this.presence?.setState('draining');
      this.drainWatch = waitUntilEmpty(() => this.peerCount() === 0, graceMs);
      this.logger.info({ rooms: this.rooms.size, peers: this.peerCount(), graceMs }, 'draining');
    }
    return this.drainWatch.done;
  }

  async close(): Promise<void> {
    this.presence?.stop();
    this.push.stop();
    // Nothing awaited before the clients are told: an agent hearing this gateway's goodbye closes its routers,
    // and their routerClosed, heard first, would send the clients mediaAgentLost (reconnect here) instead.
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    this.edge.close('GATEWAY_SHUTDOWN', 'gateway shutting down; rejoin with a new token');
    for (const room of [...this.rooms.values()]) room.close();
    await this.services.close();
    await this.http?.close();
    this.agents.stop();
    // After the rooms closed: their last events (participant_left, room_finished) still reach Nuve.
    await this.events.close();
    await this.online.close();
  }

  /** The room for a grant; its routers open as its peers are placed. */
  roomFor(grant: TokenGrant): Room {
    const existing = this.rooms.get(grant.roomId);
    if (existing && !existing.closed) return existing;
    const room = new Room({
      id: grant.roomId,
      serviceId: grant.serviceId,
      policy: grant.eapolicy,
      gatewayId: this.id,
      bus: this.bus,
      logger: this.logger,
      agentTimeoutMs: this.config.gateway.agentRequestTimeoutMs,
      enableSrtp: this.config.gateway.cascade.srtp,
      place: (r, peer) => this.place(r, peer),
      mediaLost: (peer, reason) => this.mediaLost(peer, reason),
      onPlaced: (agentId, peer) => {
        this.metrics?.placements.inc({ agent: agentId });
        // As mediasoup-demo's server does at connection; here once the peer's media has an agent, whose version it is.
        const version = this.agents.get(agentId)?.mediasoupVersion;
        // Held for the client's next answer (its getRouterRtpCapabilities): one write instead of two on the join's path.
        if (version !== undefined) peer.notify('mediasoup-version', { version }, true);
      },
      fallbackAfterMs: this.config.gateway.cascade.probeTimeoutMs,
      probes: (r) => this.probesFor(r),
      peerLimits: this.config.gateway.limits,
    });
    this.rooms.set(room.id, room);
    this.events.emit({ type: 'room_started', serviceId: room.serviceId, roomId: room.id });
    room.on('event', (event) => this.events.emit(event));
    room.once('close', () => {
      if (this.rooms.get(room.id) === room) this.rooms.delete(room.id);
      this.drainWatch?.poke();
    });
    this.logger.info({ room: room.id, policy: room.policy }, 'room opened');
    return room;
  }

  /** Admits a peer into a room; ROOM-BEST places it at once, so a room without agents refuses it here. */
  async addPeer(room: Room, peer: Peer, clientAddress?: string): Promise<void> {
    room.addPeer(peer);
    if (room.policy === 'TTL-BEST') {
      this.startDistanceProbes(peer, clientAddress);
      return;
    }
    try {
      await room.placed(peer);
    } catch (err) {
      room.removePeer(peer, 'not placed');
      throw err;
    }
  }

  /** The agents for a peer, best first: the room's own (ROOM-BEST) or the nearest two (TTL-BEST). */
  private async place(room: Room, peer: Peer): Promise<string[]> {
    if (!(await this.agents.waitForAgent(this.config.gateway.agentRequestTimeoutMs))) {
      throw new AppError('NO_AGENT_AVAILABLE');
    }
    // An empty list is refused by the room (NO_AGENT_AVAILABLE).
    return room.policy === 'TTL-BEST' ? this.rankNearest(room, peer) : this.placeWithRoom(room);
  }

  /** ROOM-BEST: the agent the room is on, unless its consumers passed the spill threshold. */
  private placeWithRoom(room: Room): string[] {
    return placeWithRoom(room, this.agents, this.config.gateway.cascade.spillConsumers);
  }

  /** TTL-BEST: by the client's own measurements if it sent them, else the agents' (bounded, started at connection). */
  private async rankNearest(room: Room, peer: Peer): Promise<string[]> {
    const reported = peer.reportedRtts && Object.keys(peer.reportedRtts).length > 0 ? peer.reportedRtts : undefined;
    const rtts = reported ?? (await peer.distance?.result) ?? {};
    const candidates = this.agents.candidates().map((a) => ({ id: a.id, load: this.agents.score(a) }));
    const ranked = rankByDistance(candidates, rtts, room.agentIds, this.config.gateway.cascade.sameRoomToleranceMs);
    this.logger.debug({ room: room.id, peer: peer.id, rtts, source: reported ? 'client' : 'agents', ranked }, 'ranked by distance');
    // Counted at once, so a burst of joins sees it; the nearest, and one fallback should it have gone silent since.
    if (ranked[0] !== undefined) this.agents.notePlacement(ranked[0]);
    return ranked.slice(0, 2);
  }

  private startDistanceProbes(peer: Peer, clientAddress: string | undefined): void {
    const agentIds = this.agents.candidates().map((a) => a.id);
    if (!clientAddress || agentIds.length < 2) return;
    const { clientProbePort, probeTimeoutMs } = this.config.gateway.cascade;
    peer.distance = new ClientDistance(this.bus, agentIds, clientAddress, clientProbePort, probeTimeoutMs);
  }

  private probesFor(room: Room): AgentProbes {
    const timeoutMs = this.config.gateway.cascade.probeTimeoutMs;
    if (room.policy !== 'TTL-BEST') return { probes: [], timeoutMs };
    const probes = this.agents
      .candidates()
      .flatMap((a) => (a.probeUrl ? [{ agentId: a.id, url: a.probeUrl }] : []));
    return { probes: probes.length > 1 ? probes : [], timeoutMs };
  }

  /** Room signaling (mediasoup-demo's methods) as a channel of the client edge: one peer of the session's room per connection. */
  private roomSignaling(): Channel {
    return {
      name: 'room',
      claims: (method) => Object.hasOwn(clientRequestSchemas, method),
      refusal: (session) =>
        session.room
          ? undefined
          : new AppError('ROOM_NOT_GRANTED', 'this session has no room: room methods need a token naming a room'),
      open: (context) => this.enterRoom(context),
    };
  }

  /** Opens the room if needed and adds the connection's peer; rejects when the client may not enter. */
  private async enterRoom(context: ChannelContext): Promise<ChannelHandler> {
    const { connection, session } = context;
    const grant = session.room!;
    const room = this.roomFor(grant);
    // A resumed session keeps its peer id, so the room sees the same peer come back.
    const peerId = this.sessionPeerId(room, grant.userName, context.query.get('peerId') ?? context.resumedPeerId ?? null);
    const peer = new Peer(peerId, grant, connection);
    this.resumptions.set(peer, context.allowResume);
    const replaced = room.peers.get(peerId);
    connection.on('close', () => room.removePeer(peer, 'disconnected'));
    // Takes the id at once (addPeer's first step): the old session's socket closing then leaves the room open.
    const added = this.addPeer(room, peer, context.clientAddress);
    replaced?.connection?.end('REPLACED', 'replaced by a new connection');
    await added;
    return {
      spanAttributes: { 'mss.room': room.id, 'mss.peer': peer.id },
      handle: (method, data) => room.handle(peer, method, data),
      answered: (method) => {
        if (method === 'join') this.metrics?.joinDuration.observe((performance.now() - context.openedAt) / 1000);
        // After `leave` (or a kick racing this request) the socket has no purpose left.
        if (peer.closed) connection.end('LEFT', 'left the room');
      },
    };
  }

  /**
   * A peer's media agent or router is gone: its session ends so that it comes back onto a live
   * agent. A stock protoo-client reconnects at once with the same URL, which is admitted once
   * (mediasoup-demo's app then joins again); the SDK rejoins with a fresh token.
   */
  private mediaLost(peer: Peer, reason: string): void {
    const allowResume = this.resumptions.get(peer);
    if (!peer.connection || !allowResume) return;
    allowResume(peer.id);
    peer.connection.end('MEDIA_AGENT_LOST', `media agent lost (${reason}): reconnect`);
  }

  /**
   * The id of a new WebSocket session: a random one, or the one the client
   * asked for (its SDK keeps one across rejoins). A requested id held in the
   * room may be taken over only by the same user (room ids are unique across
   * tenants, so same room and same token user name), and only from another
   * WebSocket session, which is then replaced: ids are visible to the whole
   * room, and a broadcaster has no socket to be replaced by. Anything else is
   * refused, not renamed, because clients recognise themselves by the id they
   * asked for.
   */
  private sessionPeerId(room: Room, userName: string, requested: string | null): string {
    if (!requested || !/^[\w-]{1,64}$/.test(requested)) return randomBytes(8).toString('hex');
    const holder = room.peers.get(requested);
    if (holder && (!holder.connection || holder.userName !== userName)) {
      throw new AppError('PEER_ID_TAKEN');
    }
    return requested;
  }

  private async onNuveRpc(payload: unknown): Promise<unknown> {
    const parsed = gatewayRpcSchema.safeParse(payload);
    if (!parsed.success) throw new AppError('INVALID_REQUEST', 'invalid gateway rpc');
    const rpc: GatewayRpc = parsed.data;
    const room = this.rooms.get(rpc.roomId);
    switch (rpc.method) {
      case 'listUsers':
        return room
          ? [...room.peers.values()].map(
              (p): RoomUser => ({ name: p.userName, role: p.role, permissions: { ...p.permissions } }),
            )
          : [];
      case 'kickUser': {
        // A user whose session is about to resume is still in the room for a kick.
        const away = this.tokens.forgetResumptions(rpc.roomId, rpc.userName);
        const victims = room ? [...room.peers.values()].filter((p) => p.userName === rpc.userName) : [];
        for (const peer of victims) {
          peer.connection?.end('KICKED', 'removed by the service');
          room!.removePeer(peer, 'kicked');
        }
        return victims.length + away;
      }
      case 'closeRoom':
        this.tokens.forgetResumptions(rpc.roomId);
        if (room) {
          for (const peer of [...room.peers.values()]) {
            peer.connection?.end('ROOM_CLOSED', 'room deleted');
            room.removePeer(peer, 'room deleted');
          }
          room.close();
        }
        return null;
      case 'listParticipants':
        return listParticipants(room);
      case 'updateParticipant':
        return updateParticipant(room, rpc.peerId, rpc.changes);
      case 'setTrackMuted':
        return setTrackMuted(room, rpc.peerId, rpc.trackId, rpc.muted);
      case 'sendData':
        return sendData(room, rpc.data);
      case 'setRoomMetadata':
        setRoomMetadata(room, rpc.metadata);
        return null;
    }
  }

  /** Constant-time check of a broadcaster's secret. */
  broadcaster(id: string, secret: string | undefined): { peer: Peer; room: Room } {
    const entry = this.broadcasters.get(id);
    const given = Buffer.from(secret ?? '');
    if (!entry || given.length !== entry.secret.length || !timingSafeEqual(given, entry.secret)) {
      throw new AppError('BROADCASTER_NOT_FOUND', 'unknown broadcaster or wrong secret');
    }
    if (entry.peer.closed) {
      this.broadcasters.delete(id);
      throw new AppError('BROADCASTER_NOT_FOUND', 'broadcaster has left');
    }
    return entry;
  }
}
