import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, type Migration, Migrator, PostgresDialect, SqliteDialect, type SqliteDatabase } from 'kysely';
import pg from 'pg';
import type { Config } from './config.js';
import { AppError } from './errors.js';

export type DatabaseOptions = Config['store'];

/**
 * One role's schema history. Each role records its migrations in its own
 * table: Kysely refuses to run when its table lists a migration it was not
 * given, so roles sharing one table could not evolve apart.
 */
export interface RoleMigrations {
  /** The migration table; its lock table is this name plus `_lock`. Never renamed once released. */
  table: string;
  /** By name, run in name order. Append only: a released migration is never edited. */
  migrations: Record<string, Migration>;
}

/**
 * The process's database: SQLite embedded, PostgreSQL in a cluster. Opened
 * once and shared by every role of the process (an embedded SQLite file is
 * locked to one connection); each role keeps its own tables, repositories
 * and migrations on it.
 */
export interface Database {
  readonly engine: 'sqlite' | 'postgres';
  /** The shared Kysely instance, typed with the caller's tables. */
  kysely<Tables>(): Kysely<Tables>;
  /** Brings one role's tables up to date; other roles' tables and histories are untouched. */
  migrate(role: RoleMigrations): Promise<void>;
  /** Ends the connection or pool: after the last role using it closed. */
  close(): Promise<void>;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  let db: Kysely<unknown>;
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
    db = new Kysely({ dialect: new SqliteDialect({ database: cachingStatements(sqlite) }) });
  } else {
    await ensurePostgresDatabase(options.postgresUrl);
    const pool = new pg.Pool({
      connectionString: options.postgresUrl,
      max: options.poolSize,
      types: bigintAsNumber,
      // While the server is down, fail requests fast (503) instead of queueing them.
      connectionTimeoutMillis: 2000,
    });
    // A restarting server must not crash the process through a client's error event: the pool listens to
    // idle clients only, so a client checked out between two statements (a transaction's JavaScript) had
    // none, and a reset connection then ended the process. Every client keeps one; its next statement fails.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  }
  return {
    engine: options.driver,
    kysely: <Tables>() => db as Kysely<Tables>,
    async migrate({ table, migrations }) {
      const { error } = await new Migrator({
        db,
        provider: { getMigrations: async () => migrations },
        migrationTableName: table,
        migrationLockTableName: `${table}_lock`,
      }).migrateToLatest();
      if (error) throw error;
    },
    close: () => db.destroy(),
  };
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

/** Every call of a repository that fails because the database is away rejects with STORE_UNAVAILABLE (503). */
export function reportingUnavailable<T extends object>(repository: T): T {
  return new Proxy(repository, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        return result instanceof Promise
          ? result.catch((err: unknown) => {
              if (isStoreUnavailable(err)) throw new AppError('STORE_UNAVAILABLE');
              throw err;
            })
          : result;
      };
    },
  });
}

/**
 * Kysely prepares every query anew; preparing costs as much as running the
 * small statements the roles issue. Their queries are a handful of shapes,
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
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new AppError('STORE_CONFIG', `unsupported database name "${name}"`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${name}"`).catch((err: { code?: string }) => {
        // Created concurrently by another process: 42P04 once it exists, 23505 (pg_database's unique index) while both commit.
        if (err.code !== '42P04' && err.code !== '23505') throw err;
      });
    }
  } finally {
    await client.end();
  }
}
