import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Counter, Gauge, type Registry } from 'prom-client';
import { z } from 'zod';
import type { Bus } from './bus/bus.js';
import type { Config } from './config.js';
import { isAppError } from './errors.js';
import { HashRing } from './hash-ring.js';
import { HeartbeatTable } from './heartbeat-table.js';
import type { Logger } from './logger.js';

/**
 * Online events: "this user of this tenant just came online", from a gateway
 * (a push session admitted) or from an app through Nuve (`POST /online`).
 * Each goes to the one distributor owning its user on the consistent-hash
 * ring of the live distributors, and is sent again until an owner
 * acknowledges it after handling it. Gateways, Nuve and the distributors
 * share only this file.
 */
export const onlineSubjects = {
  /** distributor → every sender and distributor (publish): alive, its weight and state. */
  heartbeat: 'distributor.heartbeat',
  /** distributor → all (publish): a clean stop, forget me now. */
  down: 'distributor.down',
  /** sender or distributor → distributors (publish): announce yourselves now. */
  hello: 'distributor.hello',
  /** sender → the owning distributor (request): a batch of events; the reply names those handled. */
  online: (distributorId: string) => `distributor.${distributorId}.online`,
  /** anyone → one distributor (request): its ring's version and the owner of each key given (checks that every process agrees). */
  owner: (distributorId: string) => `distributor.${distributorId}.owner`,
} as const;

/** Distributor ids are bus subject tokens. */
export const distributorIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, - and _, at most 64');

export const distributorHeartbeatSchema = z
  .object({
    id: distributorIdSchema,
    /** Fresh per process: a restart under the same id counts as the old one gone. */
    incarnation: z.string().min(1).max(64),
    weight: z.number().positive().max(1000),
    /** A draining distributor leaves the ring (it still answers what reaches it). */
    state: z.enum(['available', 'draining']),
  })
  .strict();
export type DistributorHeartbeat = z.infer<typeof distributorHeartbeatSchema>;

const serviceId = z.string().min(1).max(64);
/** As Nuve stores user names: printable, at most 256 long. */
export const onlineUserSchema = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters');

export const onlineEventSchema = z
  .object({
    /** Unique per event; a copy sent again (its acknowledgement lost, or two views of the ring) carries the same. */
    id: z.string().uuid(),
    serviceId,
    userName: onlineUserSchema,
    /** Epoch ms when the user came online. */
    at: z.number().int().nonnegative(),
    source: z.enum(['gateway', 'api']),
  })
  .strict();
export type OnlineEvent = z.infer<typeof onlineEventSchema>;

/** Events per request to one distributor. */
export const ONLINE_BATCH_MAX = 200;

export const onlineBatchSchema = z.object({ events: z.array(onlineEventSchema).min(1).max(ONLINE_BATCH_MAX) }).strict();
export type OnlineBatch = z.infer<typeof onlineBatchSchema>;

/** The owner's answer: the events it handled (or had handled before); the others are sent again. */
export interface OnlineBatchResult {
  acked: string[];
}

/** At most this many keys per owner query. */
export const MAX_OWNER_KEYS = 1000;
export const ownerQuerySchema = z
  .object({ users: z.array(z.object({ serviceId, userName: onlineUserSchema }).strict()).min(1).max(MAX_OWNER_KEYS) })
  .strict();
export interface OwnerQueryResult {
  version: string;
  owners: (string | null)[];
}

/** Where a user falls on the ring: tenants' user names are their own, so the tenant is part of the key. */
export function ringKey(serviceId: string, userName: string): string {
  return `${serviceId}\n${userName}`;
}

/** The ring of the distributors a heartbeat table knows that take work (not draining). */
export function ringOf(members: readonly DistributorHeartbeat[]): HashRing {
  return new HashRing(members.filter((m) => m.state === 'available').map((m) => ({ id: m.id, weight: m.weight })));
}

/** The live distributors, as every sender and distributor tracks them. */
export function distributorTable(bus: Bus, logger: Logger, timeoutMs: number): HeartbeatTable<DistributorHeartbeat> {
  return new HeartbeatTable(bus, logger, {
    heartbeat: onlineSubjects.heartbeat,
    down: onlineSubjects.down,
    hello: onlineSubjects.hello,
    schema: distributorHeartbeatSchema,
    timeoutMs,
    what: 'distributor',
  });
}

export interface OnlineEventSenderOptions {
  /** A distributor silent this long leaves the ring. */
  distributorTimeoutMs: number;
  /** How long an owner has to handle a batch and answer. */
  requestTimeoutMs: number;
  /** Events kept while no owner acknowledged them; past it the oldest go (counted and logged). */
  maxPending?: number;
  /** An event unacknowledged this long after it happened is dropped (counted and logged): it is stale news. */
  maxAgeMs?: number;
  /** Retry delays double from the first to the last. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** A sender's options from the process's configuration (the `distributor` section is every process's). */
export function senderOptions(config: Config): OnlineEventSenderOptions {
  const d = config.distributor;
  return {
    distributorTimeoutMs: d.timeoutMs,
    requestTimeoutMs: d.requestTimeoutMs,
    maxPending: d.senderMaxPending,
    maxAgeMs: d.senderMaxAgeMs,
  };
}

interface Pending {
  event: OnlineEvent;
  /** The distributor it is in flight to, if it is. */
  sentTo?: string;
  failures: number;
  /** When it may be sent again (epoch ms). */
  dueAt: number;
}

interface SenderEvents {
  /** `owner` acknowledged these events (it handled them). */
  acked: [events: OnlineEvent[], owner: string];
  /** Dropped undelivered: too old, the queue was full, or no distributor has run for a while. */
  dropped: [event: OnlineEvent, reason: DropReason];
}

/**
 * Why an event was given up: older than `maxAgeMs`, the queue full, or no distributor in the ring for
 * longer than `maxAgeMs` (a cluster without distributors: nothing is kept for nobody).
 */
export type DropReason = 'age' | 'overflow' | 'no_distributor';

interface SenderMetrics {
  emitted: Counter<'source'>;
  acked: Counter<'source'>;
  retried: Counter<'source'>;
  dropped: Counter<'source' | 'reason'>;
  pending: Gauge<'source'>;
}

/**
 * Hands online events to their owners, at least once. Each event waits in a
 * bounded in-memory queue until the distributor owning its user in the
 * current ring answers that it handled it. A batch that times out, finds
 * nobody, is refused, or whose distributor leaves the table meanwhile, is sent
 * again (backoff 100 ms doubling to 2 s per event) to the owner in the ring as
 * it is then, with the same ids: the owner's own memory of ids and the SDK's
 * dedupe by id absorb the copies. Used by the gateway and by Nuve.
 */
export class OnlineEventSender extends EventEmitter<SenderEvents> {
  readonly table: HeartbeatTable<DistributorHeartbeat>;
  private ringValue: HashRing = new HashRing([]);
  /** Insertion order: oldest first. */
  private readonly pending = new Map<string, Pending>();
  private timer?: NodeJS.Timeout;
  private scheduled = false;
  private closed = false;
  private idle?: () => void;
  private metrics?: SenderMetrics;
  private droppedCount = 0;
  /** Since when the ring has been empty (undefined while it has members). */
  private emptySince: number | undefined = Date.now();
  private readonly maxPending: number;
  private readonly maxAgeMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly source: OnlineEvent['source'],
    private readonly options: OnlineEventSenderOptions,
  ) {
    super();
    this.maxPending = options.maxPending ?? 100_000;
    this.maxAgeMs = options.maxAgeMs ?? 60_000;
    this.retryMinMs = options.retryMinMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 2000;
    this.table = distributorTable(bus, logger, options.distributorTimeoutMs);
    const rebuild = () => {
      this.ringValue = ringOf(this.table.list());
      if (this.ringValue.size > 0) this.emptySince = undefined;
      else this.emptySince ??= Date.now();
      // A new ring may have an owner for what waited; events in flight to a member that left go again now.
      this.schedule();
    };
    this.table.on('added', rebuild);
    this.table.on('updated', (now, before) => {
      if (now.weight !== before.weight || now.state !== before.state) rebuild();
    });
    this.table.on('removed', (gone) => {
      for (const p of this.pending.values()) {
        if (p.sentTo !== gone.id) continue;
        p.sentTo = undefined;
        p.dueAt = 0;
      }
      rebuild();
    });
  }

  /**
   * The process's counters, shared by every sender in it (Nuve and a gateway embedded together),
   * told apart by `source`.
   */
  registerMetrics(registry: Registry): void {
    const registers = [registry];
    const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
    this.metrics = {
      emitted:
        existing('mss_online_events_total') ??
        new Counter({ name: 'mss_online_events_total', help: 'Online events emitted, by source', labelNames: ['source'], registers }),
      acked:
        existing('mss_online_events_acked_total') ??
        new Counter({ name: 'mss_online_events_acked_total', help: 'Online events a distributor acknowledged, by source', labelNames: ['source'], registers }),
      retried:
        existing('mss_online_events_retried_total') ??
        new Counter({ name: 'mss_online_events_retried_total', help: 'Online event sends that failed and wait to go again', labelNames: ['source'], registers }),
      dropped:
        existing('mss_online_events_dropped_total') ??
        new Counter({
          name: 'mss_online_events_dropped_total',
          help: 'Online events given up undelivered: too old (age) or the queue full (overflow)',
          labelNames: ['source', 'reason'],
          registers,
        }),
      pending:
        existing('mss_online_events_pending') ??
        new Gauge({ name: 'mss_online_events_pending', help: 'Online events waiting for a distributor to acknowledge them, by source', labelNames: ['source'], registers }),
    };
    this.metrics.pending.set({ source: this.source }, 0);
    for (const reason of ['age', 'overflow', 'no_distributor']) this.metrics.dropped.inc({ source: this.source, reason }, 0);
  }

  start(): void {
    this.table.start();
  }

  /** The ring as this process sees it now. */
  get ring(): HashRing {
    return this.ringValue;
  }

  /** Events not yet acknowledged. */
  get backlog(): number {
    return this.pending.size;
  }

  /** Whether `count` more events fit without dropping older ones. */
  hasRoomFor(count: number): boolean {
    return this.pending.size + count <= this.maxPending;
  }

  /** A user came online: queues the event for its owner; answers it (with its id). */
  online(serviceId: string, userName: string): OnlineEvent {
    const event: OnlineEvent = { id: randomUUID(), serviceId, userName, at: Date.now(), source: this.source };
    if (this.closed) return event;
    this.metrics?.emitted.inc({ source: this.source });
    if (this.emptySince !== undefined && event.at - this.emptySince > this.maxAgeMs) {
      // No distributor for longer than an event may wait: it could only be dropped later.
      this.drop(event, 'no_distributor');
      return event;
    }
    this.pending.set(event.id, { event, failures: 0, dueAt: 0 });
    if (this.pending.size > this.maxPending) {
      // The oldest not in flight: one in flight may be handled already.
      for (const [id, p] of this.pending) {
        if (p.sentTo !== undefined) continue;
        this.pending.delete(id);
        this.drop(p.event, 'overflow');
        break;
      }
    }
    // With no distributor the waiting events are looked at on the backoff timer, not at every new one.
    if (this.ringValue.size > 0 || this.timer === undefined) this.schedule();
    return event;
  }

  /** Sends what is due at the end of this turn (so one turn's events share requests). */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.sendDue();
    });
  }

  private sendDue(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = Date.now();
    const ring = this.ringValue;
    const batches = new Map<string, Pending[]>();
    let nextDue = Number.POSITIVE_INFINITY;
    for (const [id, p] of this.pending) {
      if (p.sentTo !== undefined) continue;
      if (now - p.event.at > this.maxAgeMs) {
        this.pending.delete(id);
        this.drop(p.event, 'age');
        continue;
      }
      if (p.dueAt > now) {
        nextDue = Math.min(nextDue, p.dueAt);
        continue;
      }
      const owner = ring.lookup(ringKey(p.event.serviceId, p.event.userName));
      if (owner === undefined) {
        // No distributor yet: try again later (a distributor's arrival also wakes this).
        this.backOff(p, now);
        nextDue = Math.min(nextDue, p.dueAt);
        continue;
      }
      const batch = batches.get(owner) ?? [];
      batch.push(p);
      batches.set(owner, batch);
    }
    for (const [owner, list] of batches) {
      for (let i = 0; i < list.length; i += ONLINE_BATCH_MAX) this.send(owner, list.slice(i, i + ONLINE_BATCH_MAX));
    }
    if (Number.isFinite(nextDue)) {
      this.timer = setTimeout(() => this.sendDue(), Math.max(1, nextDue - now));
      this.timer.unref();
    }
    this.metrics?.pending.set({ source: this.source }, this.pending.size);
    if (this.pending.size === 0) this.idle?.();
  }

  private send(owner: string, batch: Pending[]): void {
    for (const p of batch) p.sentTo = owner;
    const payload: OnlineBatch = { events: batch.map((p) => p.event) };
    this.bus.request<OnlineBatchResult>(onlineSubjects.online(owner), payload, { timeoutMs: this.options.requestTimeoutMs }).then(
      (result) => {
        const acked = new Set(Array.isArray(result?.acked) ? result.acked : []);
        const done: OnlineEvent[] = [];
        for (const p of batch) {
          if (p.sentTo !== owner) continue; // sent elsewhere meanwhile (its owner left the table); that copy decides
          if (acked.has(p.event.id) && this.pending.get(p.event.id) === p) {
            this.pending.delete(p.event.id);
            done.push(p.event);
          } else this.failed(p);
        }
        if (done.length > 0) {
          this.metrics?.acked.inc({ source: this.source }, done.length);
          this.emit('acked', done, owner);
        }
        this.schedule();
      },
      (err: unknown) => {
        const code = isAppError(err) ? err.code : 'error';
        this.logger.debug({ err, owner, events: batch.length, code }, 'online events not acknowledged; sending again');
        for (const p of batch) if (p.sentTo === owner) this.failed(p);
        this.schedule();
      },
    );
  }

  private failed(p: Pending): void {
    p.sentTo = undefined;
    this.metrics?.retried.inc({ source: this.source });
    this.backOff(p, Date.now());
  }

  private backOff(p: Pending, now: number): void {
    p.dueAt = now + Math.min(this.retryMaxMs, this.retryMinMs * 2 ** p.failures++);
  }

  private drop(event: OnlineEvent, reason: DropReason): void {
    this.metrics?.dropped.inc({ source: this.source, reason });
    // One line per thousand: a cluster without distributors would otherwise log every user coming online.
    if (this.droppedCount++ % 1000 === 0) {
      this.logger.warn({ reason, dropped: this.droppedCount, user: event.userName }, 'online event dropped: no distributor acknowledged it in time');
    }
    this.emit('dropped', event, reason);
  }

  /** Stops taking events; waits up to `graceMs` for the queued ones to be acknowledged (the rest are logged as lost). */
  async close(graceMs = 2000): Promise<void> {
    this.closed = true;
    // With no distributor in the ring there is nobody to wait for.
    if (this.pending.size > 0 && this.ringValue.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        timer.unref();
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    clearTimeout(this.timer);
    this.table.stop();
    if (this.pending.size > 0) this.logger.warn({ lost: this.pending.size }, 'online events not acknowledged before stopping');
    this.pending.clear();
  }
}
