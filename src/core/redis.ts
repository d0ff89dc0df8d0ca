import { Redis } from 'ioredis';
import type { Logger } from './logger.js';

/**
 * A Redis client that reconnects forever (a Redis restart needs no process
 * restart) and fails commands fast while disconnected instead of queueing
 * them, so callers can answer 503 rather than hang.
 */
export function connectRedis(url: string, logger: Logger): Redis {
  const redis = new Redis(url, {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(1000, 50 * attempt),
  });
  let down = false;
  redis.on('error', (err) => {
    if (!down) logger.warn({ err: err.message }, 'Redis unavailable');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger.info('Redis reconnected');
    down = false;
  });
  return redis;
}

/** Resolves once the client is ready (or rejects after `timeoutMs`), for startup ordering. */
export async function redisReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Redis not ready in time')), timeoutMs);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
