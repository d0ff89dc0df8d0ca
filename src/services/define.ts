import type { z } from 'zod';
import type { Logger } from '../core/logger.js';
import type { PushSendResult } from '../core/push-protocol.js';
import type { CallOptions } from '../core/service-caller.js';
import type { CallerIdentity } from '../core/service-protocol.js';

export type { CallerIdentity, CallerKind } from '../core/service-protocol.js';
export type { CallOptions } from '../core/service-caller.js';
export type { Strategy } from '../core/service-routes.js';

export interface PushOptions {
  /** Safe: stored until the user's client acknowledges it (restored on reconnect). Default false: only sessions online now. */
  safe?: boolean;
  /** Safe only: dropped undelivered after this long. */
  ttlSec?: number;
}

/** What a handler gets besides its arguments: who calls, and the way to other services and to users. */
export interface ServiceContext {
  /** Vouched for by the gateway (clients, trusted servers) or the calling service: never the client's own say. */
  readonly caller: Readonly<CallerIdentity>;
  /** The id of the instance running this call. */
  readonly instance: string;
  readonly logger: Logger;
  /** Calls another service for the same tenant and user, and waits for its answer. */
  call<T = unknown>(service: string, method: string, args?: unknown, options?: CallOptions): Promise<T>;
  /** Calls another service without waiting (its answer and errors are dropped). */
  send(service: string, method: string, args?: unknown, options?: Omit<CallOptions, 'ordered'>): void;
  /** Pushes to users of the caller's tenant through the push service. */
  push(users: string[], data: unknown, options?: PushOptions): Promise<PushSendResult>;
}

export interface MethodDefinition<S extends z.ZodType = z.ZodType> {
  /** The arguments' schema: calls that do not match are answered SERVICE_INVALID_ARGS without running the handler. */
  input: S;
  /** `external`: clients may call it; `internal`: only services and trusted servers. */
  access: 'external' | 'internal';
  /** Each client's calls run one at a time, in call order, on one instance (as if every call said `ordered`). */
  ordered?: boolean;
  /** The most this method may take, whatever a caller allows (callers' default: `services.defaultTimeoutMs`). */
  timeoutMs?: number;
  /**
   * The argument (a top-level string or number) whose value routes the call by consistent hash: calls with the
   * same value (in one tenant) reach the same instance while the set of instances stays, whatever strategy or key
   * the caller named. For state an instance keeps in memory by that value (a chat room's members). Ordered calls
   * routed this way are ordered per value, and follow the value when the instances change.
   */
  hashKey?: string;
  handler(args: z.infer<S>, ctx: ServiceContext): unknown;
}

export interface ServiceDefinition {
  name: string;
  version: string;
  methods: Record<string, MethodDefinition<any>>;
}

/**
 * Declares a service: its name (what callers write), version, and methods.
 * Each handler's `args` is typed by its method's `input` schema.
 */
export function defineService<M extends Record<string, z.ZodType>>(definition: {
  name: string;
  version: string;
  methods: { [K in keyof M]: MethodDefinition<M[K]> };
}): ServiceDefinition {
  for (const [name, method] of Object.entries<MethodDefinition>(definition.methods)) {
    // Callers learn it from the instances' probe answers, which bound it so: a longer one would leave the service undescribed.
    if (method.hashKey !== undefined && (method.hashKey.length === 0 || method.hashKey.length > 64)) {
      throw new Error(`${definition.name}.${name}: hashKey must name an argument of 1 to 64 characters`);
    }
  }
  return definition as ServiceDefinition;
}
