import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBroadcast, startEgress } from './helpers/broadcaster.js';
import { BUS_LABEL, CLUSTER_BUSES, Cluster } from './helpers/cluster.js';
import { ProtooClient } from './helpers/protoo-client.js';

/**
 * Every role as its own process: 1 Nuve, 2 gateways, 3 agents over a private
 * bus server and Redis and a fresh PostgreSQL database, all on loopback. The
 * same suite runs once on each cluster bus (NATS, RabbitMQ).
 */
let cluster: Cluster;

async function joinPeer(roomId: string, name: string) {
  const t = await cluster.token(roomId, name);
  const client = await ProtooClient.connect(t.gatewayUrl, t.token);
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  await client.request('createWebRtcTransport', { producing: true });
  await client.request('createWebRtcTransport', { consuming: true });
  await client.request('join', { displayName: name, rtpCapabilities });
  return { client, gatewayId: t.gatewayId, gatewayUrl: t.gatewayUrl };
}

async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

async function liveAgentIds(): Promise<string[]> {
  return cluster.agents.filter((a) => a.proc.running).map((a) => a.id);
}

async function assertEverythingEmpty(): Promise<void> {
  let last: unknown[] = [];
  await waitFor(
    async () => {
      last = [];
      for (const id of await liveAgentIds()) {
        const d = await cluster.agentDump(id);
        last.push(d);
        if (d.routers + d.transports + d.producers + d.consumers > 0) return false;
      }
      for (const g of cluster.gateways.filter((x) => x.proc.running)) {
        const h = await cluster.gatewayHealth(g.port);
        last.push({ gateway: g.id, ...h });
        if (h.rooms + h.peers > 0) return false;
      }
      return true;
    },
    10_000,
    'every node to report zero rooms, peers, routers and transports',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
}

for (const bus of CLUSTER_BUSES) describe(`cluster on ${BUS_LABEL[bus]}`, { concurrency: false }, () => {
  before(async () => {
    cluster = new Cluster();
    await cluster.start({ gateways: 2, agents: 3, bus });
  }, { timeout: 120_000 });
  after(async () => cluster.stop());

  test('rooms spread across agents and both gateways; a room always gets the same gateway', async () => {
    const rooms = await Promise.all(Array.from({ length: 12 }, (_, i) => cluster.createRoom(`spread-${i}`)));
    const gatewayOf = new Map<string, string>();
    for (const roomId of rooms) {
      const ids = new Set<string>();
      for (let i = 0; i < 4; i++) ids.add((await cluster.token(roomId, `probe-${i}`)).gatewayId);
      assert.equal(ids.size, 1, 'every token of a room names one gateway');
      gatewayOf.set(roomId, [...ids][0]!);
    }
    assert.equal(new Set(gatewayOf.values()).size, 2, 'new rooms spread over both gateways');

    // A burst of joins into 6 rooms at once must spread over the 3 agents.
    const peers = await Promise.all(rooms.slice(0, 6).map((roomId, i) => joinPeer(roomId, `p${i}`)));
    for (const p of peers) assert.equal(p.gatewayId, gatewayOf.get(rooms[peers.indexOf(p)]!));
    const routers = await Promise.all(cluster.agents.map(async (a) => (await cluster.agentDump(a.id)).routers));
    assert.equal(routers.reduce((a, b) => a + b, 0), 6);
    assert.ok(routers.every((n) => n >= 1), `rooms on every agent: ${routers.join(',')}`);
    for (const p of peers) p.client.close();
    await assertEverythingEmpty();
  });

  test('/metrics/cluster on Nuve sums every process of the cluster', async () => {
    const roomA = await cluster.createRoom('metrics-a');
    const peers = await Promise.all([joinPeer(roomA, 'm1'), joinPeer(roomA, 'm2'), joinPeer(await cluster.createRoom('metrics-b'), 'm3')]);
    const res = await fetch(`${cluster.nuveUrl}/metrics/cluster`, { headers: { authorization: `Bearer ${cluster.opsToken}` } });
    assert.equal(res.status, 200);
    const text = await res.text();
    const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('mss_agent_workers'), 3, 'three agents with one worker each');
    assert.equal(value('mss_gateway_peers'), 3, 'peers summed over both gateways');
    assert.equal(value('mss_agent_routers'), 2);
    assert.equal(value('mss_nuve_gateways{state="available"}'.replace(/[{}"]/g, '\\$&')), 2);
    for (const p of peers) p.client.close();
    await assertEverythingEmpty();
  });

  test('soak: 200 peers join and leave across 20 rooms, then every node reports zero', { timeout: 120_000 }, async () => {
    const rooms = await Promise.all(Array.from({ length: 20 }, (_, i) => cluster.createRoom(`soak-${i}`)));
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < 200) {
          const i = next++;
          const peer = await joinPeer(rooms[i % 20]!, `soak-${i}`);
          await sleep(Math.random() * 50);
          if (i % 2) await peer.client.request('leave');
          else peer.client.close();
          await peer.client.closed;
        }
      }),
    );
    await assertEverythingEmpty();
  });

  test(`${BUS_LABEL[bus]} and Redis restart: every process reconnects by itself and service resumes`, { timeout: 60_000 }, async () => {
    const pids = [cluster.nuve, ...cluster.gateways.map((g) => g.proc), ...cluster.agents.map((a) => a.proc)].map((p) => p.pid);
    const roomId = await cluster.createRoom('restarts');

    await cluster.broker.restart();
    const afterBus = await waitFor(async () => joinPeer(roomId, 'after-bus'), 20_000, `a join after the ${BUS_LABEL[bus]} restart`);
    afterBus.client.close();

    await cluster.redis.restart();
    await waitFor(async () => cluster.createRoom('after-redis'), 20_000, 'a Nuve request after the Redis restart');
    const afterRedis = await waitFor(async () => joinPeer(roomId, 'after-redis'), 20_000, 'a join after the Redis restart');
    afterRedis.client.close();

    const now = [cluster.nuve, ...cluster.gateways.map((g) => g.proc), ...cluster.agents.map((a) => a.proc)];
    assert.ok(now.every((p) => p.running), 'no process exited');
    assert.deepEqual(now.map((p) => p.pid), pids, 'no process was restarted');
    await assertEverythingEmpty();
  });

  test('PostgreSQL away: Nuve answers 503 STORE_UNAVAILABLE, then recovers by itself', { timeout: 30_000 }, async () => {
    await cluster.pgRelay.down();
    const started = Date.now();
    const res = await fetch(`${cluster.nuveUrl}/rooms`, { headers: { authorization: cluster.auth() } });
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { code: string }).code, 'STORE_UNAVAILABLE');
    assert.ok(Date.now() - started < 5000, 'answered promptly, not hung');
    assert.equal((await fetch(`${cluster.nuveUrl}/health`)).status, 503);
    await cluster.pgRelay.up();
    await waitFor(async () => (await fetch(`${cluster.nuveUrl}/rooms`, { headers: { authorization: cluster.auth() } })).ok, 10_000, 'Nuve to recover');
    assert.ok(cluster.nuve.running);
  });

  test('kill -9 of an agent mid-call: its peers are told within 3 s and rejoin on a live agent with media', { timeout: 90_000 }, async () => {
    const roomId = await cluster.createRoom('agent-crash');
    const t = await cluster.token(roomId, 'source');
    const http = t.gatewayUrl.replace(/^ws/, 'http');
    const source = await startBroadcast(http, t.token);
    const listener = await joinPeer(roomId, 'listener');
    const hosting = await waitFor(
      async () => {
        for (const id of await liveAgentIds()) if ((await cluster.agentDump(id)).routers > 0) return id;
        return undefined;
      },
      5000,
      'the agent hosting the room',
    );
    const victim = cluster.agents.find((a) => a.id === hosting)!;
    const killedAt = Date.now();
    const lost = listener.client.waitNotification('mediaAgentLost', 6000);
    await victim.proc.kill('SIGKILL');
    await lost;
    const noticeMs = Date.now() - killedAt;
    // Removal is 3 s (gateway.agentRemoveMs) of silence after the last heartbeat *received*: one still in flight
    // when the kill lands, the sweep (every 1 % of the timeout) and the notice's bus and WebSocket hops add a little.
    assert.ok(noticeMs <= 3000 + 250, `peers told after ${noticeMs} ms`);
    await listener.client.closed;
    await source.stop();

    // Everyone comes back with fresh tokens: the room reopens on a live agent and media flows.
    const again = await cluster.token(roomId, 'source');
    const source2 = await startBroadcast(again.gatewayUrl.replace(/^ws/, 'http'), again.token);
    const viewer = await cluster.token(roomId, 'viewer');
    const egress = await startEgress(viewer.gatewayUrl.replace(/^ws/, 'http'), viewer.token, [source2.producerIds.audio, source2.producerIds.video]);
    try {
      // Only live agents are asked (the victim is gone), so the room reopening is the check, not which id it names.
      await waitFor(
        async () => {
          for (const id of await liveAgentIds()) if ((await cluster.agentDump(id)).routers > 0) return id;
          return undefined;
        },
        5000,
        'a live agent to host the room again',
      );
      await sleep(2500);
      const first = await egress.stats();
      await sleep(1500);
      const second = await egress.stats();
      for (const i of [0, 1]) assert.ok(second[i]!.packets > first[i]!.packets && first[i]!.packets > 0, `media flows (${egress.consumers[i]!.kind})`);
    } finally {
      await egress.stop();
      await source2.stop();
    }
    await assertEverythingEmpty();
  });

  test('kill -9 of a gateway: clients coming back with new tokens land on the other gateway', { timeout: 60_000 }, async () => {
    const roomId = await cluster.createRoom('gateway-crash');
    const first = await joinPeer(roomId, 'alice');
    const victim = cluster.gateways.find((g) => g.id === first.gatewayId)!;
    await victim.proc.kill('SIGKILL');
    await first.client.closed;
    const moved = await waitFor(
      async () => {
        const t = await cluster.token(roomId, 'alice');
        return t.gatewayId !== victim.id ? t : undefined;
      },
      10_000,
      'a token naming the surviving gateway',
    );
    const client = await ProtooClient.connect(moved.gatewayUrl, moved.token);
    const rtpCapabilities = await client.request('getRouterRtpCapabilities');
    await client.request('join', { displayName: 'alice', rtpCapabilities });
    client.close();
    await assertEverythingEmpty();
  });
});
