import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket as NodeWebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import type { AppError } from '../src/core/errors.js';
import { NuveClient } from '../src/server/index.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, opsAuthorization, startEmbedded } from './helpers/platform.js';
import { type StockClient, opened, settleStockClients, stockClient, waitForNotification } from './helpers/stock-client.js';

// Push end to end on the embedded platform (SQLite, in-memory registry), with the stock protoo-client:
// the app server pushes through Nuve's REST API, users receive `push` notifications on push sessions.

after(settleStockClients);

const MAX_PAYLOAD = 1024;
const CAP = 3;

let platform: EmbeddedPlatform;

interface Tenant {
  id: string;
  key: string;
}
let tenantA: Tenant;
let tenantB: Tenant;

const mauth = (t: Tenant) => buildMAuthHeader({ serviceId: t.id, key: t.key, cnonce: Math.random().toString(36).slice(2) });

const createTenant = (name: string): Promise<Tenant> => platform.createTenant(name);

function api(t: Tenant, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${platform.nuveUrl}${path}`, {
    method,
    headers: { authorization: mauth(t), ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
}

async function ok<T = any>(res: Promise<Response>, status = 200): Promise<T> {
  const r = await res;
  const text = await r.text();
  assert.equal(r.status, status, text);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** The response is refused with `status` and `code`. */
async function refusedWith(res: Promise<Response>, status: number, code: string): Promise<void> {
  const r = await res;
  const body = (await r.json()) as { code: string };
  assert.equal(r.status, status, JSON.stringify(body));
  assert.equal(body.code, code);
}

const push = (t: Tenant, users: string[], data: unknown, extra: Record<string, unknown> = {}) =>
  ok<{ messages: { user: string; id: string }[]; reached: number; offline: string[] }>(
    api(t, 'POST', '/push/messages', { users, data, ...extra }),
  );
const pending = (t: Tenant, user: string) => ok<{ id: string; data: unknown }[]>(api(t, 'GET', `/push/users/${encodeURIComponent(user)}/messages`));

/** A push session of `user` (a session token with the scope `push`), admitted: registered online, its restore sent. */
async function connectUser(t: Tenant, user: string, scopes = ['push']): Promise<StockClient> {
  const { token } = await ok<{ token: string }>(api(t, 'POST', '/sessions', { user, scopes }));
  const client = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`);
  await opened(client);
  // Requests wait for admission: answered, this one says every channel (push registration included) is open.
  await assert.rejects(client.peer.request('pushAck', {}), /^Error: (INVALID_REQUEST|SCOPE_NOT_GRANTED): /);
  return client;
}

/** The `push` notifications received so far, taken off the list. */
function takePushes(client: StockClient): { id?: string; data: any; sentAt: number; expiresAt?: number }[] {
  const pushes = client.notifications.filter((n) => n.method === 'push').map((n) => n.data);
  client.notifications = client.notifications.filter((n) => n.method !== 'push');
  return pushes;
}

async function pushesAfter(client: StockClient, count: number): Promise<ReturnType<typeof takePushes>> {
  await waitFor(() => client.notifications.filter((n) => n.method === 'push').length >= count, 3000, `${count} pushes`);
  return takePushes(client);
}

/** A protoo-client failure's stable name and status. */
async function signalRefused(promise: Promise<unknown>, errorName: string, status: number): Promise<void> {
  await assert.rejects(promise, (err: Error & { code?: number }) => {
    assert.match(err.message, new RegExp(`^${errorName}: `));
    assert.equal(err.code, status);
    return true;
  });
}

const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  platform = await startEmbedded({ push: { maxPayloadBytes: MAX_PAYLOAD, maxPendingPerUser: CAP, sweepMs: 200 } });
  tenantA = await createTenant('push-a');
  tenantB = await createTenant('push-b');
});
after(async () => platform.close());

describe('unsafe push', () => {
  test('reaches every online connection of a user; the caller learns the reach and the offline users; nothing is stored', async () => {
    const phone = await connectUser(tenantA, 'alice');
    const laptop = await connectUser(tenantA, 'alice');
    const result = await push(tenantA, ['alice', 'bob'], { hello: 'now' }, { safe: false });
    assert.deepEqual(result, { messages: [], reached: 2, offline: ['bob'] });
    for (const client of [phone, laptop]) {
      const [message] = await pushesAfter(client, 1);
      assert.deepEqual(message!.data, { hello: 'now' });
      assert.equal(message!.id, undefined, 'unsafe messages have no id: nothing to acknowledge');
    }
    assert.deepEqual(await pending(tenantA, 'bob'), []);
    // A closed connection is no longer counted.
    laptop.peer.close();
    await waitFor(async () => (await push(tenantA, ['alice'], 1, { safe: false })).reached === 1, 3000, 'one connection left');
    phone.peer.close();
    await waitFor(async () => (await push(tenantA, ['alice'], 2, { safe: false })).reached === 0, 3000, 'none left');
  });
});

describe('safe push', () => {
  test('stored while offline, restored in send order on connect, acknowledged messages are not restored again', async () => {
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const result = await push(tenantA, ['carol'], { n: i });
      assert.deepEqual(result.offline, ['carol']);
      assert.equal(result.reached, 0);
      assert.match(result.messages[0]!.id, /^pm_[A-Za-z0-9_-]{22}$/);
      ids.push(result.messages[0]!.id);
    }
    assert.deepEqual((await pending(tenantA, 'carol')).map((m) => m.id), ids);

    const first = await connectUser(tenantA, 'carol');
    const restored = await pushesAfter(first, 3);
    assert.deepEqual(restored.map((m) => m.data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.deepEqual(restored.map((m) => m.id), ids);
    assert.deepEqual(await first.peer.request('pushAck', { ids: ids.slice(0, 2) }), { acked: 2 });
    // A second acknowledgement of the same ids (a duplicate delivery) is harmless.
    assert.deepEqual(await first.peer.request('pushAck', { ids: ids.slice(0, 2) }), { acked: 0 });
    assert.deepEqual((await pending(tenantA, 'carol')).map((m) => m.id), [ids[2]]);

    // Online: delivered at once, and still unarrived until acknowledged.
    const live = await push(tenantA, ['carol'], { n: 4 });
    assert.equal(live.reached, 1);
    assert.deepEqual(live.offline, []);
    const [fourth] = await pushesAfter(first, 1);
    assert.deepEqual(fourth, { id: live.messages[0]!.id, data: { n: 4 }, sentAt: fourth!.sentAt });
    first.peer.close();

    const second = await connectUser(tenantA, 'carol');
    const again = await pushesAfter(second, 2);
    assert.deepEqual(again.map((m) => m.data), [{ n: 3 }, { n: 4 }], 'only the unacknowledged, in order');
    await second.peer.request('pushAck', { ids: again.map((m) => m.id!) });
    assert.deepEqual(await pending(tenantA, 'carol'), []);
    second.peer.close();
  });

  test('a message past its TTL is not delivered, and is swept from the store', async () => {
    const expiring = await push(tenantA, ['dave'], 'soon gone', { ttlSec: 1 });
    const lasting = await push(tenantA, ['dave'], 'kept');
    assert.equal((await pending(tenantA, 'dave')).length, 2);
    await settle(1100);
    assert.deepEqual((await pending(tenantA, 'dave')).map((m) => m.id), [lasting.messages[0]!.id]);
    const client = await connectUser(tenantA, 'dave');
    const got = await pushesAfter(client, 1);
    await settle();
    assert.deepEqual([...got, ...takePushes(client)].map((m) => m.data), ['kept']);
    assert.notEqual(expiring.messages[0]!.id, lasting.messages[0]!.id);
    const metrics = await (await fetch(`${platform.nuveUrl}/metrics`, { headers: opsAuthorization })).text();
    assert.match(metrics, /^mss_push_expired_total\{[^}]*\} [1-9]/m, 'the sweep counted it');
    client.peer.close();
  });

  test('the per-user cap drops the oldest, and the client is told how many, offline and online', async () => {
    for (let i = 1; i <= 5; i++) await push(tenantA, ['erin'], i);
    const client = await connectUser(tenantA, 'erin');
    assert.deepEqual(await waitForNotification(client, 'pushDropped'), { count: 2 });
    assert.deepEqual((await pushesAfter(client, 3)).map((m) => m.data), [3, 4, 5]);
    // Online and still unacknowledged: the next push drops one more, and says so.
    await push(tenantA, ['erin'], 6);
    assert.deepEqual(await waitForNotification(client, 'pushDropped'), { count: 1 });
    assert.deepEqual((await pushesAfter(client, 1)).map((m) => m.data), [6]);
    assert.deepEqual((await pending(tenantA, 'erin')).map((m) => m.data), [4, 5, 6]);
    client.peer.close();
    // Told once: the next connection restores without a drop notice.
    const next = await connectUser(tenantA, 'erin');
    assert.deepEqual((await pushesAfter(next, 3)).map((m) => m.data), [4, 5, 6]);
    assert.equal(next.notifications.some((n) => n.method === 'pushDropped'), false);
    next.peer.close();
  });

  test('a cancelled message is not delivered', async () => {
    const cancelled = await push(tenantA, ['fay'], 'cancel me');
    await push(tenantA, ['fay'], 'keep me');
    await ok(api(tenantA, 'DELETE', `/push/users/fay/messages/${cancelled.messages[0]!.id}`), 204);
    await refusedWith(api(tenantA, 'DELETE', `/push/users/fay/messages/${cancelled.messages[0]!.id}`), 404, 'PUSH_MESSAGE_NOT_FOUND');
    const client = await connectUser(tenantA, 'fay');
    assert.deepEqual((await pushesAfter(client, 1)).map((m) => m.data), ['keep me']);
    client.peer.close();
  });

  test('a batch of 1,000 reaches each user once and returns each its id, in the order of the request', async () => {
    const users = Array.from({ length: 999 }, (_, i) => `batch-${i}`);
    const online = await connectUser(tenantA, 'batch-7');
    // 1,000 names, one of them twice: that user gets one message.
    const result = await push(tenantA, [...users, 'batch-7'], { all: true });
    assert.equal(result.messages.length, 999);
    assert.deepEqual(result.messages.map((m) => m.user), users);
    assert.equal(new Set(result.messages.map((m) => m.id)).size, 999);
    assert.equal(result.reached, 1);
    assert.equal(result.offline.length, 998);
    assert.deepEqual((await pushesAfter(online, 1)).map((m) => m.id), [result.messages[7]!.id]);
    await settle();
    assert.equal(takePushes(online).length, 0);
    online.peer.close();
  });
});

describe('large restores', () => {
  test('a backlog larger than one bus reply is restored in pages, all of it, in order', async () => {
    // Its own platform: 64 KB payloads, 20 kept per user, so 20 pending are ~1.3 MB: three pages of ≤ 512 KB.
    const big = await startEmbedded({ push: { maxPayloadBytes: 65_536, maxPendingPerUser: 20 } });
    try {
      const su = big.nuve!.superServiceRecord;
      const tenant = { id: su.id, key: su.key };
      const call = (method: string, path: string, body?: unknown) =>
        fetch(`${big.nuveUrl}${path}`, {
          method,
          headers: { authorization: mauth(tenant), ...(body !== undefined && { 'content-type': 'application/json' }) },
          ...(body !== undefined && { body: JSON.stringify(body) }),
        });
      for (let i = 0; i < 20; i++) await ok(call('POST', '/push/users/lea/messages', { data: { i, pad: Array.from({ length: 14 }, () => 'x'.repeat(4000)) } }));
      const listed = await ok<{ data: { i: number } }[]>(call('GET', '/push/users/lea/messages?limit=1000'));
      assert.ok(listed.length > 0 && listed.length < 20, `a pending list is cut to one reply (${listed.length})`);
      const { token } = await ok<{ token: string }>(call('POST', '/sessions', { user: 'lea', scopes: ['push'] }));
      const client = stockClient(`${big.gatewayUrl}/?token=${encodeURIComponent(token)}`);
      await opened(client);
      const restored = await pushesAfter(client, 20);
      assert.deepEqual(restored.map((m) => m.data.i), Array.from({ length: 20 }, (_, i) => i));
      client.peer.close();
    } finally {
      await big.close();
    }
  });
});

describe('bad input', () => {
  test('payload over push.maxPayloadBytes: 413 PUSH_PAYLOAD_TOO_LARGE; at the limit it passes', async () => {
    // A JSON string's serialisation is its text plus two quotes.
    await refusedWith(api(tenantA, 'POST', '/push/users/gus/messages', { data: 'x'.repeat(MAX_PAYLOAD - 1) }), 413, 'PUSH_PAYLOAD_TOO_LARGE');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['gus'], data: 'x'.repeat(MAX_PAYLOAD - 1) }), 413, 'PUSH_PAYLOAD_TOO_LARGE');
    await ok(api(tenantA, 'POST', '/push/users/gus/messages', { data: 'x'.repeat(MAX_PAYLOAD - 2), safe: false }));
    assert.deepEqual(await pending(tenantA, 'gus'), [], 'nothing stored for the refused ones');
  });

  test('malformed users, batches, ids and payloads: 400 with the schema error', async () => {
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: [], data: 1 }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: Array.from({ length: 1001 }, (_, i) => `u${i}`), data: 1 }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['a\u0001b'], data: 1 }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['x'.repeat(257)], data: 1 }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['ok'] }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['ok'], data: 1, ttlSec: -1 }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['ok'], data: 1, extra: true }), 400, 'VALIDATION_FAILED');
    let deep: unknown = 1;
    for (let i = 0; i < 20; i++) deep = [deep];
    await refusedWith(api(tenantA, 'POST', '/push/messages', { users: ['ok'], data: deep }), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'DELETE', '/push/users/ok/messages/not-an-id'), 400, 'VALIDATION_FAILED');
    await refusedWith(api(tenantA, 'DELETE', `/push/users/ok/messages/pm_${'A'.repeat(22)}`), 404, 'PUSH_MESSAGE_NOT_FOUND');
    await refusedWith(api(tenantA, 'GET', '/push/users/ok/messages?limit=0'), 400, 'VALIDATION_FAILED');
    assert.deepEqual(await pending(tenantA, 'ok'), []);
  });

  test('pushAck: malformed ids refused; another user’s message refused and left unarrived; no push scope, no acks', async () => {
    const hers = await push(tenantA, ['hana'], 'for hana');
    const client = await connectUser(tenantA, 'ivan');
    await signalRefused(client.peer.request('pushAck', { ids: ['nope'] }), 'INVALID_REQUEST', 400);
    await signalRefused(client.peer.request('pushAck', { ids: [] }), 'INVALID_REQUEST', 400);
    await signalRefused(client.peer.request('pushAck', { ids: Array.from({ length: 501 }, () => hers.messages[0]!.id) }), 'INVALID_REQUEST', 400);
    await signalRefused(client.peer.request('pushAck', { ids: [hers.messages[0]!.id] }), 'PUSH_NOT_YOURS', 403);
    assert.deepEqual((await pending(tenantA, 'hana')).map((m) => m.id), [hers.messages[0]!.id], 'still unarrived for hana');
    client.peer.close();

    const rpcOnly = await connectUser(tenantA, 'hana', ['rpc']);
    await signalRefused(rpcOnly.peer.request('pushAck', { ids: [hers.messages[0]!.id] }), 'SCOPE_NOT_GRANTED', 403);
    await settle();
    assert.equal(takePushes(rpcOnly).length, 0, 'a session without the push scope gets no pushes');
    assert.equal((await pending(tenantA, 'hana')).length, 1);
    rpcOnly.peer.close();
  });
});

describe('tenant isolation', () => {
  test("a tenant reaches, reads and cancels only its own users' messages", async () => {
    const aJoe = await connectUser(tenantA, 'joe');
    const bJoe = await connectUser(tenantB, 'joe');
    const fromB = await push(tenantB, ['joe'], 'from b');
    assert.equal(fromB.reached, 1);
    assert.deepEqual((await pushesAfter(bJoe, 1)).map((m) => m.data), ['from b']);
    const unsafe = await push(tenantB, ['joe'], 'b again', { safe: false });
    assert.equal(unsafe.reached, 1);
    await pushesAfter(bJoe, 1);
    await settle();
    assert.equal(takePushes(aJoe).length, 0, "tenant A's joe got nothing of tenant B's");

    const fromA = await push(tenantA, ['joe'], 'from a');
    await pushesAfter(aJoe, 1);
    assert.deepEqual((await pending(tenantB, 'joe')).map((m) => m.id), [fromB.messages[0]!.id]);
    await refusedWith(api(tenantB, 'DELETE', `/push/users/joe/messages/${fromA.messages[0]!.id}`), 404, 'PUSH_MESSAGE_NOT_FOUND');
    // B's joe acknowledging A's joe's message: the same name, another tenant, so another user.
    await signalRefused(bJoe.peer.request('pushAck', { ids: [fromA.messages[0]!.id] }), 'PUSH_NOT_YOURS', 403);
    assert.deepEqual((await pending(tenantA, 'joe')).map((m) => m.id), [fromA.messages[0]!.id]);
    aJoe.peer.close();
    bJoe.peer.close();
  });
});

describe('SDK Session', () => {
  test('restores, acknowledges by itself, reconnects with a fresh token, and hands the app each message once, in order', async () => {
    // The browser SDK in Node: its WebSocket is ws's, each one kept so the test can cut it, and its raw pushes counted.
    const sockets: NodeWebSocket[] = [];
    const raw: string[] = [];
    class TrackedWebSocket extends NodeWebSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
        this.on('message', (frame) => {
          const message = JSON.parse(String(frame)) as { method?: string; data?: { data?: unknown } };
          if (message.method === 'push') raw.push(String(message.data?.data));
        });
      }
    }
    const previous = (globalThis as { WebSocket?: unknown }).WebSocket;
    (globalThis as { WebSocket?: unknown }).WebSocket = TrackedWebSocket;
    try {
      await push(tenantA, ['kim'], 'k1');
      let tokens = 0;
      const session = new Session({
        getToken: async () => {
          tokens++;
          return (await ok<{ token: string }>(api(tenantA, 'POST', '/sessions', { user: 'kim', scopes: ['push'] }))).token;
        },
        reconnect: { initialDelayMs: 50 },
      });
      const got: PushEvent[] = [];
      session.on('push', (message) => {
        got.push(message);
        // Cut before this message's acknowledgement leaves (acks go out after the listeners): it is restored on reconnection.
        if (message.data === 'k2') sockets.at(-1)!.terminate();
      });
      await session.connect();
      await waitFor(() => got.length === 1, 3000, 'k1 restored');
      await waitFor(async () => (await pending(tenantA, 'kim')).length === 0, 3000, 'k1 acknowledged by the SDK');
      await push(tenantA, ['kim'], 'k2');
      await waitFor(() => got.length === 2, 3000, 'k2 live');
      await push(tenantA, ['kim'], 'k3');
      await waitFor(() => got.length === 3 && session.state === 'connected', 5000, 'k3 after reconnecting');
      await waitFor(async () => (await pending(tenantA, 'kim')).length === 0, 3000, 'all acknowledged');
      await settle(300);
      assert.deepEqual(got.map((m) => m.data), ['k1', 'k2', 'k3']);
      assert.equal(raw.filter((d) => d === 'k2').length, 2, 'k2 arrived twice on the wire (restored after the cut)');
      assert.equal(tokens, 2, 'one fresh token for the reconnection');
      session.close();
      assert.equal(session.state, 'closed');
    } finally {
      (globalThis as { WebSocket?: unknown }).WebSocket = previous;
    }
  });
});

describe('server SDK', () => {
  test('NuveClient pushes, lists and cancels like the REST calls, signed with MAuth', async () => {
    const nuve = new NuveClient({ url: platform.nuveUrl, serviceId: tenantA.id, key: tenantA.key });
    const first = await nuve.pushToUser('sdk-user', { data: { n: 1 } });
    const second = await nuve.push(['sdk-user', 'sdk-other'], { data: { n: 2 }, ttlSec: 60 });
    assert.deepEqual(second.offline.sort(), ['sdk-other', 'sdk-user']);
    const ids = (await nuve.pendingPushes('sdk-user')).map((m) => m.id);
    assert.deepEqual(ids, [first.messages[0]!.id, second.messages[0]!.id]);
    await nuve.cancelPush('sdk-user', first.messages[0]!.id);
    assert.deepEqual((await nuve.pendingPushes('sdk-user')).map((m) => m.data), [{ n: 2 }]);
    await assert.rejects(nuve.cancelPush('sdk-user', first.messages[0]!.id), (err: AppError) => err.code === 'PUSH_MESSAGE_NOT_FOUND' && err.status === 404);
  });
});

describe('metrics', () => {
  test('sent, delivered, acked, pending and latency are on /metrics', async () => {
    const metrics = await (await fetch(`${platform.nuveUrl}/metrics`, { headers: opsAuthorization })).text();
    assert.match(metrics, /^mss_push_sent_total\{kind="safe"[^}]*\} [1-9]/m);
    assert.match(metrics, /^mss_push_sent_total\{kind="unsafe"[^}]*\} [1-9]/m);
    assert.match(metrics, /^mss_push_delivered_total\{kind="safe"[^}]*\} [1-9]/m);
    assert.match(metrics, /^mss_push_delivered_total\{kind="restored"[^}]*\} [1-9]/m);
    assert.match(metrics, /^mss_push_acked_total\{[^}]*\} [1-9]/m);
    assert.match(metrics, /^mss_push_pending\{[^}]*\} [1-9]/m);
    assert.match(metrics, /^mss_push_delivery_seconds_count\{[^}]*\} [1-9]/m);
  });
});
