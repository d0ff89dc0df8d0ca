import { Agent } from './agent/agent.js';
import type { Bus } from './core/bus/bus.js';
import { MemoryBus } from './core/bus/memory-bus.js';
import { NatsBus } from './core/bus/nats-bus.js';
import type { Config } from './core/config.js';
import { type Logger, createLogger } from './core/logger.js';
import { type Store, openStore } from './nuve/store/store.js';
import { Gateway } from './gateway/gateway.js';
import { Nuve } from './nuve/nuve.js';
import type { Registry } from 'prom-client';
import { InstrumentedBus, METRICS_SUBJECT, createMetricsRegistry } from './core/metrics.js';
import { startTracing } from './core/tracing.js';
import { RedisReplayGuard, type ReplayGuard } from './nuve/replay-guard.js';
import type { Redis } from 'ioredis';
import { connectRedis, redisReady } from './core/redis.js';

export type RoleName = 'nuve' | 'gateway' | 'agent';
export const ALL_ROLES: readonly RoleName[] = ['nuve', 'gateway', 'agent'];

/** A running set of roles sharing one bus: the whole platform embedded, or one role of a cluster. */
export interface Platform {
  config: Config;
  bus: Bus;
  logger: Logger;
  metrics: Registry;
  store?: Store;
  redis?: Redis;
  nuve?: Nuve;
  gateway?: Gateway;
  agent?: Agent;
  /**
   * Graceful stop (SIGTERM): Nuve finishes in-flight requests at once; the
   * gateway and the agent stop taking new rooms and wait for their last
   * client/room or their grace period. Resolves when it is safe to close.
   */
  drain(): Promise<void>;
  close(): Promise<void>;
}

async function openBus(config: Config, logger: Logger): Promise<Bus> {
  if (config.bus.driver === 'memory') return new MemoryBus(logger, config.bus.requestTimeoutMs);
  return NatsBus.connect(config.bus.natsUrl, logger, config.bus.requestTimeoutMs, `mediasoup-signal-${process.pid}`);
}

/** Starts the given roles in dependency order (agent, then nuve, then gateway) and returns a handle that stops them in reverse. */
export async function startPlatform(config: Config, roles: readonly RoleName[] = ALL_ROLES, logger?: Logger): Promise<Platform> {
  const log = logger ?? createLogger(config.log);
  const roleLabel = roles.length === 1 ? roles[0]! : 'all';
  const tracing = startTracing(config.tracing, roleLabel);
  const metrics = createMetricsRegistry(roleLabel);
  const bus = new InstrumentedBus(await openBus(config, log), metrics);
  // Every process answers the cluster-wide metrics scrape with its own registry.
  bus.respond(METRICS_SUBJECT, () => metrics.getMetricsAsJSON());
  const platform: Platform = {
    config,
    bus,
    logger: log,
    metrics,
    drain: async () => {
      await platform.nuve?.close();
      await Promise.all([platform.gateway?.drain(), platform.agent?.drain()]);
    },
    close: async () => {
      await platform.gateway?.close();
      await platform.nuve?.close();
      await platform.agent?.close();
      await platform.store?.close();
      platform.redis?.disconnect();
      await bus.close();
      await tracing.flush();
    },
  };
  try {
    if (roles.includes('agent')) {
      platform.agent = new Agent(config, bus, log.child({ role: 'agent' }));
      platform.agent.registerMetrics(metrics);
      await platform.agent.start();
    }
    if (roles.includes('nuve')) {
      platform.store = await openStore(config.store);
      let replay: ReplayGuard | undefined;
      if (config.redis.url) {
        platform.redis = connectRedis(config.redis.url, log);
        await redisReady(platform.redis);
        replay = new RedisReplayGuard(platform.redis, config.nuve.authWindowSec * 1000);
      }
      platform.nuve = new Nuve({
        config,
        bus,
        store: platform.store,
        logger: log.child({ role: 'nuve' }),
        replay,
        redis: platform.redis,
        metrics,
      });
      await platform.nuve.start();
    }
    if (roles.includes('gateway')) {
      platform.gateway = new Gateway(config, bus, log.child({ role: 'gateway' }));
      platform.gateway.registerMetrics(metrics);
      await platform.gateway.start();
    }
  } catch (err) {
    await platform.close().catch(() => undefined);
    throw err;
  }
  return platform;
}
