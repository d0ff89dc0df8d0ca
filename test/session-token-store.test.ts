import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newId } from '../src/core/ids.js';
import { type SessionTokenRecord, type Store, openStore } from '../src/nuve/store/store.js';
import { newTokenId } from '../src/nuve/token-issuer.js';
import { type StoreKind, testStoreOptions } from './helpers/nuve-harness.js';

/** Session tokens in the store, on both engines: one use each, gone with their room, tenant or lifetime. */
for (const kind of ['sqlite', 'postgres'] as StoreKind[]) {
  describe(`session tokens on ${kind}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    const serviceId = newId();
    const roomId = newId();
    const now = Date.now();
    const session = (over: Partial<SessionTokenRecord> = {}): SessionTokenRecord => ({
      id: newTokenId(),
      serviceId,
      userName: 'sam',
      scopes: ['push', 'rpc'],
      roomId: null,
      role: null,
      gatewayId: 'gw-1',
      expiresAt: now + 60_000,
      createdAt: now,
      ...over,
    });

    before(async () => {
      const setup = testStoreOptions(kind);
      cleanup = setup.cleanup;
      store = await openStore(setup.options);
      await store.createService({ id: serviceId, name: 't', key: 'k'.repeat(24), isSuper: false, createdAt: now });
      await store.createRoom({
        id: roomId,
        serviceId,
        name: 'r',
        data: undefined,
        p2p: false,
        mediaConfiguration: null,
        eapolicy: 'ROOM-BEST',
        gatewayId: null,
        createdAt: now,
      });
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    test('consumed once, as it was stored, with or without a room', async () => {
      for (const record of [session(), session({ scopes: ['room'], roomId, role: 'viewer' })]) {
        await store.createSessionToken(record);
        assert.deepEqual(await store.consumeSessionToken(record.id), record);
        assert.equal(await store.consumeSessionToken(record.id), undefined);
      }
    });

    test('expired ones are purged; deleting the room or the tenant voids them', async () => {
      const expired = session({ expiresAt: now - 1 });
      const inRoom = session({ scopes: ['room'], roomId, role: 'viewer' });
      const roomless = session();
      for (const r of [expired, inRoom, roomless]) await store.createSessionToken(r);
      assert.ok((await store.deleteExpiredTokens(now)) >= 1);
      assert.equal(await store.consumeSessionToken(expired.id), undefined);
      await store.deleteRoom(serviceId, roomId);
      assert.equal(await store.consumeSessionToken(inRoom.id), undefined);
      await store.deleteService(serviceId);
      assert.equal(await store.consumeSessionToken(roomless.id), undefined);
    });
  });
}
