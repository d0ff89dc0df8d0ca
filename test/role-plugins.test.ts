import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Kysely, sql } from 'kysely';
import type { Bus } from '../src/core/bus/bus.js';
import { loadConfig } from '../src/core/config.js';
import type { Database } from '../src/core/database.js';
import { type Role, RoleError, RoleRegistry } from '../src/core/role.js';
import { roles, startPlatform } from '../src/platform.js';
import { testLogger } from './helpers/nuve-harness.js';

/** What happened to the test roles, in order, with what they saw of Nuve at the time. */
const events: string[] = [];

/** A role nothing else knows: it answers on the bus and keeps a table of its own in the process's database. */
class Toy {
  constructor(
    readonly bus: Bus,
    readonly database: Database,
  ) {}

  /** Reads Nuve's table through the shared database: only the same connection sees an in-memory SQLite's tables. */
  async tenants(): Promise<number> {
    const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM services`.execute(this.database.kysely());
    return Number(rows[0]!.n);
  }
}

declare module '../src/core/role.js' {
  interface RoleInstances {
    toy: Toy;
    beacon: { name: string };
  }
}

const toyRole: Role<Toy> = {
  name: 'toy',
  // Beacon is registered after toy: only this dependency puts it first.
  after: ['nuve', 'beacon'],
  async create(ctx) {
    const database = await ctx.database();
    await database.migrate({
      table: 'toy_migration',
      migrations: {
        '0001_initial': {
          async up(db: Kysely<any>) {
            await db.schema.createTable('toy_things').addColumn('id', 'text', (c) => c.primaryKey()).execute();
          },
        },
      },
    });
    return new Toy(await ctx.bus(), database);
  },
  async start(toy) {
    events.push(`start:toy tenants=${await toy.tenants()}`);
    toy.bus.respond('toy.echo', (payload) => ({ echoed: payload }));
  },
  async drain() {
    events.push('drain:toy');
  },
  async close(toy) {
    // The shared resources outlive every role: the database still answers.
    events.push(`close:toy tenants=${await toy.tenants()}`);
  },
};

const beaconRole: Role<{ name: string }> = {
  name: 'beacon',
  after: [],
  create: () => ({ name: 'beacon' }),
  start: async () => void events.push('start:beacon'),
  drain: async () => void events.push('drain:beacon'),
  close: async () => void events.push('close:beacon'),
};

describe('roles as plugins', () => {
  test('a role defined outside the platform starts after its dependencies, drains and closes before them, on the shared context', async () => {
    roles.register(toyRole);
    roles.register(beaconRole);
    assert.deepEqual(roles.names().slice(-2), ['toy', 'beacon'], 'the CLI offers what is registered');

    const config = loadConfig({ env: {}, overrides: { store: { sqlitePath: ':memory:' }, nuve: { port: 0 } } });
    const platform = await startPlatform(config, ['toy', 'beacon', 'nuve'], testLogger());
    const toy = platform.role('toy')!;
    assert.deepEqual(platform.roles, ['nuve', 'beacon', 'toy']);
    // Nuve's superService was in the toy's database when it started: Nuve had started, on the same database.
    assert.deepEqual(events, ['start:beacon', 'start:toy tenants=1']);
    assert.equal(platform.role('beacon')?.name, 'beacon');
    assert.equal(platform.agent, undefined);

    assert.equal(toy.bus, platform.bus, 'one bus per process');
    assert.deepEqual(await platform.bus.request('toy.echo', { hi: 1 }), { echoed: { hi: 1 } });
    const nuve = platform.nuve!;
    assert.equal((await fetch(`${nuve.url}/rooms`)).status, 401, 'Nuve runs beside it');

    await platform.drain();
    await platform.close();
    assert.deepEqual(events, ['start:beacon', 'start:toy tenants=1', 'drain:toy', 'drain:beacon', 'close:toy tenants=1', 'close:beacon']);
    await assert.rejects(toy.tenants(), 'the database is closed after the last role');
    await assert.rejects(platform.bus.request('toy.echo', {}), 'and so is the bus');
  });

  test('unknown roles and dependency cycles are refused before anything starts', async () => {
    const config = loadConfig({ env: {} });
    await assert.rejects(startPlatform(config, ['nuve', 'nuvee'], testLogger()), (err: unknown) => {
      assert.ok(err instanceof RoleError);
      assert.match(err.message, /unknown role "nuvee" \(known: agent, nuve, push, gateway/);
      return true;
    });

    const role = (name: string, after: string[]): Role => ({
      name,
      after,
      create: () => name,
      start: async () => undefined,
      drain: async () => undefined,
      close: async () => undefined,
    });
    const cyclic = new RoleRegistry([role('a', []), role('b', ['d']), role('c', ['b']), role('d', ['c'])]);
    assert.throws(() => cyclic.order(['a']), /roles start after each other in a cycle: b → d → c → b/);
    const dangling = new RoleRegistry([role('a', ['z'])]);
    assert.throws(() => dangling.order(['a']), /role "a" starts after unknown role "z"/);
    assert.throws(() => new RoleRegistry([role('a', []), role('a', [])]), /role "a" is already registered/);
    assert.deepEqual(
      new RoleRegistry([role('late', ['early']), role('first', []), role('early', [])]).order(['early', 'late', 'first']).map((r) => r.name),
      ['first', 'early', 'late'],
      'dependencies first, otherwise registration order, whatever order they were asked in',
    );
  });
});
