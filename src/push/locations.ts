import type { Redis } from 'ioredis';
import { AppError } from '../core/errors.js';
import type { PushSession } from '../core/push-protocol.js';

/** Where one session of a user is: a connection of a gateway. */
export interface Location {
  gatewayId: string;
  connectionId: string;
}

/**
 * The location registry: for a tenant's user, every live push session. An
 * entry lives `ttlMs` unless its gateway refreshes it, so a crashed gateway's
 * entries vanish by themselves; removal names the exact connection, so a
 * stale report never removes a newer session. Connection ids are random per
 * connection, so a gateway restarted under the same id cannot collide.
 */
export interface Locations {
  /** Throws PUSH_UNAVAILABLE when the registry is known to be unreachable now (no round trip). */
  check(): void;
  add(session: PushSession): Promise<void>;
  /** Every session of `gatewayId` is still there (refreshes, and re-adds after a registry restart). */
  refresh(gatewayId: string, sessions: readonly Omit<PushSession, 'gatewayId'>[]): Promise<void>;
  remove(session: PushSession): Promise<void>;
  /** The live sessions of each user of a tenant (users without one are absent). */
  lookup(serviceId: string, users: readonly string[]): Promise<Map<string, Location[]>>;
  close(): void;
}

/** One user's entries by `gatewayId\nconnectionId`, each with its expiry. Gateway ids have no newline (they go in subjects). */
type UserEntries = Map<string, number>;

const memberOf = (gatewayId: string, connectionId: string) => `${gatewayId}\n${connectionId}`;
const locationOf = (member: string): Location => {
  const cut = member.indexOf('\n');
  return { gatewayId: member.slice(0, cut), connectionId: member.slice(cut + 1) };
};

/** The embedded registry: this process's memory (one push role sees every session). */
export class MemoryLocations implements Locations {
  /** By tenant, then user: two tenants' "alice" are two users. */
  private readonly tenants = new Map<string, Map<string, UserEntries>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly ttlMs: number) {
    // Sessions of a crashed gateway would otherwise stay until looked up.
    this.sweeper = setInterval(() => this.sweep(Date.now()), ttlMs);
    this.sweeper.unref();
  }

  check(): void {
    // In this process: always reachable.
  }

  async add(session: PushSession): Promise<void> {
    this.set(session.serviceId, session.userName, memberOf(session.gatewayId, session.connectionId), Date.now() + this.ttlMs);
  }

  async refresh(gatewayId: string, sessions: readonly Omit<PushSession, 'gatewayId'>[]): Promise<void> {
    const until = Date.now() + this.ttlMs;
    for (const s of sessions) this.set(s.serviceId, s.userName, memberOf(gatewayId, s.connectionId), until);
  }

  async remove(session: PushSession): Promise<void> {
    const users = this.tenants.get(session.serviceId);
    const entries = users?.get(session.userName);
    if (!users || !entries) return;
    entries.delete(memberOf(session.gatewayId, session.connectionId));
    if (entries.size === 0) users.delete(session.userName);
    if (users.size === 0) this.tenants.delete(session.serviceId);
  }

  async lookup(serviceId: string, users: readonly string[]): Promise<Map<string, Location[]>> {
    const now = Date.now();
    const found = new Map<string, Location[]>();
    const known = this.tenants.get(serviceId);
    if (!known) return found;
    for (const user of users) {
      const entries = known.get(user);
      if (!entries) continue;
      const live = [...entries].filter(([, until]) => until > now).map(([member]) => locationOf(member));
      if (live.length > 0) found.set(user, live);
    }
    return found;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private set(serviceId: string, userName: string, member: string, until: number): void {
    let users = this.tenants.get(serviceId);
    if (!users) this.tenants.set(serviceId, (users = new Map()));
    let entries = users.get(userName);
    if (!entries) users.set(userName, (entries = new Map()));
    entries.set(member, until);
  }

  private sweep(now: number): void {
    for (const [serviceId, users] of this.tenants) {
      for (const [user, entries] of users) {
        for (const [member, until] of entries) if (until <= now) entries.delete(member);
        if (entries.size === 0) users.delete(user);
      }
      if (users.size === 0) this.tenants.delete(serviceId);
    }
  }
}

/**
 * The cluster registry, shared by every push role: one sorted set per user,
 * keyed by tenant (`push:loc:<serviceId>:<user>`; service ids have no colon),
 * its members the sessions, each scored with its expiry. Expired members are
 * skipped on lookup and trimmed then; the key itself expires with its last
 * member. A Redis restart loses the sets; the gateways' next refresh rebuilds
 * them, with no process restarted.
 */
export class RedisLocations implements Locations {
  constructor(
    private readonly redis: Redis,
    private readonly ttlMs: number,
  ) {}

  check(): void {
    if (this.redis.status !== 'ready') throw new AppError('PUSH_UNAVAILABLE', `the location registry is ${this.redis.status}`);
  }

  async add(session: PushSession): Promise<void> {
    await this.run(() => this.upsert([session], Date.now() + this.ttlMs));
  }

  async refresh(gatewayId: string, sessions: readonly Omit<PushSession, 'gatewayId'>[]): Promise<void> {
    if (sessions.length === 0) return;
    await this.run(() => this.upsert(sessions.map((s) => ({ ...s, gatewayId })), Date.now() + this.ttlMs));
  }

  async remove(session: PushSession): Promise<void> {
    await this.run(() => this.redis.zrem(keyOf(session.serviceId, session.userName), memberOf(session.gatewayId, session.connectionId)));
  }

  async lookup(serviceId: string, users: readonly string[]): Promise<Map<string, Location[]>> {
    const now = Date.now();
    const pipeline = this.redis.pipeline();
    for (const user of users) {
      const key = keyOf(serviceId, user);
      pipeline.zremrangebyscore(key, '-inf', now);
      pipeline.zrangebyscore(key, now + 1, '+inf');
    }
    const results = await this.run(() => pipeline.exec());
    const found = new Map<string, Location[]>();
    users.forEach((user, i) => {
      const [err, members] = results?.[i * 2 + 1] ?? [new Error('no reply')];
      if (err) throw new AppError('PUSH_UNAVAILABLE', 'the location registry failed a lookup');
      if (Array.isArray(members) && members.length > 0) found.set(user, (members as string[]).map(locationOf));
    });
    return found;
  }

  close(): void {
    // The Redis client is the process's, closed by the platform.
  }

  private async upsert(sessions: readonly PushSession[], until: number): Promise<unknown> {
    const pipeline = this.redis.pipeline();
    for (const s of sessions) {
      const key = keyOf(s.serviceId, s.userName);
      pipeline.zadd(key, until, memberOf(s.gatewayId, s.connectionId));
      pipeline.pexpire(key, this.ttlMs);
    }
    const results = await pipeline.exec();
    if (results?.some(([err]) => err)) throw new AppError('PUSH_UNAVAILABLE', 'the location registry refused a write');
    return results;
  }

  /** Redis away (commands fail fast, see connectRedis): PUSH_UNAVAILABLE, which callers may retry. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError('PUSH_UNAVAILABLE', `the location registry is unreachable: ${(err as Error).message}`);
    }
  }
}

function keyOf(serviceId: string, userName: string): string {
  return `push:loc:${serviceId}:${userName}`;
}
