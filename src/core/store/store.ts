import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { type CompiledQuery, Kysely, Migrator, PostgresDialect, SqliteDialect, type SqliteDatabase, sql } from 'kysely';
import pg from 'pg';
import { AppError } from '../errors.js';
import { migrationProvider } from './migrations.js';
import type { Database } from './schema.js';

export type EaPolicy = 'ROOM-BEST' | 'TTL-BEST';

export interface ServiceRecord {
  id: string;
  name: string;
  key: string;
  isSuper: boolean;
  createdAt: number;
}

export interface RoomRecord {
  id: string;
  serviceId: string;
  name: string;
  data: unknown;
  p2p: boolean;
  mediaConfiguration: string | null;
  eapolicy: EaPolicy;
  gatewayId: string | null;
  createdAt: number;
}

export interface TokenRecord {
  id: string;
  serviceId: string;
  roomId: string;
  userName: string;
  role: string;
  gatewayId: string;
  eapolicy: EaPolicy;
  expiresAt: number;
  createdAt: number;
}

/** A session token's record: a user of a tenant, its scopes, and the room and role it names, if any. */
export interface SessionTokenRecord {
  id: string;
  serviceId: string;
  userName: string;
  scopes: string[];
  roomId: string | null;
  role: string | null;
  gatewayId: string;
  expiresAt: number;
  createdAt: number;
}

export type RoomChanges = Partial<Pick<RoomRecord, 'name' | 'data' | 'p2p' | 'mediaConfiguration' | 'eapolicy'>>;

/**
 * Nuve's persistent state. One implementation over Kysely; the engine is the
 * only difference between embedded (SQLite) and cluster (PostgreSQL). Every
 * room and token query is scoped by service id: tenants never see each other.
 */
export interface Store {
  readonly engine: 'sqlite' | 'postgres';
  createService(service: ServiceRecord): Promise<void>;
  getService(id: string): Promise<ServiceRecord | undefined>;
  listServices(): Promise<ServiceRecord[]>;
  findSuperService(): Promise<ServiceRecord | undefined>;
  updateServiceKey(id: string, key: string): Promise<void>;
  /** Removes the service with its rooms and tokens; false when it did not exist. */
  deleteService(id: string): Promise<boolean>;

  createRoom(room: RoomRecord): Promise<void>;
  getRoom(serviceId: string, roomId: string): Promise<RoomRecord | undefined>;
  listRooms(serviceId: string): Promise<RoomRecord[]>;
  updateRoom(serviceId: string, roomId: string, changes: RoomChanges): Promise<boolean>;
  deleteRoom(serviceId: string, roomId: string): Promise<boolean>;
  /**
   * Compare-and-set of the room's gateway: sets `next` only while the room
   * still has `expected`. Returns the gateway the room has afterwards, so two
   * Nuve instances racing on a new room agree on one gateway.
   */
  assignGateway(roomId: string, expected: string | null, next: string): Promise<string | null>;
  /** Forgets the gateway of every room it hosted (the gateway is gone). */
  releaseGateway(gatewayId: string): Promise<number>;

  createToken(token: TokenRecord): Promise<void>;
  /** Atomically removes and returns the token: a second consume of the same id gets undefined. */
  consumeToken(id: string): Promise<TokenRecord | undefined>;
  createSessionToken(token: SessionTokenRecord): Promise<void>;
  /** Atomically removes and returns the session token: a second consume of the same id gets undefined. */
  consumeSessionToken(id: string): Promise<SessionTokenRecord | undefined>;
  /** Removes expired room and session tokens. */
  deleteExpiredTokens(now: number): Promise<number>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface StoreOptions {
  driver: 'sqlite' | 'postgres';
  sqlitePath: string;
  postgresUrl: string;
  poolSize: number;
}

export async function openStore(options: StoreOptions): Promise<Store> {
  let db: Kysely<Database>;
  if (options.driver === 'sqlite') {
    if (options.sqlitePath !== ':memory:') mkdirSync(dirname(options.sqlitePath), { recursive: true });
    const sqlite = new SQLite(options.sqlitePath);
    // The embedded store belongs to this one process. Exclusive locking (set before WAL) keeps the WAL
    // index in memory and saves the lock system calls every statement otherwise makes (~10% of a token
    // request); another process opening the file meanwhile gets SQLITE_BUSY.
    if (options.sqlitePath !== ':memory:') sqlite.pragma('locking_mode = EXCLUSIVE');
    // WAL + NORMAL: durable across process crashes, one fsync per checkpoint instead of per insert.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingStatements(sqlite) }) });
  } else {
    await ensurePostgresDatabase(options.postgresUrl);
    const pool = new pg.Pool({
      connectionString: options.postgresUrl,
      max: options.poolSize,
      types: bigintAsNumber,
      // While the server is down, fail requests fast (503) instead of queueing them.
      connectionTimeoutMillis: 2000,
    });
    // A restarting server must not crash the process through an idle client's error event.
    pool.on('error', () => undefined);
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }
  const { error } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    await db.destroy();
    throw error;
  }
  return reportingUnavailable(new KyselyStore(db, options.driver));
}

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006']);

/** True for errors that mean "the database is not reachable right now", as opposed to a bad query. */
export function isStoreUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  return (
    !!e &&
    ((e.code !== undefined && CONNECTION_ERRORS.has(e.code)) ||
      /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect/i.test(e.message ?? ''))
  );
}

/** Every store call that fails because the database is away rejects with STORE_UNAVAILABLE (503). */
function reportingUnavailable(store: Store): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        return result instanceof Promise
          ? result.catch((err: unknown) => {
              if (isStoreUnavailable(err)) throw new AppError('STORE_UNAVAILABLE', 'the database is unavailable, retry later', 503);
              throw err;
            })
          : result;
      };
    },
  });
}

/**
 * Kysely prepares every query anew; preparing costs as much as running the
 * small statements Nuve issues. The store's queries are a handful of shapes,
 * so their prepared statements are kept. Safe because Kysely's SQLite driver
 * runs one statement at a time on its single connection and never streams here.
 */
function cachingStatements(sqlite: SQLite.Database): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    prepare(text: string) {
      let statement = statements.get(text);
      if (!statement) {
        if (statements.size >= 256) statements.clear();
        statement = sqlite.prepare(text);
        statements.set(text, statement);
      }
      return statement;
    },
    close: () => sqlite.close(),
  };
}

/** bigint columns hold epoch milliseconds, well inside Number's exact range. */
const bigintAsNumber = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/** Creates the database named in the URL when the server lacks it, so a fresh cluster needs no manual step. */
export async function ensurePostgresDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new AppError('STORE_CONFIG', `unsupported database name "${name}"`, 500);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name}"`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err; // created concurrently by another process
      });
    }
  } finally {
    await client.end();
  }
}

type RoomRow = Database['rooms'];
type TokenRow = Database['tokens'];
type ServiceRow = Database['services'];

const toService = (r: ServiceRow): ServiceRecord => ({
  id: r.id,
  name: r.name,
  key: r.key,
  isSuper: r.is_super === 1,
  createdAt: r.created_at,
});

const toRoom = (r: RoomRow): RoomRecord => ({
  id: r.id,
  serviceId: r.service_id,
  name: r.name,
  data: r.data === null ? undefined : JSON.parse(r.data),
  p2p: r.p2p === 1,
  mediaConfiguration: r.media_configuration,
  eapolicy: r.eapolicy as EaPolicy,
  gatewayId: r.gateway_id,
  createdAt: r.created_at,
});

const toToken = (r: TokenRow): TokenRecord => ({
  id: r.id,
  serviceId: r.service_id,
  roomId: r.room_id,
  userName: r.user_name,
  role: r.role,
  gatewayId: r.gateway_id,
  eapolicy: r.eapolicy as EaPolicy,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
});

interface PendingToken {
  row: TokenRow;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Rows per multi-row INSERT: 9 parameters each stays far below SQLite's and PostgreSQL's limits. */
const TOKEN_BATCH_MAX = 200;

const toTokenRow = (t: TokenRecord): TokenRow => ({
  id: t.id,
  service_id: t.serviceId,
  room_id: t.roomId,
  user_name: t.userName,
  role: t.role,
  gateway_id: t.gatewayId,
  eapolicy: t.eapolicy,
  expires_at: t.expiresAt,
  created_at: t.createdAt,
});

/** Placeholder values for `reusable`: compiled once, replaced by the real values on each run. */
const slot = (i: number): string => `\u0000slot${i}`;

/**
 * A query compiled once and run many times with other values: building and
 * compiling costs more than running these point queries. `bind(values)`
 * puts `values[i]` where `slot(i)` was compiled.
 */
function reusable<R>(compiled: CompiledQuery<R>): (...values: unknown[]) => CompiledQuery<R> {
  const positions = compiled.parameters.map((p) => {
    const i = typeof p === 'string' && p.startsWith('\u0000slot') ? Number(p.slice(5)) : Number.NaN;
    if (Number.isNaN(i)) throw new Error(`reusable query has a non-slot parameter: ${compiled.sql}`);
    return i;
  });
  return (...values) => ({ ...compiled, parameters: positions.map((i) => values[i]) });
}

class KyselyStore implements Store {
  private readonly tokenQueue: PendingToken[] = [];
  private readonly pendingWrites = new Set<Promise<void>>();
  private readonly queries;

  constructor(
    private readonly db: Kysely<Database>,
    readonly engine: 'sqlite' | 'postgres',
  ) {
    // The hot reads: every token request reads its room; every authenticated request may read its service.
    this.queries = {
      getService: reusable(db.selectFrom('services').selectAll().where('id', '=', slot(0)).compile()),
      getRoom: reusable(
        db.selectFrom('rooms').selectAll().where('id', '=', slot(0)).where('service_id', '=', slot(1)).compile(),
      ),
    };
  }

  async createService(s: ServiceRecord): Promise<void> {
    await this.db
      .insertInto('services')
      .values({ id: s.id, name: s.name, key: s.key, is_super: s.isSuper ? 1 : 0, created_at: s.createdAt })
      .execute();
  }

  async getService(id: string): Promise<ServiceRecord | undefined> {
    const [row] = (await this.db.executeQuery(this.queries.getService(id))).rows;
    return row && toService(row);
  }

  async listServices(): Promise<ServiceRecord[]> {
    const rows = await this.db.selectFrom('services').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(toService);
  }

  async findSuperService(): Promise<ServiceRecord | undefined> {
    const row = await this.db.selectFrom('services').selectAll().where('is_super', '=', 1).executeTakeFirst();
    return row && toService(row);
  }

  async updateServiceKey(id: string, key: string): Promise<void> {
    await this.db.updateTable('services').set({ key }).where('id', '=', id).execute();
  }

  async deleteService(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tokens').where('service_id', '=', id).execute();
      await tx.deleteFrom('rooms').where('service_id', '=', id).execute();
      const res = await tx.deleteFrom('services').where('id', '=', id).executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    });
  }

  async createRoom(r: RoomRecord): Promise<void> {
    await this.db
      .insertInto('rooms')
      .values({
        id: r.id,
        service_id: r.serviceId,
        name: r.name,
        data: r.data === undefined ? null : JSON.stringify(r.data),
        p2p: r.p2p ? 1 : 0,
        media_configuration: r.mediaConfiguration,
        eapolicy: r.eapolicy,
        gateway_id: r.gatewayId,
        created_at: r.createdAt,
      })
      .execute();
  }

  async getRoom(serviceId: string, roomId: string): Promise<RoomRecord | undefined> {
    const [row] = (await this.db.executeQuery(this.queries.getRoom(roomId, serviceId))).rows;
    return row && toRoom(row);
  }

  async listRooms(serviceId: string): Promise<RoomRecord[]> {
    const rows = await this.db
      .selectFrom('rooms')
      .selectAll()
      .where('service_id', '=', serviceId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toRoom);
  }

  async updateRoom(serviceId: string, roomId: string, c: RoomChanges): Promise<boolean> {
    const values: Partial<RoomRow> = {};
    if (c.name !== undefined) values.name = c.name;
    if ('data' in c) values.data = c.data === undefined ? null : JSON.stringify(c.data);
    if (c.p2p !== undefined) values.p2p = c.p2p ? 1 : 0;
    if (c.mediaConfiguration !== undefined) values.media_configuration = c.mediaConfiguration;
    if (c.eapolicy !== undefined) values.eapolicy = c.eapolicy;
    if (Object.keys(values).length === 0) return (await this.getRoom(serviceId, roomId)) !== undefined;
    const res = await this.db
      .updateTable('rooms')
      .set(values)
      .where('id', '=', roomId)
      .where('service_id', '=', serviceId)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  async deleteRoom(serviceId: string, roomId: string): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tokens').where('room_id', '=', roomId).where('service_id', '=', serviceId).execute();
      const res = await tx
        .deleteFrom('rooms')
        .where('id', '=', roomId)
        .where('service_id', '=', serviceId)
        .executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    });
  }

  async assignGateway(roomId: string, expected: string | null, next: string): Promise<string | null> {
    await this.db
      .updateTable('rooms')
      .set({ gateway_id: next })
      .where('id', '=', roomId)
      .where((eb) => (expected === null ? eb('gateway_id', 'is', null) : eb('gateway_id', '=', expected)))
      .execute();
    const row = await this.db.selectFrom('rooms').select('gateway_id').where('id', '=', roomId).executeTakeFirst();
    return row?.gateway_id ?? null;
  }

  async releaseGateway(gatewayId: string): Promise<number> {
    const res = await this.db
      .updateTable('rooms')
      .set({ gateway_id: null })
      .where('gateway_id', '=', gatewayId)
      .executeTakeFirst();
    return Number(res.numUpdatedRows);
  }

  /**
   * Tokens are the hot write (one per join). Inserts arriving in the same
   * turn of the event loop are written as one multi-row INSERT: one commit
   * (one WAL append or one PostgreSQL round trip and fsync) for the lot. Each
   * caller still resolves only once its row is committed.
   */
  createToken(t: TokenRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.tokenQueue.push({ row: toTokenRow(t), resolve, reject });
      if (this.tokenQueue.length === 1) setImmediate(() => this.flushTokens());
    });
  }

  private flushTokens(): void {
    while (this.tokenQueue.length > 0) {
      const batch = this.tokenQueue.splice(0, TOKEN_BATCH_MAX);
      const work = this.insertTokens(batch);
      this.pendingWrites.add(work);
      void work.finally(() => this.pendingWrites.delete(work));
    }
  }

  private async insertTokens(batch: PendingToken[]): Promise<void> {
    try {
      await this.db.insertInto('tokens').values(batch.map((p) => p.row)).execute();
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      // One bad row (say, its room was just deleted) fails the statement: retry singly so only that one fails.
      await Promise.all(batch.map((p) => this.insertTokens([p])));
    }
  }

  async consumeToken(id: string): Promise<TokenRecord | undefined> {
    const row = await this.db.deleteFrom('tokens').where('id', '=', id).returningAll().executeTakeFirst();
    return row && toToken(row);
  }

  async createSessionToken(t: SessionTokenRecord): Promise<void> {
    await this.db
      .insertInto('session_tokens')
      .values({
        id: t.id,
        service_id: t.serviceId,
        user_name: t.userName,
        scopes: t.scopes.join(','),
        room_id: t.roomId,
        role: t.role,
        gateway_id: t.gatewayId,
        expires_at: t.expiresAt,
        created_at: t.createdAt,
      })
      .execute();
  }

  async consumeSessionToken(id: string): Promise<SessionTokenRecord | undefined> {
    const r = await this.db.deleteFrom('session_tokens').where('id', '=', id).returningAll().executeTakeFirst();
    return (
      r && {
        id: r.id,
        serviceId: r.service_id,
        userName: r.user_name,
        scopes: r.scopes.split(','),
        roomId: r.room_id,
        role: r.role,
        gatewayId: r.gateway_id,
        expiresAt: r.expires_at,
        createdAt: r.created_at,
      }
    );
  }

  async deleteExpiredTokens(now: number): Promise<number> {
    const res = await this.db.deleteFrom('tokens').where('expires_at', '<', now).executeTakeFirst();
    const sessions = await this.db.deleteFrom('session_tokens').where('expires_at', '<', now).executeTakeFirst();
    return Number(res.numDeletedRows) + Number(sessions.numDeletedRows);
  }

  async ping(): Promise<void> {
    await sql`SELECT 1`.execute(this.db);
  }

  async close(): Promise<void> {
    this.flushTokens();
    await Promise.allSettled([...this.pendingWrites]);
    await this.db.destroy();
  }
}
