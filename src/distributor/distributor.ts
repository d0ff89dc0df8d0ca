import { randomUUID } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { z } from 'zod';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { AppError, describeIssues, isAppError } from '../core/errors.js';
import { type GroupCall, type GroupCallsResult, groupCallsSubjects } from '../core/group-calls-protocol.js';
import type { HashRing } from '../core/hash-ring.js';
import { HeartbeatPublisher } from '../core/heartbeat-publisher.js';
import type { HeartbeatTable } from '../core/heartbeat-table.js';
import type { Logger } from '../core/logger.js';
import { NUVE_QUEUE } from '../core/subjects.js';
import {
  type DistributorHeartbeat,
  type OnlineBatchResult,
  type OnlineEvent,
  type OwnerQueryResult,
  distributorTable,
  onlineBatchSchema,
  onlineSubjects,
  ownerQuerySchema,
  ringKey,
  ringOf,
} from '../core/online-events.js';
import { OpsAuth } from '../core/ops-auth.js';
import { type OpsServer, startOpsServer } from '../core/ops-routes.js';
import { type PushSendResult, pushSubjects } from '../core/push-protocol.js';
import { groupCallsNotification, groupCallsResultSchema } from './notification.js';
import { RecentIds } from './recent-ids.js';

/** What became of one online event. */
export type Outcome = 'notified' | 'unreached' | 'no_groups' | 'no_calls' | 'ended' | 'failed';

const LOOKUP_TIMEOUT_MS = 2000;
const PUSH_TIMEOUT_MS = 5000;

interface Metrics {
  events: Counter<'outcome'>;
  duplicates: Counter;
  lag: Histogram;
}

/**
 * One online-push distributor. It announces itself (id, weight) on the bus,
 * keeps the ring of the live distributors (itself included) as every sender
 * does, and handles the online events sent to it: asks Nuve for the calls
 * going on in the user's groups and, if there are any, pushes the user one
 * notification listing them, under the event's id (the push's idempotency
 * key), so every copy is the same message. An event is acknowledged only once
 * handled, so a distributor that dies loses none: its senders send them
 * again to the next owner.
 */
export class Distributor {
  private readonly incarnation = randomUUID();
  private state: DistributorHeartbeat['state'] = 'available';
  readonly table: HeartbeatTable<DistributorHeartbeat>;
  private ringValue!: HashRing;
  private readonly publisher: HeartbeatPublisher;
  private readonly recent: RecentIds;
  private readonly subscriptions: Subscription[] = [];
  /** Events being handled now, and those waiting for a slot (`concurrency`). */
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private idle?: () => void;
  private metrics?: Metrics;
  private metricsRegistry?: Registry;
  private probeServer?: OpsServer;
  /** Since when events fail for want of Nuve or push (undefined: they do not), so an outage is logged once. */
  private failingSince?: number;

  constructor(
    private readonly config: Config,
    private readonly bus: Bus,
    private readonly logger: Logger,
  ) {
    const own = config.distributor;
    this.recent = new RecentIds(own.dedupeSize);
    this.table = distributorTable(bus, logger, own.timeoutMs);
    this.publisher = new HeartbeatPublisher(bus, {
      heartbeat: onlineSubjects.heartbeat,
      down: onlineSubjects.down,
      hello: onlineSubjects.hello,
      id: own.id,
      intervalMs: own.heartbeatMs,
      payload: () => this.heartbeat(),
    });
    this.rebuild();
    for (const change of ['added', 'updated', 'removed'] as const) this.table.on(change, () => this.rebuild());
  }

  get id(): string {
    return this.config.distributor.id;
  }

  get weight(): number {
    return this.config.distributor.weight;
  }

  /** The ring as this distributor sees it (the same every sender computes from the same heartbeats). */
  get ring(): HashRing {
    return this.ringValue;
  }

  registerMetrics(registry: Registry): void {
    const registers = [registry];
    this.metricsRegistry = registry;
    this.metrics = {
      events: new Counter({
        name: 'mss_distributor_events_total',
        help: 'Online events handled, by outcome (notified, unreached: pushed but the user had no session, no_groups, no_calls, ended: the calls ended before the push, failed)',
        labelNames: ['outcome'],
        registers,
      }),
      duplicates: new Counter({ name: 'mss_distributor_duplicates_total', help: 'Copies of online events already handled (or being handled), dropped', registers }),
      lag: new Histogram({
        name: 'mss_distributor_lag_seconds',
        help: 'From the user coming online to its event handled (push sent)',
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers,
      }),
    };
    for (const outcome of ['notified', 'unreached', 'no_groups', 'no_calls', 'ended', 'failed']) this.metrics.events.inc({ outcome }, 0);
    const distributor = this;
    new Gauge({
      name: 'mss_distributor_owned_share',
      help: "This distributor's share of the users on the ring (0 while draining), labelled with its id",
      labelNames: ['distributor'],
      registers,
      collect() {
        this.set({ distributor: distributor.id }, distributor.ring.shares().get(distributor.id) ?? 0);
      },
    });
    new Gauge({
      name: 'mss_distributor_ring_version',
      help: "The ring's version (a 32-bit digest of its members and weights): equal on every process that sees the same ring",
      registers,
      collect() {
        this.set(Number.parseInt(distributor.ring.version, 16));
      },
    });
    new Gauge({
      name: 'mss_distributor_ring_members',
      help: 'Distributors on the ring',
      registers,
      collect() {
        this.set(distributor.ring.members.length);
      },
    });
    new Gauge({
      name: 'mss_distributor_in_flight',
      help: 'Online events being handled or waiting for a slot',
      registers,
      collect() {
        this.set(distributor.inFlight + distributor.waiting.length);
      },
    });
  }

  async start(): Promise<void> {
    this.subscriptions.push(
      this.bus.respond(onlineSubjects.online(this.id), (payload) => this.onBatch(payload)),
      this.bus.respond(onlineSubjects.owner(this.id), (payload) => this.owners(payload)),
    );
    this.table.start();
    this.publisher.start();
    const port = this.config.distributor.healthPort;
    if (port !== undefined) await this.startProbes(port);
  }

  /** Leaves every ring (senders send it nothing new) and resolves once the events in hand are handled. */
  drain(): Promise<void> {
    if (this.state !== 'draining') {
      this.state = 'draining';
      this.publisher.beat();
      this.rebuild();
      this.logger.info({ inFlight: this.inFlight + this.waiting.length }, 'distributor draining');
    }
    return this.settled();
  }

  /** Says down (its users go to the others at once), finishes the events in hand, then stops answering. */
  async close(): Promise<void> {
    this.publisher.stop();
    await this.settled();
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    this.table.stop();
    await this.probeServer?.close();
  }

  private settled(): Promise<void> {
    if (this.inFlight === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.idle;
      this.idle = () => {
        previous?.();
        resolve();
      };
    });
  }

  private heartbeat(): DistributorHeartbeat {
    return { id: this.id, incarnation: this.incarnation, weight: this.config.distributor.weight, state: this.state };
  }

  /** The live distributors' ring; this one as it is now (its own heartbeat may not have come back yet). */
  private rebuild(): void {
    const others = this.table.list().filter((m) => m.id !== this.id);
    this.ringValue = ringOf([...others, this.heartbeat()]);
  }

  private async onBatch(payload: unknown): Promise<OnlineBatchResult> {
    const { events } = parse(onlineBatchSchema, payload);
    const acked: string[] = [];
    await Promise.all(
      events.map(async (event) => {
        const known = this.recent.get(event.id);
        if (known !== undefined) {
          this.metrics?.duplicates.inc();
          // Being handled: the copy is acknowledged when (and if) the first is.
          if (known !== true && !(await known.then(() => true, () => false))) return;
          acked.push(event.id);
          return;
        }
        const work = this.handleInTurn(event);
        this.recent.track(event.id, work);
        try {
          await work;
          acked.push(event.id);
          this.failingSince = undefined;
        } catch (err) {
          // Not acknowledged: the sender sends it again (here or to the next owner). Said once per outage.
          if (this.failingSince === undefined) {
            this.failingSince = Date.now();
            this.logger.warn({ err, event: event.id }, 'online events not handled (Nuve or push does not answer); their senders retry');
          } else this.logger.debug({ err, event: event.id }, 'online event not handled');
        }
      }),
    );
    return { acked };
  }

  /** Runs `handle` within the concurrency bound. */
  private async handleInTurn(event: OnlineEvent): Promise<void> {
    if (this.inFlight >= this.config.distributor.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.inFlight++;
    try {
      const outcome = await this.handle(event);
      this.metrics?.events.inc({ outcome });
      this.metrics?.lag.observe(Math.max(0, Date.now() - event.at) / 1000);
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes on
      else this.inFlight--;
      if (this.inFlight === 0 && this.waiting.length === 0) {
        const idle = this.idle;
        this.idle = undefined;
        idle?.();
      }
    }
  }

  /**
   * One event: the calls in the user's groups, then one push listing them. Fails (for the sender to
   * retry) only when Nuve or the push role does not answer; a refusal is final (`failed`).
   */
  async handle(event: OnlineEvent): Promise<Outcome> {
    const own = this.config.distributor;
    try {
      const found = await this.callsOf(event);
      if (found.groups === 0) return 'no_groups';
      if (found.calls.length === 0) return 'no_calls';
      let calls: GroupCall[] = found.calls;
      let asOf = Date.now();
      if (own.recheckCalls) {
        // Just before the push: a call that ended since the lookup is not announced (see docs/ARCHITECTURE.md).
        const again = await this.callsOf(event);
        asOf = Date.now();
        calls = again.calls;
        if (calls.length === 0) return 'ended';
      }
      const data = groupCallsNotification(event, calls, asOf, own.maxPayloadBytes);
      const safe = own.push === 'safe';
      const result = await this.bus.request<PushSendResult>(
        pushSubjects.send,
        {
          serviceId: event.serviceId,
          users: [event.userName],
          data,
          safe,
          ...(safe && { ttlSec: own.safeTtlSec }),
          messageId: event.id,
        },
        { timeoutMs: PUSH_TIMEOUT_MS },
      );
      return result.offline.length > 0 ? 'unreached' : 'notified';
    } catch (err) {
      if (isTransient(err)) throw err;
      this.logger.warn({ err, event: event.id, user: event.userName }, 'online event refused; not retried');
      return 'failed';
    }
  }

  private async callsOf(event: OnlineEvent): Promise<GroupCallsResult> {
    const answer = await this.bus.request(
      groupCallsSubjects.forUser,
      { serviceId: event.serviceId, userName: event.userName },
      { timeoutMs: LOOKUP_TIMEOUT_MS },
    );
    const parsed = groupCallsResultSchema.safeParse(answer);
    if (!parsed.success) throw new AppError('VALIDATION_FAILED', `nuve.groups.calls answered ${describeIssues(parsed.error.issues)}`);
    return parsed.data;
  }

  /** Debug and tests: which distributor this one's ring names for each user, and the ring's version. */
  private owners(payload: unknown): OwnerQueryResult {
    const { users } = parse(ownerQuerySchema, payload);
    const ring = this.ringValue;
    return { version: ring.version, owners: users.map((u) => ring.lookup(ringKey(u.serviceId, u.userName)) ?? null) };
  }

  /** /health, /ready (false once draining); /metrics and /drain with the ops token. */
  private async startProbes(port: number): Promise<void> {
    this.probeServer = await startOpsServer(port, this.logger, {
      auth: new OpsAuth(this.config.ops),
      ready: () => this.state === 'available',
      drain: () => void this.drain(),
      remaining: () => ({ events: this.inFlight + this.waiting.length }),
      metrics: () => this.metricsRegistry,
    });
  }

  /** Where the probe server listens (healthPort 0 picks a free port). */
  get healthPort(): number | undefined {
    return this.probeServer?.port;
  }
}

/** Nobody answered, or the other side is unavailable for now: worth sending again. */
function isTransient(err: unknown): boolean {
  if (!isAppError(err)) return true;
  return err.code === 'BUS_TIMEOUT' || err.code === 'BUS_NO_RESPONDERS' || err.status >= 500;
}

function parse<T>(schema: z.ZodType<T>, payload: unknown): T {
  const parsed = schema.safeParse(payload);
  if (!parsed.success) throw new AppError('VALIDATION_FAILED', describeIssues(parsed.error.issues));
  return parsed.data;
}
