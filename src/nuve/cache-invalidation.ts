import { z } from 'zod';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Logger } from '../core/logger.js';
import type { RoomCache } from './room-cache.js';
import type { ServiceDirectory } from './service-directory.js';

/**
 * Nuve → every Nuve (publish, no queue group: each instance drops its own copy).
 * Nuve-internal: no other role publishes or hears these.
 */
export const cacheSubjects = {
  /** A room was changed or deleted (its options, name, group, or its gateway moved). */
  roomChanged: 'nuve.room.changed',
  /** A tenant was created, changed or deleted (deleting it deletes its rooms). */
  serviceChanged: 'nuve.service.changed',
} as const;

const id = z.string().min(1).max(64);
const roomChangedSchema = z.object({ serviceId: id, roomId: id }).strict();
const serviceChangedSchema = z.object({ serviceId: id }).strict();

/**
 * Keeps every Nuve's room and tenant caches in step with changes made on any of them. The change is
 * stored first, then this instance drops its entry and tells the others, before the request that
 * made it is answered; so the next request on any Nuve reads the store (the others hear within a
 * bus hop). An invalidation can still be lost (a Nuve cut from the bus, whose cache is then
 * cleared when it is back; a broker that drops a message): the caches' TTL bounds how long a stale
 * entry lives, and what a stale room can do within it is harmless:
 * - a deleted room: the token's row has a foreign key to the room, so its insert fails and the
 *   request is answered ROOM_NOT_FOUND; a token written just before the delete is deleted with the
 *   room, and consuming a token reads the room from the store, never from a cache;
 * - changed options: only `eapolicy` travels in a token, and a token issued a moment before the
 *   change keeps the old one for its whole life (nuve.tokenTtlSec) anyway;
 * - a deleted tenant: its requests fail MAuth once the tenant cache forgets it, and its tokens went
 *   with it (consumption finds no row).
 */
/** How long a change waits to hear its own invalidation back before it is answered anyway (the TTL covers the rest). */
const ECHO_WAIT_MS = 1000;

export class CacheInvalidation {
  private subscriptions: Subscription[] = [];
  private offConnectivity?: () => void;
  /** Changes waiting for their invalidation to come back through the bus, by subject and key. */
  private readonly echoes = new Map<string, (() => void)[]>();

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly rooms: RoomCache,
    private readonly services: ServiceDirectory,
  ) {}

  start(): void {
    this.subscriptions = [
      this.bus.subscribe(cacheSubjects.roomChanged, (payload) => {
        const change = roomChangedSchema.safeParse(payload);
        if (!change.success) return this.unreadable(cacheSubjects.roomChanged);
        this.rooms.forget(change.data.serviceId, change.data.roomId);
        this.heard(`room\u0000${change.data.serviceId}\u0000${change.data.roomId}`);
      }),
      this.bus.subscribe(cacheSubjects.serviceChanged, (payload) => {
        const change = serviceChangedSchema.safeParse(payload);
        if (!change.success) return this.unreadable(cacheSubjects.serviceChanged);
        this.forgetService(change.data.serviceId);
        this.heard(`service\u0000${change.data.serviceId}`);
      }),
    ];
    // Changes published while this Nuve was cut from the bus never reach it: start afresh.
    this.offConnectivity = this.bus.onConnectivity((connected) => {
      if (connected) this.rooms.clear();
    });
  }

  stop(): void {
    for (const subscription of this.subscriptions) subscription.unsubscribe();
    this.subscriptions = [];
    this.offConnectivity?.();
    for (const waiters of this.echoes.values()) for (const done of waiters) done();
    this.echoes.clear();
  }

  /**
   * After storing a change to the room (or its deletion). Resolves once this Nuve heard its own
   * invalidation back (or after ECHO_WAIT_MS): by then the bus has handed it to every other Nuve
   * too, so a client told of the change and asking another Nuve right after finds it there.
   */
  roomChanged(serviceId: string, roomId: string): Promise<void> {
    this.rooms.forget(serviceId, roomId);
    const echo = this.echo(`room\u0000${serviceId}\u0000${roomId}`);
    this.bus.publish(cacheSubjects.roomChanged, { serviceId, roomId });
    return echo;
  }

  /** This Nuve's copy of the room proved out of date in a way other Nuves find out on their own. */
  roomStale(serviceId: string, roomId: string): void {
    this.rooms.forget(serviceId, roomId);
  }

  /** After storing a change to the tenant (or its deletion, with its rooms); resolves as `roomChanged`. */
  serviceChanged(serviceId: string): Promise<void> {
    this.forgetService(serviceId);
    const echo = this.echo(`service\u0000${serviceId}`);
    this.bus.publish(cacheSubjects.serviceChanged, { serviceId });
    return echo;
  }

  /** Any invalidation of the same thing heard after the publish will do: it was sent after the change. */
  private echo(key: string): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ECHO_WAIT_MS);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      const waiters = this.echoes.get(key);
      if (waiters) waiters.push(done);
      else this.echoes.set(key, [done]);
    });
  }

  private heard(key: string): void {
    const waiters = this.echoes.get(key);
    if (!waiters) return;
    this.echoes.delete(key);
    for (const done of waiters) done();
  }

  private forgetService(serviceId: string): void {
    this.services.forget(serviceId);
    this.rooms.forgetService(serviceId);
  }

  /** A change we cannot read could be about any room: trusting none is the safe answer. */
  private unreadable(subject: string): void {
    this.logger.warn({ subject }, 'malformed cache invalidation: room cache cleared');
    this.rooms.clear();
  }
}
