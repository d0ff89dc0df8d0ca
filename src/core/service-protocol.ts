import { z } from 'zod';
import type { BusReply } from './bus/bus.js';
import { serviceNameSchema } from './service-discovery.js';

/**
 * The wire between callers (the gateway, services) and service instances.
 * Discovery announces instances on `service.*`; each instance answers its calls
 * on its own subject, so a caller picks the instance and NATS carries the call
 * straight there (no queue group: routing is the caller's).
 */
export const serviceSubjects = {
  /** instance → every caller (publish): registration, keepalive and load (`ServiceInstance`). */
  heartbeat: 'service.heartbeat',
  /** instance → every caller (publish): clean stop, `{id}`. */
  down: 'service.down',
  /** caller → every instance (publish): announce yourselves now. */
  hello: 'service.hello',
  /** caller → one instance (request): a call (`ServiceCall`). */
  instance: (service: string, instanceId: string) => `service.${service}.${instanceId}`,
  /** caller → one instance (publish): a fire-and-forget call, nobody waits for its answer. */
  instanceSend: (service: string, instanceId: string) => `service.${service}.${instanceId}.send`,
  /** caller → one instance (request): the calls this caller made to it in one turn of its event loop (`ServiceCallBatch`). */
  instanceBatch: (service: string, instanceId: string) => `service.${service}.${instanceId}.batch`,
  /** instance → one caller (publish): answers of batched calls that finished before the rest of their batch (`BatchEntry[]`); `_` keeps it off every service's names. */
  callerReplies: (callerId: string) => `service._replies.${callerId}`,
} as const;

/** Who is calling: a client of the external edge, a service, or a trusted server acting for a user. */
export type CallerKind = 'client' | 'service' | 'trusted';

/** The caller as the gateway (or the calling service) vouches for it: never taken from a client's payload. */
export interface CallerIdentity {
  /** The tenant (Nuve service id) the call acts for: user names are the tenant's own. */
  tenant: string;
  user: string;
  /** The client connection (gateway) or the calling instance (service) the call came from. */
  connection: string;
  kind: CallerKind;
  /** The calling service's name, for s2s calls. */
  service?: string;
}

/**
 * One call on the wire, in short keys (it is the hot path): method, arguments,
 * caller, the time the instance has to answer, and for ordered calls the
 * stream and its sequence number (1, 2, …: the instance runs them in that
 * order and tells a gap).
 */
export interface ServiceCall {
  m: string;
  a: unknown;
  c: CallerIdentity;
  /** Milliseconds the handler may take; the instance answers SERVICE_TIMEOUT past it. */
  t: number;
  /** Ordered calls: stream id (unique per caller, client and service) and sequence number. */
  s?: string;
  n?: number;
  /** Fire-and-forget: the caller does not wait (`ctx.send`). */
  f?: 1;
}

/**
 * The instance's own method every caller may use: whether it is alive (answered before any handler),
 * which of its methods run ordered and which hash on an argument (`ProbeAnswer`), so callers route those right from the first call.
 */
export const PROBE_METHOD = '$probe';

export const probeAnswerSchema = z.object({
  id: z.string(),
  ordered: z.array(z.string().max(64)).max(1000),
  /** Methods routed by hash on one of their arguments (`hashKey`), as [method, argument] pairs; absent from older instances. */
  hashKeys: z.array(z.tuple([z.string().max(64), z.string().max(64)])).max(1000).optional(),
});
export type ProbeAnswer = z.infer<typeof probeAnswerSchema>;

/** At most this long for a single call, whatever the method or the call asks. */
export const MAX_CALL_TIMEOUT_MS = 300_000;

const boundedId = z.string().min(1).max(256);

const callerIdentitySchema = z
  .object({
    tenant: boundedId,
    user: boundedId,
    // A trusted server's calls name its connection and the user (`<connection>/<user>`), so longer than an id.
    connection: z.string().min(1).max(512),
    kind: z.enum(['client', 'service', 'trusted']),
    service: serviceNameSchema.optional(),
  })
  .strict();

const callFields = {
  m: z.string().min(1).max(64),
  a: z.unknown().optional(),
  t: z.number().int().positive().max(MAX_CALL_TIMEOUT_MS),
  s: z.string().min(1).max(128).optional(),
  n: z.number().int().positive().optional(),
  f: z.literal(1).optional(),
};

/**
 * The envelope's check at the instance. Arguments are left to the method's own
 * schema (checked only once the method is known), so this is the only
 * envelope-wide validation a call pays. Unknown top-level keys are dropped, not
 * refused: a traced caller's bus adds its trace context (`_trace`) there.
 */
export const serviceCallSchema = z.object({ ...callFields, c: callerIdentitySchema });

/** The client's (and trusted server's) `call` request on the gateway. */
export const clientCallSchema = z
  .object({
    service: serviceNameSchema,
    method: z.string().min(1).max(64),
    args: z.unknown().optional(),
    timeoutMs: z.number().int().positive().max(MAX_CALL_TIMEOUT_MS).optional(),
    /** Consistent hashing: the same key reaches the same instance while it lives. */
    key: z.string().min(1).max(256).optional(),
    ordered: z.boolean().optional(),
    strategy: z.enum(['random', 'round-robin', 'hash', 'least-load']).optional(),
  })
  .strict();
export type ClientCall = z.infer<typeof clientCallSchema>;

/** A trusted server's `call`: a client call naming the tenant and user it acts for. */
export const trustedCallSchema = clientCallSchema.extend({ tenant: boundedId.max(64), user: boundedId }).strict();

/** The most calls one batch carries (the instance refuses a longer one): a turn's calls past it go in the next batch. */
export const MAX_BATCH_CALLS = 256;

/**
 * Calls to one instance coalesced into one bus request: each bus message costs both ends and NATS a fixed price
 * (framing, a socket write, routing) that one call per message pays in full. `k` names the batch among the caller's,
 * `r` is the caller's reply subject. The request's own answer is `BatchEntry[]` for the calls not yet answered when
 * the last of them finished; answers ready before that reach `r` as they come (coalesced per caller), so a slow
 * call never holds up a fast one.
 */
export interface ServiceCallBatch {
  k: number;
  r: string;
  /** The callers of the batch's calls, each once: a call's `c` is its index here (its own identity from older callers). */
  ids: CallerIdentity[];
  b: CallInBatch[];
}

/** A call in a batch: its caller by index into the batch's `ids`. */
export type CallInBatch = Omit<ServiceCall, 'c'> & { c: number | CallerIdentity };

/** One batched call's answer: batch key, index in the batch, and the reply as a single call's would be. */
export type BatchEntry = [k: number, i: number, reply: BusReply];

/**
 * The batch envelope's check; each call is checked as a single call is (`serviceCallSchema`) when it runs. Not strict,
 * as the single call's envelope: a traced caller's bus adds `_trace` at the top.
 */
export const serviceCallBatchSchema = z.object({
  k: z.number().int().nonnegative(),
  r: z.string().min(1).max(256),
  ids: z.array(callerIdentitySchema).max(MAX_BATCH_CALLS).optional(),
  b: z.array(z.unknown()).min(1).max(MAX_BATCH_CALLS),
});

/**
 * One call of a batch, checked when it runs (a malformed one fails alone). Its caller is an index into the batch's
 * `ids`, checked once per batch however many calls share it (a client's burst, a service's fan-out): the identity was
 * most of a call's envelope, in bytes and in checking.
 */
export const batchedCallSchema = z.object({ ...callFields, c: z.union([z.number().int().nonnegative(), callerIdentitySchema]) });
