import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { Bus } from './bus/bus.js';
import { MemoryBus } from './bus/memory-bus.js';
import { NatsBus } from './bus/nats-bus.js';
import { RabbitMqBus } from './bus/rabbitmq-bus.js';
import type { Config } from './config.js';
import { type Database, openDatabase } from './database.js';
import type { Logger } from './logger.js';
import { InstrumentedBus, METRICS_SUBJECT } from './metrics.js';
import type { PlatformContext } from './role.js';
import { connectRedis, redisReady } from './redis.js';

/**
 * The bus, database and Redis of one process: each opened the first time a
 * role asks for it (a gateway-only process never opens a database), then
 * shared by every role, and closed once after the last role closed.
 */
export class SharedResources {
  private busOpening?: Promise<Bus>;
  private databaseOpening?: Promise<Database>;
  private redisOpening?: Promise<Redis | undefined>;
  private openBus?: Bus;
  /** The Redis client once a role asked for it (the platform's handle shows it). */
  openRedis?: Redis;

  constructor(
    readonly config: Config,
    readonly logger: Logger,
    readonly metrics: Registry,
  ) {}

  /** The context one role sees: these resources, with the role's own logger. */
  contextFor(role: string): PlatformContext {
    return {
      config: this.config,
      logger: this.logger.child({ role }),
      metrics: this.metrics,
      bus: () => this.bus(),
      database: () => this.database(),
      redis: () => this.redis(),
    };
  }

  bus(): Promise<Bus> {
    this.busOpening ??= (async () => {
      const { bus: options } = this.config;
      const name = `mediasoup-signal-${process.pid}`;
      const inner =
        options.driver === 'memory'
          ? new MemoryBus(this.logger, options.requestTimeoutMs)
          : options.driver === 'nats'
            ? await NatsBus.connect(options.natsUrl, this.logger, options.requestTimeoutMs, name)
            : await RabbitMqBus.connect(options.amqpUrl, this.logger, options.requestTimeoutMs, name);
      const bus = new InstrumentedBus(inner, this.metrics);
      // Every process answers the cluster-wide metrics scrape with its own registry.
      bus.respond(METRICS_SUBJECT, () => this.metrics.getMetricsAsJSON());
      this.openBus = bus;
      return bus;
    })();
    return this.busOpening;
  }

  database(): Promise<Database> {
    this.databaseOpening ??= openDatabase(this.config.store);
    return this.databaseOpening;
  }

  redis(): Promise<Redis | undefined> {
    this.redisOpening ??= (async () => {
      if (!this.config.redis.url) return undefined;
      const redis = connectRedis(this.config.redis.url, this.logger);
      this.openRedis = redis;
      await redisReady(redis);
      return redis;
    })();
    return this.redisOpening;
  }

  /** After the last role: what those roles opened, the bus last (their goodbyes went out on it). */
  async close(): Promise<void> {
    const database = await this.databaseOpening?.catch(() => undefined);
    await database?.close();
    this.openRedis?.disconnect();
    await this.openBus?.close();
  }
}
