import type { Redis } from 'ioredis';
import { AppError } from '../core/errors.js';

/**
 * Remembers MAuth (service, timestamp, cnonce) triples for the freshness
 * window so a captured request cannot be replayed. Requests older than the
 * window are refused before they get here, so entries can expire with it.
 * An interface because a cluster of Nuves shares it (Redis) later.
 */
export interface ReplayGuard {
  /** True the first time `key` is seen within `ttlMs`, false for a replay. */
  firstUse(key: string, ttlMs: number): Promise<boolean> | boolean;
  close(): void;
}

export class MemoryReplayGuard implements ReplayGuard {
  private readonly seen = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(sweepMs = 10_000) {
    this.timer = setInterval(() => this.sweep(), sweepMs);
    this.timer.unref();
  }

  firstUse(key: string, ttlMs: number): boolean {
    const now = Date.now();
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return false;
    this.seen.set(key, now + ttlMs);
    return true;
  }

  close(): void {
    clearInterval(this.timer);
    this.seen.clear();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, until] of this.seen) if (until <= now) this.seen.delete(key);
  }
}

/** The cluster's guard: one SET NX PX per request, shared by every Nuve instance. */
export class RedisReplayGuard implements ReplayGuard {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = 'mss:mauth:',
  ) {}

  async firstUse(key: string, ttlMs: number): Promise<boolean> {
    try {
      return (await this.redis.set(this.prefix + key, '1', 'PX', ttlMs, 'NX')) === 'OK';
    } catch {
      throw new AppError('AUTH_UNAVAILABLE', 'replay protection store unavailable, retry', 503);
    }
  }

  close(): void {
    // The Redis client belongs to the platform, which closes it.
  }
}
