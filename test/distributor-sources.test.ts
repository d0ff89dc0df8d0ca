import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket as NodeWebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import type { Bus } from '../src/core/bus/bus.js';
import { loadConfig } from '../src/core/config.js';
import { HeartbeatPublisher } from '../src/core/heartbeat-publisher.js';
import { createLogger } from '../src/core/logger.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type OnlineBatch, type OnlineEvent, onlineSubjects } from '../src/core/online-events.js';
import { type PushSendResult, pushSubjects } from '../src/core/push-protocol.js';
import { type Platform, startPlatform } from '../src/platform.js';
import { NuveClient } from '../src/server/index.js';
import { waitFor } from './helpers/nuve-harness.js';
import { TEST_OPS_TOKEN } from './helpers/platform.js';
import { type StockClient, opened, settleStockClients, stockClient } from './helpers/stock-client.js';

// Where online events come from, on the embedded Nuve, push role and gateway (no distributor role:
// a stand-in distributor on the bus records what reaches it): a push session admitted on the
// gateway, and apps' POST /online. Also push.send's caller-given message id, and the SDK Session's
// dedupe of named unsafe pushes.

after(settleStockClients);

let platform: Platform;
let bus: Bus;
let nuveUrl: string;
let gatewayUrl: string;
interface Tenant {
  id: string;
  key: string;
}
let tenantA: Tenant;
let tenantB: Tenant;
const received: OnlineEvent[] = [];
let stopFake: () => void;

const mauth = (t: Tenant) => buildMAuthHeader({ serviceId: t.id, key: t.key, cnonce: Math.random().toString(36).slice(2) });

function api(t: Tenant, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${nuveUrl}${path}`, {
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

/** A distributor as far as senders can tell: it beats and acknowledges every event it gets. */
function fakeDistributor(id: string): () => void {
  const sub = bus.respond(onlineSubjects.online(id), (payload) => {
    const { events } = payload as OnlineBatch;
    received.push(...events);
    return { acked: events.map((e) => e.id) };
  });
  const publisher = new HeartbeatPublisher(bus, {
    heartbeat: onlineSubjects.heartbeat,
    down: onlineSubjects.down,
    hello: onlineSubjects.hello,
    id,
    intervalMs: 200,
    payload: () => ({ id, incarnation: 'fake-1', weight: 1, state: 'available' }),
  });
  publisher.start();
  return () => {
    sub.unsubscribe();
    publisher.stop();
  };
}

before(async () => {
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: (process.env.TEST_LOG_LEVEL as 'warn') ?? 'warn' },
      store: { sqlitePath: ':memory:' },
      ops: { token: TEST_OPS_TOKEN },
      nuve: { port: 0 },
      gateway: { port: 0, id: 'gw-sources', rateLimit: { connectionsPerSecPerIp: 1000 } },
      // Small, so the backlog bound shows once the stand-in is gone.
      distributor: { senderMaxPending: 3, timeoutMs: 1000 },
    },
  });
  platform = await startPlatform(config, ['nuve', 'push', 'gateway'], createLogger(config.log));
  bus = platform.bus;
  nuveUrl = platform.nuve!.url;
  gatewayUrl = platform.gateway!.url;
  await waitFor(() => platform.nuve!.registry.get('gw-sources') !== undefined, 5000, 'gateway registered');
  const su = platform.nuve!.superServiceRecord;
  const createTenant = async (name: string) => {
    const key = `${name}-key-${Math.random().toString(36).slice(2)}`;
    const id = await ok<string>(api({ id: su.id, key: su.key }, 'POST', '/services', { name, key }));
    return { id, key };
  };
  tenantA = await createTenant('online-a');
  tenantB = await createTenant('online-b');
  stopFake = fakeDistributor('fake-dist');
  await waitFor(() => platform.gateway!.online.ring.members.includes('fake-dist'), 5000, 'the gateway sees the distributor');
});

after(async () => {
  stopFake?.();
  await platform?.close();
});

async function sessionToken(t: Tenant, user: string, scopes = ['push']): Promise<string> {
  return (await ok<{ token: string }>(api(t, 'POST', '/sessions', { user, scopes }))).token;
}

async function connect(t: Tenant, user: string, scopes = ['push']): Promise<StockClient> {
  const client = stockClient(`${gatewayUrl}/?token=${encodeURIComponent(await sessionToken(t, user, scopes))}`);
  await opened(client);
  // Answered only once every channel is open (the push registration included).
  await assert.rejects(client.peer.request('pushAck', {}), /^Error: (INVALID_REQUEST|SCOPE_NOT_GRANTED): /);
  return client;
}

const eventsOf = (user: string) => received.filter((e) => e.userName === user);

describe('online events from the gateway', () => {
  test('a push session admitted is an online event of its tenant and user; a session without push is not', async () => {
    const client = await connect(tenantA, 'ann');
    await waitFor(() => eventsOf('ann').length === 1, 3000, "ann's online event");
    const [event] = eventsOf('ann');
    assert.equal(event!.serviceId, tenantA.id);
    assert.equal(event!.source, 'gateway');
    assert.ok(Math.abs(event!.at - Date.now()) < 5000);
    // The same user of another tenant is another user.
    const other = await connect(tenantB, 'ann');
    await waitFor(() => eventsOf('ann').length === 2, 3000, "tenant B's ann");
    assert.equal(eventsOf('ann')[1]!.serviceId, tenantB.id);
    assert.notEqual(eventsOf('ann')[1]!.id, event!.id);
    const roomOnly = await connect(tenantA, 'roomy', ['rpc']);
    await sleep(300);
    assert.equal(eventsOf('roomy').length, 0, 'no push session, no online event');
    for (const c of [client, other, roomOnly]) c.peer.close();
  });
});

describe('POST /online', () => {
  test('202 with one event id per user (named twice: once); they reach the distributor as the tenant’s, source api', async () => {
    const answer = await ok<{ events: { user: string; id: string }[] }>(api(tenantA, 'POST', '/online', { users: ['bo', 'cy', 'bo'] }), 202);
    assert.deepEqual(answer.events.map((e) => e.user), ['bo', 'cy']);
    await waitFor(() => eventsOf('bo').length === 1 && eventsOf('cy').length === 1, 3000, 'both events');
    for (const { user, id } of answer.events) {
      const [event] = eventsOf(user);
      assert.deepEqual([event!.id, event!.serviceId, event!.source], [id, tenantA.id, 'api']);
    }
  });

  test('the server SDK posts them too', async () => {
    const client = new NuveClient({ url: nuveUrl, serviceId: tenantB.id, key: tenantB.key });
    const { events } = await client.online(['dee']);
    await waitFor(() => eventsOf('dee').length === 1, 3000, "dee's event");
    assert.deepEqual([eventsOf('dee')[0]!.id, eventsOf('dee')[0]!.serviceId], [events[0]!.id, tenantB.id]);
  });

  test('refused: bad bodies (400), no MAuth (401), and a full backlog (503) while no distributor takes them', async () => {
    const refused = async (res: Promise<Response>, status: number, code: string) => {
      const r = await res;
      const body = (await r.json()) as { code: string };
      assert.deepEqual([r.status, body.code], [status, code]);
    };
    await refused(api(tenantA, 'POST', '/online', { users: [] }), 400, 'VALIDATION_FAILED');
    await refused(api(tenantA, 'POST', '/online', { users: Array.from({ length: 1001 }, (_, i) => `u${i}`) }), 400, 'VALIDATION_FAILED');
    await refused(api(tenantA, 'POST', '/online', { users: ['bad\u0001name'] }), 400, 'VALIDATION_FAILED');
    await refused(api(tenantA, 'POST', '/online', { users: ['x'], extra: 1 }), 400, 'VALIDATION_FAILED');
    await refused(fetch(`${nuveUrl}/online`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"users":["x"]}' }), 401, 'AUTH_MISSING');
    const spec = await (await fetch(`${nuveUrl}/openapi.json`)).json() as { paths: Record<string, unknown> };
    assert.ok(spec.paths['/online'], 'documented in OpenAPI');

    stopFake();
    await waitFor(() => platform.gateway!.online.ring.size === 0, 5000, 'the distributor gone');
    // senderMaxPending 3: three wait, a fourth does not fit.
    await ok(api(tenantA, 'POST', '/online', { users: ['w1', 'w2', 'w3'] }), 202);
    await refused(api(tenantA, 'POST', '/online', { users: ['w4'] }), 503, 'ONLINE_BACKLOG_FULL');
    // They waited, not lost: a distributor appearing takes them.
    stopFake = fakeDistributor('fake-dist-2');
    await waitFor(() => ['w1', 'w2', 'w3'].every((u) => eventsOf(u).length === 1), 5000, 'the waiting events delivered');
    await ok(api(tenantA, 'POST', '/online', { users: ['w4'] }), 202);
  });
});

describe("push.send's message id", () => {
  const send = (serviceId: string, users: string[], safe: boolean, messageId: string) =>
    bus.request<PushSendResult>(pushSubjects.send, { serviceId, users, data: { n: messageId }, safe, messageId });

  test('a safe message sent twice under one id is stored once; ids are per tenant and user', async () => {
    const first = await send(tenantA.id, ['eli', 'fay'], true, 'event-1');
    const again = await send(tenantA.id, ['eli', 'fay'], true, 'event-1');
    assert.deepEqual(again.messages, first.messages);
    assert.notEqual(first.messages[0]!.id, first.messages[1]!.id, 'one id per user');
    const stored = await ok<{ id: string }[]>(api(tenantA, 'GET', '/push/users/eli/messages'));
    assert.deepEqual(stored.map((m) => m.id), [first.messages[0]!.id]);
    const otherTenant = await send(tenantB.id, ['eli'], true, 'event-1');
    assert.notEqual(otherTenant.messages[0]!.id, first.messages[0]!.id, "another tenant's eli has another id");
    assert.equal((await ok<unknown[]>(api(tenantA, 'GET', '/push/users/eli/messages'))).length, 1);
    await assert.rejects(bus.request(pushSubjects.send, { serviceId: tenantA.id, users: ['eli'], data: 1, safe: true, messageId: 'bad id!' }), {
      code: 'VALIDATION_FAILED',
    });
  });

  test('an unsafe message with an id arrives carrying it; the SDK Session shows it once and acknowledges nothing', async () => {
    const raw: { id?: string; unsafe?: boolean }[] = [];
    const sentAcks: string[] = [];
    class WatchedWebSocket extends NodeWebSocket {
      constructor(url: string) {
        super(url);
        this.on('message', (frame) => {
          const message = JSON.parse(String(frame)) as { method?: string; data?: { id?: string; unsafe?: boolean } };
          if (message.method === 'push') raw.push(message.data!);
        });
        const sending = this.send.bind(this);
        this.send = ((data: string, ...rest: unknown[]) => {
          if (String(data).includes('"pushAck"')) sentAcks.push(String(data));
          return (sending as (...a: unknown[]) => void)(data, ...rest);
        }) as typeof this.send;
      }
    }
    const previous = (globalThis as { WebSocket?: unknown }).WebSocket;
    (globalThis as { WebSocket?: unknown }).WebSocket = WatchedWebSocket;
    try {
      const session = new Session({ getToken: () => sessionToken(tenantA, 'gil') });
      const got: PushEvent[] = [];
      session.on('push', (m) => got.push(m));
      await session.connect();
      await waitFor(() => eventsOf('gil').length === 1, 3000, "gil's online event");
      const first = await send(tenantA.id, ['gil'], false, 'event-2');
      await send(tenantA.id, ['gil'], false, 'event-2');
      await send(tenantA.id, ['gil'], false, 'event-3');
      assert.equal(first.reached, 1);
      await waitFor(() => raw.length === 3, 3000, 'three pushes on the wire');
      await sleep(100);
      assert.equal(raw[0]!.id, raw[1]!.id, 'the copy carries the same id');
      assert.ok(raw.every((m) => m.unsafe === true && /^pm_/.test(m.id!)));
      assert.deepEqual(got.map((m) => (m.data as { n: string }).n), ['event-2', 'event-3'], 'the app sees each once');
      assert.deepEqual(sentAcks, [], 'nothing to acknowledge');
      session.close();
    } finally {
      (globalThis as { WebSocket?: unknown }).WebSocket = previous;
    }
  });
});
