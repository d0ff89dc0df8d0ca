import { type Kysely, sql } from 'kysely';
import { QueryShapes, slot } from '../../core/query-shapes.js';
import type { RoomEventType } from '../../core/room-events.js';
import type { NuveTables } from '../store/schema.js';

/** A webhook URL with its filters: a tenant's (`roomId` '') or one room's. */
export interface WebhookEndpoint {
  serviceId: string;
  roomId: string;
  url: string;
  /** Only these types (absent: every type). */
  include?: RoomEventType[];
  /** Never these types. */
  exclude?: RoomEventType[];
  createdAt: number;
}

export interface OutboxEntry {
  eventId: string;
  serviceId: string;
  roomId: string;
  type: RoomEventType;
  body: string;
  createdAt: number;
}

/** A row leased to one delivery worker. */
export interface ClaimedEvent extends OutboxEntry {
  seq: number;
  /** Including the one now claimed. */
  attempts: number;
}

export interface FailedEvent {
  eventId: string;
  roomId: string;
  type: string;
  createdAt: number;
  failedAt: number;
  attempts: number;
  lastError: string | null;
}

type EndpointRow = NuveTables['webhooks'];

const toEndpoint = (r: EndpointRow): WebhookEndpoint => ({
  serviceId: r.service_id,
  roomId: r.room_id,
  url: r.url,
  ...(r.include_events !== null && { include: JSON.parse(r.include_events) as RoomEventType[] }),
  ...(r.exclude_events !== null && { exclude: JSON.parse(r.exclude_events) as RoomEventType[] }),
  createdAt: r.created_at,
});

/** Whether an endpoint's filters let an event type through. */
export function accepts(endpoint: WebhookEndpoint, type: RoomEventType): boolean {
  return (endpoint.include === undefined || endpoint.include.includes(type)) && !endpoint.exclude?.includes(type);
}

/**
 * Webhook endpoints and the outbox, on Nuve's database. The outbox keeps a room's events in `seq`
 * order and only its oldest pending one (its head) is ever handed out, so a room's deliveries are
 * strictly ordered; a worker takes a head by leasing it (owner and deadline), on PostgreSQL inside
 * `FOR UPDATE SKIP LOCKED`, so two Nuves never deliver the same event at once, and a lease left by a
 * Nuve that died runs out and the event is delivered again (at least once; receivers deduplicate by id).
 */
export class WebhookRepository {
  private readonly shapes = new QueryShapes();

  constructor(
    private readonly db: Kysely<NuveTables>,
    private readonly engine: 'sqlite' | 'postgres',
  ) {}

  async setEndpoint(e: WebhookEndpoint): Promise<void> {
    const row: EndpointRow = {
      service_id: e.serviceId,
      room_id: e.roomId,
      url: e.url,
      include_events: e.include === undefined ? null : JSON.stringify(e.include),
      exclude_events: e.exclude === undefined ? null : JSON.stringify(e.exclude),
      created_at: e.createdAt,
    };
    await this.db
      .insertInto('webhooks')
      .values(row)
      .onConflict((oc) =>
        oc.columns(['service_id', 'room_id']).doUpdateSet({ url: row.url, include_events: row.include_events, exclude_events: row.exclude_events }),
      )
      .execute();
  }

  async getEndpoint(serviceId: string, roomId: string): Promise<WebhookEndpoint | undefined> {
    const row = await this.db.selectFrom('webhooks').selectAll().where('service_id', '=', serviceId).where('room_id', '=', roomId).executeTakeFirst();
    return row && toEndpoint(row);
  }

  async deleteEndpoint(serviceId: string, roomId: string): Promise<boolean> {
    const res = await this.db.deleteFrom('webhooks').where('service_id', '=', serviceId).where('room_id', '=', roomId).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /** Where a room's events go: the room's own endpoint, else its tenant's. */
  async endpointFor(serviceId: string, roomId: string): Promise<WebhookEndpoint | undefined> {
    const rows = await this.db
      .selectFrom('webhooks')
      .selectAll()
      .where('service_id', '=', serviceId)
      .where('room_id', 'in', [roomId, ''])
      .execute();
    const row = rows.find((r) => r.room_id === roomId) ?? rows.find((r) => r.room_id === '');
    return row && toEndpoint(row);
  }

  /** Every endpoint of these tenants (theirs and their rooms'): one query for a whole batch of events. */
  async endpointsOf(serviceIds: string[]): Promise<WebhookEndpoint[]> {
    if (serviceIds.length === 0) return [];
    // Every batch of room events asks: compiled once per number of tenants.
    const { rows } = await this.shapes.run(this.db, `endpoints ${serviceIds.length}`, serviceIds, () =>
      this.db.selectFrom('webhooks').selectAll().where('service_id', 'in', serviceIds.map((_, i) => slot(i))),
    );
    return rows.map(toEndpoint);
  }

  /** The names of these rooms (those that still exist), by `serviceId/roomId`: a room's name only under its own tenant. */
  async roomNames(roomIds: string[]): Promise<Map<string, string>> {
    if (roomIds.length === 0) return new Map();
    const rows = await this.db.selectFrom('rooms').select(['id', 'service_id', 'name']).where('id', 'in', roomIds).execute();
    return new Map(rows.map((r) => [`${r.service_id}/${r.id}`, r.name]));
  }

  /** Appends events in the given order; an event id already there (a gateway's retry) is skipped. */
  async enqueue(entries: OutboxEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.db
      .insertInto('webhook_outbox')
      .values(
        entries.map((e) => ({
          event_id: e.eventId,
          service_id: e.serviceId,
          room_id: e.roomId,
          type: e.type,
          body: e.body,
          created_at: e.createdAt,
          state: 'pending' as const,
          attempts: 0,
          next_attempt_at: 0,
        })),
      )
      .onConflict((oc) => oc.column('event_id').doNothing())
      .execute();
  }

  /** Tenants with a room head due now, at most `limit`. */
  async dueServices(now: number, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('webhook_outbox')
      .select('service_id')
      .distinct()
      .where('state', '=', 'pending')
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .limit(limit)
      .execute();
    return rows.map((r) => r.service_id);
  }

  /**
   * Leases up to `limit` of a tenant's room heads that are due and not leased, oldest first.
   * A room whose head is leased or waiting for its retry yields nothing: its later events wait.
   */
  async claim(serviceId: string, owner: string, now: number, leaseMs: number, limit: number): Promise<ClaimedEvent[]> {
    return this.db.transaction().execute(async (tx) => {
      let heads = tx
        .selectFrom('webhook_outbox as o')
        .select(['o.seq', 'o.event_id', 'o.service_id', 'o.room_id', 'o.type', 'o.body', 'o.created_at', 'o.attempts'])
        .where('o.service_id', '=', serviceId)
        .where('o.state', '=', 'pending')
        .where('o.next_attempt_at', '<=', now)
        .where((eb) => eb.or([eb('o.lease_until', 'is', null), eb('o.lease_until', '<', now)]))
        .where((eb) =>
          eb.not(
            eb.exists(
              eb
                .selectFrom('webhook_outbox as p')
                .select('p.seq')
                .whereRef('p.room_id', '=', 'o.room_id')
                .whereRef('p.service_id', '=', 'o.service_id')
                .where('p.state', '=', 'pending')
                .whereRef('p.seq', '<', 'o.seq'),
            ),
          ),
        )
        .orderBy('o.seq')
        .limit(limit);
      // Another Nuve's claim in progress holds its rows locked: skip them rather than wait or take them too.
      if (this.engine === 'postgres') heads = heads.forUpdate('o').skipLocked();
      const rows = await heads.execute();
      if (rows.length === 0) return [];
      await tx
        .updateTable('webhook_outbox')
        .set({ lease_owner: owner, lease_until: now + leaseMs, attempts: sql`attempts + 1` })
        .where(
          'seq',
          'in',
          rows.map((r) => r.seq),
        )
        .execute();
      return rows.map((r) => ({
        seq: r.seq,
        eventId: r.event_id,
        serviceId: r.service_id,
        roomId: r.room_id,
        type: r.type as RoomEventType,
        body: r.body,
        createdAt: r.created_at,
        attempts: r.attempts + 1,
      }));
    });
  }

  /** Delivered, or with nowhere to go any more: the row goes (the outbox is not a log). Only while `owner` holds the lease. */
  async remove(seq: number, owner: string): Promise<void> {
    await this.db.deleteFrom('webhook_outbox').where('seq', '=', seq).where('lease_owner', '=', owner).execute();
  }

  async retryAt(seq: number, owner: string, nextAttemptAt: number, error: string): Promise<void> {
    await this.db
      .updateTable('webhook_outbox')
      .set({ next_attempt_at: nextAttemptAt, lease_owner: null, lease_until: null, last_error: error })
      .where('seq', '=', seq)
      .where('lease_owner', '=', owner)
      .execute();
  }

  /** Past its retention: kept as failed, which lets the room's next event go. */
  async giveUp(seq: number, owner: string, now: number, error: string): Promise<void> {
    await this.db
      .updateTable('webhook_outbox')
      .set({ state: 'failed', failed_at: now, lease_owner: null, lease_until: null, last_error: error })
      .where('seq', '=', seq)
      .where('lease_owner', '=', owner)
      .execute();
  }

  /** Forgets the records of events given up before `before`. */
  async pruneFailed(before: number): Promise<void> {
    await this.db.deleteFrom('webhook_outbox').where('state', '=', 'failed').where('failed_at', '<', before).execute();
  }

  /** A stopping Nuve hands its leases back so others (or its next start) take them at once. */
  async releaseLeases(owner: string): Promise<void> {
    await this.db.updateTable('webhook_outbox').set({ lease_owner: null, lease_until: null }).where('lease_owner', '=', owner).execute();
  }

  /** The tenant's given-up events, newest first. */
  async listFailed(serviceId: string, limit: number): Promise<FailedEvent[]> {
    const rows = await this.db
      .selectFrom('webhook_outbox')
      .select(['event_id', 'room_id', 'type', 'created_at', 'failed_at', 'attempts', 'last_error'])
      .where('service_id', '=', serviceId)
      .where('state', '=', 'failed')
      .orderBy('seq', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      eventId: r.event_id,
      roomId: r.room_id,
      type: r.type,
      createdAt: r.created_at,
      failedAt: r.failed_at ?? 0,
      attempts: r.attempts,
      lastError: r.last_error,
    }));
  }

  /** Events of a tenant still to deliver (tests, metrics). */
  async pendingCount(serviceId?: string): Promise<number> {
    let q = this.db.selectFrom('webhook_outbox').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'pending');
    if (serviceId !== undefined) q = q.where('service_id', '=', serviceId);
    return Number((await q.executeTakeFirstOrThrow()).n);
  }
}
