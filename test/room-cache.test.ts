/**
 * The room cache across Nuve instances: three Nuves on one PostgreSQL database, each on its own
 * connection to one real NATS server. A and B hear each other's invalidations, and B trusts a room
 * for a minute without one, so what B sees at once it saw through the bus. C hears none of them
 * (its `nuve.room.changed` and `nuve.service.changed` are dropped): only its short TTL heals it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Bus } from '../src/core/bus/bus.js';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { loadConfig } from '../src/core/config.js';
import { AppError } from '../src/core/errors.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type TokenGrant, subjects } from '../src/core/subjects.js';
import { GatewayPresence } from '../src/gateway/presence.js';
import { cacheSubjects } from '../src/nuve/cache-invalidation.js';
import { Nuve } from '../src/nuve/nuve.js';
import { RoomCache } from '../src/nuve/room-cache.js';
import { newRoomRecord } from '../src/nuve/routes/rooms.js';
import { type RoomRecord, type Store, openStore } from '../src/nuve/store/store.js';
import { decodeTokenText, rawHttp, testLogger, testStoreOptions, waitFor } from './helpers/nuve-harness.js';
import { serviceUrl } from './helpers/services.js';

const LOSSY_TTL_MS = 1000;

/** A bus whose subscribers of `dropped` subjects never hear a thing: invalidations lost on the way. */
function deafTo(inner: Bus, dropped: string[]): Bus {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'subscribe') {
        return (subject: string, ...rest: Parameters<Bus['subscribe']> extends [string, ...infer R] ? R : never) =>
          dropped.includes(subject) ? { unsubscribe: () => undefined } : target.subscribe(subject, ...rest);
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

interface Tenant {
  id: string;
  key: string;
}

/** A room record as a store keeps it, named after its id. */
const room = (id: string, serviceId = 's1'): RoomRecord => newRoomRecord(serviceId, id, {}, id);

describe('room cache across Nuve instances (NATS, PostgreSQL)', () => {
  const logger = testLogger();
  const { options: storeOptions, cleanup } = testStoreOptions('postgres');
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: 'silent' },
      store: storeOptions,
      nuve: { host: '127.0.0.1', port: 0, rateLimit: { enabled: false } },
    },
  });
  const buses: NatsBus[] = [];
  const stores: Store[] = [];
  const nuves: Nuve[] = [];
  let a: Nuve;
  let b: Nuve;
  let c: Nuve;
  let presence: GatewayPresence;
  let root: Tenant;

  async function startNuve(ttlMs: number, deaf = false): Promise<Nuve> {
    const nats = await NatsBus.connect(serviceUrl('nats'), logger);
    buses.push(nats);
    const store = await openStore(config.store);
    stores.push(store);
    const bus = deaf ? deafTo(nats, [cacheSubjects.roomChanged, cacheSubjects.serviceChanged]) : nats;
    const nuve = new Nuve({ config, bus, store, logger, roomCache: { ttlMs, maxEntries: 1000 } });
    await nuve.start();
    nuves.push(nuve);
    return nuve;
  }

  function call(nuve: Nuve, tenant: Tenant, method: string, path: string, body?: unknown, user?: string) {
    const headers: Record<string, string> = {
      authorization: buildMAuthHeader({
        serviceId: tenant.id,
        key: tenant.key,
        username: user,
        role: user && 'presenter',
        cnonce: randomBytes(12).toString('hex'),
      }),
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return rawHttp(nuve.url, method, path, headers, body === undefined ? undefined : JSON.stringify(body));
  }

  async function createRoom(nuve: Nuve, tenant: Tenant, options?: Record<string, unknown>): Promise<string> {
    const res = await call(nuve, tenant, 'POST', '/rooms', { name: 'room', ...(options && { options }) });
    assert.equal(res.status, 200, res.text);
    return (res.json as { _id: string })._id;
  }

  const tokenRequest = (nuve: Nuve, tenant: Tenant, roomId: string) => call(nuve, tenant, 'POST', `/rooms/${roomId}/tokens`, undefined, 'alice');

  async function token(nuve: Nuve, tenant: Tenant, roomId: string): Promise<Record<string, unknown>> {
    const res = await tokenRequest(nuve, tenant, roomId);
    assert.equal(res.status, 200, res.text);
    return { ...decodeTokenText(res.text), text: res.text };
  }

  /**
   * A token from `nuve`, after which its cache holds the room: a room's first token assigns it a
   * gateway, which makes the issuing Nuve drop its copy; the second read keeps it.
   */
  async function cachedOn(nuve: Nuve, tenant: Tenant, roomId: string): Promise<Record<string, unknown>> {
    await token(nuve, tenant, roomId);
    const issued = await token(nuve, tenant, roomId);
    assert.ok(holds(nuve, roomId), 'the room is cached');
    return issued;
  }

  /** Whether the Nuve's cache holds the room, looked at without loading it (a load would cache it again). */
  function holds(nuve: Nuve, roomId: string): boolean {
    const entries = (nuve.rooms as unknown as { entries: Map<string, unknown> }).entries;
    return [...entries.keys()].some((key) => key.endsWith(`\u0000${roomId}`));
  }

  /**
   * The change reached `nuve` over the bus: its entry is gone though its TTL is a minute, before any
   * request told it. The changing Nuve answered once it heard its own invalidation back, so this is
   * usually already true; under load the other connection may be handed it a moment later.
   */
  async function heardOn(nuve: Nuve, roomId: string): Promise<void> {
    await waitFor(() => !holds(nuve, roomId), 1000, 'the invalidation heard');
  }

  async function createTenant(): Promise<Tenant> {
    const key = randomBytes(18).toString('base64url');
    const res = await call(a, root, 'POST', '/services', { name: `tenant-${randomBytes(3).toString('hex')}`, key });
    assert.equal(res.status, 200, res.text);
    return { id: JSON.parse(res.text) as string, key };
  }

  before(async () => {
    a = await startNuve(60_000);
    b = await startNuve(60_000);
    c = await startNuve(LOSSY_TTL_MS, true);
    const su = a.superServiceRecord;
    root = { id: su.id, key: su.key };
    presence = new GatewayPresence(buses[0]!, logger, { id: 'gw-1', url: 'ws://127.0.0.1:9100/', weight: 1 }, 500, () => ({
      rooms: 0,
      peers: 0,
    }));
    presence.start();
    await waitFor(() => nuves.every((n) => n.registry.get('gw-1') !== undefined), 5000, 'gateway registered on every Nuve');
  });

  after(async () => {
    presence?.stop();
    for (const nuve of nuves) await nuve.close();
    for (const store of stores) await store.close();
    for (const bus of buses) await bus.close();
    await cleanup();
  });

  test('a room created on A gets tokens on B and C at once, even one they were asked for before it existed', async () => {
    const tenant = await createTenant();
    const roomId = await createRoom(a, tenant);
    assert.equal((await token(b, tenant, roomId)).roomId, roomId);
    assert.equal((await token(c, tenant, roomId)).roomId, roomId);
    // A creation publishes nothing, so B and C must not remember having missed an id: one asked for
    // before its row exists (here written with a chosen id, as POST /rooms on another Nuve writes it).
    const early = `early${randomBytes(8).toString('hex')}`;
    for (const nuve of [b, c]) assert.equal((await tokenRequest(nuve, tenant, early)).json?.code, 'ROOM_NOT_FOUND');
    await stores[0]!.createRoom(room(early, tenant.id));
    assert.equal((await token(b, tenant, early)).roomId, early);
    assert.equal((await token(c, tenant, early)).roomId, early);
  });

  test("a room's new options on A are in B's next token", async () => {
    const roomId = await createRoom(a, root, { eapolicy: 'ROOM-BEST' });
    assert.equal((await cachedOn(b, root, roomId)).eapolicy, 'ROOM-BEST');
    const put = await call(a, root, 'PUT', `/rooms/${roomId}`, { name: 'renamed', options: { eapolicy: 'TTL-BEST' } });
    assert.equal(put.status, 200, put.text);
    await heardOn(b, roomId);
    assert.equal((await cachedOn(b, root, roomId)).eapolicy, 'TTL-BEST');
    const patch = await call(a, root, 'PATCH', `/rooms/${roomId}`, { options: { eapolicy: 'ROOM-BEST', group: 'team-1' } });
    assert.equal(patch.status, 200, patch.text);
    await heardOn(b, roomId);
    assert.equal((await token(b, root, roomId)).eapolicy, 'ROOM-BEST');
    const cached = await b.rooms.get(root.id, roomId);
    assert.equal(cached?.group, 'team-1');
    assert.equal(cached?.name, 'renamed');
  });

  test('a room deleted on A: B refuses its next token at once, and a token issued before is refused at consumption', async () => {
    const roomId = await createRoom(a, root);
    const before = await cachedOn(b, root, roomId); // and a token to consume later
    assert.equal((await call(a, root, 'DELETE', `/rooms/${roomId}`)).status, 200);
    await heardOn(b, roomId);
    const res = await tokenRequest(b, root, roomId);
    assert.equal(res.status, 404, res.text);
    assert.equal(res.json?.code, 'ROOM_NOT_FOUND');
    await assert.rejects(
      buses[1]!.request<TokenGrant>(subjects.tokenConsume, { token: before.text, gatewayId: 'gw-1' }),
      (err: unknown) => err instanceof AppError && err.code === 'TOKEN_ALREADY_USED',
    );
  });

  test('a lost invalidation: C serves the old room only until its TTL, and never a token for a deleted room', async () => {
    const roomId = await createRoom(a, root, { eapolicy: 'ROOM-BEST' });
    assert.equal((await cachedOn(c, root, roomId)).eapolicy, 'ROOM-BEST');
    await call(a, root, 'PATCH', `/rooms/${roomId}`, { options: { eapolicy: 'TTL-BEST' } });
    // C never heard of it: within the TTL it still issues the old options (what the TTL bounds)...
    assert.equal((await token(c, root, roomId)).eapolicy, 'ROOM-BEST');
    await sleep(LOSSY_TTL_MS + 100);
    // ...and after it, the new ones.
    assert.equal((await token(c, root, roomId)).eapolicy, 'TTL-BEST');

    // A deleted room still cached on C: the token row's foreign key refuses it, answered as without a cache.
    const gone = await createRoom(a, root);
    await cachedOn(c, root, gone);
    assert.equal((await call(a, root, 'DELETE', `/rooms/${gone}`)).status, 200);
    const res = await tokenRequest(c, root, gone);
    assert.equal(res.status, 404, res.text);
    assert.equal(res.json?.code, 'ROOM_NOT_FOUND');
  });

  test("tenants are isolated: another tenant's room id is not found through the cache, and a deleted tenant is forgotten", async () => {
    const t1 = await createTenant();
    const t2 = await createTenant();
    const roomId = await createRoom(a, t1);
    await cachedOn(b, t1, roomId);
    for (const nuve of [a, b, c]) {
      const res = await tokenRequest(nuve, t2, roomId);
      assert.equal(res.status, 404, res.text);
      assert.equal(res.json?.code, 'ROOM_NOT_FOUND');
    }
    // t2 cannot change or delete it either, so t1 keeps getting tokens.
    assert.equal((await call(b, t2, 'DELETE', `/rooms/${roomId}`)).status, 404);
    assert.equal((await token(b, t1, roomId)).roomId, roomId);

    // Deleting t1 on A: B drops the tenant (MAuth fails) rather than serving its cached room.
    const del = await call(a, root, 'DELETE', `/services/${t1.id}`);
    assert.equal(del.status, 200, del.text);
    await heardOn(b, roomId);
    const res = await tokenRequest(b, t1, roomId);
    assert.equal(res.status, 401, res.text);
    assert.equal(res.json?.code, 'AUTH_BAD_SIGNATURE');
  });
});

describe('RoomCache on a store (SQLite)', () => {
  let store: Store;
  let reads = 0;
  const read = (serviceId: string, roomId: string) => {
    reads++;
    return store.getRoom(serviceId, roomId);
  };

  before(async () => {
    store = await openStore(testStoreOptions('sqlite').options);
    for (const id of ['s1', 's2']) await store.createService({ id, name: id, key: 'k', isSuper: false, createdAt: 1 });
    for (const id of ['r1', 'r2', 'r3', 'r4']) await store.createRoom(room(id));
  });
  after(() => store.close());

  test('bounded: past maxEntries the least recently used room goes', async () => {
    const cache = new RoomCache(read, { ttlMs: 60_000, maxEntries: 3 });
    for (const id of ['r1', 'r2', 'r3']) await cache.get('s1', id);
    await cache.get('s1', 'r1'); // r1 used again: r2 is now the oldest
    reads = 0;
    await cache.get('s1', 'r4');
    assert.equal(cache.size, 3);
    await cache.get('s1', 'r1');
    await cache.get('s1', 'r3');
    assert.equal(reads, 1, 'r1 and r3 stayed');
    await cache.get('s1', 'r2');
    assert.equal(reads, 2, 'r2 was evicted');
  });

  test('concurrent reads of one room share one store read; one in flight during an invalidation is not kept', async () => {
    const cache = new RoomCache(read, { ttlMs: 60_000, maxEntries: 10 });
    reads = 0;
    const rooms = await Promise.all(Array.from({ length: 10 }, () => cache.get('s1', 'r1')));
    assert.equal(reads, 1);
    assert.ok(rooms.every((r) => r === rooms[0]));
    cache.forget('s1', 'r2');
    const inFlight = cache.get('s1', 'r2');
    cache.forget('s1', 'r2'); // the change lands while the read runs
    assert.equal((await inFlight)?.id, 'r2');
    reads = 0;
    await cache.get('s1', 'r2');
    assert.equal(reads, 1, 'read again: the earlier read may predate the change');
  });

  test("tenant-scoped: a room cached for its tenant is not another tenant's", async () => {
    const cache = new RoomCache(read, { ttlMs: 60_000, maxEntries: 10 });
    assert.equal((await cache.get('s1', 'r3'))?.id, 'r3');
    assert.equal(await cache.get('s2', 'r3'), undefined);
    cache.forgetService('s2');
    reads = 0;
    await cache.get('s1', 'r3');
    assert.equal(reads, 0, "another tenant's invalidation leaves it");
    cache.forgetService('s1');
    await cache.get('s1', 'r3');
    assert.equal(reads, 1);
  });
});
