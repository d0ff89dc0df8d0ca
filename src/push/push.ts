import { randomBytes } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { z } from 'zod';
import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Config } from '../core/config.js';
import { AppError, describeIssues, isAppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  MAX_REPLY_MESSAGE_BYTES,
  PUSH_QUEUE,
  type PushAckResult,
  type PushDeliverResult,
  type PushDelivery,
  type PushMessage,
  type PushOnlineResult,
  type PushRestorePage,
  type PushSendResult,
  pushAckSchema,
  pushCancelSchema,
  pushPendingSchema,
  pushRefreshSchema,
  pushRestoreSchema,
  pushSendSchema,
  pushSessionSchema,
  messageIdFor,
  pushSubjects,
} from '../core/push-protocol.js';
import type { Location, Locations } from './locations.js';
import type { PushStore, StoredMessage } from './store.js';

/** Deliveries of one turn of the event loop to one gateway go as one request; more than this split it. */
const DELIVER_BATCH_MAX = 2000;
const DELIVER_TIMEOUT_MS = 3000;
/** Messages read per restore page (then cut to what fits one reply). */
const RESTORE_PAGE_MAX = 1000;

interface Metrics {
  sent: Counter<'kind'>;
  delivered: Counter<'kind'>;
  acked: Counter;
  expired: Counter;
  latency: Histogram;
}

/** Deliveries waiting for their gateway's request, with the callers waiting for its outcome. */
interface Outbox {
  deliveries: PushDelivery[];
  waiters: ((missing: ReadonlySet<string> | undefined) => void)[];
}

/** `count` message ids (`pm_` + 128 random bits), from one read of the random source. */
function newMessageIds(count: number): string[] {
  const bytes = randomBytes(16 * count);
  return Array.from({ length: count }, (_, i) => `pm_${bytes.toString('base64url', i * 16, i * 16 + 16)}`);
}

/**
 * The push role: reaches any online user of a tenant wherever it is
 * connected. Unsafe pushes go to the sessions online now; safe ones are
 * stored unarrived first, delivered, and deleted when the client acknowledges
 * them (arrived); a session coming online gets its user's unarrived ones in
 * send order. Gateways own the connections; this role knows where they are
 * (`Locations`) and talks to gateways and callers only over the bus.
 */
export class Push {
  private readonly subscriptions: Subscription[] = [];
  private readonly outboxes = new Map<string, Outbox>();
  private sweeper?: NodeJS.Timeout;
  private metrics?: Metrics;
  /** The last sequence number handed out: send order within this process, time order across processes. */
  private lastSeq = 0;

  constructor(
    private readonly config: Config['push'],
    private readonly bus: Bus,
    private readonly logger: Logger,
    readonly store: PushStore,
    private readonly locations: Locations,
  ) {}

  registerMetrics(registry: Registry): void {
    const registers = [registry];
    const store = this.store;
    this.metrics = {
      sent: new Counter({ name: 'mss_push_sent_total', help: 'Push messages accepted, per user, by kind', labelNames: ['kind'], registers }),
      delivered: new Counter({
        name: 'mss_push_delivered_total',
        help: 'Push notifications a gateway confirmed it sent to a connection, by kind (restored: safe ones on connect)',
        labelNames: ['kind'],
        registers,
      }),
      acked: new Counter({ name: 'mss_push_acked_total', help: 'Safe push messages acknowledged (arrived)', registers }),
      expired: new Counter({ name: 'mss_push_expired_total', help: 'Safe push messages dropped undelivered at their TTL', registers }),
      latency: new Histogram({
        name: 'mss_push_delivery_seconds',
        help: 'From accepting a push to its gateway confirming the send',
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers,
      }),
    };
    // Every kind's series from the start, at zero: rates and dashboards need not wait for the first push.
    for (const kind of ['safe', 'unsafe']) this.metrics.sent.inc({ kind }, 0);
    for (const kind of ['safe', 'unsafe', 'restored']) this.metrics.delivered.inc({ kind }, 0);
    new Gauge({
      name: 'mss_push_pending',
      help: 'Unarrived safe push messages in the store (every tenant)',
      registers,
      async collect() {
        this.set(await store.count().catch(() => Number.NaN));
      },
    });
  }

  async start(): Promise<void> {
    const queue = { queue: PUSH_QUEUE };
    this.subscriptions.push(
      this.bus.respond(pushSubjects.send, (payload) => this.send(payload), queue),
      this.bus.respond(pushSubjects.pending, (payload) => this.pending(payload), queue),
      this.bus.respond(pushSubjects.cancel, (payload) => this.cancel(payload), queue),
      this.bus.respond(pushSubjects.online, (payload) => this.online(payload), queue),
      this.bus.respond(pushSubjects.restore, (payload) => this.restore(payload), queue),
      this.bus.respond(pushSubjects.ack, (payload) => this.ack(payload), queue),
      this.bus.subscribe(pushSubjects.offline, (payload) => this.offline(payload), queue),
      this.bus.subscribe(pushSubjects.refresh, (payload) => this.refresh(payload), queue),
    );
    this.sweeper = setInterval(() => void this.sweep(), this.config.sweepMs);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    this.locations.close();
    await this.store.close();
  }

  private async send(payload: unknown): Promise<PushSendResult> {
    const request = parse(pushSendSchema, payload);
    const bytes = Buffer.byteLength(JSON.stringify(request.data));
    if (bytes > this.config.maxPayloadBytes) {
      throw new AppError('PUSH_PAYLOAD_TOO_LARGE', `the payload is ${bytes} bytes; push.maxPayloadBytes is ${this.config.maxPayloadBytes}`);
    }
    const started = performance.now();
    const { serviceId, data, safe } = request;
    // A user named twice gets one message.
    const users = [...new Set(request.users)];
    const now = Date.now();
    const kind = safe ? 'safe' : 'unsafe';
    // Refused before anything is stored while the registry is away: a caller's retry then makes no second copy.
    this.locations.check();
    const byUser = new Map<string, PushMessage>();
    let dropped = new Map<string, number>();
    // Named by the caller: each user's copy has the same id however often it is sent (stored once while unarrived).
    const named = request.messageId === undefined ? undefined : users.map((user) => messageIdFor(serviceId, user, request.messageId!));
    if (safe) {
      const expiresAt = request.ttlSec === undefined ? null : now + request.ttlSec * 1000;
      const ids = named ?? newMessageIds(users.length);
      const stored: StoredMessage[] = users.map((userName, i) => ({
        id: ids[i]!,
        seq: this.nextSeq(),
        serviceId,
        userName,
        data,
        createdAt: now,
        expiresAt,
      }));
      // Stored before anything is sent: a message the client sees always survives a crash until acknowledged.
      await Promise.all(stored.map((m) => this.store.add(m)));
      dropped = await this.store.enforceCap(serviceId, users, this.config.maxPendingPerUser);
      for (const m of stored) byUser.set(m.userName, wireOf(m));
    } else {
      users.forEach((user, i) => byUser.set(user, named ? { id: named[i]!, unsafe: true, data, sentAt: now } : { data, sentAt: now }));
    }
    this.metrics?.sent.inc({ kind }, users.length);

    let located: Awaited<ReturnType<Locations['lookup']>>;
    try {
      located = await this.locations.lookup(serviceId, users);
    } catch (err) {
      // The registry went away between the check and the lookup (Redis closing under us): the caller is refused
      // and will send again, so what this call stored goes, or the retry would make a second copy. Messages named by
      // the caller stay: their retry stores nothing twice, and one may be an earlier accepted send's.
      if (safe && !named) await Promise.allSettled([...byUser.entries()].map(([user, m]) => this.store.cancel(serviceId, user, m.id!)));
      throw err;
    }
    const reachedBy = await this.deliver(
      serviceId,
      [...located].flatMap(([user, locations]) =>
        locations.map((location) => ({ user, location, message: byUser.get(user)!, dropped: dropped.get(user) })),
      ),
      kind,
      started,
    );
    // Users told of the drops now need not be told again when they next connect.
    await Promise.all([...dropped.keys()].filter((user) => reachedBy.has(user)).map((user) => this.store.takeDropped(serviceId, user)));
    return {
      messages: safe ? users.map((user) => ({ user, id: byUser.get(user)!.id! })) : [],
      reached: [...reachedBy.values()].reduce((a, b) => a + b, 0),
      offline: users.filter((user) => !reachedBy.has(user)),
    };
  }

  /**
   * Sends each message to its connection through the connection's gateway; answers how many
   * connections of each user the gateways confirmed. A connection its gateway no longer has, or a
   * gateway nobody answers for, is removed from the registry (that exact connection only).
   */
  private async deliver(
    serviceId: string,
    targets: { user: string; location: Location; message: PushMessage; dropped?: number }[],
    kind: string,
    started: number,
  ): Promise<Map<string, number>> {
    const byGateway = new Map<string, typeof targets>();
    for (const target of targets) {
      const list = byGateway.get(target.location.gatewayId) ?? [];
      list.push(target);
      byGateway.set(target.location.gatewayId, list);
    }
    const reached = new Map<string, number>();
    await Promise.all(
      [...byGateway].map(async ([gatewayId, list]) => {
        const deliveries = list.flatMap(({ location, message, dropped }) => [
          ...(dropped ? [{ connectionId: location.connectionId, dropped }] : []),
          { connectionId: location.connectionId, message },
        ]);
        const missing = await this.enqueue(gatewayId, deliveries);
        if (missing === undefined) return;
        this.metrics?.latency.observe((performance.now() - started) / 1000);
        for (const { user, location } of list) {
          if (missing.has(location.connectionId)) {
            void this.forget({ serviceId, userName: user, ...location });
            continue;
          }
          reached.set(user, (reached.get(user) ?? 0) + 1);
          this.metrics?.delivered.inc({ kind });
        }
      }),
    );
    return reached;
  }

  /** Queues deliveries for a gateway's next request; resolves with the connections it lacked, or undefined if it did not answer. */
  private enqueue(gatewayId: string, deliveries: PushDelivery[]): Promise<ReadonlySet<string> | undefined> {
    return new Promise((resolve) => {
      let outbox = this.outboxes.get(gatewayId);
      if (!outbox) {
        this.outboxes.set(gatewayId, (outbox = { deliveries: [], waiters: [] }));
        setImmediate(() => this.flush(gatewayId));
      }
      outbox.deliveries.push(...deliveries);
      outbox.waiters.push(resolve);
    });
  }

  private flush(gatewayId: string): void {
    const outbox = this.outboxes.get(gatewayId)!;
    this.outboxes.delete(gatewayId);
    const requests: Promise<PushDeliverResult>[] = [];
    for (let i = 0; i < outbox.deliveries.length; i += DELIVER_BATCH_MAX) {
      requests.push(
        this.bus.request<PushDeliverResult>(
          pushSubjects.deliver(gatewayId),
          { deliveries: outbox.deliveries.slice(i, i + DELIVER_BATCH_MAX) },
          { timeoutMs: DELIVER_TIMEOUT_MS },
        ),
      );
    }
    Promise.all(requests).then(
      (replies) => {
        const missing = new Set(replies.flatMap((r) => r.missing));
        for (const waiter of outbox.waiters) waiter(missing);
      },
      (err: unknown) => {
        // Nobody answers for that gateway: it is gone, and so are its connections.
        const gone = isAppError(err) && err.code === 'BUS_NO_RESPONDERS';
        this.logger.debug({ err, gatewayId }, 'push delivery failed');
        const answer = gone ? new Set(outbox.deliveries.map((d) => d.connectionId)) : undefined;
        for (const waiter of outbox.waiters) waiter(answer);
      },
    );
  }

  /** A session came online: registered first, then its user's unarrived messages read, so none sent meanwhile is missed. */
  private async online(payload: unknown): Promise<PushOnlineResult> {
    const session = parse(pushSessionSchema, payload);
    await this.locations.add(session);
    const page = await this.restorePage(session.serviceId, session.userName, 0);
    const dropped = await this.store.takeDropped(session.serviceId, session.userName);
    return { ...page, dropped };
  }

  private async restore(payload: unknown): Promise<PushRestorePage> {
    const { serviceId, userName, afterSeq } = parse(pushRestoreSchema, payload);
    return this.restorePage(serviceId, userName, afterSeq);
  }

  /** The unarrived messages after `afterSeq`, as many as fit one reply; where to continue if more may follow. */
  private async restorePage(serviceId: string, userName: string, afterSeq: number): Promise<PushRestorePage> {
    const stored = await this.store.pending(serviceId, userName, Date.now(), RESTORE_PAGE_MAX, afterSeq);
    const page = fitReply(stored);
    this.metrics?.delivered.inc({ kind: 'restored' }, page.length);
    const more = page.length < stored.length || stored.length === RESTORE_PAGE_MAX;
    return { messages: page.map(wireOf), ...(more && page.length > 0 && { nextAfterSeq: page.at(-1)!.seq }) };
  }

  private async offline(payload: unknown): Promise<void> {
    const parsed = pushSessionSchema.safeParse(payload);
    if (parsed.success) await this.forget(parsed.data);
  }

  private async refresh(payload: unknown): Promise<void> {
    const parsed = pushRefreshSchema.safeParse(payload);
    if (!parsed.success) return;
    await this.locations.refresh(parsed.data.gatewayId, parsed.data.sessions).catch((err: unknown) => {
      this.logger.warn({ err, gatewayId: parsed.data.gatewayId }, 'push locations not refreshed; the next refresh retries');
    });
  }

  private async forget(session: Parameters<Locations['remove']>[0]): Promise<void> {
    await this.locations.remove(session).catch((err: unknown) => this.logger.debug({ err }, 'push location not removed; it expires'));
  }

  private async ack(payload: unknown): Promise<PushAckResult> {
    const { serviceId, userName, ids } = parse(pushAckSchema, payload);
    const { acked, foreign } = await this.store.ack(serviceId, userName, [...new Set(ids)]);
    this.metrics?.acked.inc(acked);
    if (foreign) throw new AppError('PUSH_NOT_YOURS', `${acked} acknowledged; another is addressed to another user and stays unarrived`);
    return { acked };
  }

  private async pending(payload: unknown): Promise<PushMessage[]> {
    const { serviceId, userName, limit } = parse(pushPendingSchema, payload);
    return fitReply(await this.store.pending(serviceId, userName, Date.now(), limit)).map(wireOf);
  }

  private async cancel(payload: unknown): Promise<null> {
    const { serviceId, userName, id } = parse(pushCancelSchema, payload);
    if (!(await this.store.cancel(serviceId, userName, id))) throw new AppError('PUSH_MESSAGE_NOT_FOUND');
    return null;
  }

  private async sweep(): Promise<void> {
    try {
      this.metrics?.expired.inc(await this.store.sweep(Date.now()));
    } catch (err) {
      this.logger.warn({ err }, 'expired push messages not swept; the next sweep retries');
    }
  }

  /** Epoch ms × 1024 plus a counter: strictly increasing here, in time order across push processes. */
  private nextSeq(): number {
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1024);
    return this.lastSeq;
  }
}

/** The first messages whose payloads fit one reply (at least one: a payload is at most push.maxPayloadBytes). */
function fitReply(messages: StoredMessage[]): StoredMessage[] {
  let bytes = 0;
  for (let i = 0; i < messages.length; i++) {
    bytes += Buffer.byteLength(JSON.stringify(messages[i]!.data)) + 128;
    if (bytes > MAX_REPLY_MESSAGE_BYTES && i > 0) return messages.slice(0, i);
  }
  return messages;
}

function wireOf(m: StoredMessage): PushMessage {
  return { id: m.id, data: m.data, sentAt: m.createdAt, ...(m.expiresAt !== null && { expiresAt: m.expiresAt }) };
}

function parse<T>(schema: z.ZodType<T>, payload: unknown): T {
  const parsed = schema.safeParse(payload);
  if (!parsed.success) throw new AppError('VALIDATION_FAILED', describeIssues(parsed.error.issues));
  return parsed.data;
}
