import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentDump } from '../src/core/agent-protocol.js';
import { Cluster } from './helpers/cluster.js';
import { MediaPeer, type MediaPeerOptions } from './helpers/media-peer.js';

/**
 * A room across workers AND agents: two agents with two workers each and a
 * router limit of one consumer, so agent-0's room spreads to its second worker
 * at the third peer. Links to other agents stay on the home router: a stream
 * of the second router crosses to agent-1 through the home router, and a
 * stream arriving from agent-1 reaches the second router from there.
 */
const cluster = new Cluster();
before(
  async () => {
    await cluster.start({ gateways: 1, agents: 0 });
    for (let i = 0; i < 2; i++) await cluster.addAgent({ env: { MSS_AGENT__NUM_WORKERS: '2', MSS_AGENT__ROUTER_CONSUMER_LIMIT: '1' } });
  },
  { timeout: 90_000 },
);
after(async () => cluster.stop());

const nearTo = (agentId: string) => ({ 'agent-0': agentId === 'agent-0' ? 5 : 80, 'agent-1': agentId === 'agent-1' ? 5 : 80 });

async function join(roomId: string, name: string, near: string, options: Partial<MediaPeerOptions> = {}): Promise<MediaPeer> {
  const t = await cluster.token(roomId, name);
  return MediaPeer.join(t.gatewayUrl, t.token, { name, rtts: nearTo(near), ...options });
}

async function until(what: string, check: (d: Record<string, AgentDump>) => boolean, timeoutMs = 10_000): Promise<Record<string, AgentDump>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = Object.fromEntries(await Promise.all(cluster.agents.map(async (a) => [a.id, await cluster.agentDump(a.id)] as const)));
    if (check(d)) return d;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}: ${JSON.stringify(d)}`);
    await sleep(100);
  }
}

test('a stream of a second worker crosses to another agent through the home router, and back', { timeout: 120_000 }, async () => {
  const roomId = await cluster.createRoom('multiworker-cascade', 'TTL-BEST');
  const peers: MediaPeer[] = [];
  try {
    // alice and bob fill agent-0's home router (each consumes the other: two consumers, limit one).
    const alice = await join(roomId, 'alice', 'agent-0');
    peers.push(alice);
    const bob = await join(roomId, 'bob', 'agent-0');
    peers.push(bob);
    await alice.assertReceiving(bob.producerId!);
    await until('agent-0 home router full', (d) => d['agent-0']!.consumers >= 2);
    // carol goes to a second router of the room on agent-0's other worker; she publishes only.
    const carol = await join(roomId, 'carol', 'agent-0', { consume: false });
    peers.push(carol);
    await until('the room on two routers of agent-0', (d) => d['agent-0']!.routers === 2);
    await alice.assertReceiving(carol.producerId!);

    // erin on agent-1 receives carol: carol's stream goes second router → home router → link → agent-1.
    const erin = await join(roomId, 'erin', 'agent-1');
    peers.push(erin);
    await erin.assertReceiving(carol.producerId!);
    await erin.assertReceiving(alice.producerId!);

    // dave, on agent-0's second router (the home router is full), receives erin, whose stream arrives over the
    // link at the home router and is piped on from there.
    const dave = await join(roomId, 'dave', 'agent-0', { publish: false });
    peers.push(dave);
    await dave.assertReceiving(erin.producerId!);
    await dave.assertReceiving(carol.producerId!);
    await dave.assertReceiving(alice.producerId!);
    const d = await until('erin piped into agent-0', (x) => x['agent-0']!.pipedProducers === 1);
    assert.equal(d['agent-0']!.routers, 2, 'dave joined the second router, not a third');

    // alice and bob leave: on agent-0 only dave (on carol's router) consumes carol, yet the link still sends her
    // to erin: the pipe from the second router to the home router is held by the link's consumer.
    await alice.close();
    await bob.close();
    await until('alice and bob gone', (x) => x['agent-1']!.pipedProducers === 1);
    await erin.assertReceiving(carol.producerId!);
    await dave.assertReceiving(erin.producerId!);
  } finally {
    for (const p of peers) await p.close();
  }
  const empty = (d: AgentDump) => d.routers + d.transports + d.producers + d.consumers + d.pipeTransports + d.pipedProducers === 0;
  await until('everything at zero', (d) => Object.values(d).every(empty), 15_000);
});
