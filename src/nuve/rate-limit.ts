import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterQueue,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import type { Config } from '../core/config.js';
import { AppError } from '../core/errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * Not counted by Nuve's rate limits: probes and scrapes must keep working
     * while the API is saturated. Declared by the route, so no spelling of a
     * URL can borrow the exemption.
     */
    rateLimitExempt?: boolean;
  }
}

export interface RateLimitStats {
  rejected: Record<'perIp' | 'hardCap' | 'global' | 'queueFull', number>;
  queued: number;
}

function limiter(redis: Redis | undefined, keyPrefix: string, points: number): RateLimiterAbstract {
  const memory = new RateLimiterMemory({ keyPrefix, points, duration: 1 });
  if (!redis) return memory;
  // While Redis is away each instance limits on its own instead of failing every request.
  return new RateLimiterRedis({ storeClient: redis, keyPrefix: `mss:rl:${keyPrefix}`, points, duration: 1, insuranceLimiter: memory });
}

function tooMany(reason: string, msBeforeNext: number): AppError {
  return new AppError('RATE_LIMITED', `too many requests (${reason}); retry later`, {
    details: { retryAfterSec: Math.max(1, Math.ceil(msBeforeNext / 1000)) },
  });
}

/**
 * Nuve's first-level limits: per client IP, then a hard cap that never
 * queues, then the global rate of the whole Nuve cluster (counted in Redis
 * when configured) with an optional bounded queue. 429 with Retry-After.
 */
export const rateLimitPlugin = fp<{ config: Config['nuve']['rateLimit']; redis?: Redis; stats: RateLimitStats }>(
  async (app, { config, redis, stats }) => {
    if (!config.enabled) return;
    const perIp = limiter(redis, 'ip', config.perIpPerSec);
    const hardCap = limiter(redis, 'hard', config.hardCapPerSec);
    const global = limiter(redis, 'global', config.globalPerSec);
    const queue = config.queue ? new RateLimiterQueue(global, { maxQueueSize: config.queueSize }) : undefined;

    const consume = async (l: RateLimiterAbstract, key: string, reason: keyof RateLimitStats['rejected']) => {
      try {
        await l.consume(key);
      } catch (res) {
        if (!(res instanceof RateLimiterRes)) throw res;
        stats.rejected[reason]++;
        throw tooMany(reason, res.msBeforeNext);
      }
    };

    app.addHook('onRequest', async (request, reply) => {
      if (request.routeOptions.config.rateLimitExempt) return;
      try {
        await consume(perIp, request.ip, 'perIp');
        await consume(hardCap, 'all', 'hardCap');
        if (!queue) {
          await consume(global, 'all', 'global');
          return;
        }
        stats.queued++;
        try {
          await queue.removeTokens(1);
        } catch {
          stats.rejected.queueFull++;
          throw tooMany('queue full', 1000);
        } finally {
          stats.queued--;
        }
      } catch (err) {
        if (err instanceof AppError) reply.header('Retry-After', String((err.details as { retryAfterSec: number }).retryAfterSec));
        throw err;
      }
    });
  },
);
