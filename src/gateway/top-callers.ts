/** One caller in `/status`: who, and its service calls per second over the last complete window. */
export interface TopCaller {
  kind: 'client' | 'trusted';
  tenant: string;
  user: string;
  callsPerSec: number;
}

/** A caller as counted: its key (unambiguous whatever the names hold) and who it is. */
export interface RankedCaller {
  readonly key: string;
  readonly kind: TopCaller['kind'];
  readonly tenant: string;
  readonly user: string;
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
  private counts = new Map<string, { caller: RankedCaller; n: number }>();
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

  /** A caller for `count` (build it once per connection where the caller is fixed). */
  static callerOf(kind: TopCaller['kind'], tenant: string, user: string): RankedCaller {
    return { key: JSON.stringify([kind, tenant, user]), kind, tenant, user };
  }

  count(caller: RankedCaller): void {
    const entry = this.counts.get(caller.key);
    if (entry) entry.n++;
    else if (this.counts.size < this.maxTracked) this.counts.set(caller.key, { caller, n: 1 });
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
    const top = [...this.counts.values()].sort((a, b) => b.n - a.n).slice(0, this.size);
    this.last = {
      windowSec: seconds,
      callers: top.map(({ caller: { kind, tenant, user }, n }) => ({ kind, tenant, user, callsPerSec: round(n / seconds) })),
      untrackedCallsPerSec: round(this.untracked / seconds),
    };
    this.counts = new Map();
    this.untracked = 0;
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
