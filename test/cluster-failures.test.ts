import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentDump } from '../src/core/agent-protocol.js';
import { BUS_LABEL, CLUSTER_BUSES, Cluster } from './helpers/cluster.js';
import { MediaPeer } from './helpers/media-peer.js';
import { waitFor } from './helpers/nuve-harness.js';

/**
 * Failures of the cluster's own parts, every role a process over a private
 * bus server (once on NATS, once on RabbitMQ): the bus going away for a while, a gateway killed. One agent, so a
 * room reopened elsewhere lands on the agent that still has the old router.
 * Nuve forgets a silent gateway (2 s) well before the agent closes its rooms (5 s),
 * the order in which a rejoin meets the dead gateway's router.
 */
const NUVE_GATEWAY_TIMEOUT_MS = 2000;
const AGENT_GATEWAY_TIMEOUT_MS = 5000;
/** Longer than every timeout above, plus the orphan sweep. */
const OUTAGE_MS = 7000;
/** The agent looks for silent gateways once a second. */
const ORPHAN_SWEEP_MS = 1000;
const AGENT_REMOVE_MS = 3000;

let cluster: Cluster;
const peers: MediaPeer[] = [];

async function join(roomId: string, name: string): Promise<MediaPeer> {
  const t = await cluster.token(roomId, name);
  const peer = await MediaPeer.join(t.gatewayUrl, t.token, { name });
  peers.push(peer);
  return peer;
}

const agentDump = (): Promise<AgentDump> => cluster.agentDump('agent-0');

/** Nothing told the peer its media is gone, and its socket is open. */
function assertUntouched(peer: MediaPeer, name: string): void {
  const told = peer.client.notifications.filter((n) => n.method === 'mediaAgentLost' || n.method === 'closing');
  assert.deepEqual(told, [], `${name} was told nothing`);
  assert.equal(peer.client.closeCode, undefined, `${name}'s socket is open`);
}

async function assertAgentEmpty(): Promise<void> {
  let last: AgentDump | undefined;
  await waitFor(
    async () => {
      last = await agentDump();
      return last.routers + last.transports + last.producers + last.consumers === 0;
    },
    10_000,
    'the agent to be empty',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
}

for (const bus of CLUSTER_BUSES) describe(`cluster failures on ${BUS_LABEL[bus]}`, { concurrency: false }, () => {
  before(async () => {
    cluster = new Cluster();
    await cluster.start({
      gateways: 2,
      agents: 1,
      bus,
      env: {
        MSS_NUVE__GATEWAY_TIMEOUT_MS: String(NUVE_GATEWAY_TIMEOUT_MS),
        MSS_AGENT__GATEWAY_TIMEOUT_MS: String(AGENT_GATEWAY_TIMEOUT_MS),
        MSS_GATEWAY__AGENT_REMOVE_MS: String(AGENT_REMOVE_MS),
      },
    });
  }, { timeout: 120_000 });
  after(async () => {
    await Promise.all(peers.splice(0).map((p) => p.close()));
    await cluster.stop();
  });

  test(`a 7 s ${BUS_LABEL[bus]} outage: the call keeps its media and its peers; joins work again once the bus is back`, { timeout: 120_000 }, async () => {
    const roomId = await cluster.createRoom('bus-outage');
    const alice = await join(roomId, 'alice');
    const bob = await join(roomId, 'bob');
    await alice.assertReceiving(bob.producerId!);
    await bob.assertReceiving(alice.producerId!);
    const aliceIn = (await alice.consumerOf(bob.producerId!)).local;
    const bobIn = (await bob.consumerOf(alice.producerId!)).local;

    // Packets each peer decrypted, sampled through the outage and well past every timeout after it.
    const samples: { at: number; alice: number; bob: number }[] = [];
    const sampler = setInterval(() => samples.push({ at: Date.now(), alice: aliceIn.packets, bob: bobIn.packets }), 250);
    try {
      await cluster.broker.stop();
      await sleep(OUTAGE_MS);
      await cluster.broker.start();
      await sleep(Math.max(AGENT_REMOVE_MS, AGENT_GATEWAY_TIMEOUT_MS + ORPHAN_SWEEP_MS) + 1500);
    } finally {
      clearInterval(sampler);
    }

    for (const [i, sample] of samples.entries()) {
      const later = samples.slice(i).find((s) => s.at >= sample.at + 1500);
      if (!later) break;
      assert.ok(later.alice > sample.alice && later.bob > sample.bob, `media stalled at +${sample.at - samples[0]!.at} ms: ${JSON.stringify([sample, later])}`);
    }
    assertUntouched(alice, 'alice');
    assertUntouched(bob, 'bob');

    // The signaling path to the agent works again, and so do joins.
    await alice.assertReceiving(bob.producerId!);
    const carol = await join(roomId, 'carol');
    await carol.assertReceiving(alice.producerId!);
    await alice.assertReceiving(carol.producerId!);
    for (const p of [alice, bob, carol]) await p.close();
    await assertAgentEmpty();
  });

  test('kill -9 of a gateway: peers rejoining on the other one meet the old router on the agent, keep their media past its cleanup, later joins work, the old transports go', { timeout: 120_000 }, async () => {
    const roomId = await cluster.createRoom('gateway-crash');
    const { gatewayId: firstGateway } = await cluster.token(roomId, 'probe');
    const alice1 = await join(roomId, 'alice');
    const bob1 = await join(roomId, 'bob');
    await bob1.assertReceiving(alice1.producerId!);
    const before = await agentDump();
    assert.deepEqual([before.routers, before.transports], [1, 4]);

    const victim = cluster.gateways.find((g) => g.id === firstGateway)!;
    await victim.proc.kill('SIGKILL');
    const crashedAt = Date.now();
    await Promise.all([alice1.client.closed, bob1.client.closed]);
    await Promise.all([alice1.close(), bob1.close()]);

    // Once Nuve has forgotten the dead gateway, tokens name the survivor.
    let moved: Awaited<ReturnType<Cluster['token']>> | undefined;
    await waitFor(
      async () => {
        const t = await cluster.token(roomId, 'alice');
        if (t.gatewayId !== firstGateway) moved = t;
        return moved !== undefined;
      },
      10_000,
      'a token naming the surviving gateway',
    );
    // The case under test: the agent has not yet closed the dead gateway's router when the peers come back.
    assert.equal((await agentDump()).routers, 1, 'the dead gateway\'s router is still on the agent');
    assert.ok(Date.now() - crashedAt < AGENT_GATEWAY_TIMEOUT_MS, 'rejoining before the agent cleans up');
    const alice = await MediaPeer.join(moved!.gatewayUrl, moved!.token, { name: 'alice' });
    peers.push(alice);
    const bob = await join(roomId, 'bob');

    // Past the moment the agent closes the dead gateway's rooms, their media still flows.
    await sleep(Math.max(0, crashedAt + AGENT_GATEWAY_TIMEOUT_MS + ORPHAN_SWEEP_MS + 1500 - Date.now()));
    await alice.assertReceiving(bob.producerId!);
    await bob.assertReceiving(alice.producerId!);
    assertUntouched(alice, 'alice');
    assertUntouched(bob, 'bob');

    const carol = await join(roomId, 'carol');
    await carol.assertReceiving(alice.producerId!);
    await alice.assertReceiving(carol.producerId!);

    // Only the survivors' objects are left: one router, two transports for each of alice, bob and carol.
    const now = await agentDump();
    assert.deepEqual({ routers: now.routers, transports: now.transports, producers: now.producers }, { routers: 1, transports: 6, producers: 3 });
    for (const p of [alice, bob, carol]) await p.close();
    await assertAgentEmpty();
  });
});
