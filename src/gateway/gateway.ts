import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { agentEventSchema, agentSubjects } from '../core/agent-protocol.js';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { AppError, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  type GatewayRpc,
  type RoomUser,
  type TokenGrant,
  gatewayRpcSchema,
  subjects,
  tokenErrorCodes,
  tokenGrantSchema,
} from '../core/subjects.js';
import { waitUntilEmpty } from '../core/drain.js';
import { SpanKind, inSpan } from '../core/tracing.js';
import { closeCodes } from '../protocol/signaling.js';
import { AgentRegistry } from './agent-registry.js';
import { broadcasterRoutes } from './broadcasters.js';
import { PeerConnection } from './peer-connection.js';
import { GatewayLimits } from './limits.js';
import { GatewayMetrics } from './metrics.js';
import type { Registry } from 'prom-client';
import { Peer } from './peer.js';
import { ClientDistance, rankByDistance } from './placement.js';
import { GatewayPresence } from './presence.js';
import { Room } from './room.js';
import type { AgentProbes } from '../protocol/signaling.js';

const PERMISSIONS: Record<'presenter' | 'viewer', Record<string, boolean>> = {
  presenter: { publish: true, subscribe: true },
  viewer: { subscribe: true },
};

/** The client's IP as agents would see it (IPv4-mapped IPv6 unwrapped). */
function clientAddressOf(req: IncomingMessage): string | undefined {
  const address = req.socket.remoteAddress;
  return address?.startsWith('::ffff:') ? address.slice(7) : address;
}

function isLoopback(ip: string): boolean {
  return ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1';
}

/**
 * The signaling role ("EC"): clients' WebSockets (protoo), rooms and peers,
 * placement of rooms on media agents, broadcaster ingest over HTTP. It talks
 * to Nuve and agents only through the bus.
 */
export class Gateway {
  readonly agents: AgentRegistry;
  private readonly rooms = new Map<string, Room>();
  private readonly opening = new Map<string, Promise<Room>>();
  private presence?: GatewayPresence;
  private drainWatch?: ReturnType<typeof waitUntilEmpty>;
  readonly limits: GatewayLimits;
  private metrics?: GatewayMetrics;
  private connectionSerial = 0;
  private metricsRegistry?: Registry;
  private readonly subscriptions: Subscription[] = [];
  private http?: FastifyInstance;
  private wss?: WebSocketServer;
  /** Broadcaster peers by id, with the secret their HTTP calls must carry. */
  readonly broadcasters = new Map<string, { peer: Peer; room: Room; secret: Buffer }>();

  constructor(
    readonly config: Config,
    private readonly bus: Bus,
    private readonly logger: Logger,
  ) {
    this.limits = new GatewayLimits(config.gateway.rateLimit);
    this.agents = new AgentRegistry(bus, logger, config.gateway.agentSuspectMs, config.gateway.agentRemoveMs);
    this.agents.on('removed', (agent, why) => {
      const reason = why === 'restarted' ? 'agent-restarted' : 'agent-removed';
      for (const room of [...this.rooms.values()]) room.agentLost(agent.id, reason, true);
    });
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
    });
    // Liveness: the process answers. Readiness: it takes new rooms (false while draining).
    app.get('/health', async () => ({ status: 'ok', rooms: this.rooms.size, peers: this.peerCount() }));
    // Starts the drain from inside the pod (Kubernetes preStop); only from this host.
    app.post('/drain', async (request, reply) => {
      if (!isLoopback(request.ip)) return reply.status(403).send({ code: 'FORBIDDEN', message: 'drain only from localhost' });
      void this.drain();
      return { status: 'draining', peers: this.peerCount() };
    });
    app.get('/metrics', async (_request, reply) => {
      if (!this.metricsRegistry) return reply.status(404).send({ code: 'NOT_FOUND', message: 'metrics disabled' });
      return reply.type(this.metricsRegistry.contentType).send(await this.metricsRegistry.metrics());
    });
    app.get('/ready', async (_request, reply) =>
      this.drainWatch
        ? reply.status(503).send({ code: 'DRAINING', message: 'gateway is draining' })
        : { status: 'ready' },
    );
    await app.register(broadcasterRoutes, { gateway: this });
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.config.gateway.maxMessageBytes });
    app.server.on('upgrade', (req, socket, head) => {
      void this.limits.acceptConnection().then((ok) => {
        if (ok) this.wss!.handleUpgrade(req, socket, head, (ws) => void this.onConnection(ws, req));
        else socket.end('HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
      });
    });
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
    this.metricsRegistry = registry;
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
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    for (const room of [...this.rooms.values()]) {
      for (const peer of room.peers.values()) peer.connection?.close(closeCodes.gatewayShutdown, 'gateway shutting down');
      room.close();
    }
    this.wss?.close();
    await this.http?.close();
    this.agents.stop();
  }

  /** Verifies and consumes a token at Nuve; maps failures to the stable token error codes. */
  async consumeToken(token: string): Promise<TokenGrant> {
    try {
      const grant = await this.bus.request(subjects.tokenConsume, { token, gatewayId: this.id }, { timeoutMs: 3000 });
      return tokenGrantSchema.parse(grant);
    } catch (err) {
      if (isAppError(err) && err.code in tokenErrorCodes) throw err;
      this.logger.warn({ err }, 'token consumption failed');
      throw new AppError('TOKEN_SERVICE_UNAVAILABLE', 'token service unavailable, retry', 503);
    }
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
      onPlaced: (agentId) => this.metrics?.placements.inc({ agent: agentId }),
      fallbackAfterMs: this.config.gateway.cascade.probeTimeoutMs,
      probes: (r) => this.probesFor(r),
    });
    this.rooms.set(room.id, room);
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
      throw new AppError('NO_AGENT_AVAILABLE', 'no media agent is available', 503);
    }
    // An empty list is refused by the room (NO_AGENT_AVAILABLE).
    return room.policy === 'TTL-BEST' ? this.rankNearest(room, peer) : this.placeWithRoom(room);
  }

  /** ROOM-BEST: the agent the room is on, unless its consumers passed the spill threshold. */
  private placeWithRoom(room: Room): string[] {
    const spill = this.config.gateway.cascade.spillConsumers;
    const registered = [...room.agentIds].filter((id) => this.agents.get(id));
    const open = registered.find((id) => spill === 0 || room.consumersOn(id) < spill);
    if (open !== undefined) return [open];
    const fresh = this.agents.choose(room.agentIds)?.id;
    if (fresh !== undefined) return [fresh];
    return registered.slice(0, 1);
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

  private async onConnection(ws: WebSocket, req: IncomingMessage): Promise<void> {
    const connection = new PeerConnection(ws, this.logger);
    const connectionKey = String(++this.connectionSerial);
    const openedAt = performance.now();
    // Clients may send requests right after the socket opens, before the token is checked: they wait for it.
    const session = this.admit(connection, new URL(req.url ?? '/', 'ws://gateway').searchParams, clientAddressOf(req));
    connection.on('request', (request) => {
      void this.limits.admitRequest(connectionKey).then((verdict) => {
        if (verdict === 'ok') {
          this.dispatch(connection, session, request, openedAt);
          return;
        }
        connection.respondError(request.id, new AppError('RATE_LIMITED', 'too many requests on this connection', 429));
        if (verdict === 'disconnect') {
          connection.notify('closing', { code: closeCodes.protocolAbuse, reason: 'request flood' });
          connection.close(closeCodes.protocolAbuse, 'request flood');
        }
      });
    });
    connection.on('close', () => this.limits.forget(connectionKey));
    session.catch((err: unknown) => {
      const appErr = isAppError(err) ? err : new AppError('INTERNAL', 'internal error', 500);
      if (!isAppError(err)) this.logger.error({ err }, 'connection setup failed');
      const tokenCode = tokenErrorCodes[appErr.code as keyof typeof tokenErrorCodes];
      connection.notify('closing', { code: tokenCode ?? 1500, reason: appErr.message, errorName: appErr.code });
      connection.close(tokenCode ? closeCodes.tokenErrorBase + (tokenCode - 1000) : 1011, appErr.code);
    });
  }

  private dispatch(
    connection: PeerConnection,
    session: Promise<{ room: Room; peer: Peer }>,
    request: { id: number; method: string; data?: unknown },
    openedAt: number,
  ): void {
    session
      .then(async ({ room, peer }) => {
        const result = await inSpan(`signaling ${request.method}`, SpanKind.SERVER, (span) => {
          span.setAttributes({ 'mss.room': room.id, 'mss.peer': peer.id });
          return room.handle(peer, request.method, request.data);
        });
        connection.respond(request.id, result);
        if (request.method === 'join') this.metrics?.joinDuration.observe((performance.now() - openedAt) / 1000);
        // After `leave` (or a kick racing this request) the socket has no purpose left.
        if (peer.closed) connection.close(1000, 'left');
      })
      .catch((err: unknown) => {
        if (connection.closed) return;
        if (isAppError(err)) connection.respondError(request.id, err);
        else {
          this.logger.error({ err, method: request.method }, 'request failed');
          connection.respondError(request.id, new AppError('INTERNAL', 'internal error', 500));
        }
      });
  }

  /** Checks the token, opens the room if needed and adds the peer; rejects when the client may not enter. */
  private async admit(connection: PeerConnection, params: URLSearchParams, clientAddress?: string): Promise<{ room: Room; peer: Peer }> {
    const token = params.get('token');
    if (!token) throw new AppError('TOKEN_MISSING', 'connect with ?token=', 401);
    const grant = await this.consumeToken(token);
    if (connection.closed) throw new AppError('PEER_CLOSED', 'client left before admission', 410);
    const room = this.roomFor(grant);
    const requestedId = params.get('peerId');
    const peerId = requestedId && /^[\w-]{1,64}$/.test(requestedId) ? requestedId : randomBytes(8).toString('hex');
    const peer = new Peer(peerId, grant.userName, grant.role, connection);
    room.peers.get(peerId)?.connection?.close(closeCodes.replaced, 'replaced by a new connection');
    connection.on('close', () => room.removePeer(peer, 'disconnected'));
    await this.addPeer(room, peer, clientAddress);
    return { room, peer };
  }

  private async onNuveRpc(payload: unknown): Promise<unknown> {
    const parsed = gatewayRpcSchema.safeParse(payload);
    if (!parsed.success) throw new AppError('INVALID_REQUEST', 'invalid gateway rpc', 400);
    const rpc: GatewayRpc = parsed.data;
    const room = this.rooms.get(rpc.roomId);
    switch (rpc.method) {
      case 'listUsers':
        return room
          ? [...room.peers.values()].map(
              (p): RoomUser => ({ name: p.userName, role: p.role, permissions: PERMISSIONS[p.role] }),
            )
          : [];
      case 'kickUser': {
        if (!room) return 0;
        const victims = [...room.peers.values()].filter((p) => p.userName === rpc.userName);
        for (const peer of victims) {
          peer.notify('closing', { code: closeCodes.kicked, reason: 'removed by the service' });
          peer.connection?.close(closeCodes.kicked, 'kicked');
          room.removePeer(peer, 'kicked');
        }
        return victims.length;
      }
      case 'closeRoom':
        if (room) {
          for (const peer of [...room.peers.values()]) {
            peer.notify('closing', { code: closeCodes.roomClosed, reason: 'room deleted' });
            peer.connection?.close(closeCodes.roomClosed, 'room deleted');
            room.removePeer(peer, 'room deleted');
          }
          room.close();
        }
        return null;
    }
  }

  /** Constant-time check of a broadcaster's secret. */
  broadcaster(id: string, secret: string | undefined): { peer: Peer; room: Room } {
    const entry = this.broadcasters.get(id);
    const given = Buffer.from(secret ?? '');
    if (!entry || given.length !== entry.secret.length || !timingSafeEqual(given, entry.secret)) {
      throw new AppError('BROADCASTER_NOT_FOUND', 'unknown broadcaster or wrong secret', 404);
    }
    if (entry.peer.closed) {
      this.broadcasters.delete(id);
      throw new AppError('BROADCASTER_NOT_FOUND', 'broadcaster has left', 404);
    }
    return entry;
  }
}
