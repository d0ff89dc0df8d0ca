import type { types } from 'mediasoup';
import { mediaCodecs } from './media-codecs.js';
import type { WorkerSlot } from './worker-pool.js';

/**
 * One of a room's routers on this agent (one per worker the room uses) with
 * its audio level observer: a producer can only be observed on its own router.
 */
export class RoomRouter {
  /** Live consumers of peers placed here: what placement fills up (the worker's load is `slot.consumers`). */
  consumers = 0;

  private constructor(
    readonly slot: WorkerSlot,
    readonly router: types.Router,
    readonly audioLevelObserver: types.AudioLevelObserver,
  ) {}

  static async create(slot: WorkerSlot, appData: { roomId: string; gatewayId: string }): Promise<RoomRouter> {
    const router = await slot.worker.createRouter({ mediaCodecs, appData });
    try {
      const observer = await router.createAudioLevelObserver({ maxEntries: 1, threshold: -80, interval: 800 });
      return new RoomRouter(slot, router, observer);
    } catch (err) {
      router.close();
      throw err;
    }
  }
}

interface Fillable<S> {
  consumers: number;
  slot: S;
}
interface Worker {
  consumers: number;
  worker: { closed: boolean };
}

/**
 * Where a room's next peer goes (`limit` consumers per router, 0: always the
 * home router). One router is filled before the room spreads: the fullest of
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
  const open = routers.filter((r) => r.consumers < limit);
  // Fullest first; ties go to the router the room opened first (reduce keeps the earlier one).
  if (open.length > 0) return { router: open.reduce((best, r) => (r.consumers > best.consumers ? r : best)) };
  const taken = new Set(routers.map((r) => r.slot));
  const free = workers.filter((w) => !w.worker.closed && !taken.has(w));
  if (free.length > 0) return { worker: free.reduce((best, w) => (w.consumers < best.consumers ? w : best)) };
  return { router: routers.reduce((best, r) => (r.consumers < best.consumers ? r : best)) };
}
