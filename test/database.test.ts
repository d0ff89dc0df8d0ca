import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Kysely, Migrator, sql } from 'kysely';
import { type Database, type RoleMigrations, openDatabase } from '../src/core/database.js';
import { newId } from '../src/core/ids.js';
import { nuveMigrations } from '../src/nuve/store/migrations.js';
import { openNuveStore } from '../src/nuve/store/store.js';

/** Every migration Nuve has, in order: its history must hold exactly these, whatever another role adds. */
const NUVE_HISTORY = Object.keys(nuveMigrations.migrations).sort();
import { type StoreKind, testStoreOptions } from './helpers/nuve-harness.js';
import { TcpRelay, createTestDatabase, relayedUrl } from './helpers/cluster.js';
import { hostPort, serviceUrl } from './helpers/services.js';
import { loadConfig } from '../src/core/config.js';

/**
 * A role other than Nuve with tables of its own (a push role, say): its first
 * migration has the very name of Nuve's, so histories kept in one table would
 * mistake one for the other.
 */
const pushTables = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('push_subscriptions')
        .addColumn('id', 'varchar(24)', (c) => c.primaryKey())
        .addColumn('endpoint', 'text', (c) => c.notNull())
        .execute();
    },
  },
};
const pushMigrations: RoleMigrations = { table: 'push_migration', migrations: pushTables };

interface PushTables {
  push_subscriptions: { id: string; endpoint: string };
}

async function migrationsIn(database: Database, table: string): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`SELECT name FROM ${sql.table(table)} ORDER BY name`.execute(database.kysely());
  return rows.map((r) => r.name);
}

for (const kind of ['sqlite-file', 'postgres'] as StoreKind[]) {
  describe(`two roles' tables in one database on ${kind}`, () => {
    const { options, cleanup } = testStoreOptions(kind);
    let database: Database;

    before(async () => {
      database = await openDatabase(options);
    });
    after(async () => {
      await database.close();
      await cleanup();
    });

    test('each role migrates its own tables, recorded in its own migration table, and neither reruns on reopening', async () => {
      const nuve = await openNuveStore(database);
      const service = { id: newId(), name: 'tenant', key: 'k'.repeat(24), isSuper: false, createdAt: Date.now() };
      await nuve.createService(service);
      await database.migrate(pushMigrations);
      await database.kysely<PushTables>().insertInto('push_subscriptions').values({ id: 's1', endpoint: 'https://push.example/1' }).execute();

      assert.deepEqual(await migrationsIn(database, 'kysely_migration'), NUVE_HISTORY, "Nuve's history holds Nuve's migrations only");
      assert.deepEqual(await migrationsIn(database, 'push_migration'), ['0001_initial'], "the push role's history holds its own");

      // Reopened (a restart), migrated in the other order: nothing runs again (a rerun would fail creating an existing table).
      await nuve.close();
      await database.close();
      database = await openDatabase(options);
      await database.migrate(pushMigrations);
      const reopened = await openNuveStore(database);
      assert.deepEqual(await reopened.getService(service.id), service);
      const rows = await database.kysely<PushTables>().selectFrom('push_subscriptions').selectAll().execute();
      assert.deepEqual(rows, [{ id: 's1', endpoint: 'https://push.example/1' }]);

      // A later migration of one role runs alone; the other role's history is untouched.
      await database.migrate({
        ...pushMigrations,
        migrations: {
          ...pushTables,
          '0002_topic': {
            async up(db: Kysely<any>) {
              await db.schema.alterTable('push_subscriptions').addColumn('topic', 'text').execute();
            },
          },
        },
      });
      assert.deepEqual(await migrationsIn(database, 'push_migration'), ['0001_initial', '0002_topic']);
      assert.deepEqual(await migrationsIn(database, 'kysely_migration'), NUVE_HISTORY);
      await reopened.close();
    });
  });
}

test('a database Nuve migrated before roles had their own migration tables opens without rerunning anything', async () => {
  const { options, cleanup } = testStoreOptions('sqlite-file');
  try {
    // What the store did before: Kysely's default migration table, with the first migration only.
    const earlier = await openDatabase(options);
    const first = { '0001_initial': nuveMigrations.migrations['0001_initial']! };
    const { error } = await new Migrator({ db: earlier.kysely(), provider: { getMigrations: async () => first } }).migrateToLatest();
    assert.equal(error, undefined);
    await earlier.close();

    const database = await openDatabase(options);
    const store = await openNuveStore(database);
    await store.ping();
    // The later migrations ran on top; the first did not run again (it would fail: its tables exist).
    assert.deepEqual(await migrationsIn(database, 'kysely_migration'), NUVE_HISTORY);
    await store.close();
    await database.close();
  } finally {
    await cleanup();
  }
});

test('PostgreSQL dropping the connection of a transaction between two statements fails that transaction, not the process', async () => {
  const server = hostPort(serviceUrl('postgres'));
  const relay = new TcpRelay(server.port, server.host);
  await relay.up();
  const { url, drop } = await createTestDatabase();
  const { store } = loadConfig({ env: {}, overrides: { store: { driver: 'postgres', postgresUrl: relayedUrl(url, relay.port), poolSize: 2 } } });
  const database = await openDatabase(store);
  try {
    const transaction = database.kysely().transaction().execute(async (trx) => {
      await sql`SELECT 1`.execute(trx);
      // Checked out and idle: the server goes away now.
      await relay.down();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await sql`SELECT 2`.execute(trx);
    });
    await assert.rejects(transaction);
    await relay.up();
    // The pool recovers with fresh connections.
    const { rows } = await sql<{ n: number }>`SELECT 3 AS n`.execute(database.kysely());
    assert.equal(rows[0]!.n, 3);
  } finally {
    await database.close();
    await relay.down();
    await drop();
  }
});
