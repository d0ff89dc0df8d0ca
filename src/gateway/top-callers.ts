/** One caller in `/status`: who, and its service calls per second over the last complete window. */
export interface TopCaller {
  kind: 'client' | 'trusted';
  tenant: string;
  user: string;
  callsPerSec: number;
}

export interface TopCallersSnapshot {
  windowSec: number;
  /** The busiest callers of the last complete window, busiest first (at most `size`). */
  callers: TopCaller[];
  /** Calls per second of callers past the tracking bound in that window, counted together. */
  untrackedCallsPerSec: number;
}

/**
 * The gateway's busiest service callers (clients by tenant and user, trusted servers by the user each call
 * names), by calls per second over fixed windows, in bounded memory: at most `maxTracked` callers are counted
 * in a window (calls of callers past that count together as untracked), and the last complete window's top
 * `size` is kept for `/status`. One map increment per call; the ranking runs once per window.
 */
export class TopCallers {
  private counts = new Map<string, number>();
  private untracked = 0;
  private last: TopCallersSnapshot;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly windowMs: number,
    private readonly size: number,
    private readonly maxTracked = 10_000,
  ) {
    this.last = { windowSec: windowMs / 1000, callers: [], untrackedCallsPerSec: 0 };
    this.timer = setInterval(() => this.roll(), windowMs);
    this.timer.unref();
  }

  /** The key of a caller for `count` (build it once per connection where the caller is fixed). */
  static keyOf(kind: TopCaller['kind'], tenant: string, user: string): string {
    return `${kind}\u0000${tenant}\u0000${user}`;
  }

  count(key: string): void {
    const n = this.counts.get(key);
    if (n !== undefined) this.counts.set(key, n + 1);
    else if (this.counts.size < this.maxTracked) this.counts.set(key, 1);
    else this.untracked++;
  }

  snapshot(): TopCallersSnapshot {
    return this.last;
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Ends the window: its top `size` becomes the snapshot, and counting starts over. */
  private roll(): void {
    const seconds = this.windowMs / 1000;
    const top = [...this.counts].sort((a, b) => b[1] - a[1]).slice(0, this.size);
    this.last = {
      windowSec: seconds,
      callers: top.map(([key, n]) => {
        const [kind, tenant, user] = key.split('\u0000') as [TopCaller['kind'], string, string];
        return { kind, tenant, user, callsPerSec: round(n / seconds) };
      }),
      untrackedCallsPerSec: round(this.untracked / seconds),
    };
    this.counts = new Map();
    this.untracked = 0;
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
