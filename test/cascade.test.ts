import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentDump } from '../src/core/agent-protocol.js';
import { agentSubjects } from '../src/core/agent-protocol.js';
import { Cluster } from './helpers/cluster.js';
import { DataPeer } from './helpers/data-peer.js';
import { MediaPeer, type MediaPeerOptions } from './helpers/media-peer.js';
import { ProtooClient } from './helpers/protoo-client.js';

/**
 * Cascade mechanics on loopback: one gateway, two agents as processes, real
 * WebRTC peers. Peers steer their placement by the distances they report
 * (the netns test measures real ones), so every step is deterministic.
 */
const cluster = new Cluster();
before(async () => cluster.start({ gateways: 1, agents: 2, env: { MSS_GATEWAY__CASCADE__SPILL_CONSUMERS: '2' } }), {
  timeout: 90_000,
});
after(async () => cluster.stop());

const nearTo = (agentId: string) => ({ 'agent-0': agentId === 'agent-0' ? 5 : 80, 'agent-1': agentId === 'agent-1' ? 5 : 80 });

async function join(roomId: string, name: string, options: Partial<MediaPeerOptions> & { near?: string } = {}): Promise<MediaPeer> {
  const t = await cluster.token(roomId, name);
  return MediaPeer.join(t.gatewayUrl, t.token, { name, ...(options.near ? { rtts: nearTo(options.near) } : {}), ...options });
}

async function dumps(): Promise<Record<string, AgentDump>> {
  const live = cluster.agents.filter((a) => a.proc.running);
  return Object.fromEntries(await Promise.all(live.map(async (a) => [a.id, await cluster.agentDump(a.id)] as const)));
}

/** Waits until `check` holds for the agents' own dumps; fails with the last dumps. */
async function until(what: string, check: (d: Record<string, AgentDump>) => boolean, timeoutMs = 8000): Promise<Record<string, AgentDump>> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, AgentDump> = {};
  for (;;) {
    last = await dumps().catch(() => last);
    if (check(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}: ${JSON.stringify(last)}`);
    await sleep(100);
  }
}

const empty = (d: AgentDump) =>
  d.routers + d.transports + d.producers + d.consumers + d.dataProducers + d.dataConsumers + d.pipeTransports + d.pipedProducers === 0;
/** Data pipes on an agent: data producers piped in, and local ones sent out. */
const dataPipes = (d: AgentDump) => d.pipedDataProducers + d.pipeDataConsumers;

async function joinData(roomId: string, name: string, near: string, options: { produce?: boolean; consume?: boolean } = {}): Promise<DataPeer> {
  const t = await cluster.token(roomId, name);
  return DataPeer.join(t.gatewayUrl, t.token, { name, rtts: nearTo(near), ...options });
}

/** A request straight to an agent's bus subject, as a gateway sends it; resolves with the error code it answered, if any. */
async function agentCode(agentId: string, method: string, data: Record<string, unknown>): Promise<string> {
  try {
    await cluster.bus.request(agentSubjects.rpc(agentId), { method, data }, { timeoutMs: 3000 });
    return 'OK';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

describe('cascade (TTL-BEST) on loopback', { concurrency: false }, () => {
  test('each peer on its nearest agent; media crosses the link both ways; pipes follow remote consumers; all returns to zero', { timeout: 90_000 }, async () => {
    const roomId = await cluster.createRoom('cascade', 'TTL-BEST');
    const alice = await join(roomId, 'alice', { near: 'agent-0' });
    let d = await until('alice on agent-0, no link yet', (x) => x['agent-0']!.transports === 2 && x['agent-1']!.routers === 0);
    assert.equal(d['agent-0']!.pipeTransports, 0, 'no link while the room is on one agent');

    const bob = await join(roomId, 'bob', { near: 'agent-1' });
    await until('bob on agent-1', (x) => x['agent-1']!.routers === 1 && x['agent-1']!.transports >= 2);
    // Each receives the other's stream across the link: packets counted by the agent and decrypted by the peer keep growing.
    await alice.assertReceiving(bob.producerId!);
    await bob.assertReceiving(alice.producerId!);
    d = await dumps();
    for (const id of ['agent-0', 'agent-1']) {
      assert.equal(d[id]!.pipeTransports, 1, `${id}: one link`);
      assert.equal(d[id]!.srtpPipeTransports, 1, `${id}: the link is SRTP-protected by default`);
      assert.equal(d[id]!.pipedProducers, 1, `${id}: the other agent's one stream, piped in`);
    }

    // Carol publishes from agent-1 without consuming: her stream is piped to agent-0 for alice.
    const carol = await join(roomId, 'carol', { near: 'agent-1', consume: false });
    await alice.assertReceiving(carol.producerId!);
    d = await dumps();
    assert.equal(d['agent-0']!.pipedProducers, 2, 'bob and carol piped to agent-0');
    assert.equal(d['agent-1']!.pipedProducers, 1, 'alice piped to agent-1 once, whoever consumes it there');

    // Bob was the last consumer of alice on agent-1: her pipe goes, the link stays for carol's stream.
    await bob.close();
    d = await until('alice unpiped from agent-1', (x) => x['agent-1']!.pipedProducers === 0 && x['agent-0']!.pipedProducers === 1);
    assert.equal(d['agent-1']!.pipeTransports, 1, 'the link still carries carol');
    await alice.assertReceiving(carol.producerId!);

    // Carol was the last peer on agent-1: its router and the link go.
    await carol.close();
    await until('agent-1 left the room', (x) => empty(x['agent-1']!) && x['agent-0']!.pipeTransports === 0 && x['agent-0']!.pipedProducers === 0);

    await alice.close();
    await until('everything at zero', (x) => Object.values(x).every(empty));
    const health = await cluster.gatewayHealth(cluster.gateways[0]!.port);
    assert.deepEqual({ rooms: health.rooms, peers: health.peers }, { rooms: 0, peers: 0 });
  });

  test('a pipe is created on demand: a remote peer that consumes nothing costs no pipe', { timeout: 60_000 }, async () => {
    const roomId = await cluster.createRoom('on-demand', 'TTL-BEST');
    const alice = await join(roomId, 'alice', { near: 'agent-0', consume: false });
    const bob = await join(roomId, 'bob', { near: 'agent-1', publish: false, consume: false });
    try {
      await sleep(1000);
      let d = await dumps();
      assert.equal(d['agent-1']!.routers, 1, 'bob has his router on agent-1');
      assert.equal(d['agent-0']!.pipeTransports + d['agent-1']!.pipeTransports, 0, 'nobody consumes across agents: no link');
      const viewer = await join(roomId, 'viewer', { near: 'agent-1', publish: false });
      await viewer.assertReceiving(alice.producerId!);
      d = await dumps();
      assert.equal(d['agent-1']!.pipedProducers, 1);
      await viewer.close();
      await until('unpiped after the only remote consumer left', (x) => x['agent-1']!.pipedProducers === 0 && x['agent-0']!.pipeTransports === 0);
    } finally {
      await alice.close();
      await bob.close();
    }
    await until('everything at zero', (x) => Object.values(x).every(empty));
  });

  test('distance reports are validated and count only before placement', { timeout: 30_000 }, async () => {
    const ttl = await cluster.createRoom('reports', 'TTL-BEST');
    const t = await cluster.token(ttl, 'mallory');
    const client = await ProtooClient.connect(t.gatewayUrl, t.token);
    for (const bad of [{ rtts: { 'agent-0': -1 } }, { rtts: { 'agent-0': 'near' } }, { rtts: [] }, {}]) {
      await assert.rejects(client.request('reportAgentRtts', bad), (err: { errorName?: string }) => err.errorName === 'INVALID_REQUEST');
    }
    // Unknown agents are ignored; the known one decides.
    await client.request('reportAgentRtts', { rtts: { 'no-such-agent': 0, 'agent-1': 3, 'agent-0': 90 } });
    const before = await dumps();
    await client.request('createWebRtcTransport', { producing: true });
    const after = await dumps();
    assert.equal(after['agent-1']!.transports - before['agent-1']!.transports, 1, 'placed on agent-1 as reported');
    // Placed: a later report changes nothing.
    await client.request('reportAgentRtts', { rtts: { 'agent-0': 1, 'agent-1': 500 } });
    await client.request('createWebRtcTransport', { consuming: true });
    assert.equal((await dumps())['agent-1']!.transports - before['agent-1']!.transports, 2, 'still on agent-1');
    client.close();
    await until('everything at zero', (x) => Object.values(x).every(empty));
  });

  test('ROOM-BEST spill: past the consumer threshold new peers go to another agent, linked by the same pipes', { timeout: 60_000 }, async () => {
    const roomId = await cluster.createRoom('spill', 'ROOM-BEST');
    const first = await join(roomId, 'first');
    const second = await join(roomId, 'second');
    await second.assertReceiving(first.producerId!);
    await first.assertReceiving(second.producerId!);
    let d = await dumps();
    const home = Object.keys(d).find((id) => d[id]!.routers === 1)!;
    assert.equal(Object.values(d).filter((x) => x.routers === 1).length, 1, 'two consumers: still one agent');
    // Two consumers on the room's agent reach the threshold (2): the third peer spills over.
    const third = await join(roomId, 'third');
    await third.assertReceiving(first.producerId!);
    await third.assertReceiving(second.producerId!);
    await first.assertReceiving(third.producerId!);
    d = await dumps();
    const other = Object.keys(d).find((id) => id !== home)!;
    assert.equal(d[other]!.routers, 1, 'the third peer is on the other agent');
    assert.equal(d[other]!.pipedProducers, 2);
    for (const p of [first, second, third]) await p.close();
    await until('everything at zero', (x) => Object.values(x).every(empty));
  });

  test('data channels follow the room: a message from agent-0 reaches peers on agent-1 over a data pipe that lives with its data consumers and its data producer', { timeout: 120_000 }, async () => {
    const roomId = await cluster.createRoom('data-cascade', 'TTL-BEST');
    // A peer on each agent keeps its router open, so the pipes below go by their own reference counts, not with a router.
    const anchors = [await joinData(roomId, 'anchor-0', 'agent-0', { produce: false, consume: false }), await joinData(roomId, 'anchor-1', 'agent-1', { produce: false, consume: false })];
    const alice = await joinData(roomId, 'alice', 'agent-0', { consume: false });
    const carol = await joinData(roomId, 'carol', 'agent-0', { produce: false });
    let d = await dumps();
    assert.equal(d['agent-0']!.pipeTransports + d['agent-1']!.pipeTransports, 0, 'nobody on agent-1 consumes data yet: no link');
    const bob = await joinData(roomId, 'bob', 'agent-1', { produce: false });
    const dave = await joinData(roomId, 'dave', 'agent-1', { produce: false });
    // Real SCTP messages: from alice's channel on agent-0 to channels of data consumers on agent-1, and locally to carol.
    await bob.assertReceivesFrom(alice);
    await dave.assertReceivesFrom(alice);
    await carol.assertReceivesFrom(alice);
    d = await dumps();
    assert.equal(d['agent-1']!.routers, 1);
    assert.equal(d['agent-1']!.dataConsumers, 2, "bob's and dave's data consumers are on agent-1");
    assert.equal(d['agent-1']!.pipedDataProducers, 1, "alice's data producer piped in once, under its own id, for both");
    assert.equal(d['agent-0']!.pipeDataConsumers, 1, 'and sent from agent-0 once');
    assert.equal(d['agent-0']!.pipeTransports, 1, 'over the one link');

    // Dave still consumes it: bob leaving takes nothing down.
    await bob.close();
    await sleep(500);
    await dave.assertReceivesFrom(alice);
    assert.equal((await dumps())['agent-1']!.pipedDataProducers, 1);
    // Dave was its last consumer there: the pipe goes, and the link with it (agent-1's router stays for anchor-1).
    await dave.close();
    await until('data pipe and link gone after the last remote data consumer', (x) =>
      x['agent-1']!.routers === 1 && dataPipes(x['agent-0']!) + dataPipes(x['agent-1']!) === 0 && x['agent-0']!.pipeTransports + x['agent-1']!.pipeTransports === 0,
    );

    // Piped again on demand for a new consumer; then the producer leaves: its copy, the data consumer and the pipe go.
    const erin = await joinData(roomId, 'erin', 'agent-1', { produce: false });
    await erin.assertReceivesFrom(alice);
    const erinConsumer = await erin.dataConsumerOf(alice.dataProducerId!);
    await alice.close();
    const closed = await erin.client.waitNotification('dataConsumerClosed', 8000);
    assert.equal(closed.dataConsumerId, erinConsumer.id);
    await until('data pipe and link gone with the data producer', (x) =>
      x['agent-1']!.routers === 1 && dataPipes(x['agent-0']!) + dataPipes(x['agent-1']!) === 0 && x['agent-0']!.pipeTransports + x['agent-1']!.pipeTransports === 0,
    );

    for (const p of [erin, carol, ...anchors]) await p.close();
    await until('everything at zero', (x) => Object.values(x).every((a) => empty(a) && dataPipes(a) === 0));
  });

  test('the agents refuse bad data pipe requests with stable codes, and a refused one changes nothing', { timeout: 60_000 }, async () => {
    const roomId = await cluster.createRoom('data-pipe-input', 'TTL-BEST');
    const alice = await joinData(roomId, 'alice', 'agent-0', { consume: false });
    const bob = await joinData(roomId, 'bob', 'agent-1', { produce: false });
    try {
      await bob.assertReceivesFrom(alice);
      const { gatewayId } = await cluster.token(roomId, 'probe');
      const on = (agentId: string, method: string, data: Record<string, unknown>) => agentCode(agentId, method, { roomId, gatewayId, ...data });
      const sent = { remoteAgentId: 'agent-1', dataProducerId: alice.dataProducerId };
      const copy = { remoteAgentId: 'agent-0', dataProducerId: randomUUID(), sctpStreamParameters: { streamId: 7 }, label: 'x', protocol: '', appData: {} };

      assert.equal(await on('agent-0', 'pipeConsumeData', { remoteAgentId: 'agent-1' }), 'INVALID_REQUEST', 'no data producer named');
      assert.equal(await on('agent-0', 'pipeConsumeData', { ...sent, dataProducerId: 'x'.repeat(129) }), 'INVALID_REQUEST', 'id too long');
      assert.equal(await on('agent-0', 'pipeConsumeData', { ...sent, roomId: 'no-such-room' }), 'ROOM_NOT_FOUND');
      assert.equal(await on('agent-0', 'pipeConsumeData', { ...sent, remoteAgentId: 'agent-9' }), 'LINK_NOT_FOUND');
      assert.equal(await on('agent-0', 'pipeConsumeData', { ...sent, dataProducerId: randomUUID() }), 'DATAPRODUCER_NOT_FOUND');
      assert.equal(await on('agent-0', 'pipeConsumeData', sent), 'DATAPRODUCER_ALREADY_PIPED', 'one stream per data producer and link');
      // A copy is never sent on (no chains).
      assert.equal(await on('agent-1', 'pipeConsumeData', { remoteAgentId: 'agent-0', dataProducerId: alice.dataProducerId }), 'DATAPRODUCER_NOT_FOUND');
      for (const [what, bad] of [
        ['stream id past 65534', { sctpStreamParameters: { streamId: 65535 } }],
        ['unknown stream parameter', { sctpStreamParameters: { streamId: 7, priority: 1 } }],
        ['no stream', { sctpStreamParameters: undefined }],
        ['label too long', { label: 'x'.repeat(257) }],
        ['appData not an object', { appData: 'x' }],
      ] as const) {
        assert.equal(await on('agent-1', 'pipeProduceData', { ...copy, ...bad }), 'INVALID_REQUEST', what);
      }
      assert.equal(await on('agent-1', 'pipeProduceData', { ...copy, remoteAgentId: 'agent-9' }), 'LINK_NOT_FOUND');
      assert.equal(await on('agent-1', 'pipeProduceData', { ...copy, dataProducerId: alice.dataProducerId }), 'DATAPRODUCER_ALREADY_PIPED', 'a second copy of one id');
      assert.equal(await on('agent-1', 'unpipeData', { remoteAgentId: 'agent-0', dataProducerId: randomUUID() }), 'OK', 'nothing to unpipe is fine');

      const d = await dumps();
      assert.deepEqual([d['agent-0']!.pipeDataConsumers, d['agent-1']!.pipedDataProducers], [1, 1], 'still the one pipe');
      await bob.assertReceivesFrom(alice);
    } finally {
      await alice.close();
      await bob.close();
    }
    await until('everything at zero', (x) => Object.values(x).every((a) => empty(a) && dataPipes(a) === 0));
  });

  test('an agent lost mid-call: its links close, its peers are told and rejoin on a live agent; the rest keep media', { timeout: 90_000 }, async () => {
    const roomId = await cluster.createRoom('agent-lost', 'TTL-BEST');
    const alice = await join(roomId, 'alice', { near: 'agent-0' });
    const bob = await join(roomId, 'bob', { near: 'agent-1' });
    await alice.assertReceiving(bob.producerId!);
    await bob.assertReceiving(alice.producerId!);

    const killedAt = Date.now();
    await cluster.agents.find((a) => a.id === 'agent-1')!.proc.kill('SIGKILL');
    const lost = await bob.client.waitNotification('mediaAgentLost', 6000);
    assert.equal(lost.reason, 'agent-removed');
    assert.ok(Date.now() - killedAt < 5000, 'told within the removal window');
    // Alice's consumer of bob's stream (piped from the dead agent) is closed, and her side of the link with it.
    const bobConsumer = alice.consumers.find((c) => c.producerId === bob.producerId)!;
    const closed = await alice.client.waitNotification('consumerClosed', 5000);
    assert.equal(closed.consumerId, bobConsumer.id);
    await until('agent-0 keeps only alice', (x) => x['agent-0']!.pipeTransports === 0 && x['agent-0']!.pipedProducers === 0 && x['agent-0']!.transports === 2);

    // Bob rejoins with a fresh token: still nearest to agent-1 by his report, but it is gone; he lands on agent-0.
    await bob.close();
    const bob2 = await join(roomId, 'bob', { near: 'agent-1' });
    await alice.assertReceiving(bob2.producerId!);
    await bob2.assertReceiving(alice.producerId!);
    const d = await dumps();
    assert.equal(d['agent-0']!.transports, 4, 'both peers on agent-0');
    await bob2.close();
    await alice.close();
    await until('everything at zero', (x) => Object.values(x).every(empty));
  });
});
