import { type Kysely, type Migration, sql } from 'kysely';
import { type Database, type RoleMigrations, reportingUnavailable } from '../core/database.js';

/** The push role's tables. A safe message is a row while unarrived; its acknowledgement (arrival) deletes it. */
export interface PushTables {
  push_messages: {
    id: string;
    /** Send order: epoch ms × 1024 plus a per-process counter (see `nextSeq`). */
    seq: number;
    service_id: string;
    user_name: string;
    /** The payload's JSON. */
    data: string;
    created_at: number;
    expires_at: number | null;
  };
  /** How many of a user's oldest messages the cap dropped since the user last connected. */
  push_dropped: {
    service_id: string;
    user_name: string;
    count: number;
  };
}

/** Append only: a released migration is never edited. */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('push_messages')
        .addColumn('id', 'varchar(32)', (c) => c.primaryKey())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('service_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('user_name', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .execute();
      // Every read is one user's messages in send order; the sweep looks by expiry.
      await db.schema.createIndex('push_messages_user_idx').on('push_messages').columns(['service_id', 'user_name', 'seq']).execute();
      await db.schema.createIndex('push_messages_expiry_idx').on('push_messages').column('expires_at').execute();
      await db.schema
        .createTable('push_dropped')
        .addColumn('service_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('user_name', 'text', (c) => c.notNull())
        .addColumn('count', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('push_dropped_pk', ['service_id', 'user_name'])
        .execute();
    },
  },
};

export const pushMigrations: RoleMigrations = { table: 'push_migration', migrations };

const boundsByDatabase = new WeakMap<object, CountBounds>();

export interface StoredMessage {
  id: string;
  seq: number;
  serviceId: string;
  userName: string;
  data: unknown;
  createdAt: number;
  expiresAt: number | null;
}

/** Inserts of one turn of the event loop go as one statement; more than this split it (bounded parameters). */
const INSERT_BATCH_MAX = 500;

/** Ids per batch of acknowledgements (bounded statement parameters; one acknowledgement carries at most 500). */
const ACK_BATCH_MAX_IDS = 2000;

interface PendingAck {
  serviceId: string;
  userName: string;
  ids: readonly string[];
  resolve(outcome: { acked: number; foreign: boolean }): void;
  reject(err: unknown): void;
}

/** Users whose count bound is kept (embedded); past it the bounds are forgotten and counted again. */
const COUNT_BOUNDS_MAX = 100_000;

/**
 * An upper bound of each user's unarrived messages, for a store that only this process writes to
 * (embedded SQLite: the file is locked to this process's one connection). The bound is the count
 * last read plus every row this process inserted since; deletions (acknowledgements, cancels, the
 * sweep, the cap) only lower the real count, so they need not be tracked. A user whose bound is at
 * most the cap cannot be over it: the cap check reads only users unknown or possibly over.
 */
export class CountBounds {
  /** `base + added` bounds the user's rows; `base` undefined while the user's count was never read. */
  private readonly users = new Map<string, { base: number | undefined; added: number }>();

  /** A committed insert of this process. */
  inserted(serviceId: string, userName: string): void {
    const entry = this.users.get(key(serviceId, userName));
    if (entry) entry.added++;
  }

  /** Whether the user may have more than `cap` rows (unknown counts as may). */
  mayExceed(serviceId: string, userName: string, cap: number): boolean {
    const entry = this.users.get(key(serviceId, userName));
    return entry?.base === undefined || entry.base + entry.added > cap;
  }

  /**
   * Before reading the user's count: answers what to call with the count read (minus the rows then
   * deleted). A row committed before this call is in the count; one committed after it is in
   * `added`, so the bound holds whichever happened first.
   */
  reading(serviceId: string, userName: string): (count: number) => void {
    const k = key(serviceId, userName);
    let entry = this.users.get(k);
    if (!entry) {
      if (this.users.size >= COUNT_BOUNDS_MAX) this.users.clear();
      this.users.set(k, (entry = { base: undefined, added: 0 }));
    }
    const found = entry;
    const addedBefore = found.added;
    // A forgotten entry (cleared meanwhile) stays forgotten: its replacement reads its own count.
    return (count) => {
      if (this.users.get(k) === found) found.base = count - addedBefore;
    };
  }
}

const key = (serviceId: string, userName: string) => `${serviceId}\n${userName}`;

interface PendingInsert {
  row: PushTables['push_messages'];
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Unarrived safe messages, every query scoped by tenant and user. Inserts are
 * the hot write (one per user per safe push): those arriving in the same turn
 * of the event loop are written as one multi-row INSERT, as Nuve does with
 * tokens; each caller resolves once its row is committed.
 */
export class PushStore {
  private readonly queue: PendingInsert[] = [];
  private readonly ackQueue: PendingAck[] = [];
  private readonly writes = new Set<Promise<void>>();

  private constructor(
    private readonly db: Kysely<PushTables>,
    /** Only where no other process writes these tables; undefined: every cap check reads the counts. */
    private readonly bounds: CountBounds | undefined,
  ) {}

  /**
   * An embedded SQLite database belongs to this process alone, so the per-user counts can be bounded
   * in memory (shared by every store on that database); PostgreSQL may have other push roles writing.
   */
  static async open(database: Database): Promise<PushStore> {
    await database.migrate(pushMigrations);
    const db = database.kysely<PushTables>();
    let bounds: CountBounds | undefined;
    if (database.engine === 'sqlite') {
      bounds = boundsByDatabase.get(db) ?? new CountBounds();
      boundsByDatabase.set(db, bounds);
    }
    return reportingUnavailable(new PushStore(db, bounds));
  }

  add(message: StoredMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({
        row: {
          id: message.id,
          seq: message.seq,
          service_id: message.serviceId,
          user_name: message.userName,
          data: JSON.stringify(message.data),
          created_at: message.createdAt,
          expires_at: message.expiresAt,
        },
        resolve,
        reject,
      });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, INSERT_BATCH_MAX);
      const work = this.db
        .insertInto('push_messages')
        .values(batch.map((p) => p.row))
        // A message its sender named (the id derived from the sender's) and sent again while unarrived is kept once.
        .onConflict((oc) => oc.column('id').doNothing())
        .execute()
        .then(
          () => {
            for (const p of batch) this.bounds?.inserted(p.row.service_id, p.row.user_name);
            batch.forEach((p) => p.resolve());
          },
          (err: unknown) => batch.forEach((p) => p.reject(err)),
        );
      this.writes.add(work);
      void work.finally(() => this.writes.delete(work));
    }
  }

  /**
   * Keeps at most `cap` unarrived messages for each of these users of a tenant by deleting their
   * oldest; counts what was dropped for the user's next connection. Answers the drops by user.
   */
  async enforceCap(serviceId: string, users: readonly string[], cap: number): Promise<Map<string, number>> {
    const dropped = new Map<string, number>();
    const bounds = this.bounds;
    // Users whose bound shows them at most at the cap are not read (embedded: nearly all of them).
    const unsure = bounds ? users.filter((user) => bounds.mayExceed(serviceId, user, cap)) : users;
    if (unsure.length === 0) return dropped;
    const learned = new Map(bounds ? unsure.map((user) => [user, bounds.reading(serviceId, user)]) : []);
    const counted = await this.db
      .selectFrom('push_messages')
      .select(['user_name', (eb) => eb.fn.countAll<number>().as('n')])
      .where('service_id', '=', serviceId)
      .where('user_name', 'in', unsure)
      .groupBy('user_name')
      // With bounds every read count is kept (a user absent has none); without, only those over matter.
      .$if(!bounds, (qb) => qb.having((eb) => eb.fn.countAll(), '>', cap))
      .execute();
    const counts = new Map(counted.map((r) => [r.user_name, Number(r.n)]));
    for (const [user, learn] of learned) if ((counts.get(user) ?? 0) <= cap) learn(counts.get(user) ?? 0);
    for (const [user, n] of counts) {
      if (n <= cap) continue;
      // Everything older than the user's newest `cap` (not "the oldest n - cap": concurrent sends to one
      // user each read the same count, and each deleting that many dropped far more than the excess).
      const newestKept = this.db
        .selectFrom('push_messages')
        .select(['seq', 'id'])
        .where('service_id', '=', serviceId)
        .where('user_name', '=', user)
        .orderBy('seq', 'desc')
        .orderBy('id', 'desc')
        .limit(1)
        .offset(cap - 1);
      const res = await this.db
        .deleteFrom('push_messages')
        .where('service_id', '=', serviceId)
        .where('user_name', '=', user)
        .where(sql<boolean>`(seq, id) < (${newestKept})`)
        .executeTakeFirst();
      const count = Number(res.numDeletedRows);
      learned.get(user)?.(n - count);
      if (count === 0) continue;
      await this.db
        .insertInto('push_dropped')
        .values({ service_id: serviceId, user_name: user, count })
        .onConflict((oc) => oc.columns(['service_id', 'user_name']).doUpdateSet({ count: sql`push_dropped.count + excluded.count` }))
        .execute();
      dropped.set(user, count);
    }
    return dropped;
  }

  /** The user's unarrived, unexpired messages in send order (after `afterSeq`). */
  async pending(serviceId: string, userName: string, now: number, limit: number, afterSeq = 0): Promise<StoredMessage[]> {
    const rows = await this.db
      .selectFrom('push_messages')
      .selectAll()
      .where('service_id', '=', serviceId)
      .where('user_name', '=', userName)
      .where('seq', '>', afterSeq)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({
      id: r.id,
      seq: Number(r.seq),
      serviceId: r.service_id,
      userName: r.user_name,
      data: JSON.parse(r.data) as unknown,
      createdAt: Number(r.created_at),
      expiresAt: r.expires_at === null ? null : Number(r.expires_at),
    }));
  }

  /** How many of the user's messages the cap dropped since last asked; resets it. */
  async takeDropped(serviceId: string, userName: string): Promise<number> {
    const row = await this.db
      .deleteFrom('push_dropped')
      .where('service_id', '=', serviceId)
      .where('user_name', '=', userName)
      .returning('count')
      .executeTakeFirst();
    return row ? Number(row.count) : 0;
  }

  /**
   * Marks the user's messages arrived (deletes them); answers how many were. Ids not among the
   * user's unarrived messages were already acknowledged, expired, cancelled — or are another
   * user's, which `foreign` tells apart (and which stay untouched). Acknowledgements are as hot as
   * inserts (one per client per turn): those of one turn share one read of the owners and one DELETE.
   */
  ack(serviceId: string, userName: string, ids: readonly string[]): Promise<{ acked: number; foreign: boolean }> {
    return new Promise((resolve, reject) => {
      this.ackQueue.push({ serviceId, userName, ids, resolve, reject });
      if (this.ackQueue.length === 1) setImmediate(() => this.flushAcks());
    });
  }

  private flushAcks(): void {
    while (this.ackQueue.length > 0) {
      const batch: PendingAck[] = [];
      let size = 0;
      while (this.ackQueue.length > 0 && size + this.ackQueue[0]!.ids.length <= ACK_BATCH_MAX_IDS) {
        const next = this.ackQueue.shift()!;
        size += next.ids.length;
        batch.push(next);
      }
      const work = this.deleteAcked(batch).catch((err: unknown) => batch.forEach((p) => p.reject(err)));
      this.writes.add(work);
      void work.finally(() => this.writes.delete(work));
    }
  }

  private async deleteAcked(batch: PendingAck[]): Promise<void> {
    const ids = [...new Set(batch.flatMap((p) => p.ids))];
    // Owners first, so a message is deleted only for its own tenant and user.
    const rows = await this.db.selectFrom('push_messages').select(['id', 'service_id', 'user_name']).where('id', 'in', ids).execute();
    const owners = new Map(rows.map((r) => [r.id, `${r.service_id}\n${r.user_name}`]));
    const owned = new Set<string>();
    const outcomes = batch.map((p) => {
      const who = `${p.serviceId}\n${p.userName}`;
      let acked = 0;
      let foreign = false;
      for (const id of p.ids) {
        const owner = owners.get(id);
        if (owner === who) {
          if (!owned.has(id)) acked++;
          owned.add(id);
        } else if (owner !== undefined) foreign = true;
      }
      return { acked, foreign };
    });
    if (owned.size > 0) await this.db.deleteFrom('push_messages').where('id', 'in', [...owned]).execute();
    batch.forEach((p, i) => p.resolve(outcomes[i]!));
  }

  /** Drops one unarrived message of the user; false when there was none by that id. */
  async cancel(serviceId: string, userName: string, id: string): Promise<boolean> {
    const res = await this.db
      .deleteFrom('push_messages')
      .where('service_id', '=', serviceId)
      .where('user_name', '=', userName)
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /** Deletes the messages whose TTL passed; answers how many. */
  async sweep(now: number): Promise<number> {
    const res = await this.db.deleteFrom('push_messages').where('expires_at', '<=', now).executeTakeFirst();
    return Number(res.numDeletedRows);
  }

  /** Unarrived messages of every tenant (the pending gauge). */
  async count(): Promise<number> {
    const row = await this.db.selectFrom('push_messages').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Writes the queued inserts and acknowledgements. */
  async close(): Promise<void> {
    this.flush();
    this.flushAcks();
    await Promise.allSettled([...this.writes]);
  }
}
