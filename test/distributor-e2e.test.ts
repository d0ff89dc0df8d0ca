import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket as NodeWebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import { type GroupCallsResult, groupCallsSubjects } from '../src/core/group-calls-protocol.js';
import type { GroupCallsNotification } from '../src/distributor/notification.js';
import { NuveClient } from '../src/server/index.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { type StockClient, joinedAfter, settleStockClients, stockClient } from './helpers/stock-client.js';

/**
 * Issue 16 end to end on the embedded platform, every role in it and the real distributor: groups
 * kept through Nuve's REST API, a call in a group's room joined with the stock protoo-client, and a
 * member coming online with the SDK's Session hears of that call in one push. Users in no group, and
 * groups without a call, hear nothing.
 */
after(settleStockClients);

// The SDK is a browser library: in Node it gets `ws` as its WebSocket.
(globalThis as { WebSocket?: unknown }).WebSocket ??= NodeWebSocket;

describe('online → the calls going on in my groups (embedded, real distributor)', () => {
  let platform: EmbeddedPlatform;
  let app: NuveClient;
  let serviceId: string;
  const clients: StockClient[] = [];
  const sessions: Session[] = [];

  before(async () => {
    platform = await startEmbedded();
    assert.ok(platform.roles.includes('distributor'), `the embedded platform runs the distributor: ${platform.roles.join(', ')}`);
    const tenant = await platform.createTenant('distributor-e2e');
    serviceId = tenant.id;
    app = new NuveClient({ url: platform.nuveUrl, serviceId: tenant.id, key: tenant.key });
  });
  after(async () => {
    for (const s of sessions) s.close();
    for (const c of clients) c.peer.close();
    await platform.close();
  });

  const callsOf = (userName: string) => platform.bus.request<GroupCallsResult>(groupCallsSubjects.forUser, { serviceId, userName });

  async function join(roomId: string, user: string): Promise<StockClient> {
    const client = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(await app.createToken(roomId, user, 'presenter'))}`, user);
    clients.push(client);
    await joinedAfter(client);
    return client;
  }

  /** A user's push session, with every push it shows the app. */
  async function online(user: string): Promise<{ session: Session; got: PushEvent[] }> {
    const session = new Session({ getToken: () => app.createSession({ user, scopes: ['push'] }) });
    const got: PushEvent[] = [];
    session.on('push', (m) => got.push(m));
    sessions.push(session);
    await session.connect();
    return { session, got };
  }

  const notifications = (got: PushEvent[]) =>
    got.map((m) => m.data as GroupCallsNotification).filter((d) => d?.type === 'groupCalls');

  test('a member coming online is told of the call in its group, with who is in it; others hear nothing', async () => {
    await app.addGroupMembers('crew', ['me', 'bob']);
    await app.addGroupMembers('empty-crew', ['lonely']);
    const room = await app.createRoom('standup', { group: 'crew' });
    await app.createRoom('nobody here', { group: 'empty-crew' });
    const bob = await join(room._id, 'bob');
    await waitFor(async () => (await callsOf('me')).calls.length === 1, 5000, "Nuve knows of bob's call");

    const outsider = await online('outsider');
    const lonely = await online('lonely');
    const me = await online('me');
    await waitFor(() => notifications(me.got).length === 1, 5000, 'me told of the call');
    const [told] = notifications(me.got);
    assert.equal(told!.calls.length, 1);
    assert.equal(told!.calls[0]!.roomId, room._id);
    assert.equal(told!.calls[0]!.group, 'crew');
    assert.deepEqual(told!.calls[0]!.participants.map((p) => p.name), ['bob']);
    assert.match(told!.eventId, /\S/);
    // The two sessions opened before mine were handled before it by the one distributor: nothing came, nothing will.
    await sleep(300);
    assert.deepEqual(outsider.got, [], 'a user in no group');
    assert.deepEqual(lonely.got, [], 'a group without a call');

    // The app's own login service says "me" came online again: a new event, one more push with its id.
    const { events } = await app.online(['me']);
    await waitFor(() => notifications(me.got).length === 2, 5000, 'told again after POST /online');
    assert.equal(notifications(me.got)[1]!.eventId, events[0]!.id);

    // The call ends: the next online event tells nothing.
    bob.peer.close();
    await waitFor(async () => (await callsOf('me')).calls.length === 0, 5000, 'the call over at Nuve');
    await app.online(['me']);
    await app.online(['bob']);
    const bobSession = await online('bob');
    await sleep(500);
    assert.equal(notifications(me.got).length, 2, 'no notification of an ended call');
    assert.deepEqual(bobSession.got, []);
  });
});
