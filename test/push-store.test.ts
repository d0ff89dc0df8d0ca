import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { type Database, openDatabase } from '../src/core/database.js';
import { CountBounds, PushStore, type StoredMessage } from '../src/push/store.js';
import { createTestDatabase } from './helpers/cluster.js';

// The store's per-user cap, which on embedded SQLite skips reading the counts of users whose
// in-memory bound shows them at or under the cap. Every check here compares with the rows themselves:
// a bound that undercounts lets a user past the cap, and these fail.

const SERVICE = 'svc';
let seq = 0;
const message = (userName: string, expiresAt: number | null = null): StoredMessage => ({
  id: `pm_${randomBytes(8).toString('hex')}`,
  seq: ++seq,
  serviceId: SERVICE,
  userName,
  data: { n: seq },
  createdAt: Date.now(),
  expiresAt,
});

/** What a safe push does per user: store, then enforce the cap. */
async function push(store: PushStore, userName: string, cap: number, expiresAt: number | null = null): Promise<{ m: StoredMessage; dropped: number }> {
  const m = message(userName, expiresAt);
  await store.add(m);
  const dropped = await store.enforceCap(SERVICE, [userName], cap);
  return { m, dropped: dropped.get(userName) ?? 0 };
}

async function rows(store: PushStore, userName: string): Promise<number> {
  return (await store.pending(SERVICE, userName, 0, 100_000)).length;
}

const sqlite = () => openDatabase({ driver: 'sqlite', sqlitePath: ':memory:', postgresUrl: '', poolSize: 1 });

/**
 * Acknowledgements of one turn share one DELETE: each still deletes only its own tenant's and user's
 * messages, credits each id once, and tells apart another user's id (foreign) from one already gone.
 */
async function ackScoping(store: PushStore): Promise<void> {
  const other = 'svc-other';
  const mine = [message('ann'), message('ann'), message('ann')];
  const bobs = message('bob');
  const sameName = { ...message('ann'), serviceId: other };
  await Promise.all([...mine, bobs, sameName].map((m) => store.add(m)));
  assert.deepEqual(await store.ack(SERVICE, 'ann', [mine[0]!.id]), { acked: 1, foreign: false });
  // One turn: all of these go as one batch.
  const outcomes = await Promise.all([
    store.ack(SERVICE, 'ann', [mine[0]!.id, mine[1]!.id]), // the first already arrived
    store.ack(SERVICE, 'ann', [mine[1]!.id]), // the same id twice in one batch: credited once
    store.ack(SERVICE, 'bob', [mine[2]!.id, bobs.id]), // ann's id: foreign, and ann's stays
    store.ack(other, 'ann', [mine[2]!.id]), // another tenant's ann: foreign
    store.ack(SERVICE, 'ann', [sameName.id]), // the other tenant's ann's id: foreign, and it stays
    store.ack(SERVICE, 'ann', [`pm_${randomBytes(8).toString('hex')}`]), // never existed
  ]);
  assert.deepEqual(outcomes, [
    { acked: 1, foreign: false },
    { acked: 0, foreign: false },
    { acked: 1, foreign: true },
    { acked: 0, foreign: true },
    { acked: 0, foreign: true },
    { acked: 0, foreign: false },
  ]);
  assert.deepEqual((await store.pending(SERVICE, 'ann', 0, 10)).map((m) => m.id), [mine[2]!.id]);
  assert.deepEqual((await store.pending(other, 'ann', 0, 10)).map((m) => m.id), [sameName.id]);
  assert.deepEqual(await store.pending(SERVICE, 'bob', 0, 10), []);
}

describe('acknowledgements', () => {
  test('embedded SQLite: one batch, each deleting only its own', async () => {
    const database = await sqlite();
    const store = await PushStore.open(database);
    await ackScoping(store);
    await store.close();
    await database.close();
  });

  test('PostgreSQL: one batch, each deleting only its own', async () => {
    const testDb = await createTestDatabase();
    const database = await openDatabase({ driver: 'postgres', sqlitePath: '', postgresUrl: testDb.url, poolSize: 2 });
    try {
      const store = await PushStore.open(database);
      await ackScoping(store);
      await store.close();
    } finally {
      await database.close();
      await testDb.drop();
    }
  });
});

describe('count bounds', () => {
  test('a row committed while its count is read is in the bound, whether or not the read saw it', () => {
    const bounds = new CountBounds();
    assert.equal(bounds.mayExceed(SERVICE, 'u', 2), true, 'never read: may exceed');
    const learn = bounds.reading(SERVICE, 'u');
    // Committed after the read was issued: the read may not have seen it.
    bounds.inserted(SERVICE, 'u');
    bounds.inserted(SERVICE, 'u');
    learn(1);
    assert.equal(bounds.mayExceed(SERVICE, 'u', 3), false, '1 read + 2 since = 3');
    assert.equal(bounds.mayExceed(SERVICE, 'u', 2), true, 'the 2 committed meanwhile count');
    bounds.inserted(SERVICE, 'u');
    assert.equal(bounds.mayExceed(SERVICE, 'u', 3), true);
    assert.equal(bounds.mayExceed(SERVICE, 'v', 100), true, 'another user is unknown');
    // A newer read replaces the bound.
    bounds.reading(SERVICE, 'u')(0);
    assert.equal(bounds.mayExceed(SERVICE, 'u', 0), false);
  });
});

describe('per-user cap, embedded SQLite (counts bounded in memory)', () => {
  test('acknowledgements, cancels and the sweep lower the count; the cap still drops exactly the excess, oldest first', async () => {
    const database = await sqlite();
    const store = await PushStore.open(database);
    const cap = 3;
    const sent: StoredMessage[] = [];
    for (let i = 0; i < 3; i++) sent.push((await push(store, 'u', cap)).m);
    assert.equal(await rows(store, 'u'), 3);
    // Arrived and cancelled: two fewer, so two more fit without a drop.
    assert.equal((await store.ack(SERVICE, 'u', [sent[0]!.id])).acked, 1);
    assert.equal(await store.cancel(SERVICE, 'u', sent[1]!.id), true);
    for (let i = 0; i < 2; i++) assert.equal((await push(store, 'u', cap)).dropped, 0);
    // The next ones each drop the oldest.
    const next = await push(store, 'u', cap);
    assert.equal(next.dropped, 1);
    assert.equal(await store.takeDropped(SERVICE, 'u'), 1);
    const left = await store.pending(SERVICE, 'u', 0, 100);
    assert.equal(left.length, 3);
    assert.equal(left.at(-1)!.id, next.m.id);
    assert.ok(!left.some((m) => m.id === sent[2]!.id), 'the oldest was dropped');
    // Swept past their TTL: room again.
    const expiring = await push(store, 'v', cap, Date.now() - 1);
    assert.equal(expiring.dropped, 0);
    assert.equal(await store.sweep(Date.now()), 1);
    for (let i = 0; i < 3; i++) assert.equal((await push(store, 'v', cap)).dropped, 0);
    assert.equal((await push(store, 'v', cap)).dropped, 1);
    await store.close();
    await database.close();
  });

  test('concurrent pushes to one user, with acknowledgements in between, never leave it past the cap', async () => {
    const database = await sqlite();
    const store = await PushStore.open(database);
    const cap = 10;
    let dropped = 0;
    let acked = 0;
    for (let round = 0; round < 20; round++) {
      // Pushes of one round share insert batches and cap reads, in every interleaving the event loop makes.
      const results = await Promise.all(Array.from({ length: 7 }, () => push(store, 'u', cap)));
      dropped += results.reduce((a, r) => a + r.dropped, 0);
      assert.ok((await rows(store, 'u')) <= cap, `round ${round}: ${await rows(store, 'u')} rows, cap ${cap}`);
      if (round % 3 === 0) {
        const oldest = await store.pending(SERVICE, 'u', 0, 2);
        acked += (await store.ack(SERVICE, 'u', oldest.map((m) => m.id))).acked;
      }
    }
    assert.equal(await rows(store, 'u'), cap);
    assert.equal(dropped, 20 * 7 - acked - cap, 'every row is pending, acknowledged or dropped');
    await store.close();
    await database.close();
  });

  test('two stores on one database share the bound: rows the other stored count', async () => {
    const database = await sqlite();
    const a = await PushStore.open(database);
    const b = await PushStore.open(database);
    await capAcrossStores(a, b);
    await a.close();
    await b.close();
    await database.close();
  });
});

/** A learns the user's count, B stores up to the cap, A stores one more: that drops one. */
async function capAcrossStores(a: PushStore, b: PushStore): Promise<void> {
  const cap = 5;
  const user = `u${randomBytes(4).toString('hex')}`;
  assert.equal((await push(a, user, cap)).dropped, 0);
  for (let i = 0; i < cap - 1; i++) assert.equal((await push(b, user, cap)).dropped, 0);
  assert.equal((await push(a, user, cap)).dropped, 1, "A's store must not take the user for one under the cap");
  assert.equal(await rows(a, user), cap);
}

describe('per-user cap, PostgreSQL (two push roles write the same tables)', () => {
  const databases: Database[] = [];
  let drop: (() => Promise<void>) | undefined;
  after(async () => {
    for (const d of databases) await d.close();
    await drop?.();
  });

  test("each push role's cap check sees the rows the other stored", async () => {
    const testDb = await createTestDatabase();
    drop = testDb.drop;
    const options = { driver: 'postgres' as const, sqlitePath: '', postgresUrl: testDb.url, poolSize: 4 };
    // Two pools, as two push role processes have.
    const first = await openDatabase(options);
    databases.push(first);
    const second = await openDatabase(options);
    databases.push(second);
    const a = await PushStore.open(first);
    const b = await PushStore.open(second);
    await capAcrossStores(a, b);
    await capAcrossStores(b, a);
    await a.close();
    await b.close();
  });
});
