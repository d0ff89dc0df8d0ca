import type { FastifyInstance } from 'fastify';
import type { Bus } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { ServiceRecord, Store } from './store/store.js';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { type AgentHeartbeat, agentHeartbeatSchema, agentSubjects } from '../core/agent-protocol.js';
import { HeartbeatTable } from '../core/heartbeat-table.js';
import { GatewayRegistry } from './gateway-registry.js';
import { GroupCalls } from './group-calls.js';
import type { RateLimitStats } from './rate-limit.js';
import { buildNuveHttp } from './http.js';
import { CacheInvalidation } from './cache-invalidation.js';
import { RoomCache, type RoomCacheOptions, defaultRoomCacheOptions } from './room-cache.js';
import { MemoryReplayGuard, type ReplayGuard } from './replay-guard.js';
import { ServiceDirectory } from './service-directory.js';
import { TokenIssuer } from './token-issuer.js';
import { WebhookDelivery } from './webhooks/delivery.js';
import { WebhookIntake } from './webhooks/intake.js';

export interface NuveOptions {
  config: Config;
  bus: Bus;
  store: Store;
  logger: Logger;
  replay?: ReplayGuard;
  redis?: Redis;
  metrics?: Registry;
  /** The room cache's bounds (tests shorten the TTL). */
  roomCache?: RoomCacheOptions;
}

/** The management role: REST API, token issuing and consumption, gateway registry. */
export class Nuve {
  readonly registry: GatewayRegistry;
  readonly tokens: TokenIssuer;
  readonly services: ServiceDirectory;
  /** Rooms as the token routes read them, kept in step across Nuve instances by `invalidation`. */
  readonly rooms: RoomCache;
  readonly invalidation: CacheInvalidation;
  /** Media agents and their load, for the status API (Nuve places nothing on agents; gateways do). */
  readonly agents: HeartbeatTable<AgentHeartbeat>;
  /** Room events into the outbox, and the outbox to the tenants' webhooks. */
  readonly webhookIntake: WebhookIntake;
  readonly webhookDelivery: WebhookDelivery;
  /** Live presence from the same room events, and the calls of a user's groups (`nuve.groups.calls`). */
  readonly groupCalls: GroupCalls;
  private http?: FastifyInstance;
  private readonly replay: ReplayGuard;
  private superService?: ServiceRecord;
  readonly rateLimitStats: RateLimitStats = {
    rejected: { perIp: 0, hardCap: 0, global: 0, queueFull: 0 },
    queued: 0,
  };

  constructor(private readonly options: NuveOptions) {
    const { config, bus, store, logger } = options;
    this.services = new ServiceDirectory(store);
    this.rooms = new RoomCache((serviceId, roomId) => store.getRoom(serviceId, roomId), options.roomCache ?? defaultRoomCacheOptions);
    this.invalidation = new CacheInvalidation(bus, logger.child({ part: 'cache-invalidation' }), this.rooms, this.services);
    this.registry = new GatewayRegistry(bus, logger, config.nuve.gatewayTimeoutMs);
    this.agents = new HeartbeatTable(bus, logger, {
      heartbeat: agentSubjects.heartbeat,
      down: agentSubjects.down,
      hello: agentSubjects.hello,
      schema: agentHeartbeatSchema,
      timeoutMs: config.gateway.agentRemoveMs,
      what: 'media agent',
    });
    this.tokens = new TokenIssuer(store, this.services, this.registry, bus, logger, config.nuve.tokenTtlSec, config.nuve.roles, this.invalidation, this.rooms);
    this.replay =
      options.replay ??
      new MemoryReplayGuard({ windowMs: config.nuve.authWindowSec * 1000, maxEntries: config.nuve.replayGuardMaxEntries });
    this.webhookDelivery = new WebhookDelivery(store, logger.child({ part: 'webhooks' }), config.nuve.webhooks);
    this.groupCalls = new GroupCalls(bus, store, logger.child({ part: 'group-calls' }));
    this.webhookIntake = new WebhookIntake(bus, store, logger, () => this.webhookDelivery.poke(), (gatewayId, events) =>
      this.groupCalls.recorded(gatewayId, events),
    );
    this.registry.on('removed', (gateway) => {
      void this.groupCalls.gatewayGone(gateway.id);
      store
        .releaseGateway(gateway.id)
        .catch((err: unknown) => logger.warn({ err, gateway: gateway.id }, 'could not release rooms of gateway'))
        // Each Nuve releases on its own registry's word, so each forgets locally (no publish needed).
        .finally(() => this.rooms.forgetGateway(gateway.id));
    });
  }

  /** Nuve's repositories (its role closes them after Nuve). */
  get store(): Store {
    return this.options.store;
  }

  get config(): Config {
    return this.options.config;
  }

  get superServiceRecord(): ServiceRecord {
    if (!this.superService) throw new Error('Nuve not started');
    return this.superService;
  }

  /** The bound HTTP address, e.g. http://127.0.0.1:3000. */
  get url(): string {
    const address = this.http?.server.address();
    if (!address || typeof address === 'string') throw new Error('Nuve not listening');
    return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  }

  get app(): FastifyInstance {
    if (!this.http) throw new Error('Nuve not started');
    return this.http;
  }

  async start(): Promise<void> {
    const { config, store, bus, logger } = this.options;
    this.invalidation.start();
    this.superService = await this.services.ensureSuperService(config.nuve.superService, logger);
    // Its key may have been replaced from configuration: other Nuves must not keep the old one.
    void this.invalidation.serviceChanged(this.superService.id);
    this.registry.start();
    this.tokens.start();
    this.agents.start();
    this.webhookIntake.start();
    this.webhookDelivery.start();
    this.groupCalls.start();
    this.http = await buildNuveHttp(
      {
        config,
        store,
        bus,
        services: this.services,
        registry: this.registry,
        tokens: this.tokens,
        rooms: this.rooms,
        invalidation: this.invalidation,
        webhooks: this.webhookIntake,
        replay: this.replay,
        redis: this.options.redis,
        rateLimitStats: this.rateLimitStats,
        metrics: this.options.metrics,
      },
      logger,
      this.agents,
    );
    await this.http.listen({ host: config.nuve.host, port: config.nuve.port });
  }

  /** Finishes in-flight requests, then stops answering. */
  async close(): Promise<void> {
    await this.http?.close();
    // Unanswered batches go to another Nuve (or to this one's next start): the gateways resend them.
    this.webhookIntake.stop();
    this.groupCalls.stop();
    await this.webhookDelivery.close();
    this.tokens.stop();
    this.invalidation.stop();
    this.registry.stop();
    this.agents.stop();
    this.replay.close();
  }
}
