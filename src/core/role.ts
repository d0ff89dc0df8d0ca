import type { Registry } from 'prom-client';
import type { Bus } from './bus/bus.js';
import type { Config } from './config.js';
import type { Database } from './database.js';
import type { Logger } from './logger.js';
import type { Redis } from 'ioredis';

/**
 * What a running role is, by role name: each role's `role.ts` adds its entry
 * (`declare module '../core/role.js' { interface RoleInstances { nuve: Nuve } }`),
 * so `platform.role('nuve')` is typed without the platform knowing the role.
 */
export interface RoleInstances {}

/**
 * The resources a process's roles share, each opened on first use and closed
 * by the platform after its last role closed. `logger` is the role's own
 * (child of the process's, labelled with the role's name).
 */
export interface PlatformContext {
  readonly config: Config;
  readonly logger: Logger;
  /** The process's one metrics registry. */
  readonly metrics: Registry;
  bus(): Promise<Bus>;
  /** The process's database (SQLite or PostgreSQL per `config.store`); each role migrates its own tables on it. */
  database(): Promise<Database>;
  /** Shared Redis when `config.redis.url` is set, else undefined. */
  redis(): Promise<Redis | undefined>;
}

/**
 * A role as a plugin: how to build it on the shared resources and how to
 * start, drain and close what was built. The platform calls, for the roles
 * it runs: `create` and `registerMetrics` then `start` in dependency order,
 * `drain` in the reverse order (each begun without waiting for the previous
 * to be empty, so no role keeps taking work while another empties), `close`
 * in the reverse order, one after the other.
 */
export interface Role<I = unknown> {
  readonly name: string;
  /**
   * Roles that, when running in the same process, start before this one and
   * stop after it. Not requirements: in a cluster each may run elsewhere.
   */
  readonly after: readonly string[];
  create(ctx: PlatformContext): I | Promise<I>;
  /** Adds the role's metrics to the process's registry; before `start`. */
  registerMetrics?(instance: I, registry: Registry): void;
  start(instance: I): Promise<void>;
  /** Graceful stop: take no new work, let the current finish; resolves when it may be closed. */
  drain(instance: I): Promise<unknown>;
  close(instance: I): Promise<void>;
  /** Lines the CLI prints once the role runs: where to reach it. */
  describe?(instance: I): string[];
}

export class RoleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RoleError';
  }
}

/** The roles a process can run, by name. */
export class RoleRegistry {
  private readonly roles = new Map<string, Role<any>>();

  constructor(roles: readonly Role<any>[] = []) {
    for (const role of roles) this.register(role);
  }

  register(role: Role<any>): void {
    if (!/^[a-z][a-z0-9-]*$/.test(role.name)) throw new RoleError(`invalid role name "${role.name}"`);
    if (this.roles.has(role.name)) throw new RoleError(`role "${role.name}" is already registered`);
    this.roles.set(role.name, role);
  }

  /** Registered names, in registration order. */
  names(): string[] {
    return [...this.roles.keys()];
  }

  /**
   * The named roles in start order: every role after those it names in
   * `after` (also through roles not selected), otherwise in registration
   * order. Unknown names and dependency cycles are errors.
   */
  order(names: readonly string[]): Role<any>[] {
    for (const name of names) {
      if (!this.roles.has(name)) throw new RoleError(`unknown role "${name}" (known: ${this.names().join(', ')})`);
    }
    for (const role of this.roles.values()) {
      for (const dependency of role.after) {
        if (!this.roles.has(dependency)) throw new RoleError(`role "${role.name}" starts after unknown role "${dependency}"`);
      }
    }
    // Kahn's algorithm over every registered role, taking the earliest registered among the ready ones.
    const ordered: Role<any>[] = [];
    const pending = [...this.roles.values()];
    while (pending.length > 0) {
      const index = pending.findIndex((role) => role.after.every((dependency) => ordered.some((done) => done.name === dependency)));
      if (index === -1) throw new RoleError(`roles start after each other in a cycle: ${cycleAmong(pending).join(' → ')}`);
      ordered.push(...pending.splice(index, 1));
    }
    const wanted = new Set(names);
    return ordered.filter((role) => wanted.has(role.name));
  }
}

/** A dependency cycle among roles none of which can start, as names from one role back to itself. */
function cycleAmong(blocked: readonly Role<any>[]): string[] {
  const byName = new Map(blocked.map((role) => [role.name, role]));
  const path: string[] = [];
  let current = blocked[0]!;
  while (!path.includes(current.name)) {
    path.push(current.name);
    // Blocked means some dependency is blocked too.
    current = byName.get(current.after.find((dependency) => byName.has(dependency))!)!;
  }
  return [...path.slice(path.indexOf(current.name)), current.name];
}
