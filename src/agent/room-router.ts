import type { types } from 'mediasoup';
import type { WorkerPool, WorkerSlot } from './worker-pool.js';

/**
 * One of a room's routers on this agent (one per worker the room uses) with
 * its audio level observer: a producer can only be observed on its own router.
 */
export class RoomRouter {
  /** Live consumers of peers placed here (the worker's load is `slot.consumers`). */
  consumers = 0;
  /**
   * Consumers that peers bound here are expected to create and have not yet:
   * peers joining at the same moment are bound before any of them consumes,
   * and placement that saw only `consumers` would put them all on one router.
   */
  expected = 0;
  private levels?: Promise<types.AudioLevelObserver>;

  private constructor(
    readonly slot: WorkerSlot,
    readonly router: types.Router,
  ) {}

  /** What placement fills up: what the router carries and what its bound peers are about to add. */
  get load(): number {
    return this.consumers + this.expected;
  }

  static async create(pool: WorkerPool, slot: WorkerSlot, appData: { roomId: string; gatewayId: string }): Promise<RoomRouter> {
    return new RoomRouter(slot, await pool.createRouter(slot, appData));
  }

  /**
   * The router's audio level observer, created with its first audio producer, not with the router: a
   * room's opening is on its first join's path (one worker round trip less to wait for), and a room
   * where nobody publishes audio never needs one. `watch` is told of it once, when it is created; a
   * failed creation is tried again by the next audio producer.
   */
  audioLevels(watch: (observer: types.AudioLevelObserver) => void): Promise<types.AudioLevelObserver> {
    this.levels ??= this.router.createAudioLevelObserver({ maxEntries: 1, threshold: -80, interval: 800 }).then(
      (observer) => {
        watch(observer);
        return observer;
      },
      (err: unknown) => {
        this.levels = undefined;
        throw err;
      },
    );
    return this.levels;
  }
}

interface Fillable<S> {
  load: number;
  slot: S;
}
interface Worker {
  consumers: number;
  worker: { closed: boolean };
}

/**
 * Where a room's next peer goes (`limit` consumers per router, 0: always the
 * home router; a router's load counts the consumers its bound peers are
 * expected to create). One router is filled before the room spreads: the fullest of
 * its routers still under the limit; else a new router on the least-loaded
 * worker the room is not on yet; else, every worker taken, the room's
 * least-loaded router.
 */
export function placePeer<S extends Worker, R extends Fillable<S>>(
  routers: readonly R[],
  workers: readonly S[],
  limit: number,
): { router: R } | { worker: S } {
  const [home] = routers;
  if (!home) throw new Error('a room has its home router from its opening');
  if (limit === 0) return { router: home };
  const open = routers.filter((r) => r.load < limit);
  // Fullest first; ties go to the router the room opened first (reduce keeps the earlier one).
  if (open.length > 0) return { router: open.reduce((best, r) => (r.load > best.load ? r : best)) };
  const taken = new Set(routers.map((r) => r.slot));
  const free = workers.filter((w) => !w.worker.closed && !taken.has(w));
  if (free.length > 0) return { worker: free.reduce((best, w) => (w.consumers < best.consumers ? w : best)) };
  return { router: routers.reduce((best, r) => (r.load < best.load ? r : best)) };
}
