import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { addressKey } from '../src/gateway/edge/limits.js';
import { gatewayCall } from './helpers/broadcaster.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';

interface Attempt {
  /** Refused before the handshake. */
  status?: number;
  /** Refused after it: the `closing` notification and the close code. */
  closing?: any;
  close?: number;
  /** Admitted: its first request was answered. */
  admitted?: boolean;
}

/** One connection attempt, as a raw client would make it; an admitted connection is closed once it has been answered. */
function attempt(url: string, token: string | undefined, localAddress = '127.0.0.1'): Promise<Attempt> {
  const query = token === undefined ? '' : `?token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(`${url}/${query}`, { localAddress });
  return new Promise((resolve) => {
    let closing: any;
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode });
      ws.terminate();
    });
    ws.on('error', () => undefined);
    ws.on('open', () => ws.send(JSON.stringify({ request: true, id: 1, method: 'getRouterRtpCapabilities', data: {} })));
    ws.on('message', (raw) => {
      const msg = JSON.parse(raw.toString());
      if (msg.notification && msg.method === 'closing') closing = msg.data;
      if (msg.response && msg.ok) {
        resolve({ admitted: true });
        ws.close();
      }
    });
    ws.on('close', (code) => resolve({ closing, close: code }));
  });
}

/** Token consumptions this process asked of Nuve so far (the bus request histogram counts every one). */
async function nuveConsumeRequests(platform: EmbeddedPlatform): Promise<number> {
  const metric = await platform.metrics.getSingleMetric('mss_bus_request_duration_seconds')!.get();
  return metric.values
    .filter((v) => (v as { metricName?: string }).metricName?.endsWith('_count') && v.labels.subject === 'nuve.token.consume')
    .reduce((sum, v) => sum + v.value, 0);
}

/** A token that is well formed (so only Nuve could refuse it) but whose claims were altered. */
function forged(token: string, change: Record<string, unknown>): string {
  const claims = JSON.parse(Buffer.from(token, 'base64').toString());
  return Buffer.from(JSON.stringify({ ...claims, ...change })).toString('base64');
}

const aFreshSecond = () => sleep(1100);

describe('connection budgets: one address cannot starve the others', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded({ gateway: { port: 0, rateLimit: { connectionsPerSec: 5, connectionsPerSecPerIp: 3 } } });
  });
  after(async () => platform.close());

  test('a flood of tokenless and malformed connections from one address: a client at another address gets in', async () => {
    const roomId = await platform.createRoom('flood');
    const token = await platform.token(roomId, 'legit');
    await aFreshSecond();
    const flood = await Promise.all(
      Array.from({ length: 40 }, (_, i) => attempt(platform.gatewayUrl, i % 2 ? undefined : 'not-a-token')),
    );
    assert.deepEqual(await attempt(platform.gatewayUrl, token, '127.0.0.2'), { admitted: true }, 'the legitimate client is admitted');

    // 3 per second get through (more only if the flood outlasted a second), each told why its token is refused.
    const refusedByToken = flood.filter((r) => r.closing);
    for (const r of refusedByToken) assert.equal(r.close, 4000);
    assert.ok(refusedByToken.length >= 3 && refusedByToken.length <= 6, `${refusedByToken.length} through`);
    assert.equal(flood.filter((r) => r.status === 429).length, 40 - refusedByToken.length);
  });

  test('spent, tokenless and malformed connections from many addresses leave the shared budget to real clients', async () => {
    const roomId = await platform.createRoom('flood-many');
    const spent = await platform.token(roomId, 'spender');
    assert.deepEqual(await attempt(platform.gatewayUrl, spent, '127.0.0.3'), { admitted: true });
    const token = await platform.token(roomId, 'legit');
    await aFreshSecond();
    // Two from each of 20 addresses: within every address's budget, 40 in all against a shared budget of 5.
    const flood = await Promise.all(
      Array.from({ length: 40 }, (_, i) => attempt(platform.gatewayUrl, [undefined, 'bm90IGpzb24=', spent][i % 3], `127.0.1.${i % 20}`)),
    );
    assert.deepEqual(await attempt(platform.gatewayUrl, token, '127.0.0.2'), { admitted: true });
    assert.ok(flood.every((r) => [1000, 1001, 1004].includes(r.closing?.code)), 'each refused for its token, none for the rate');
  });

  test('well-formed tokens from one address only get that address’s share of the Nuve budget', async () => {
    const roomId = await platform.createRoom('flood-forged');
    const real = await platform.token(roomId, 'attacker');
    const token = await platform.token(roomId, 'legit');
    await aFreshSecond();
    // Each forged token is new to the gateway, so it would cost a Nuve round trip.
    const flood = await Promise.all(
      Array.from({ length: 20 }, (_, i) => attempt(platform.gatewayUrl, forged(real, { userName: `forged-${i}` }))),
    );
    assert.deepEqual(await attempt(platform.gatewayUrl, token, '127.0.0.2'), { admitted: true });
    const throughToNuve = flood.filter((r) => r.closing?.code === 1002).length;
    assert.ok(throughToNuve >= 3 && throughToNuve <= 6, `${throughToNuve} bad signatures, found by Nuve`);
    assert.equal(flood.filter((r) => r.status === 429).length, 20 - throughToNuve);
  });

  test('budgets are per IPv4 address and per IPv6 /64', () => {
    assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
    assert.equal(addressKey('2001:db8:0:1:aaaa::1'), addressKey('2001:0DB8::1:ffff:0:0:2'));
    assert.notEqual(addressKey('2001:db8:0:1::1'), addressKey('2001:db8:0:2::1'));
    assert.equal(addressKey('1::2:3:4:5:1.2.3.4'), '1:0:2:3::/64');
  });
});

describe('tokens refused cheaply', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded({ gateway: { port: 0, rateLimit: { connectionsPerSecPerIp: 10_000, connectionsPerSec: 10_000 } } });
  });
  after(async () => platform.close());

  test('a reconnect storm with a spent token costs one Nuve round trip in all', async () => {
    const roomId = await platform.createRoom('storm');
    const token = await platform.token(roomId, 'alice');
    const before = await nuveConsumeRequests(platform);
    const first = await ProtooClient.connect(platform.gatewayUrl, token);
    await first.request('getRouterRtpCapabilities');
    for (let batch = 0; batch < 20; batch++) {
      const results = await Promise.all(Array.from({ length: 10 }, () => attempt(platform.gatewayUrl, token)));
      for (const r of results) {
        assert.equal(r.closing?.code, 1004);
        assert.equal(r.closing?.errorName, 'TOKEN_ALREADY_USED');
        assert.equal(r.close, 4000);
      }
    }
    assert.equal((await nuveConsumeRequests(platform)) - before, 1, 'only the first use reached Nuve');
    first.close();
    await first.closed;
  });

  test('a token refused by Nuve is refused again without asking; concurrent uses of one token share one round trip', async () => {
    const roomId = await platform.createRoom('refused');
    const bad = forged(await platform.token(roomId, 'mallory', 'viewer'), { role: 'presenter' });
    let before = await nuveConsumeRequests(platform);
    for (let i = 0; i < 50; i++) assert.equal((await attempt(platform.gatewayUrl, bad)).closing?.code, 1002);
    assert.equal((await nuveConsumeRequests(platform)) - before, 1);

    const fresh = await platform.token(roomId, 'bob');
    before = await nuveConsumeRequests(platform);
    // A slow database keeps the first use in flight while the others arrive.
    const store = platform.store!;
    const consumeToken = store.consumeToken.bind(store);
    store.consumeToken = async (id) => (await sleep(300), consumeToken(id));
    const raced = await Promise.all(Array.from({ length: 20 }, () => attempt(platform.gatewayUrl, fresh))).finally(() => {
      store.consumeToken = consumeToken;
    });
    assert.equal((await nuveConsumeRequests(platform)) - before, 1, 'one round trip for 20 concurrent uses');
    const admitted = raced.filter((r) => r.admitted);
    assert.equal(raced.filter((r) => r.closing?.code === 1004).length, 19, 'the others are told the token is used');
    assert.equal(admitted.length, 1);
  });

  test('missing, malformed and expired tokens never reach Nuve', async () => {
    const roomId = await platform.createRoom('local');
    const expired = forged(await platform.token(roomId, 'carol'), { expiresAt: Date.now() - 5 * 60_000 });
    const before = await nuveConsumeRequests(platform);
    assert.equal((await attempt(platform.gatewayUrl, undefined)).closing?.code, 1000);
    assert.equal((await attempt(platform.gatewayUrl, 'bm90IGpzb24=')).closing?.code, 1001);
    assert.equal((await attempt(platform.gatewayUrl, 'x'.repeat(5000))).closing?.code, 1001);
    const late = await attempt(platform.gatewayUrl, expired);
    assert.equal(late.closing?.code, 1003);
    assert.equal(late.close, 4000);
    assert.equal((await nuveConsumeRequests(platform)) - before, 0);
  });
});

describe('peer ids belong to their user', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded();
  });
  after(async () => platform.close());

  /** A peer that joins with `peerId` and, as a presenter, publishes audio; it records what the room tells it. */
  async function joined(roomId: string, user: string, peerId?: string, role: 'presenter' | 'viewer' = 'presenter') {
    const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, user, role), peerId ? `&peerId=${peerId}` : '');
    client.handleRequests(() => ({}));
    const rtpCapabilities = await client.request('getRouterRtpCapabilities');
    const send = await client.request('createWebRtcTransport', { producing: true, consuming: false });
    await client.request('createWebRtcTransport', { producing: false, consuming: true });
    const { peers } = await client.request('join', { displayName: user, device: { name: 'test' }, rtpCapabilities });
    const producerId =
      role === 'presenter'
        ? (await client.request('produce', { transportId: send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } })).id
        : undefined;
    return { client, peers: peers as { id: string }[], producerId: producerId as string | undefined };
  }

  /** A connection that must be refused for its peer id. */
  async function refusedId(roomId: string, user: string, peerId: string, role: 'presenter' | 'viewer' = 'viewer') {
    const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, user, role), `&peerId=${peerId}`);
    const closing = await client.waitNotification('closing');
    assert.equal(closing.errorName, 'PEER_ID_TAKEN');
    assert.equal(closing.code, 4105);
    assert.equal(await client.closed, 4000);
  }

  test('another user of the room cannot take a peer id: the victim keeps its socket, its peer entry and its media', async () => {
    const roomId = await platform.createRoom('hijack');
    const alice = await joined(roomId, 'alice', 'alice-peer');
    const bob = await joined(roomId, 'bob', 'bob-peer', 'viewer');

    await refusedId(roomId, 'mallory', 'alice-peer');
    await refusedId(roomId, 'mallory', 'alice-peer', 'presenter');

    assert.equal(alice.client.closeCode, undefined, 'alice is still connected');
    assert.ok(await alice.client.request('getProducerStats', { producerId: alice.producerId }), 'her producer is still there');
    assert.ok(!bob.client.notifications.some((n) => n.method === 'peerClosed'), 'nobody was told she left');
    const dump = await platform.agent!.dump();
    assert.equal(dump.producers, 1);
    const carol = await joined(roomId, 'carol', undefined, 'viewer');
    assert.deepEqual(carol.peers.map((p) => p.id).sort(), ['alice-peer', 'bob-peer']);
    for (const p of [alice, bob, carol]) p.client.close();
  });

  test('a broadcaster id can never be taken by a WebSocket, not even by the same user', async () => {
    const roomId = await platform.createRoom('broadcaster-hijack');
    const base = platform.gatewayUrl.replace(/^ws/, 'http');
    const bc = await gatewayCall(base, 'POST', '/broadcasters', { token: await platform.token(roomId, 'ingest'), displayName: 'ingest' });
    await refusedId(roomId, 'mallory', bc.id);
    await refusedId(roomId, 'ingest', bc.id, 'presenter');
    const transport = await gatewayCall(base, 'POST', `/broadcasters/${bc.id}/transports`, { comedia: true }, bc.secret);
    assert.ok(transport.id, 'the broadcaster is still in the room and answers');
    const viewer = await joined(roomId, 'viewer', undefined, 'viewer');
    assert.deepEqual(viewer.peers.map((p) => p.id), [bc.id]);
    viewer.client.close();
    await gatewayCall(base, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);
  });

  test('the same user rejoining with its peer id and a fresh token replaces its old session', async () => {
    const roomId = await platform.createRoom('rejoin');
    const first = await joined(roomId, 'alice', 'alice-peer');
    const bob = await joined(roomId, 'bob', 'bob-peer', 'viewer');
    const again = await joined(roomId, 'alice', 'alice-peer');
    assert.equal(await first.client.closed, 4000, 'the old session is replaced, for good');
    assert.equal((await first.client.waitNotification('closing')).errorName, 'REPLACED');
    assert.deepEqual(again.peers.map((p) => p.id), ['bob-peer']);
    assert.equal((await bob.client.waitNotification('peerClosed')).peerId, 'alice-peer');
    assert.equal((await bob.client.waitNotification('newPeer')).id, 'alice-peer');
    assert.equal((await platform.agent!.dump()).producers, 1, 'only the new session publishes');
    for (const p of [again, bob]) p.client.close();
  });
});
