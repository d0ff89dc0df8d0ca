import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import { SignalError } from '../client/src/sdk/errors.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import type { ConfigInput } from '../src/core/config.js';
import { type RunningService, startService } from '../src/services/index.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, opsAuthorization, startEmbedded } from './helpers/platform.js';
import { type Execution, echoService } from './helpers/services-fixtures.js';
import { type StockClient, opened, settleStockClients, stockClient } from './helpers/stock-client.js';

// Business services on NATS (issue 17): the embedded platform (gateway, Nuve, push) on a real NATS
// server, and instances of the fixture service on their own NATS connections (in this process, and
// one in a process of its own for kill -9). Clients are the SDK Session and the stock protoo-client.

const NATS_URL = process.env.TEST_NATS_URL;
const TRUSTED_SECRET = 'trusted-game-server-secret-0123456789';
const LIMITED_SECRET = 'trusted-limited-server-secret-0123456789';
const services = { heartbeatMs: 200, timeoutMs: 1500, probeMs: 200, maxPayloadBytes: 4096, maxReplyBytes: 8192 } satisfies ConfigInput['services'];

after(settleStockClients);

let platform: EmbeddedPlatform;
let tenantA: { id: string; key: string };
let tenantB: { id: string; key: string };
const log: Execution[] = [];
const instances: RunningService[] = [];

async function addInstance(id: string): Promise<RunningService> {
  const instance = await startService(echoService(log), {
    config: { log: { level: 'warn', format: 'json' }, bus: { driver: 'nats', natsUrl: NATS_URL! }, services },
    instanceId: id,
    metrics: id === 'echo-0' ? platform.metrics : undefined,
  });
  instances.push(instance);
  return instance;
}

async function stopInstance(instance: RunningService): Promise<void> {
  instances.splice(instances.indexOf(instance), 1);
  await instance.stop();
}

/** The gateway's view of the echo service has exactly these instances. */
async function gatewaySees(ids: string[]): Promise<void> {
  const discovery = platform.gateway!.services.discovery;
  await waitFor(() => discovery.instances('echo').map((i) => i.id).join() === [...ids].sort().join(), 5000, `gateway sees ${ids.join(',')}`);
}

async function sessionToken(tenant: { id: string; key: string }, user: string, scopes: string[]): Promise<string> {
  const res = await fetch(`${platform.nuveUrl}/sessions`, {
    method: 'POST',
    headers: {
      authorization: buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: Math.random().toString(36).slice(2) }),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ user, scopes }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { token: string }).token;
}

const sessions: Session[] = [];
async function connectSession(tenant = tenantA, user = 'alice', scopes = ['rpc', 'push']): Promise<Session> {
  const session = new Session({ getToken: () => sessionToken(tenant, user, scopes), reconnect: false });
  await session.connect();
  sessions.push(session);
  return session;
}

async function stockRpcClient(user: string, scopes = ['rpc']): Promise<StockClient> {
  const client = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(await sessionToken(tenantA, user, scopes))}`);
  await opened(client);
  return client;
}

async function refused(promise: Promise<unknown>, code: string): Promise<SignalError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SignalError, `a SignalError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

const whoami = (s: Session, options = {}) => s.call<{ instance: string; caller: Record<string, string> }>('echo', 'whoami', {}, options);

before(async () => {
  assert.ok(NATS_URL, 'TEST_NATS_URL (run through test/run.ts)');
  // The browser SDK in Node: Node 20 has no WebSocket of its own.
  (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
  platform = await startEmbedded({
    bus: { driver: 'nats', natsUrl: NATS_URL },
    // Clients here pipeline hundreds of calls: the per-connection request limit is not what is tested.
    gateway: { rateLimit: { requestsPerSecPerClient: 100_000, connectionsPerSecPerIp: 1000 } },
    services: {
      ...services,
      clientPingMs: 300,
      topCallers: { windowMs: 500, size: 3 },
      trusted: {
        port: 0,
        pingMs: 300,
        credentials: [
          { name: 'game', secret: TRUSTED_SECRET },
          { name: 'limited', secret: LIMITED_SECRET, tenants: ['nobody'] },
        ],
      },
    },
  });
  tenantA = await platform.createTenant('svc-a');
  tenantB = await platform.createTenant('svc-b');
  for (const id of ['echo-0', 'echo-1', 'echo-2']) await addInstance(id);
  await gatewaySees(['echo-0', 'echo-1', 'echo-2']);
});

after(async () => {
  for (const s of sessions) s.close();
  for (const instance of [...instances]) await instance.stop();
  await platform.close();
});

describe('client calls through the gateway (c2s)', () => {
  test('the handler sees the session\'s tenant and user, never what the client says', async () => {
    const alice = await connectSession();
    const { caller } = await whoami(alice);
    assert.deepEqual({ tenant: caller.tenant, user: caller.user, kind: caller.kind }, { tenant: tenantA.id, user: 'alice', kind: 'client' });
    // A client naming another tenant or user is refused by the strict request schema.
    const stock = await stockRpcClient('mallory');
    await assert.rejects(stock.peer.request('call', { service: 'echo', method: 'whoami', args: {}, tenant: tenantB.id, user: 'alice' }), /^Error: INVALID_REQUEST: /);
    const answer = (await stock.peer.request('call', { service: 'echo', method: 'whoami', args: {} })) as { caller: Record<string, string> };
    assert.equal(answer.caller.user, 'mallory');
  });

  test('every strategy routes as specified', async () => {
    const s = await connectSession();
    const rr: string[] = [];
    for (let i = 0; i < 9; i++) rr.push((await whoami(s, { strategy: 'round-robin' })).instance);
    assert.equal(new Set(rr.slice(0, 3)).size, 3);
    for (let i = 3; i < 9; i++) assert.equal(rr[i], rr[i - 3], 'round-robin cycles');
    const owner = new Map<string, string>();
    for (let k = 0; k < 24; k++) owner.set(`k${k}`, (await whoami(s, { strategy: 'hash', key: `k${k}` })).instance);
    assert.equal(new Set(owner.values()).size, 3, 'keys spread over the instances');
    for (const [key, id] of owner) assert.equal((await whoami(s, { strategy: 'hash', key })).instance, id, `${key} stays`);
    const random = new Set<string>();
    for (let i = 0; i < 40; i++) random.add((await whoami(s, { strategy: 'random' })).instance);
    assert.equal(random.size, 3);
    // least-load: the instance running this gateway's slow calls is avoided.
    const slow = Array.from({ length: 4 }, () => s.call<{ instance: string }>('echo', 'slow', { ms: 800 }, { strategy: 'hash', key: 'k0' }));
    await sleep(100);
    for (let i = 0; i < 6; i++) assert.notEqual((await whoami(s, { strategy: 'least-load' })).instance, owner.get('k0'));
    for (const r of await Promise.all(slow)) assert.equal(r.instance, owner.get('k0'));
  });

  test('an external client calling an internal method is refused (SDK and stock client); a token without rpc may not call', async () => {
    const s = await connectSession();
    await refused(s.call('echo', 'secret', {}), 'SERVICE_ACCESS_DENIED');
    const stock = await stockRpcClient('bob');
    await assert.rejects(stock.peer.request('call', { service: 'echo', method: 'secret' }), /^Error: SERVICE_ACCESS_DENIED: /);
    const pushOnly = await connectSession(tenantA, 'carol', ['push']);
    await refused(pushOnly.call('echo', 'whoami', {}), 'SCOPE_NOT_GRANTED');
  });

  test('bad input: each a clear error, the gateway and the service unharmed', async () => {
    const s = await connectSession();
    await refused(s.call('nosuch', 'whoami', {}), 'SERVICE_NOT_RUNNING');
    await refused(s.call('echo', 'nosuch', {}), 'SERVICE_METHOD_NOT_FOUND');
    await refused(s.call('echo', 'slow', { ms: 'later' }), 'SERVICE_INVALID_ARGS');
    await refused(s.call('echo', 'whoami', { pad: 'x'.repeat(5000) }), 'SERVICE_PAYLOAD_TOO_LARGE');
    await refused(s.call('Bad Name!', 'whoami', {}), 'INVALID_REQUEST');
    const boom = await refused(s.call('echo', 'boom', {}), 'INTERNAL');
    assert.doesNotMatch(boom.message, /hunter2/);
    const started = Date.now();
    await refused(s.call('echo', 'hang', {}), 'SERVICE_TIMEOUT');
    assert.ok(Date.now() - started < 2000, 'the method\'s 300 ms bound');
    await refused(s.call('echo', 'slow', { ms: 2000 }, { timeoutMs: 200 }), 'SERVICE_TIMEOUT');
    // Still answering, every instance still picked (none was taken for dead).
    assert.deepEqual(platform.gateway!.services.caller.describe().echo, { instances: 3, answering: 3 });
    assert.ok((await whoami(s)).instance);
  });

  test('an answer past services.maxReplyBytes is refused at the instance (SERVICE_REPLY_TOO_LARGE), not taken for a lost instance', async () => {
    const s = await connectSession();
    const onBig = { strategy: 'hash' as const, key: 'big' };
    const fits = await s.call<{ instance: string; blob: string }>('echo', 'blob', { bytes: 7000 }, onBig);
    assert.equal(fits.blob.length, 7000);
    // Past the bound; past NATS's own message bound (1 MiB), where the answer would otherwise be lost.
    for (const bytes of [9000, 2_000_000]) {
      const started = Date.now();
      const err = await refused(s.call('echo', 'blob', { bytes }, onBig), 'SERVICE_REPLY_TOO_LARGE');
      assert.match(err.message, /echo\.blob answered \d+ bytes; services\.maxReplyBytes is 8192/);
      assert.ok(Date.now() - started < 1000, `answered in ${Date.now() - started} ms, not at the call's timeout`);
    }
    // The instance is still picked, and still answers.
    assert.deepEqual(platform.gateway!.services.caller.describe().echo, { instances: 3, answering: 3 });
    assert.equal((await whoami(s, onBig)).instance, fits.instance);
  });

  test('the gateway\'s /status (ops token) ranks the busiest callers by calls per second, the top services.topCallers.size', async () => {
    const busy = await connectSession(tenantA, 'busy-bee', ['rpc']);
    const others = await Promise.all(['o1', 'o2', 'o3'].map((user) => connectSession(tenantA, user, ['rpc'])));
    // Calls until a whole window (500 ms) of them was ranked: the snapshot is the last complete window.
    let calling = true;
    const load = (async () => {
      while (calling) await Promise.all([...Array.from({ length: 10 }, () => whoami(busy)), ...others.map((s) => whoami(s))]);
    })();
    const url = `${platform.gatewayUrl.replace('ws://', 'http://')}/status`;
    type Flow = { instances: Record<string, unknown>; topCallers: { windowSec: number; callers: { kind: string; tenant: string; user: string; callsPerSec: number }[] } };
    let flow: Flow | undefined;
    try {
      await waitFor(async () => {
        const res = await fetch(url, { headers: opsAuthorization });
        assert.equal(res.status, 200);
        flow = ((await res.json()) as { services: Flow }).services;
        // A window of these four callers only (earlier tests' callers gone), with two rounds of busy-bee's calls at least.
        const { callers } = flow.topCallers;
        return callers.every((c) => /^(busy-bee|o[123])$/.test(c.user)) && callers.some((c) => c.user === 'busy-bee' && c.callsPerSec >= 40);
      }, 10_000, 'a window of calls ranked');
    } finally {
      calling = false;
      await load;
    }
    assert.equal((await fetch(url)).status, 401);
    assert.deepEqual(flow!.instances.echo, { instances: 3, answering: 3 });
    const { callers } = flow!.topCallers;
    // Four callers, the top three shown.
    assert.equal(callers.length, 3, JSON.stringify(callers));
    assert.deepEqual({ ...callers[0], callsPerSec: undefined }, { kind: 'client', tenant: tenantA.id, user: 'busy-bee', callsPerSec: undefined });
    // Ten calls for each one of the others' (a window may cut a round short).
    assert.ok(callers[0]!.callsPerSec > 3 * callers[1]!.callsPerSec, JSON.stringify(callers));
    for (const c of callers.slice(1)) assert.match(c.user, /^o[123]$/);
  });

  test('flow counters in /metrics: by service, method and code, names clients invent counted as _unknown', async () => {
    const s = await connectSession();
    await whoami(s);
    await refused(s.call('echo', 'invented-method', {}), 'SERVICE_METHOD_NOT_FOUND');
    await refused(s.call('Invented Service', 'x', {}), 'INVALID_REQUEST');
    const res = await fetch(`${platform.gatewayUrl.replace('ws://', 'http://')}/metrics`, { headers: opsAuthorization });
    const text = await res.text();
    assert.match(text, /mss_gateway_service_calls_total\{service="echo",method="whoami",code="OK"[^}]*\} \d+/);
    assert.match(text, /mss_gateway_service_calls_total\{service="echo",method="_unknown",code="SERVICE_METHOD_NOT_FOUND"/);
    assert.doesNotMatch(text, /invented-method|Invented Service/);
    assert.match(text, /mss_gateway_service_calls_total\{service="_invalid",method="_invalid",code="INVALID_REQUEST"/);
    assert.match(text, /mss_gateway_service_call_seconds_bucket\{[^}]*method="whoami"/);
    assert.match(text, /mss_gateway_service_callers[^ ]* [1-9]/);
    // echo-0 reports to this process's registry too (the service side).
    assert.match(text, /mss_service_handled_total\{service="echo",method="whoami",code="OK"/);
  });
});

test('a silent client connection is dropped after twice services.clientPingMs', async () => {
  const calls = platform.gateway!.services;
  const before = calls.callers;
  const ws = new WebSocket(`${platform.gatewayUrl}/?token=${encodeURIComponent(await sessionToken(tenantA, 'quiet', ['rpc']))}`, 'protoo');
  await new Promise((resolve) => ws.once('open', resolve));
  await waitFor(() => calls.callers === before + 1, 3000, 'admitted');
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  const pausedAt = Date.now();
  await waitFor(() => calls.callers === before, 3000, 'dropped');
  const elapsed = Date.now() - pausedAt;
  assert.ok(elapsed >= 250 && elapsed < 1200, `${elapsed} ms`);
  ws.terminate();
});

describe('services calling services (s2s) and pushing to users (s2c)', () => {
  test('a service calls another\'s internal method for the same tenant and user', async () => {
    const s = await connectSession(tenantA, 'dave');
    const answer = await s.call('echo', 'relay', { service: 'echo', method: 'secret' });
    assert.deepEqual(answer, { secret: 42, user: 'dave', tenant: tenantA.id, kind: 'service' });
  });

  test('a push from a handler reaches the connected Session of the caller\'s tenant only', async () => {
    const sender = await connectSession(tenantA, 'erin');
    const receiver = await connectSession(tenantA, 'frank');
    const otherTenant = await connectSession(tenantB, 'frank');
    const got: PushEvent[] = [];
    const leaked: PushEvent[] = [];
    receiver.on('push', (m) => got.push(m));
    otherTenant.on('push', (m) => leaked.push(m));
    const result = (await sender.call('echo', 'push', { users: ['frank'], text: 'hi' })) as { reached: number };
    assert.equal(result.reached, 1);
    await waitFor(() => got.length === 1, 3000, 'push arrives');
    assert.deepEqual(got[0]!.data, { text: 'hi', from: 'erin' });
    await sleep(200);
    assert.equal(leaked.length, 0);
  });
});

describe('trusted servers', () => {
  async function trustedClient(secret: string): Promise<{ ws: WebSocket; call(data: unknown): Promise<any>; close(): void }> {
    const ws = new WebSocket(platform.gateway!.services.trusted!.url, { headers: { authorization: `Bearer ${secret}` } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    let id = 0;
    const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
    ws.on('message', (raw) => {
      const message = JSON.parse(raw.toString());
      const p = pending.get(message.id);
      if (!p) return;
      pending.delete(message.id);
      if (message.ok) p.resolve(message.data);
      else p.reject(Object.assign(new Error(message.errorReason), { name: message.errorName }));
    });
    return {
      ws,
      call: (data) =>
        new Promise((resolve, reject) => {
          const requestId = ++id;
          pending.set(requestId, { resolve, reject });
          ws.send(JSON.stringify({ request: true, id: requestId, method: 'call', data }));
        }),
      close: () => ws.close(),
    };
  }

  test('one connection acts for many users, internal methods included', async () => {
    const server = await trustedClient(TRUSTED_SECRET);
    const users = Array.from({ length: 40 }, (_, i) => `player-${i}`);
    const answers = await Promise.all(users.map((user) => server.call({ tenant: tenantA.id, user, service: 'echo', method: 'secret', args: {} })));
    assert.deepEqual(
      answers.map((a) => a.user),
      users,
    );
    for (const a of answers) assert.deepEqual({ tenant: a.tenant, kind: a.kind }, { tenant: tenantA.id, kind: 'trusted' });
    await assert.rejects(server.call({ tenant: tenantA.id, service: 'echo', method: 'secret' }), { name: 'INVALID_REQUEST' });
    server.close();
  });

  test('a wrong credential is refused at the upgrade; a credential limited to other tenants is refused per call', async () => {
    await assert.rejects(trustedClient(`${TRUSTED_SECRET}x`), /401/);
    const limited = await trustedClient(LIMITED_SECRET);
    await assert.rejects(limited.call({ tenant: tenantA.id, user: 'u', service: 'echo', method: 'secret' }), { name: 'TRUSTED_TENANT_NOT_ALLOWED' });
    limited.close();
  });

  test('a silent trusted connection is dropped after twice its ping period', async () => {
    const edge = platform.gateway!.services.trusted!;
    await waitFor(() => edge.connections === 0, 3000, 'earlier trusted connections closed');
    const server = await trustedClient(TRUSTED_SECRET);
    const before = edge.connections;
    // Stop answering pings: ws answers them by itself unless its socket is paused.
    (server.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const pausedAt = Date.now();
    await waitFor(() => edge.connections === before - 1, 3000, 'silent trusted connection dropped');
    // Pinged within 300 ms, dropped at the next tick: between one and two periods (plus timer slack).
    assert.ok(Date.now() - pausedAt >= 250 && Date.now() - pausedAt < 1200, `${Date.now() - pausedAt} ms`);
    server.ws.terminate();
  });
});

describe('ordered calls and instance loss', () => {
  test('ordered calls are never reordered under load while instances join and leave', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, (_, i) => connectSession(tenantA, `ord-${i}`, ['rpc'])));
    const before = log.length;
    // Each client calls at least this many times, and goes on until the leave below is over: calls are in flight
    // through the join and the leave however long those take on a busy machine.
    const MIN_PER_CLIENT = 200;
    let left = false;
    const calls = clients.map(async (s, c) => {
      const outcomes: string[] = [];
      const pending: Promise<unknown>[] = [];
      for (let n = 1; n <= MIN_PER_CLIENT || !left; n++) {
        pending.push(
          s.call('echo', 'seq', { client: `ord-${c}`, n, delayMs: 6 }).then(
            () => outcomes.push('OK'),
            (err: SignalError) => outcomes.push(err.code),
          ),
        );
        if (n % 10 === 0) await sleep(15);
      }
      await Promise.all(pending);
      return outcomes;
    });
    const executions = () => log.slice(before).filter((e) => e.method === 'seq');
    // Meanwhile: one instance joins, another leaves (its clients' streams move once their calls there settled).
    await sleep(150);
    const joined = await addInstance('echo-3');
    await waitFor(() => executions().filter((e) => e.instance === 'echo-1').length >= 20, 5000, 'ordered calls running on echo-1');
    await stopInstance(instances.find((i) => i.id === 'echo-1')!);
    left = true;
    const outcomes = await Promise.all(calls);
    for (let c = 0; c < clients.length; c++) {
      // Sequence numbers in call order, each call started only after the previous one ended (wherever it ran).
      const events = log.slice(before).filter((e) => e.client === `ord-${c}`).map((e) => `${e.method === 'seq' ? 'start' : 'end'} ${e.n}`);
      assert.deepEqual(events, Array.from({ length: outcomes[c]!.length }, (_, i) => [`start ${i + 1}`, `end ${i + 1}`]).flat(), `ord-${c}`);
    }
    // The leave happened under load: the streams on echo-1 moved to another instance midway.
    const moved = clients.filter((_, c) => new Set(executions().filter((e) => e.client === `ord-${c}`).map((e) => e.instance)).size > 1);
    assert.ok(moved.length >= 1, 'some client\'s stream moved');
    // A clean leave loses nothing.
    assert.deepEqual(
      outcomes.flat().filter((o) => o !== 'OK'),
      [],
    );
    assert.equal(executions().length, outcomes.flat().length);
    await addInstance('echo-1');
    await stopInstance(joined);
    await gatewaySees(['echo-0', 'echo-1', 'echo-2']);
  });

  test('kill -9 of an instance process: only its in-flight calls fail (SERVICE_INSTANCE_LOST), new calls avoid it at once', async () => {
    const proc = await spawnInstance('echo-proc');
    await gatewaySees(['echo-0', 'echo-1', 'echo-2', 'echo-proc']);
    const s = await connectSession(tenantA, 'grace', ['rpc']);
    const inFlight = Array.from({ length: 8 }, () =>
      s.call<{ instance: string }>('echo', 'slow', { ms: 4000 }, { strategy: 'round-robin' }).then(
        (r) => ({ ok: r.instance }),
        (err: SignalError) => ({ code: err.code, message: err.message, at: Date.now() }),
      ),
    );
    await sleep(200);
    const killedAt = Date.now();
    proc.kill('SIGKILL');
    const results = await Promise.all(inFlight);
    const failed = results.filter((r) => 'code' in r);
    assert.equal(failed.length, 2, JSON.stringify(results));
    for (const f of failed) {
      assert.equal((f as { code: string }).code, 'SERVICE_INSTANCE_LOST');
      assert.match((f as { message: string }).message, /echo-proc/);
    }
    for (const r of results) if ('ok' in r) assert.notEqual(r.ok, 'echo-proc');
    // Failed by the heartbeat timeout (1.5 s), long before the calls' own end (4 s) or their deadline (10 s).
    for (const f of failed) assert.ok((f as { at: number }).at - killedAt < 3200, `${(f as { at: number }).at - killedAt} ms`);
    // New calls right after the kill never reach it (no responders: tried on another instance).
    for (let i = 0; i < 8; i++) assert.notEqual((await whoami(s, { strategy: 'round-robin' })).instance, 'echo-proc');
    await gatewaySees(['echo-0', 'echo-1', 'echo-2']);
  });

  test('kill -9 of the instance keeping a client\'s ordered calls: those in flight fail clearly, ordering restarts on another', async () => {
    const proc = await spawnInstance('echo-proc2');
    await gatewaySees(['echo-0', 'echo-1', 'echo-2', 'echo-proc2']);
    const s = await connectSession(tenantA, 'heidi', ['rpc']);
    // A hash key that lands on the process: the stream's first routing follows the call's strategy.
    let key = '';
    for (let k = 0; !key && k < 200; k++) if ((await whoami(s, { strategy: 'hash', key: `o${k}` })).instance === 'echo-proc2') key = `o${k}`;
    assert.ok(key, 'a key owned by echo-proc2');
    const before = log.length;
    const first = await s.call<{ instance: string }>('echo', 'seq', { client: 'heidi', n: 1 }, { strategy: 'hash', key });
    assert.equal(first.instance, 'echo-proc2');
    const inFlight = Array.from({ length: 5 }, (_, i) =>
      s.call('echo', 'seq', { client: 'heidi', n: i + 2, delayMs: 1000 }, { strategy: 'hash', key }).then(
        () => 'OK',
        (err: SignalError) => `${err.code}: ${err.message}`,
      ),
    );
    await sleep(150);
    proc.kill('SIGKILL');
    const outcomes = await Promise.all(inFlight);
    // Those that ended before the kill answered; every later one failed, saying why.
    const firstLost = outcomes.findIndex((o) => o !== 'OK');
    assert.ok(firstLost >= 0, 'some calls were in flight at the kill');
    for (const o of outcomes.slice(firstLost)) assert.match(o, /^SERVICE_INSTANCE_LOST: .*echo-proc2.*ordered calls restart on another instance/);
    const next = await s.call<{ instance: string }>('echo', 'seq', { client: 'heidi', n: 7 }, { strategy: 'hash', key });
    assert.notEqual(next.instance, 'echo-proc2');
    const after = await s.call<{ instance: string }>('echo', 'seq', { client: 'heidi', n: 8 }, { strategy: 'hash', key });
    assert.equal(after.instance, next.instance, 'sticky again');
    assert.deepEqual(
      log.slice(before).filter((e) => e.method === 'seq' && e.client === 'heidi' && e.instance !== 'echo-proc2').map((e) => e.n),
      [7, 8],
    );
    await gatewaySees(['echo-0', 'echo-1', 'echo-2']);
  });
});

function spawnInstance(id: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/echo-service.ts'], {
    env: { ...process.env, TEST_SERVICE_NATS_URL: NATS_URL, TEST_SERVICE_ID: id, TEST_SERVICE_CONFIG: JSON.stringify({ services }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(`ready ${id}`)) resolve(proc);
    });
    proc.once('exit', (code) => reject(new Error(`instance process exited with ${code}`)));
  });
}
