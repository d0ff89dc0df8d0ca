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
