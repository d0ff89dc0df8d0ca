import type { RoomRecord } from './store/store.js';

export interface RoomCacheOptions {
  /**
   * How long an entry is trusted without hearing of a change: the backstop for an invalidation that
   * never arrived (see `CacheInvalidation` for why a stale room within this bound is harmless).
   */
  ttlMs: number;
  /** Most rooms kept; past it the least recently used goes. */
  maxEntries: number;
  now?: () => number;
}

/**
 * 10 s: a lost invalidation is rare (see `CacheInvalidation`), and within the bound a stale room can
 * only put its old `eapolicy` in a token, which a token issued just before the change carries for
 * its whole life (nuve.tokenTtlSec, 180 s by default) anyway; a deleted room is refused regardless.
 * Shorter costs a store read per room per TTL on every Nuve: at 2 s, 100 busy rooms on two Nuves
 * were as many reads as the token inserts themselves.
 */
export const defaultRoomCacheOptions: RoomCacheOptions = { ttlMs: 10_000, maxEntries: 10_000 };

interface Entry {
  room: Readonly<RoomRecord>;
  until: number;
}

/**
 * Rooms by (tenant, room id), in front of the store's room read: the token routes read their room
 * on every request, and on PostgreSQL that round trip was most of a token's cost. Keys are
 * tenant-scoped, so one tenant never gets another's room, whatever the ids.
 *
 * - A miss is never cached: a room created on another Nuve must be found at once.
 * - Concurrent reads of one uncached room share one store read.
 * - A read that was in flight when an invalidation arrived answers its callers but is not kept
 *   (it may predate the change); later callers read anew.
 *
 * Rooms handed out are frozen: callers share them.
 */
export class RoomCache {
  /** In least- to most-recently-used order (a Map keeps insertion order; a hit re-inserts). */
  private readonly entries = new Map<string, Entry>();
  private readonly reads = new Map<string, Promise<RoomRecord | undefined>>();
  /** Bumped by every invalidation: a read started under an older one is not cached. */
  private epoch = 0;
  private readonly now: () => number;

  constructor(
    private readonly read: (serviceId: string, roomId: string) => Promise<RoomRecord | undefined>,
    private readonly options: RoomCacheOptions = defaultRoomCacheOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  get(serviceId: string, roomId: string): Promise<RoomRecord | undefined> {
    const key = cacheKey(serviceId, roomId);
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      if (hit.until > this.now()) {
        this.entries.set(key, hit);
        return Promise.resolve(hit.room);
      }
    }
    let pending = this.reads.get(key);
    if (!pending) {
      pending = this.load(key, serviceId, roomId);
      this.reads.set(key, pending);
      const settled = () => {
        if (this.reads.get(key) === pending) this.reads.delete(key);
      };
      pending.then(settled, settled);
    }
    return pending;
  }

  /** The room changed or went: its next read goes to the store. */
  forget(serviceId: string, roomId: string): void {
    this.epoch++;
    const key = cacheKey(serviceId, roomId);
    this.entries.delete(key);
    this.reads.delete(key);
  }

  /** The tenant changed or went (deleting a tenant deletes its rooms). */
  forgetService(serviceId: string): void {
    this.epoch++;
    const prefix = cacheKey(serviceId, '');
    for (const key of this.entries.keys()) if (key.startsWith(prefix)) this.entries.delete(key);
    for (const key of this.reads.keys()) if (key.startsWith(prefix)) this.reads.delete(key);
  }

  /** The gateway is gone and its rooms were released: their cached gateway is no longer theirs. */
  forgetGateway(gatewayId: string): void {
    this.epoch++;
    for (const [key, entry] of this.entries) if (entry.room.gatewayId === gatewayId) this.entries.delete(key);
    this.reads.clear();
  }

  /** Forget everything: changes may have been missed (the bus was lost, or a change could not be read). */
  clear(): void {
    this.epoch++;
    this.entries.clear();
    this.reads.clear();
  }

  private async load(key: string, serviceId: string, roomId: string): Promise<RoomRecord | undefined> {
    const epoch = this.epoch;
    const room = await this.read(serviceId, roomId);
    if (!room) return undefined;
    const frozen = Object.freeze(room);
    if (epoch === this.epoch) {
      this.entries.set(key, { room: frozen, until: this.now() + this.options.ttlMs });
      if (this.entries.size > this.options.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    }
    return frozen;
  }
}

/** Ids are storable text (no control characters), so NUL cannot occur in either part. */
function cacheKey(serviceId: string, roomId: string): string {
  return `${serviceId}\u0000${roomId}`;
}
