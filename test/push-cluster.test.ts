import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket as NodeWebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import type { AppError } from '../src/core/errors.js';
import { pushSubjects } from '../src/core/push-protocol.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { Cluster } from './helpers/cluster.js';
import { type StockClient, opened, settleStockClients, stockClient } from './helpers/stock-client.js';

/**
 * Push across processes: two Nuves, two gateways, two push roles over NATS, PostgreSQL and Redis
 * (no agents: pushes need no media). Location TTL 3 s, so gateways refresh every second. REST calls
 * alternate between the Nuves.
 */
const cluster = new Cluster();

interface Tenant {
  id: string;
  key: string;
}
let tenantA: Tenant;
let tenantB: Tenant;
let nuveUrls: string[] = [];
let calls = 0;

before(async () => {
  await cluster.start({ gateways: 1, agents: 0, push: 2, env: { MSS_PUSH__LOCATION_TTL_MS: '3000' } });
  nuveUrls = [cluster.nuveUrl, await cluster.addNuve()];
  tenantA = await createTenant('push-cluster-a');
  tenantB = await createTenant('push-cluster-b');
}, { timeout: 90_000 });
after(async () => {
  settleStockClients();
  await cluster.stop();
});

const mauth = (t: Tenant) => buildMAuthHeader({ serviceId: t.id, key: t.key, cnonce: Math.random().toString(36).slice(2) });

async function createTenant(name: string): Promise<Tenant> {
  const key = `${name}-key-${Math.random().toString(36).slice(2)}`;
  const res = await fetch(`${cluster.nuveUrl}/services`, {
    method: 'POST',
    headers: { authorization: cluster.auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ name, key }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return { id: (await res.text()).replaceAll('"', ''), key };
}

async function api(t: Tenant, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${nuveUrls[calls++ % nuveUrls.length]}${path}`, {
    method,
    headers: { authorization: mauth(t), ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function push(t: Tenant, users: string[], data: unknown, safe = true): Promise<{ messages: { id: string }[]; reached: number; offline: string[] }> {
  const res = await api(t, 'POST', '/push/messages', { users, data, safe });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function sessionToken(t: Tenant, user: string): Promise<{ token: string; gatewayId: string }> {
  const res = await api(t, 'POST', '/sessions', { user, scopes: ['push'] });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const token = res.body.token as string;
  return { token, gatewayId: JSON.parse(Buffer.from(token, 'base64').toString()).gatewayId };
}

/** A stock client on a push session, admitted (its registration and restore done). */
async function connect(token: string): Promise<StockClient> {
  const { gatewayUrl } = JSON.parse(Buffer.from(token, 'base64').toString()) as { gatewayUrl: string };
  const client = stockClient(`${gatewayUrl}/?token=${encodeURIComponent(token)}`);
  await opened(client);
  await assert.rejects(client.peer.request('pushAck', {}), /INVALID_REQUEST/);
  return client;
}

async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve().then(fn).catch(() => undefined);
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

const pushesOf = (client: StockClient) => client.notifications.filter((n) => n.method === 'push').map((n) => n.data);

describe('push in a cluster', () => {
  test('a user with devices on two gateways gets each push on both', async () => {
    // Every user's first device lands on gateway-0, the only one yet; with a second gateway the ring moves some users there.
    const users = Array.from({ length: 12 }, (_, i) => `two-${i}`);
    const first = new Map<string, StockClient>();
    for (const user of users) first.set(user, await connect((await sessionToken(tenantA, user)).token));
    await cluster.addGateway();
    await waitFor(async () => ((await (await fetch(`${cluster.nuveUrl}/health`)).json()) as { gateways: number }).gateways === 2, 15_000, 'gateway-1 registered');
    let moved: { user: string; token: string } | undefined;
    for (const user of users) {
      const { token, gatewayId } = await sessionToken(tenantA, user);
      if (gatewayId === 'gateway-1') {
        moved = { user, token };
        break;
      }
    }
    assert.ok(moved, 'some user hashes to gateway-1');
    const phone = first.get(moved.user)!;
    const laptop = await connect(moved.token);

    const unsafe = await push(tenantA, [moved.user], 'unsafe to both', false);
    assert.equal(unsafe.reached, 2);
    const safe = await push(tenantA, [moved.user], 'safe to both');
    assert.equal(safe.reached, 2);
    for (const device of [phone, laptop]) {
      await waitFor(() => pushesOf(device).length === 2, 3000, 'both pushes on each device');
      assert.deepEqual(pushesOf(device).map((m) => m.data), ['unsafe to both', 'safe to both']);
      assert.equal(pushesOf(device)[1].id, safe.messages[0]!.id, 'one safe message: one id on every device');
    }
    // Arrived once any device acknowledged it.
    assert.deepEqual(await laptop.peer.request('pushAck', { ids: [safe.messages[0]!.id] }), { acked: 1 });
    assert.deepEqual((await api(tenantA, 'GET', `/push/users/${moved.user}/messages`)).body, []);
    for (const client of first.values()) client.peer.close();
    laptop.peer.close();
  });

  test('a user offline for a while gets every unarrived message on login, in send order; expired ones are not delivered', async () => {
    const sent: string[] = [];
    for (let i = 0; i < 10; i++) {
      // Calls alternate between the Nuves, and so reach either push role.
      if (i === 4) await api(tenantA, 'POST', '/push/messages', { users: ['away'], data: 'expires', ttlSec: 1 });
      sent.push((await push(tenantA, ['away'], `a${i}`)).messages[0]!.id);
    }
    await sleep(1200);
    const client = await connect((await sessionToken(tenantA, 'away')).token);
    await waitFor(() => pushesOf(client).length >= 10, 5000, 'the restore');
    await sleep(300);
    assert.deepEqual(pushesOf(client).map((m) => m.data), sent.map((_, i) => `a${i}`));
    assert.deepEqual(pushesOf(client).map((m) => m.id), sent);
    client.peer.close();
  });

  test("another tenant's user of the same name is not reached", async () => {
    const a = await connect((await sessionToken(tenantA, 'same-name')).token);
    const fromB = await push(tenantB, ['same-name'], 'from b', false);
    assert.deepEqual([fromB.reached, fromB.offline], [0, ['same-name']]);
    const fromA = await push(tenantA, ['same-name'], 'from a', false);
    assert.equal(fromA.reached, 1);
    await waitFor(() => pushesOf(a).length === 1, 3000, "tenant A's push");
    await sleep(200);
    assert.deepEqual(pushesOf(a).map((m) => m.data), ['from a']);
    a.peer.close();
  });

  test('Redis restart: pushes are refused while it is away, then resume with no process restarted', async () => {
    const client = await connect((await sessionToken(tenantA, 'through-redis')).token);
    const pids = [cluster.nuve, ...cluster.gateways.map((g) => g.proc), ...cluster.push].map((p) => p.pid);
    assert.equal((await push(tenantA, ['through-redis'], 'before', false)).reached, 1);
    await cluster.redis.stop();
    // Nuve's MAuth replay guard needs Redis too (503 AUTH_UNAVAILABLE): the push role's own answer shows on its bus API.
    const during = { serviceId: tenantA.id, users: ['through-redis'], data: 'during', safe: true };
    await waitFor(
      () => cluster.bus.request(pushSubjects.send, during).then(() => false, (err: AppError) => err.code === 'PUSH_UNAVAILABLE'),
      10_000,
      'PUSH_UNAVAILABLE while Redis is away',
    );
    await assert.rejects(cluster.bus.request(pushSubjects.send, during), { code: 'PUSH_UNAVAILABLE', status: 503 });
    await cluster.redis.start();
    // Redis came back empty: the gateways' refreshes put the session back.
    await waitFor(async () => (await push(tenantA, ['through-redis'], 'after', false)).reached === 1, 20_000, 'a push reaching the user after the restart');
    assert.deepEqual(pushesOf(client).at(-1).data, 'after');
    assert.deepEqual((await api(tenantA, 'GET', '/push/users/through-redis/messages')).body, [], 'nothing stored by the refused pushes');
    assert.deepEqual([cluster.nuve, ...cluster.gateways.map((g) => g.proc), ...cluster.push].map((p) => p.pid), pids);
    assert.ok([cluster.nuve, ...cluster.gateways.map((g) => g.proc), ...cluster.push].every((p) => p.running));
    client.peer.close();
  });

  test('kill -9 of a gateway during a stream of safe pushes: after reconnecting the app has each once, in order', async () => {
    // ws as the browser's WebSocket; a browser reports a refused connection as events, ws also throws an unheard 'error'.
    const wire: string[] = [];
    (globalThis as { WebSocket?: unknown }).WebSocket = class extends NodeWebSocket {
      constructor(url: string) {
        super(url);
        this.on('error', () => undefined);
        this.on('message', (frame) => {
          const message = JSON.parse(String(frame)) as { method?: string; data?: { data?: unknown } };
          if (message.method === 'push') wire.push(String(message.data?.data));
        });
      }
    };
    const gatewaysUsed: string[] = [];
    const session = new Session({
      getToken: async () => {
        const { token, gatewayId } = await sessionToken(tenantA, 'streamed');
        gatewaysUsed.push(gatewayId);
        return token;
      },
      reconnect: { maxAttempts: 20, initialDelayMs: 200, maxDelayMs: 1000 },
    });
    const got: PushEvent[] = [];
    await session.connect();
    const victim = cluster.gateways.find((g) => g.id === gatewaysUsed[0])!;
    session.on('push', (m) => {
      got.push(m);
      // Killed as the app has m20, before the SDK's acknowledgement of it leaves (next turn): m20 comes again, restored.
      if (m.data === 'm20') victim.proc.signal('SIGKILL');
    });
    const sent: string[] = [];
    for (let i = 0; i < 60; i++) {
      const result = await push(tenantA, ['streamed'], `m${i}`);
      sent.push(result.messages[0]!.id);
      await sleep(25);
    }
    await waitFor(() => got.length >= 60 && session.state === 'connected', 30_000, 'every message after reconnecting');
    await waitFor(async () => (await api(tenantA, 'GET', '/push/users/streamed/messages')).body.length === 0, 5000, 'all acknowledged');
    await sleep(500);
    assert.deepEqual(got.map((m) => m.data), sent.map((_, i) => `m${i}`), 'each once, in send order');
    assert.deepEqual(got.map((m) => m.id), sent);
    assert.notEqual(gatewaysUsed.at(-1), victim.id, 'reconnected through the surviving gateway');
    assert.equal(victim.proc.running, false);
    assert.equal(wire.filter((d) => d === 'm20').length, 2, 'm20 was delivered twice; the SDK handed it over once');
    session.close();
  });
});
