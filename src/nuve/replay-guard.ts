import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AppError } from '../core/errors.js';

/** What makes an MAuth header unique: its service, and the timestamp and cnonce its signature covers. */
export interface MAuthUse {
  serviceId: string;
  /** `mauth_timestamp` in ms, already known to lie within the accepted window of the clock. */
  timestamp: number;
  cnonce: string;
}

/**
 * `first`: never seen, now remembered. `replayed`: seen before. `unverifiable`:
 * older than what the guard remembers (it restarted, or dropped old entries
 * to stay within its bounds), so it may have been seen: refused as well.
 */
export type ReplayVerdict = 'first' | 'replayed' | 'unverifiable';

/**
 * Makes sure no MAuth header is accepted twice. Headers whose timestamp is
 * more than the window away from the clock are refused before they get here,
 * so a header needs remembering only until its timestamp leaves the window.
 * Each guard keeps a watermark `since`: it remembers every accepted header
 * whose timestamp is after `since`, and refuses every header at or before it
 * as unverifiable. Whatever the guard loses (a restart, its oldest entries
 * under pressure) it first covers by raising `since`.
 */
export interface ReplayGuard {
  check(use: MAuthUse): Promise<ReplayVerdict> | ReplayVerdict;
  close(): void;
}

/**
 * 12 bytes of SHA-256 over the header's identity, as base64: the same small
 * size whatever the header carries, and collisions (which could only refuse a
 * fresh header, never accept a replay) out of reach.
 */
export function replayDigest(use: MAuthUse): string {
  return createHash('sha256')
    .update(JSON.stringify([use.serviceId, use.timestamp, use.cnonce]))
    .digest()
    .toString('base64', 0, 12);
}

const SECOND_MS = 1000;

export interface MemoryReplayGuardOptions {
  /** The accepted distance of a timestamp from the clock (`nuve.authWindowSec`). */
  windowMs: number;
  /** Most digests kept; past it the oldest second is dropped and `since` raised over it. */
  maxEntries: number;
  now?: () => number;
}

/**
 * The guard of a single Nuve. Starts with `since` at its start time, so a
 * restarted Nuve refuses every header it may have accepted before. Digests
 * are grouped by the second of their timestamp: a whole second expires when
 * it leaves the window, and under pressure the oldest second goes first.
 */
export class MemoryReplayGuard implements ReplayGuard {
  private readonly seconds = new Map<number, Set<string>>();
  private entries = 0;
  private since: number;
  private nextExpiry = 0;
  private readonly now: () => number;

  constructor(private readonly options: MemoryReplayGuardOptions) {
    this.now = options.now ?? Date.now;
    this.since = this.now();
  }

  /** Digests held, for tests and metrics. */
  get size(): number {
    return this.entries;
  }

  /** Every accepted header after this timestamp is remembered. */
  get watermark(): number {
    return this.since;
  }

  check(use: MAuthUse): ReplayVerdict {
    this.expire();
    if (use.timestamp <= this.since) return 'unverifiable';
    const second = Math.floor(use.timestamp / SECOND_MS);
    const digest = replayDigest(use);
    let bucket = this.seconds.get(second);
    if (bucket?.has(digest)) return 'replayed';
    if (!bucket) {
      bucket = new Set();
      this.seconds.set(second, bucket);
    }
    bucket.add(digest);
    this.entries++;
    while (this.entries > this.options.maxEntries) this.forgetSecond(this.oldestSecond());
    return 'first';
  }

  close(): void {
    this.seconds.clear();
    this.entries = 0;
  }

  /** At most once a second: drops the seconds whose headers are refused as stale anyway. */
  private expire(): void {
    const now = this.now();
    if (now < this.nextExpiry) return;
    this.nextExpiry = now + SECOND_MS;
    const horizon = now - this.options.windowMs;
    for (const second of this.seconds.keys()) if (lastMsOf(second) < horizon) this.forgetSecond(second);
    // A clock set back later must not make a forgotten header acceptable again.
    this.since = Math.max(this.since, horizon);
  }

  private oldestSecond(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const second of this.seconds.keys()) if (second < oldest) oldest = second;
    return oldest;
  }

  private forgetSecond(second: number): void {
    this.entries -= this.seconds.get(second)?.size ?? 0;
    this.seconds.delete(second);
    this.since = Math.max(this.since, lastMsOf(second));
  }
}

const lastMsOf = (second: number): number => second * SECOND_MS + SECOND_MS - 1;

/**
 * Other Nuves' clocks may run behind this one's: a digest in Redis outlives
 * its header's window by this much, so no Nuve still accepts a header whose
 * digest is gone.
 */
const CLOCK_SKEW_ALLOWANCE_MS = 60_000;

/**
 * KEYS[1] since, KEYS[2] digest; ARGV[1] now, ARGV[2] the header's timestamp,
 * ARGV[3] the digest's lifetime in ms. An absent `since` (Redis restarted empty
 * or was flushed) is created at now: every header from before is refused.
 * Returns 1 first, 0 replayed, -1 unverifiable.
 */
const CHECK_SCRIPT = `
local since = tonumber(redis.call('GET', KEYS[1]))
if not since then
  since = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], ARGV[1])
end
if tonumber(ARGV[2]) <= since then return -1 end
if redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX') then return 1 end
return 0`;

/** KEYS[1] since; ARGV[1] now. Raises `since` to now (never lowers it). */
const RAISE_SCRIPT = `
local since = tonumber(redis.call('GET', KEYS[1]))
if not since or since < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`;

/**
 * The cluster's guard, shared by every Nuve: one atomic script per request.
 * Redis may come back with less than it had (restarted empty, flushed, or
 * restored from an older snapshot), so `since` is re-created at now when it is
 * missing, and raised to now whenever this Nuve's connection comes back.
 */
export class RedisReplayGuard implements ReplayGuard {
  private readonly sinceKey: string;
  /** Setting `since` at start or after a reconnection, which checks wait for. */
  private settingSince: Promise<unknown>;
  private readonly onReady = () => {
    this.settingSince = this.redis.eval(RAISE_SCRIPT, 1, this.sinceKey, Date.now()).catch(() => undefined);
  };

  constructor(
    private readonly redis: Redis,
    private readonly windowMs: number,
    private readonly prefix = 'mss:mauth:',
  ) {
    this.sinceKey = `${prefix}since`;
    // A first Nuve on an empty Redis: headers signed from now on are checkable. Others keep what is there.
    this.settingSince = redis.set(this.sinceKey, Date.now(), 'NX').catch(() => undefined);
    redis.on('ready', this.onReady);
  }

  async check(use: MAuthUse): Promise<ReplayVerdict> {
    const now = Date.now();
    const lifetimeMs = Math.max(1, use.timestamp + this.windowMs - now) + CLOCK_SKEW_ALLOWANCE_MS;
    let result: unknown;
    try {
      await this.settingSince;
      result = await this.redis.eval(CHECK_SCRIPT, 2, this.sinceKey, this.prefix + replayDigest(use), now, use.timestamp, lifetimeMs);
    } catch {
      throw new AppError('AUTH_UNAVAILABLE');
    }
    return result === 1 ? 'first' : result === 0 ? 'replayed' : 'unverifiable';
  }

  close(): void {
    // The Redis client belongs to the platform, which closes it.
    this.redis.off('ready', this.onReady);
  }
}
