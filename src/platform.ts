import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { Agent } from './agent/agent.js';
import { agentRole } from './agent/role.js';
import type { Bus } from './core/bus/bus.js';
import type { Config } from './core/config.js';
import { type Logger, createLogger } from './core/logger.js';
import { createMetricsRegistry } from './core/metrics.js';
import { type Role, type RoleInstances, RoleRegistry } from './core/role.js';
import { SharedResources } from './core/shared-resources.js';
import { startTracing } from './core/tracing.js';
import type { Gateway } from './gateway/gateway.js';
import { gatewayRole } from './gateway/role.js';
import type { Nuve } from './nuve/nuve.js';
import { nuveRole } from './nuve/role.js';
import { pushRole } from './push/role.js';
import { distributorRole } from './distributor/role.js';
import type { Store } from './nuve/store/store.js';

/** The roles this process can run (`all` runs every one); a role added to the build registers here. */
export const roles = new RoleRegistry([agentRole, nuveRole, pushRole, gatewayRole, distributorRole]);

/** A running set of roles sharing one bus: the whole platform embedded, or one role of a cluster. */
export interface Platform {
  config: Config;
  bus: Bus;
  logger: Logger;
  metrics: Registry;
  /** The running roles' names, in start order. */
  readonly roles: readonly string[];
  /** A running role's instance, or undefined when this process does not run it. */
  role<K extends keyof RoleInstances>(name: K): RoleInstances[K] | undefined;
  /** Nuve's repositories, when Nuve runs here. */
  readonly store?: Store;
  readonly redis?: Redis;
  readonly nuve?: Nuve;
  readonly gateway?: Gateway;
  readonly agent?: Agent;
  /**
   * Graceful stop (SIGTERM): Nuve finishes in-flight requests at once; the
   * gateway and the agent stop taking new rooms and wait for their last
   * client/room or their grace period. Resolves when it is safe to close.
   */
  drain(): Promise<void>;
  close(): Promise<void>;
  /** What each running role says about itself (where to reach it), in start order. */
  describe(): string[];
}

interface Running {
  role: Role<unknown>;
  instance: unknown;
}

class RunningPlatform implements Platform {
  bus!: Bus;
  private readonly running: Running[] = [];

  constructor(
    readonly config: Config,
    readonly logger: Logger,
    readonly metrics: Registry,
    private readonly shared: SharedResources,
    private readonly tracing: { flush(): Promise<void> },
  ) {}

  /** Builds and starts one role; once built it is closed with the others, even if its start fails. */
  async add(role: Role<unknown>): Promise<void> {
    const instance = await role.create(this.shared.contextFor(role.name));
    this.running.push({ role, instance });
    role.registerMetrics?.(instance, this.metrics);
    await role.start(instance);
  }

  get roles(): string[] {
    return this.running.map(({ role }) => role.name);
  }

  role<K extends keyof RoleInstances>(name: K): RoleInstances[K] | undefined {
    return this.running.find(({ role }) => role.name === name)?.instance as RoleInstances[K] | undefined;
  }

  get nuve(): Nuve | undefined {
    return this.role('nuve');
  }

  get gateway(): Gateway | undefined {
    return this.role('gateway');
  }

  get agent(): Agent | undefined {
    return this.role('agent');
  }

  get store(): Store | undefined {
    return this.nuve?.store;
  }

  get redis(): Redis | undefined {
    return this.shared.openRedis;
  }

  /** Later roles first; each begun without waiting for the previous to empty, so none keeps taking work while another waits for its last call. */
  async drain(): Promise<void> {
    await Promise.all([...this.running].reverse().map(({ role, instance }) => role.drain(instance)));
  }

  describe(): string[] {
    return this.running.flatMap(({ role, instance }) => role.describe?.(instance) ?? []);
  }

  async close(): Promise<void> {
    for (const { role, instance } of [...this.running].reverse()) await role.close(instance);
    await this.shared.close();
    await this.tracing.flush();
  }
}

/**
 * Starts the named roles (default: every registered one) in dependency order
 * and returns a handle that drains and closes them in reverse. An unknown
 * name or a dependency cycle fails before anything is opened.
 */
export async function startPlatform(config: Config, names: readonly string[] = roles.names(), logger?: Logger): Promise<Platform> {
  const ordered = roles.order(names);
  const log = logger ?? createLogger(config.log);
  const roleLabel = ordered.length === 1 ? ordered[0]!.name : 'all';
  const tracing = startTracing(config.tracing, roleLabel);
  const metrics = createMetricsRegistry(roleLabel);
  const shared = new SharedResources(config, log, metrics);
  const platform = new RunningPlatform(config, log, metrics, shared, tracing);
  try {
    for (const role of ordered) await platform.add(role);
    // Every process is on the bus, if only to answer the cluster's metrics scrape.
    platform.bus = await shared.bus();
  } catch (err) {
    await platform.close().catch(() => undefined);
    throw err;
  }
  return platform;
}
