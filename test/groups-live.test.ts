import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type GroupCallsResult, groupCallsSubjects } from '../src/core/group-calls-protocol.js';
import { subjects } from '../src/core/subjects.js';
import { NuveClient } from '../src/server/index.js';
import { type StoreKind, testStoreOptions, waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { type StockClient, joinedAfter, settleStockClients, stockClient } from './helpers/stock-client.js';

/**
 * A user's group calls as the distributor will ask for them, with a real gateway and agent and the
 * stock protoo-client joining rooms: the presence comes from the room events the gateway reports.
 * On both store engines.
 */
after(settleStockClients);

for (const kind of ['sqlite', 'postgres'] as StoreKind[]) {
  describe(`group calls with real clients (${kind})`, () => {
    let platform: EmbeddedPlatform;
    let cleanup: () => Promise<void>;
    let app: NuveClient;
    let tenant: { id: string; key: string };
    const clients: StockClient[] = [];

    before(async () => {
      const store = testStoreOptions(kind);
      cleanup = store.cleanup;
      platform = await startEmbedded({ store: store.options });
      tenant = await platform.createTenant('groups-live');
      app = new NuveClient({ url: platform.nuveUrl, serviceId: tenant.id, key: tenant.key });
    });
    after(async () => {
      for (const c of clients) c.peer.close();
      await platform.close();
      await cleanup();
    });

    const calls = (userName: string) => platform.bus.request<GroupCallsResult>(groupCallsSubjects.forUser, { serviceId: tenant.id, userName });

    async function join(roomId: string, user: string): Promise<StockClient> {
      const token = await app.createToken(roomId, user, 'presenter');
      const client = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`, user);
      clients.push(client);
      await joinedAfter(client);
      return client;
    }

    test('a peer in a room of my group is listed with its participants; gone when it leaves; none for others', async () => {
      await app.addGroupMembers('crew', ['me']);
      const room = await app.createRoom('standup', { group: 'crew' });
      await app.createRoom('quiet', { group: 'crew' });
      await app.createRoom('elsewhere', { group: 'other-crew' });
      assert.deepEqual(await calls('me'), { groups: 1, calls: [] }, 'a group without calls');
      assert.deepEqual(await calls('nobody'), { groups: 0, calls: [] }, 'a user in no group');

      const before = Date.now();
      const alice = await join(room._id, 'alice');
      await waitFor(async () => (await calls('me')).calls.length === 1, 5000, 'the call listed');
      const bob = await join(room._id, 'bob');
      await waitFor(async () => (await calls('me')).calls[0]?.participantCount === 2, 5000, 'bob listed');
      const [call] = (await calls('me')).calls;
      assert.equal(call!.roomId, room._id);
      assert.equal(call!.roomName, 'standup');
      assert.equal(call!.group, 'crew');
      assert.ok(call!.since >= before - 1000 && call!.since <= Date.now(), 'since: when the call started');
      // The stock client's display name is the one it joined with.
      assert.deepEqual(call!.participants.map((p) => p.name), ['alice', 'bob']);
      assert.ok(call!.participants[0]!.since >= call!.since && call!.participants[1]!.since >= call!.participants[0]!.since);
      assert.equal(new Set(call!.participants.map((p) => p.id)).size, 2);
      // Another user of the tenant, not in the group, hears of nothing.
      assert.deepEqual((await calls('outsider')).calls, []);

      bob.peer.close();
      await waitFor(async () => (await calls('me')).calls[0]?.participantCount === 1, 5000, 'bob gone');
      alice.peer.close();
      await waitFor(async () => (await calls('me')).calls.length === 0, 5000, 'the call over');
      assert.deepEqual(await calls('me'), { groups: 1, calls: [] });
    });

    test('a duplicated event batch counts nobody twice', async () => {
      await app.addGroupMembers('dups', ['me2']);
      const room = await app.createRoom('dup call', { group: 'dups' });
      // Record the batches the real gateway sends (a tap on the shared in-process bus), and send each a
      // second time as a gateway's retry would.
      const sent: unknown[] = [];
      const bus = platform.bus;
      const request = bus.request.bind(bus);
      bus.request = (subject, payload, options) => {
        if (subject === subjects.roomEvents) sent.push(payload);
        return request(subject, payload, options);
      };
      let carol: StockClient;
      try {
        carol = await join(room._id, 'carol');
        await waitFor(async () => (await calls('me2')).calls.length === 1, 5000, 'the call listed');
      } finally {
        bus.request = request;
      }
      assert.ok(sent.length > 0, 'the gateway sent its batches');
      for (const batch of sent) await platform.bus.request(subjects.roomEvents, batch);
      const [call] = (await calls('me2')).calls;
      assert.equal(call!.participantCount, 1);
      assert.deepEqual(call!.participants.map((p) => p.name), ['carol']);
      carol.peer.close();
      await waitFor(async () => (await calls('me2')).calls.length === 0, 5000, 'the call over');
      // The join replayed after the leave brings no ghost back.
      for (const batch of sent) await platform.bus.request(subjects.roomEvents, batch);
      assert.deepEqual((await calls('me2')).calls, []);
    });
  });
}
