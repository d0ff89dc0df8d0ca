import { randomUUID } from 'node:crypto';
import { type Bus, type Subscription, errorReply } from '../core/bus/bus.js';
import { AppError, describeIssues, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { type PushSendResult, pushSubjects } from '../core/push-protocol.js';
import type { CallOptions, ServiceCaller } from '../core/service-caller.js';
import type { ServiceDiscovery, ServiceRegistration } from '../core/service-discovery.js';
import {
  type BatchEntry,
  type CallerIdentity,
  PROBE_METHOD,
  type ProbeAnswer,
  type ServiceCall,
  batchedCallSchema,
  serviceCallBatchSchema,
  serviceCallSchema,
  serviceSubjects,
} from '../core/service-protocol.js';
import { BatchAnswers, type SizedReply } from './batch-answers.js';
import type { MethodDefinition, PushOptions, ServiceContext, ServiceDefinition } from './define.js';

/** An instance forgets a client's ordered stream after this long unused (callers forget theirs sooner). */
const ORDERED_STREAM_IDLE_MS = 60_000;
/** The instance's own bound on a push request. */
const PUSH_TIMEOUT_MS = 5000;

/** One client's ordered calls at this instance: the sequence number expected next, and the last call's end. */
interface OrderedQueue {
  /** 0 once a gap was seen: every later call of the stream is refused (the caller starts another). */
  next: number;
  tail: Promise<unknown>;
  lastUsed: number;
}

/** Told of every answered call: the method, `OK` or the error's code, and the handler's time in seconds. For metrics. */
export type HandledObserver = (method: string, code: string, seconds: number) => void;

export interface ServiceInstanceOptions {
  id?: string;
  weight?: number;
  /** Largest answer sent (its JSON, in bytes): `services.maxReplyBytes`. */
  maxReplyBytes?: number;
}

/** `services.maxReplyBytes`'s default, for hosts built without a configuration. */
const DEFAULT_MAX_REPLY_BYTES = 256 * 1024;

/**
 * One running instance of a service definition: it answers calls on its own
 * subject (validating the envelope, the caller's access and the arguments
 * before any handler runs), runs each client's ordered calls one at a time in
 * sequence order, bounds every handler by the call's deadline, and registers
 * itself (with its load) in discovery.
 */
export class ServiceInstanceHost {
  readonly id: string;
  private readonly incarnation = randomUUID().slice(0, 8);
  private inFlight = 0;
  private readonly ordered = new Map<string, OrderedQueue>();
  private readonly subscriptions: Subscription[] = [];
  private registration?: ServiceRegistration;
  private sweepTimer?: NodeJS.Timeout;
  private readonly batches: BatchAnswers;
  observer?: HandledObserver;

  constructor(
    readonly definition: ServiceDefinition,
    private readonly bus: Bus,
    private readonly discovery: ServiceDiscovery,
    readonly caller: ServiceCaller,
    private readonly logger: Logger,
    private readonly options: ServiceInstanceOptions = {},
  ) {
    this.id = options.id ?? `${definition.name}-${randomUUID().slice(0, 12)}`;
    this.batches = new BatchAnswers(bus, this.maxReplyBytes);
  }

  private get maxReplyBytes(): number {
    return this.options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
  }

  /** What a probe learns: alive, which methods run ordered, and which route by hash on an argument. */
  private get probeAnswer(): ProbeAnswer {
    const methods = Object.entries(this.definition.methods);
    return {
      id: this.id,
      ordered: methods.filter(([, method]) => method.ordered).map(([name]) => name),
      hashKeys: methods.filter(([, method]) => method.hashKey !== undefined).map(([name, method]) => [name, method.hashKey!]),
    };
  }

  get subject(): string {
    return serviceSubjects.instance(this.definition.name, this.id);
  }

  start(): void {
    this.subscriptions.push(
      // Single calls: probes (and callers that do not batch).
      this.bus.respond(this.subject, async (payload) => (await this.onCall(payload)).result),
      this.bus.respond(serviceSubjects.instanceBatch(this.definition.name, this.id), (payload) => this.onBatch(payload)),
      this.bus.subscribe(serviceSubjects.instanceSend(this.definition.name, this.id), (payload) => {
        // Nobody waits for a sent call's answer; its failure is in the metrics and, for a handler's, the log.
        this.onCall(payload).catch(() => undefined);
      }),
    );
    this.registration = this.discovery.register(() => ({
      id: this.id,
      incarnation: this.incarnation,
      service: this.definition.name,
      version: this.definition.version,
      subject: this.subject,
      inFlight: this.inFlight,
      weight: this.options.weight ?? 1,
    }));
    this.sweepTimer = setInterval(() => {
      const idle = Date.now() - ORDERED_STREAM_IDLE_MS;
      for (const [id, queue] of this.ordered) if (queue.lastUsed < idle) this.ordered.delete(id);
    }, ORDERED_STREAM_IDLE_MS / 2);
    this.sweepTimer.unref();
  }

  /**
   * Leaves every view, goes on answering for `graceMs` (calls sent before the callers heard it left), then stops
   * taking calls; those it took still answer (the bus's close lets them finish).
   */
  async stop(graceMs = 300): Promise<void> {
    clearInterval(this.sweepTimer);
    await this.registration?.withdraw();
    if (graceMs > 0) await new Promise((resolve) => setTimeout(resolve, graceMs));
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
  }

  /** Calls running now (what heartbeats announce). */
  get load(): number {
    return this.inFlight;
  }

  /** A batch's calls, each run and answered as a single call would be; the envelope refused as a whole if malformed. */
  private onBatch(payload: unknown): Promise<BatchEntry[]> {
    const parsed = serviceCallBatchSchema.safeParse(payload);
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', `malformed service call batch: ${describeIssues(parsed.error.issues)}`);
    const { k, r, ids = [], b } = parsed.data;
    return this.batches.run(k, r, b, (call) => this.answer(call, ids));
  }

  /** One batched call's reply, as the bus would have sent it for a single call; unknown errors are logged, not leaked. */
  private answer(payload: unknown, ids: CallerIdentity[]): Promise<SizedReply> {
    const call = batchedCall(payload, ids);
    return (call instanceof AppError ? Promise.reject(call) : this.runCall(call)).then(
      ({ result, bytes }) => ({ reply: { ok: true, data: result ?? null }, bytes }),
      (err: unknown) => {
        if (!isAppError(err)) this.logger.error({ err }, 'service call failed');
        const failure = isAppError(err) ? err : new AppError('INTERNAL');
        return { reply: errorReply(failure), bytes: failure.message.length * 3 + 128 };
      },
    );
  }

  /** A single call (not batched): its envelope checked, then run. */
  private onCall(payload: unknown): Promise<{ result: unknown; bytes: number }> {
    const parsed = serviceCallSchema.safeParse(payload);
    if (!parsed.success) return Promise.reject(malformedCall(describeIssues(parsed.error.issues)));
    return this.runCall(parsed.data as ServiceCall);
  }

  /** Runs one call: its result and the estimated size of its answer in bytes. */
  private async runCall(call: ServiceCall): Promise<{ result: unknown; bytes: number }> {
    if (call.m === PROBE_METHOD) return { result: this.probeAnswer, bytes: 1024 };
    const started = performance.now();
    try {
      const result = await this.dispatch(call);
      const bytes = this.checkReply(call.m, result);
      this.observer?.(call.m, 'OK', (performance.now() - started) / 1000);
      return { result, bytes };
    } catch (err) {
      this.observer?.(call.m, isAppError(err) ? err.code : 'INTERNAL', (performance.now() - started) / 1000);
      throw err;
    }
  }

  /**
   * Refuses an answer past `maxReplyBytes`, or one that is not JSON, with a code the caller understands. Sent, a too
   * large answer would pass the bus's own message bound and be lost: the caller would wait out the call and then take
   * this instance for lost. One serialisation; bytes are counted only near the bound. Returns the answer's size, exact
   * or over-estimated, to keep batched answers within the bound too.
   */
  private checkReply(method: string, value: unknown): number {
    if (value === null || value === undefined || (typeof value !== 'object' && typeof value !== 'string')) return 32;
    const max = this.maxReplyBytes;
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      this.logger.error({ err, method }, 'service handler answered something that is not JSON');
      throw new AppError('INTERNAL');
    }
    if (text === undefined) return 32;
    if (text.length * 3 <= max) return text.length * 3;
    const bytes = Buffer.byteLength(text);
    if (bytes <= max) return bytes;
    this.logger.warn({ method, bytes, max }, 'service handler answered more than services.maxReplyBytes: refused');
    throw new AppError('SERVICE_REPLY_TOO_LARGE', `${this.definition.name}.${method} answered ${bytes} bytes; services.maxReplyBytes is ${max}`);
  }

  private dispatch(call: ServiceCall): Promise<unknown> {
    const method = Object.hasOwn(this.definition.methods, call.m) ? this.definition.methods[call.m] : undefined;
    if (!method) throw new AppError('SERVICE_METHOD_NOT_FOUND', `"${this.definition.name}" has no method "${call.m}"`);
    if (method.access === 'internal' && call.c.kind === 'client') {
      throw new AppError('SERVICE_ACCESS_DENIED', `"${this.definition.name}.${call.m}" is internal`);
    }
    const input = method.input.safeParse(call.a);
    if (!input.success) throw new AppError('SERVICE_INVALID_ARGS', `${this.definition.name}.${call.m}: ${describeIssues(input.error.issues)}`);
    // Stickiness is the caller's: it learns from this refusal (before anything ran) to send this method ordered.
    if (method.ordered && call.s === undefined) throw new AppError('SERVICE_CALL_MUST_BE_ORDERED', `${this.definition.name}.${call.m} runs ordered`);
    const deadline = Date.now() + Math.min(call.t, method.timeoutMs ?? call.t);
    if (call.s === undefined) return this.run(method, call, input.data, deadline);
    return this.runOrdered(method, call, input.data, deadline);
  }

  /** Runs in sequence order after the stream's previous call; a gap or an unknown stream not starting at 1 is refused. */
  private runOrdered(method: MethodDefinition, call: ServiceCall, args: unknown, deadline: number): Promise<unknown> {
    const streamId = call.s!;
    let queue = this.ordered.get(streamId);
    if (!queue) {
      if (call.n !== 1) throw new AppError('SERVICE_ORDER_RESET', `ordered call ${call.n} of a stream this instance does not know`);
      queue = { next: 1, tail: Promise.resolve(), lastUsed: 0 };
      this.ordered.set(streamId, queue);
    }
    if (call.n !== queue.next) {
      const expected = queue.next;
      queue.next = 0;
      throw new AppError('SERVICE_ORDER_RESET', expected === 0 ? 'this ordered stream was cut' : `ordered call ${call.n} arrived where ${expected} was due`);
    }
    queue.next++;
    queue.lastUsed = Date.now();
    // A call past its deadline no longer holds the stream up: the next one runs once this one was answered, even by a timeout.
    const answer = queue.tail.then(() => this.run(method, call, args, deadline));
    queue.tail = answer.catch(() => undefined);
    return answer;
  }

  /** Runs the handler within the deadline: its answer, its AppError, INTERNAL for anything else (logged here, never sent). */
  private run(method: MethodDefinition, call: ServiceCall, args: unknown, deadline: number): Promise<unknown> {
    const remaining = deadline - Date.now();
    const name = `${this.definition.name}.${call.m}`;
    if (remaining <= 0) return Promise.reject(new AppError('SERVICE_TIMEOUT', `${name} waited past its deadline behind earlier ordered calls`));
    this.inFlight++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new AppError('SERVICE_TIMEOUT', `${name} did not answer within ${Math.round(remaining)} ms`)), remaining);
      new Promise((r) => r(method.handler(args, new CallContext(this, call.c)))).then(
        (value) => {
          this.inFlight--;
          clearTimeout(timer);
          resolve(value ?? null);
        },
        (err: unknown) => {
          this.inFlight--;
          clearTimeout(timer);
          if (isAppError(err)) reject(err);
          else {
            this.logger.error({ err, method: call.m, user: call.c.user, tenant: call.c.tenant }, 'service handler failed');
            reject(new AppError('INTERNAL'));
          }
        },
      );
    });
  }

  /** The identity this instance's own calls carry: the same tenant and user, as this service. */
  identityFor(caller: CallerIdentity): CallerIdentity {
    return { tenant: caller.tenant, user: caller.user, connection: this.id, kind: 'service', service: this.definition.name };
  }

  pushFor(caller: CallerIdentity, users: string[], data: unknown, options: PushOptions): Promise<PushSendResult> {
    return this.bus.request<PushSendResult>(
      pushSubjects.send,
      { serviceId: caller.tenant, users, data, safe: options.safe ?? false, ...(options.ttlSec !== undefined && { ttlSec: options.ttlSec }) },
      { timeoutMs: PUSH_TIMEOUT_MS },
    );
  }

  get log(): Logger {
    return this.logger;
  }
}

/** A call whose envelope is refused: VALIDATION_FAILED, saying why. */
function malformedCall(why: string): AppError {
  return new AppError('VALIDATION_FAILED', `malformed service call: ${why}`);
}

/** A batch's call with its caller in place of the index, or why it is refused (alone: the batch's other calls still run). */
function batchedCall(payload: unknown, ids: CallerIdentity[]): ServiceCall | AppError {
  const parsed = batchedCallSchema.safeParse(payload);
  if (!parsed.success) return malformedCall(describeIssues(parsed.error.issues));
  const { c } = parsed.data;
  if (typeof c !== 'number') return parsed.data as ServiceCall;
  const caller = ids[c];
  if (!caller) return malformedCall(`caller ${c} is not in the batch`);
  return { ...parsed.data, c: caller } as ServiceCall;
}

/** A handler's `ctx`: one small object per call, its methods shared on the prototype. */
class CallContext implements ServiceContext {
  constructor(
    private readonly host: ServiceInstanceHost,
    readonly caller: CallerIdentity,
  ) {}

  get logger(): Logger {
    return this.host.log;
  }

  get instance(): string {
    return this.host.id;
  }

  call<T>(service: string, method: string, args?: unknown, options?: CallOptions): Promise<T> {
    return this.host.caller.call(service, method, args, this.host.identityFor(this.caller), options) as Promise<T>;
  }

  send(service: string, method: string, args?: unknown, options?: Omit<CallOptions, 'ordered'>): void {
    this.host.caller.send(service, method, args, this.host.identityFor(this.caller), options);
  }

  push(users: string[], data: unknown, options: PushOptions = {}): Promise<PushSendResult> {
    return this.host.pushFor(this.caller, users, data, options);
  }
}
