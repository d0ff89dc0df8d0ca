import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newId } from '../src/core/ids.js';
import { type RoomRecord, type ServiceRecord, type Store, type TokenRecord, openStore } from '../src/nuve/store/store.js';
import { newTokenId } from '../src/nuve/token-issuer.js';
import { type StoreKind, testStoreOptions } from './helpers/nuve-harness.js';

let clock = Date.now();
const tick = () => ++clock;

const service = (over: Partial<ServiceRecord> = {}): ServiceRecord => ({
  id: newId(),
  name: 'tenant',
  key: 'k'.repeat(24),
  isSuper: false,
  createdAt: tick(),
  ...over,
});

const room = (serviceId: string, over: Partial<RoomRecord> = {}): RoomRecord => ({
  id: newId(),
  serviceId,
  name: 'room',
  data: undefined,
  p2p: false,
  mediaConfiguration: null,
  eapolicy: 'ROOM-BEST',
  gatewayId: null,
  createdAt: tick(),
  ...over,
});

const token = (r: RoomRecord, over: Partial<TokenRecord> = {}): TokenRecord => ({
  id: newTokenId(),
  serviceId: r.serviceId,
  roomId: r.id,
  userName: 'alice',
  role: 'presenter',
  gatewayId: 'gw-1',
  eapolicy: r.eapolicy,
  expiresAt: Date.now() + 60_000,
  createdAt: Date.now(),
  ...over,
});

/** The same cases against every engine: the store is one implementation, only the engine differs. */
for (const kind of ['sqlite', 'sqlite-file', 'postgres'] as StoreKind[]) {
  describe(`store on ${kind}`, () => {
    const { options, cleanup } = testStoreOptions(kind);
    let store: Store;

    before(async () => {
      store = await openStore(options);
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    test('reports its engine and answers ping', async () => {
      assert.equal(store.engine, kind === 'postgres' ? 'postgres' : 'sqlite');
      await store.ping();
    });

    test('services: create, get, list in creation order, super lookup, key update', async () => {
      const su = service({ name: 'super', isSuper: true });
      const a = service({ name: 'a' });
      const b = service({ name: 'b' });
      for (const s of [su, a, b]) await store.createService(s);
      assert.deepEqual(await store.getService(a.id), a);
      assert.equal(await store.getService(newId()), undefined);
      const listed = await store.listServices();
      assert.deepEqual(
        listed.filter((s) => [su.id, a.id, b.id].includes(s.id)).map((s) => s.id),
        [su.id, a.id, b.id],
      );
      assert.deepEqual(await store.findSuperService(), su);
      await store.updateServiceKey(su.id, 'new-key-of-the-super-service');
      assert.equal((await store.getService(su.id))?.key, 'new-key-of-the-super-service');
      await assert.rejects(store.createService({ ...a, name: 'duplicate id' }));
    });

    test('rooms keep every field and are scoped by service', async () => {
      const a = service();
      const b = service();
      await store.createService(a);
      await store.createService(b);
      const r1 = room(a.id, {
        name: 'full',
        data: { nested: { list: [1, 'two', null] }, flag: true },
        p2p: true,
        mediaConfiguration: 'VP8_AND_OPUS',
        eapolicy: 'TTL-BEST',
      });
      const r2 = room(a.id, { name: 'plain' });
      const r3 = room(b.id, { name: 'other tenant' });
      for (const r of [r1, r2, r3]) await store.createRoom(r);

      assert.deepEqual(await store.getRoom(a.id, r1.id), r1);
      assert.deepEqual(await store.getRoom(a.id, r2.id), r2);
      assert.equal(await store.getRoom(b.id, r1.id), undefined, 'another service cannot read the room');
      assert.equal(await store.getRoom(a.id, newId()), undefined);
      assert.deepEqual(
        (await store.listRooms(a.id)).map((r) => r.name),
        ['full', 'plain'],
      );
      assert.deepEqual(
        (await store.listRooms(b.id)).map((r) => r.id),
        [r3.id],
      );
      assert.deepEqual(await store.listRooms(newId()), []);
    });

    test('updateRoom changes only what is given, only for the owner', async () => {
      const a = service();
      const b = service();
      await store.createService(a);
      await store.createService(b);
      const r = room(a.id, { data: { x: 1 } });
      await store.createRoom(r);

      assert.equal(await store.updateRoom(b.id, r.id, { name: 'hijacked' }), false);
      assert.equal((await store.getRoom(a.id, r.id))?.name, 'room');

      assert.equal(await store.updateRoom(a.id, r.id, { name: 'renamed', p2p: true, eapolicy: 'TTL-BEST' }), true);
      let now = await store.getRoom(a.id, r.id);
      assert.deepEqual(
        { name: now?.name, p2p: now?.p2p, eapolicy: now?.eapolicy, data: now?.data },
        { name: 'renamed', p2p: true, eapolicy: 'TTL-BEST', data: { x: 1 } },
      );
      assert.equal(await store.updateRoom(a.id, r.id, { data: undefined, mediaConfiguration: 'default' }), true);
      now = await store.getRoom(a.id, r.id);
      assert.equal(now?.data, undefined);
      assert.equal(now?.mediaConfiguration, 'default');

      assert.equal(await store.updateRoom(a.id, r.id, {}), true, 'an empty change reports that the room exists');
      assert.equal(await store.updateRoom(b.id, r.id, {}), false);
      assert.equal(await store.updateRoom(a.id, newId(), { name: 'x' }), false);
    });

    test('deleteRoom is scoped and takes the room tokens along', async () => {
      const a = service();
      const b = service();
      await store.createService(a);
      await store.createService(b);
      const r = room(a.id);
      await store.createRoom(r);
      const t = token(r);
      await store.createToken(t);

      assert.equal(await store.deleteRoom(b.id, r.id), false, 'another service cannot delete it');
      assert.ok(await store.getRoom(a.id, r.id));
      assert.equal(await store.deleteRoom(a.id, r.id), true);
      assert.equal(await store.getRoom(a.id, r.id), undefined);
      assert.equal(await store.consumeToken(t.id), undefined, 'its tokens are gone');
      assert.equal(await store.deleteRoom(a.id, r.id), false);
    });

    test('assignGateway is a compare-and-set; releaseGateway frees the rooms', async () => {
      const a = service();
      await store.createService(a);
      const r1 = room(a.id);
      const r2 = room(a.id);
      await store.createRoom(r1);
      await store.createRoom(r2);

      assert.equal(await store.assignGateway(r1.id, null, 'gw-A'), 'gw-A');
      assert.equal(await store.assignGateway(r1.id, null, 'gw-B'), 'gw-A', 'loser learns the winner');
      assert.equal(await store.assignGateway(r1.id, 'gw-B', 'gw-C'), 'gw-A', 'wrong expectation changes nothing');
      assert.equal(await store.assignGateway(r1.id, 'gw-A', 'gw-B'), 'gw-B');
      assert.equal(await store.assignGateway(r2.id, null, 'gw-B'), 'gw-B');
      assert.equal(await store.assignGateway(newId(), null, 'gw-B'), null, 'unknown room');

      const racers = await Promise.all(['gw-1', 'gw-2', 'gw-3', 'gw-4'].map((g) => store.assignGateway(r2.id, 'gw-B', g)));
      assert.equal(new Set(racers).size, 1, `racing assignments agree: ${racers.join(',')}`);

      const winner = racers[0]!;
      assert.equal(await store.releaseGateway(winner), 1);
      assert.equal((await store.getRoom(a.id, r2.id))?.gatewayId, null);
      assert.equal((await store.getRoom(a.id, r1.id))?.gatewayId, 'gw-B', 'other gateways keep their rooms');
      assert.equal(await store.releaseGateway('gw-nobody'), 0);
    });

    test('a token is consumed exactly once, even by racing consumers', async () => {
      const a = service();
      await store.createService(a);
      const r = room(a.id);
      await store.createRoom(r);
      const t = token(r, { userName: 'Zoë', role: 'viewer', eapolicy: 'TTL-BEST' });
      await store.createToken(t);
      assert.deepEqual(await store.consumeToken(t.id), t);
      assert.equal(await store.consumeToken(t.id), undefined);

      const raced = token(r);
      await store.createToken(raced);
      const results = await Promise.all(Array.from({ length: 16 }, () => store.consumeToken(raced.id)));
      assert.equal(results.filter((x) => x !== undefined).length, 1);
      assert.equal(await store.consumeToken(newTokenId()), undefined);
    });

    test('concurrent token inserts are all stored; a bad row fails alone', async () => {
      const a = service();
      await store.createService(a);
      const r = room(a.id);
      await store.createRoom(r);
      const good = Array.from({ length: 300 }, (_, i) => token(r, { userName: `u${i}` }));
      const orphan = token(r, { roomId: newId() }); // no such room: the foreign key refuses it
      const duplicate = { ...good[5]!, userName: 'dup' };
      const outcomes = await Promise.allSettled([...good, orphan, duplicate].map((t) => store.createToken(t)));
      const failed = outcomes.map((o, i) => (o.status === 'rejected' ? i : -1)).filter((i) => i >= 0);
      assert.equal(failed.includes(good.length), true, 'the orphan token is refused');
      assert.equal(outcomes.slice(0, good.length).every((o) => o.status === 'fulfilled'), true, 'good rows are stored');
      assert.equal(outcomes[good.length + 1]!.status, 'rejected', 'a duplicate id is refused');
      const consumed = await Promise.all(good.map((t) => store.consumeToken(t.id)));
      assert.deepEqual(
        consumed.map((t) => t?.userName),
        good.map((t) => t.userName),
      );
    });

    test('deleteExpiredTokens removes only expired tokens', async () => {
      const a = service();
      await store.createService(a);
      const r = room(a.id);
      await store.createRoom(r);
      const now = Date.now();
      const expired = token(r, { expiresAt: now - 1 });
      const live = token(r, { expiresAt: now + 60_000 });
      await store.createToken(expired);
      await store.createToken(live);
      assert.ok((await store.deleteExpiredTokens(now)) >= 1);
      assert.equal(await store.consumeToken(expired.id), undefined);
      assert.equal((await store.consumeToken(live.id))?.id, live.id);
    });

    test('deleteService removes the service with its rooms and tokens', async () => {
      const a = service();
      const b = service();
      await store.createService(a);
      await store.createService(b);
      const ra = room(a.id);
      const rb = room(b.id);
      await store.createRoom(ra);
      await store.createRoom(rb);
      const ta = token(ra);
      const tb = token(rb);
      await store.createToken(ta);
      await store.createToken(tb);

      assert.equal(await store.deleteService(a.id), true);
      assert.equal(await store.getService(a.id), undefined);
      assert.deepEqual(await store.listRooms(a.id), []);
      assert.equal(await store.consumeToken(ta.id), undefined);
      assert.equal(await store.deleteService(a.id), false);
      assert.ok(await store.getRoom(b.id, rb.id), 'other tenants are untouched');
      assert.equal((await store.consumeToken(tb.id))?.id, tb.id);
    });

    if (kind !== 'sqlite') {
      test('data survives reopening; migrations run once', async () => {
        const a = service({ name: 'persistent' });
        await store.createService(a);
        const r = room(a.id, { data: { keep: 'me' } });
        await store.createRoom(r);
        const t = token(r);
        await store.createToken(t);
        await store.close();
        store = await openStore(options);
        assert.deepEqual(await store.getService(a.id), a);
        assert.deepEqual(await store.getRoom(a.id, r.id), r);
        assert.deepEqual(await store.consumeToken(t.id), t);
      });
    }
  });
}
