import { HashRing } from './hash-ring.js';
import type { ServiceInstance } from './service-discovery.js';

export type Strategy = 'random' | 'round-robin' | 'hash' | 'least-load';

/** What one caller knows of one instance: its announcement, its load, and whether it still answers this caller. */
export class InstanceState {
  /** Calls this caller has running there now (added to the announced load by least-load). */
  own = 0;
  /** Stopped answering this caller (timeout, no responders): out of the picks until a probe answers. */
  suspect = false;
  /** Its methods that run ordered, once its first probe answered. */
  ordered?: ReadonlySet<string>;
  /** Its methods that route by hash on an argument (method → argument), once its first probe answered. */
  hashKeys?: ReadonlyMap<string, string>;
  /** This caller's calls waiting there, failed at once if the instance is lost. */
  readonly pending = new Set<{ fail(err: Error): void }>();

  constructor(public instance: ServiceInstance) {}

  get id(): string {
    return this.instance.id;
  }

  get load(): number {
    return this.instance.inFlight + this.own;
  }
}

/**
 * One service's instances as a caller routes among them: every known one
 * (sorted by id), those it may pick (not suspect), and the strategies'
 * state. The picks and the hash ring change only when membership or
 * suspicion does, never per call.
 */
export class ServiceRoute {
  readonly all: InstanceState[] = [];
  picks: InstanceState[] = [];
  private ring?: HashRing;
  private next = 0;
  /** Resolved once an instance told which methods run ordered (calls wait for it only while the service is new here). */
  private describedWait?: { promise: Promise<void>; resolve(): void };
  described = false;

  /** Whether `method` runs ordered, as the instances told. */
  isOrdered(method: string): boolean {
    for (const state of this.all) if (state.ordered?.has(method)) return true;
    return false;
  }

  /** The argument `method` routes by (hash), as the instances told; undefined for methods routed by the call. */
  hashKeyOf(method: string): string | undefined {
    for (const state of this.all) {
      const arg = state.hashKeys?.get(method);
      if (arg !== undefined) return arg;
    }
    return undefined;
  }

  /** An instance answered its first probe. */
  learned(): void {
    this.described = true;
    this.describedWait?.resolve();
  }

  /** Until an instance was described, at most `ms`. */
  whenDescribed(ms: number): Promise<void> {
    if (this.described) return Promise.resolve();
    if (!this.describedWait) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.describedWait = { promise, resolve };
    }
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([this.describedWait.promise, new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
  }

  add(state: InstanceState): void {
    this.all.push(state);
    this.all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.refresh();
  }

  remove(state: InstanceState): void {
    const index = this.all.indexOf(state);
    if (index >= 0) this.all.splice(index, 1);
    this.refresh();
  }

  /** After a change of membership or suspicion. */
  refresh(): void {
    this.picks = this.all.filter((s) => !s.suspect);
    this.ring = undefined;
  }

  /** An instance by strategy among the picks; undefined when there are none. `key` is for `hash`. */
  pick(strategy: Strategy, key: string): InstanceState | undefined {
    const picks = this.picks;
    const n = picks.length;
    if (n === 0) return undefined;
    if (n === 1) return picks[0];
    switch (strategy) {
      case 'random':
        return picks[Math.floor(Math.random() * n)];
      case 'round-robin':
        return picks[this.next++ % n];
      case 'hash': {
        this.ring ??= new HashRing(picks.map((s) => ({ id: s.id, weight: s.instance.weight })));
        const id = this.ring.lookup(key);
        return picks.find((s) => s.id === id);
      }
      case 'least-load': {
        // Ties go round the instances, so an idle service is not all sent to its first instance.
        const start = this.next++ % n;
        let best = picks[start]!;
        for (let i = 1; i < n; i++) {
          const candidate = picks[(start + i) % n]!;
          if (candidate.load < best.load) best = candidate;
        }
        return best;
      }
    }
  }
}
