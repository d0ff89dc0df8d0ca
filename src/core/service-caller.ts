import { randomBytes } from 'node:crypto';
import type { Bus } from './bus/bus.js';
import { AppError, isAppError } from './errors.js';
import type { Logger } from './logger.js';
import { CallBatcher } from './service-batcher.js';
import type { ServiceDiscovery, ServiceInstance, ServiceRemovalReason } from './service-discovery.js';
import { type CallerIdentity, MAX_CALL_TIMEOUT_MS, PROBE_METHOD, type ServiceCall, probeAnswerSchema, serviceSubjects } from './service-protocol.js';
import { InstanceState, ServiceRoute, type Strategy } from './service-routes.js';

export interface CallOptions {
  /** Default: `services.defaultTimeoutMs` (a method's own `timeoutMs` may cut it shorter at the instance). */
  timeoutMs?: number;
  /** Default: `strategies[service]`, else `defaultStrategy`. */
  strategy?: Strategy;
  /** For `hash`: the same key reaches the same instance while the set of instances stays (default: tenant and user). */
  key?: string;
  /** Sticky to one instance per client and service, run there one at a time in call order. */
  ordered?: boolean;
}

export interface ServiceCallerOptions {
  defaultTimeoutMs: number;
  maxPayloadBytes: number;
  defaultStrategy: Strategy;
  strategies: Record<string, Strategy>;
  /** How often instances that stopped answering are probed. */
  probeMs: number;
  /** How long a batch may wait to grow for an instance that has not answered the previous one (`services.batchHoldMs`). */
  batchHoldMs?: number;
}

/** Told of every awaited call's end: `code` is `OK` or the error's code. For metrics. */
export type CallObserver = (service: string, method: string, code: string, seconds: number) => void;

/** One client's ordered calls to one service: the instance they stick to, and their sequence. */
interface OrderedStream {
  id: string;
  state: InstanceState;
  nextSeq: number;
  inFlight: number;
  /** Its instance was lost: the next call waits for the calls still settling, then starts a new stream. */
  broken: boolean;
  /** Resolved when a broken stream's last call settled. */
  settled?: { promise: Promise<void>; resolve(): void };
  lastUsed: number;
}

/** Where a call goes: the strategy, its hash key, and whether that key was named (by the call or the method). */
interface Routing {
  strategy: Strategy;
  key: string;
  keyed: boolean;
}

/** The most a call waits for a service new to this caller to be described (its instances' probes). */
const DESCRIBE_WAIT_MS = 2000;

/** Streams unused this long are forgotten (instances forget theirs later: `ORDERED_STREAM_IDLE_MS` there is longer). */
const STREAM_IDLE_MS = 30_000;

/**
 * Calls business services: the core caller the gateway and services share.
 * It keeps the view of instances from discovery, picks one per call by
 * strategy, sends the call on that instance's own subject with a deadline, and
 * turns every failure into a stable code. An instance that stops answering
 * (timeouts, no responders) is out of this caller's picks until a probe is
 * answered, even while its registration lingers; one that discovery drops fails
 * this caller's calls waiting there at once (SERVICE_INSTANCE_LOST).
 */
export class ServiceCaller {
  private readonly routes = new Map<string, ServiceRoute>();
  private readonly states = new Map<string, InstanceState>();
  private readonly streams = new Map<string, OrderedStream>();
  private readonly streamPrefix = randomBytes(6).toString('base64url');
  private streamCounter = 0;
  /** Carries the calls: one bus request per instance per turn of the event loop. */
  private readonly batcher: CallBatcher;
  /** Methods their service declares ordered, learned from its first refusal of an unordered call. */
  private readonly orderedMethods = new Set<string>();
  private probeTimer?: NodeJS.Timeout;
  private readonly listeners: { [K in 'added' | 'updated' | 'removed']: (...args: any[]) => void };
  observer?: CallObserver;

  constructor(
    private readonly bus: Bus,
    private readonly discovery: ServiceDiscovery,
    private readonly logger: Logger,
    private readonly options: ServiceCallerOptions,
  ) {
    this.batcher = new CallBatcher(bus, logger, this.streamPrefix, options.maxPayloadBytes, options.batchHoldMs ?? 1);
    this.listeners = {
      added: (instance: ServiceInstance) => this.onAdded(instance),
      updated: (instance: ServiceInstance) => {
        const state = this.states.get(instance.id);
        if (state) state.instance = instance;
        else this.onAdded(instance);
      },
      removed: (instance: ServiceInstance, reason: ServiceRemovalReason) => this.onRemoved(instance, reason),
    };
  }

  start(): void {
    this.batcher.start();
    for (const [event, listener] of Object.entries(this.listeners)) this.discovery.on(event as 'added', listener);
    for (const service of this.discovery.services()) for (const instance of this.discovery.instances(service)) this.onAdded(instance);
    this.probeTimer = setInterval(() => this.probe(), this.options.probeMs);
    this.probeTimer.unref();
  }

  close(): void {
    for (const [event, listener] of Object.entries(this.listeners)) this.discovery.off(event as 'added', listener);
    clearInterval(this.probeTimer);
    for (const state of this.states.values()) this.failPending(state, new AppError('SERVICE_UNAVAILABLE', 'the caller closed'));
    this.batcher.close();
  }

  /** Instances this caller may pick now, by service (for `/status`). */
  describe(): Record<string, { instances: number; answering: number }> {
    const out: Record<string, { instances: number; answering: number }> = {};
    for (const [service, route] of this.routes) out[service] = { instances: route.all.length, answering: route.picks.length };
    return out;
  }

  /** An awaited call: the handler's answer, or an AppError with a stable code. */
  async call(service: string, method: string, args: unknown, caller: CallerIdentity, options: CallOptions = {}): Promise<unknown> {
    const started = performance.now();
    try {
      const result = await this.dispatch(service, method, args, caller, options);
      this.observer?.(service, method, 'OK', (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      const failure = isAppError(err) ? err : new AppError('INTERNAL');
      this.observer?.(service, method, failure.code, (performance.now() - started) / 1000);
      throw failure;
    }
  }

  /** Fire-and-forget (`ctx.send`): routed the same way, nobody waits for the answer. Throws only what is known before sending. */
  send(service: string, method: string, args: unknown, caller: CallerIdentity, options: Omit<CallOptions, 'ordered'> = {}): void {
    this.checkSize(args);
    const route = this.routeOf(service);
    const { strategy, key } = this.routing(route, service, method, args, caller, options);
    const state = route.pick(strategy, key);
    if (!state) throw new AppError('SERVICE_UNAVAILABLE');
    const call: ServiceCall = { m: method, a: args, c: caller, t: Math.min(options.timeoutMs ?? this.options.defaultTimeoutMs, MAX_CALL_TIMEOUT_MS), f: 1 };
    this.bus.publish(serviceSubjects.instanceSend(service, state.id), call);
  }

  /** A connection closed: the ordered streams of callers whose `connection` starts with `prefix` are forgotten. */
  forgetConnections(prefix: string): void {
    for (const key of this.streams.keys()) if (key.startsWith(prefix)) this.streams.delete(key);
  }

  private async dispatch(service: string, method: string, args: unknown, caller: CallerIdentity, options: CallOptions): Promise<unknown> {
    const bytes = this.checkSize(args);
    const timeoutMs = Math.min(options.timeoutMs ?? this.options.defaultTimeoutMs, MAX_CALL_TIMEOUT_MS);
    const call: ServiceCall = { m: method, a: args, c: caller, t: timeoutMs };
    const route = this.routeOf(service);
    // A service new to this caller: which methods run ordered is known once one instance answered its probe.
    if (!route.described) await route.whenDescribed(Math.min(timeoutMs, DESCRIBE_WAIT_MS));
    const routing = this.routing(route, service, method, args, caller, options);
    if (options.ordered || route.isOrdered(method) || this.orderedMethods.has(`${service}.${method}`)) return this.dispatchOrdered(service, call, bytes, routing);
    const { strategy, key } = routing;
    // No responders means the call reached nobody: another instance may take it.
    for (let attempt = 0; ; attempt++) {
      const state = route.pick(strategy, key);
      if (!state) throw new AppError('SERVICE_UNAVAILABLE', `no instance of "${service}" answers`);
      try {
        return await this.send1(service, state, call, bytes);
      } catch (err) {
        if (isAppError(err) && err.code === 'SERVICE_CALL_MUST_BE_ORDERED') {
          this.orderedMethods.add(`${service}.${method}`);
          return this.dispatchOrdered(service, call, bytes, routing);
        }
        if (!(isAppError(err) && err.code === 'BUS_NO_RESPONDERS') || attempt >= route.all.length) throw this.translate(err, service, state);
      }
    }
  }

  /**
   * Ordered calls: one stream per client and service, or per client, service and key when they route by an explicit
   * or declared hash key (ordered per key, on the key's instance). A keyed stream follows its key: when the ring
   * gives the key to another instance, the stream ends like one whose instance was lost (its calls in flight settle
   * first, so order holds) and the next call starts a stream at the key's new owner.
   */
  private async dispatchOrdered(service: string, call: ServiceCall, bytes: number, routing: Routing): Promise<unknown> {
    const key = `${call.c.connection}\u0000${call.c.tenant}\u0000${service}${routing.keyed ? `\u0000${routing.key}` : ''}`;
    let stream = this.streams.get(key);
    if (stream && !stream.broken && routing.keyed && this.routes.get(service)?.pick('hash', routing.key) !== stream.state) stream.broken = true;
    while (stream?.broken) {
      if (stream.inFlight > 0) {
        stream.settled ??= deferred();
        await stream.settled.promise;
      }
      if (this.streams.get(key) === stream) this.streams.delete(key);
      stream = this.streams.get(key);
    }
    if (!stream) {
      const route = this.routeOf(service);
      const state = route.pick(routing.strategy, routing.key);
      if (!state) throw new AppError('SERVICE_UNAVAILABLE', `no instance of "${service}" answers`);
      stream = { id: `${this.streamPrefix}.${++this.streamCounter}`, state, nextSeq: 1, inFlight: 0, broken: false, lastUsed: 0 };
      this.streams.set(key, stream);
    }
    call.s = stream.id;
    call.n = stream.nextSeq++;
    stream.inFlight++;
    stream.lastUsed = Date.now();
    try {
      return await this.send1(service, stream.state, call, bytes);
    } catch (err) {
      // Whatever went wrong with the instance or the sequence, this stream is over: the next call starts another.
      if (isAppError(err) && (err.code === 'SERVICE_ORDER_RESET' || err.code === 'SERVICE_INSTANCE_LOST' || err.code.startsWith('BUS_'))) {
        stream.broken = true;
      }
      const failure = this.translate(err, service, stream.state);
      if (stream.broken && failure.code !== 'SERVICE_ORDER_RESET') {
        throw AppError.fromRemote(failure.code, `${failure.message}; ordered calls restart on another instance`, failure.status);
      }
      throw failure;
    } finally {
      if (--stream.inFlight === 0 && stream.settled) stream.settled.resolve();
    }
  }

  /** One call to one instance (`bytes`: its arguments' estimated size), failed early if discovery drops the instance meanwhile. */
  private send1(service: string, state: InstanceState, call: ServiceCall, bytes: number): Promise<unknown> {
    state.own++;
    return new Promise((resolve, reject) => {
      const waiting = { fail: reject };
      state.pending.add(waiting);
      // The instance answers SERVICE_TIMEOUT at `t`; a bus timeout past that means the instance itself is stuck or gone.
      this.batcher.request(serviceSubjects.instanceBatch(service, state.id), call, bytes, call.t + graceMs(call.t)).then(
        (value) => {
          state.own--;
          state.pending.delete(waiting);
          resolve(value);
        },
        (err: unknown) => {
          state.own--;
          state.pending.delete(waiting);
          reject(err);
        },
      );
    });
  }

  private translate(err: unknown, service: string, state: InstanceState): AppError {
    if (!isAppError(err)) return new AppError('INTERNAL');
    if (err.code === 'BUS_TIMEOUT' || err.code === 'BUS_NO_RESPONDERS') {
      this.suspect(state);
      return err.code === 'BUS_TIMEOUT'
        ? new AppError('SERVICE_INSTANCE_LOST', `instance ${state.id} of "${service}" stopped answering`)
        : new AppError('SERVICE_INSTANCE_LOST', `instance ${state.id} of "${service}" is gone`);
    }
    return err;
  }

  private suspect(state: InstanceState): void {
    if (state.suspect) return;
    state.suspect = true;
    this.routes.get(state.instance.service)?.refresh();
    this.breakStreams(state);
    this.logger.warn({ instance: state.id, service: state.instance.service }, 'service instance stopped answering: out of the picks until it answers a probe');
  }

  /** Probes the instances that stopped answering, and those not yet described. */
  private probe(): void {
    for (const state of this.states.values()) if (state.suspect || !state.ordered) this.probeOne(state);
    const idle = Date.now() - STREAM_IDLE_MS;
    for (const [key, stream] of this.streams) if (stream.inFlight === 0 && stream.lastUsed < idle) this.streams.delete(key);
  }

  private probeOne(state: InstanceState): void {
    const call: ServiceCall = {
      m: PROBE_METHOD,
      c: { tenant: '$', user: '$', connection: this.streamPrefix, kind: 'service' },
      t: this.options.probeMs,
      a: undefined,
    };
    this.bus.request(serviceSubjects.instance(state.instance.service, state.id), call, { timeoutMs: this.options.probeMs }).then(
      (answer) => {
        if (this.states.get(state.id) !== state) return;
        const parsed = probeAnswerSchema.safeParse(answer);
        if (!parsed.success) return;
        const route = this.routes.get(state.instance.service);
        state.ordered = new Set(parsed.data.ordered);
        state.hashKeys = new Map(parsed.data.hashKeys ?? []);
        route?.learned();
        if (!state.suspect) return;
        state.suspect = false;
        route?.refresh();
        this.logger.info({ instance: state.id }, 'service instance answers again');
      },
      () => undefined,
    );
  }

  private onAdded(instance: ServiceInstance): void {
    if (this.states.has(instance.id)) return;
    const state = new InstanceState(instance);
    this.states.set(instance.id, state);
    let route = this.routes.get(instance.service);
    if (!route) this.routes.set(instance.service, (route = new ServiceRoute()));
    route.add(state);
    this.probeOne(state);
  }

  private onRemoved(instance: ServiceInstance, reason: ServiceRemovalReason): void {
    const state = this.states.get(instance.id);
    if (!state) return;
    this.states.delete(instance.id);
    const route = this.routes.get(instance.service);
    route?.remove(state);
    if (route && route.all.length === 0) this.routes.delete(instance.service);
    this.breakStreams(state);
    // A clean stop still answers what it took (its bus drains); a silent or restarted one never will.
    if (reason !== 'down') this.failPending(state, new AppError('SERVICE_INSTANCE_LOST', `instance ${instance.id} of "${instance.service}" was lost (${reason})`));
  }

  private breakStreams(state: InstanceState): void {
    for (const stream of this.streams.values()) if (stream.state === state) stream.broken = true;
  }

  private failPending(state: InstanceState, err: AppError): void {
    for (const waiting of state.pending) waiting.fail(err);
    state.pending.clear();
  }

  private routeOf(service: string): ServiceRoute {
    const route = this.routes.get(service);
    if (!route) throw new AppError('SERVICE_NOT_RUNNING', `no instance of "${service}" is running`);
    return route;
  }

  /**
   * How a call is routed: by hash on the method's declared argument when the service declares one (its instances
   * keep state by it, so it wins over the call's own choice), else by the call's or the service's strategy.
   * `keyed`: routed by a hash key the call or the method named (ordered calls then stream per key).
   */
  private routing(route: ServiceRoute, service: string, method: string, args: unknown, caller: CallerIdentity, options: CallOptions): Routing {
    const arg = route.hashKeyOf(method);
    if (arg !== undefined && typeof args === 'object' && args !== null && Object.hasOwn(args, arg)) {
      const value = (args as Record<string, unknown>)[arg];
      // The tenant's own values: two tenants' rooms of one name are two keys.
      if (typeof value === 'string' || typeof value === 'number') return { strategy: 'hash', key: `${caller.tenant}\u0000${value}`, keyed: true };
    }
    const strategy = options.strategy ?? this.strategyOf(service);
    return { strategy, key: options.key ?? `${caller.tenant}/${caller.user}`, keyed: strategy === 'hash' && options.key !== undefined };
  }

  private strategyOf(service: string): Strategy {
    return this.options.strategies[service] ?? this.options.defaultStrategy;
  }

  /**
   * Arguments past `maxPayloadBytes` are refused before anything is sent (one serialisation; bytes counted only near
   * the bound). Returns their size, exact or over-estimated, to keep batches within the bound too.
   */
  private checkSize(args: unknown): number {
    if (args === undefined || args === null || (typeof args !== 'object' && typeof args !== 'string')) return 32;
    const max = this.options.maxPayloadBytes;
    const text = JSON.stringify(args);
    if (text.length * 3 <= max) return text.length * 3;
    const bytes = text.length > max ? text.length : Buffer.byteLength(text);
    if (bytes > max) throw new AppError('SERVICE_PAYLOAD_TOO_LARGE', `the arguments are larger than ${max} bytes`);
    return bytes;
  }
}

/** How long past the call's own deadline the caller waits for the instance's SERVICE_TIMEOUT before it calls the instance lost. */
function graceMs(timeoutMs: number): number {
  return Math.min(2000, 250 + Math.floor(timeoutMs / 20));
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
