import type { Bus } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import type { Store } from './store/store.js';
import type { GatewayRegistry } from './gateway-registry.js';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { RateLimitStats } from './rate-limit.js';
import type { ReplayGuard } from './replay-guard.js';
import type { ServiceDirectory } from './service-directory.js';
import type { TokenIssuer } from './token-issuer.js';
import type { CacheInvalidation } from './cache-invalidation.js';
import type { RoomCache } from './room-cache.js';
import type { WebhookIntake } from './webhooks/intake.js';

/** What Nuve's HTTP plugins work with. */
export interface NuveContext {
  config: Config;
  store: Store;
  bus: Bus;
  services: ServiceDirectory;
  registry: GatewayRegistry;
  tokens: TokenIssuer;
  /** Rooms for the token routes (a cache; the store stays the truth for everything else). */
  rooms: RoomCache;
  /** Call after storing a change to a room or tenant, before answering: every Nuve's caches drop it. */
  invalidation: CacheInvalidation;
  /** Where Nuve's own room events (room_metadata_changed) join the gateways' in the outbox. */
  webhooks: WebhookIntake;
  replay: ReplayGuard;
  /** Shared counters (rate limits) across Nuve instances; in-process when absent. */
  redis?: Redis;
  rateLimitStats: RateLimitStats;
  /** The process's metrics registry; absent: no /metrics. */
  metrics?: Registry;
}
