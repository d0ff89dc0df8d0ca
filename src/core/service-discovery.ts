import type { EventEmitter } from 'node:events';
import { z } from 'zod';

/** A business service's name as clients and services write it in calls: `chat`, `leader-board`. */
export const serviceNameSchema = z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, 'lowercase letters, digits, - and _, starting with a letter, ≤ 64');

/** One running instance of a business service, as discovery announces it. */
export const serviceInstanceSchema = z
  .object({
    /** Unique in the cluster; the same id from a new process comes with a new `incarnation`. */
    id: z.string().min(1).max(128),
    incarnation: z.string().min(1).max(64),
    service: serviceNameSchema,
    version: z.string().min(1).max(64),
    /** The bus subject this instance answers its calls on. */
    subject: z.string().min(1).max(256),
    /** Calls it is running now (least-load balancing). */
    inFlight: z.number().int().min(0).max(1_000_000_000),
    /** Relative capacity (weighted strategies); 1 unless configured. */
    weight: z.number().positive().max(1000),
  })
  .strict();

export type ServiceInstance = z.infer<typeof serviceInstanceSchema>;

/** Why an instance left the view: said goodbye, fell silent (or its lease expired), or came back as a new process. */
export type ServiceRemovalReason = 'down' | 'timeout' | 'restarted';

export interface ServiceDiscoveryEvents {
  added: [ServiceInstance];
  updated: [ServiceInstance];
  removed: [ServiceInstance, ServiceRemovalReason];
}

/** This process's registration of one instance; `withdraw` takes it out of every view at once. */
export interface ServiceRegistration {
  withdraw(): Promise<void>;
}

/**
 * Where services find each other: the bus (heartbeats, the default) or etcd
 * (keys under one prefix with a lease). Callers (the gateway, other services)
 * keep the view; instances register themselves. Both implementations give the
 * same view, so routing never knows which one runs.
 */
export interface ServiceDiscovery extends EventEmitter<ServiceDiscoveryEvents> {
  start(): Promise<void>;
  /**
   * Keeps the instance `describe` returns registered until withdrawn or closed;
   * `describe` is read again at every refresh, so its load stays current.
   */
  register(describe: () => ServiceInstance): ServiceRegistration;
  /** The live instances of `service`, sorted by id. */
  instances(service: string): readonly ServiceInstance[];
  /** Names of the services with at least one live instance, sorted. */
  services(): string[];
  /** Withdraws this process's registrations and stops watching. */
  close(): Promise<void>;
}
