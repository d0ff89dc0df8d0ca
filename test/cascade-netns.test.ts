import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { measureAgentRtts } from '../client/src/sdk/agent-rtt.js';
import type { AgentDump } from '../src/core/agent-protocol.js';
import type { AgentProbes } from '../src/protocol/signaling.js';
import { Cluster } from './helpers/cluster.js';
import { MediaPeer } from './helpers/media-peer.js';
import { DelayedNamespace } from './helpers/netns.js';
import { ProtooClient } from './helpers/protoo-client.js';

/**
 * TTL-BEST with real network distance: three agents, each in its own network
 * namespace behind a link with a set one-way delay; Nuve, the gateway and
 * the clients in the root namespace. Clients measure their distance to each
 * agent over the network (HTTP probes, as the browser SDK does), or report
 * nothing and let the agents probe them.
 */
const PROBE_TIMEOUT_MS = 600;
const CLIENT_PROBE_PORT = 8099;
const cluster = new Cluster();
const spaces: DelayedNamespace[] = [];
const NEAR = 5;
const FAR = 45;

before(
  async () => {
    for (let i = 0; i < 3; i++) spaces.push(await DelayedNamespace.create(i + 1, FAR));
    await cluster.start({
      gateways: 1,
      agents: 0,
      natsHost: '0.0.0.0',
      env: {
        // Reachable on the links' root addresses too, so agents' probes of a client have an address to aim at.
        MSS_GATEWAY__HOST: '0.0.0.0',
        MSS_GATEWAY__CASCADE__PROBE_TIMEOUT_MS: String(PROBE_TIMEOUT_MS),
      },
    });
    await Promise.all(
      spaces.map((ns) =>
        cluster.addAgent({
          netns: ns.name,
          natsHost: ns.rootIp,
          env: { MSS_AGENT__LISTEN_IP: ns.ip, MSS_AGENT__CLIENT_PROBE_PORT: String(CLIENT_PROBE_PORT) },
        }),
      ),
    );
    await waitForAgents(3);
  },
  { timeout: 120_000 },
);

/** Peers of the running test, closed after it whatever happened. */
const peers: MediaPeer[] = [];
afterEach(async () => {
  for (const peer of peers.splice(0)) await peer.close();
});

// Namespaces (and their delay-line processes) go whatever happened before, even if the cluster
// never started: a delay line left running would keep this file from ever ending.
after(async () => {
  try {
    await cluster.stop();
  } finally {
    for (const ns of spaces.splice(0)) await ns.close().catch((err: unknown) => console.error('closing a namespace:', err));
  }
});

async function setDelays(ms: [number, number, number]): Promise<void> {
  await Promise.all(spaces.map((ns, i) => ns.setDelay(ms[i]!)));
}

async function dumps(): Promise<AgentDump[]> {
  return Promise.all(cluster.agents.map((a) => cluster.agentDump(a.id)));
}

/** The agent whose peers' transports (not links) grew by `n` since `before`. */
function placedOn(before: AgentDump[], now: AgentDump[], n = 2): string {
  const peerTransports = (d: AgentDump) => d.transports - d.pipeTransports;
  const grown = now.filter((d, i) => peerTransports(d) - peerTransports(before[i]!) === n);
  assert.equal(grown.length, 1, `exactly one agent got the new transports: ${JSON.stringify(now)}`);
  return grown[0]!.agentId;
}

/** The probes a new client of `roomId` is offered. */
async function probesOffered(roomId: string): Promise<AgentProbes> {
  const t = await cluster.token(roomId, 'lister');
  const client = await ProtooClient.connect(t.gatewayUrl, t.token);
  try {
    return await client.request<AgentProbes>('getAgentProbes');
  } finally {
    client.close();
  }
}

async function waitForAgents(n: number): Promise<void> {
  const roomId = await cluster.createRoom('probe-list', 'TTL-BEST');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { probes } = await probesOffered(roomId);
    if (probes.length === n) return;
    if (Date.now() > deadline) throw new Error(`the gateway lists ${probes.length} agents, wanted ${n}`);
    await sleep(200);
  }
}

/** Clients' media leaves from link 1's root address, which every namespace routes back to through the root. */
const clientAddress = () => spaces[0]!.rootIp;

async function joinPeer(roomId: string, name: string, rtts?: 'measure'): Promise<MediaPeer> {
  const t = await cluster.token(roomId, name);
  const peer = await MediaPeer.join(t.gatewayUrl, t.token, { name, rtts, hostAddress: clientAddress() });
  peers.push(peer);
  return peer;
}

/** A gateway URL through link `i`'s root address: the gateway sees the client there, and agents probe it over the links. */
function viaLink(url: string, i: number): string {
  return url.replace('127.0.0.1', spaces[i]!.rootIp).replace('0.0.0.0', spaces[i]!.rootIp);
}

describe('TTL-BEST across network namespaces', { concurrency: false }, () => {
  test('each client lands on the agent nearest to it, and media crosses the pipe both ways', { timeout: 120_000 }, async (t) => {
    const roomId = await cluster.createRoom('nearest', 'TTL-BEST');
    await setDelays([NEAR, FAR, FAR]);
    const probes = await probesOffered(roomId);
    const measured = await measureAgentRtts(probes.probes, probes.timeoutMs);
    t.diagnostic(`client-measured RTTs with delays ${NEAR}/${FAR}/${FAR} ms one way: ${JSON.stringify(measured)}`);
    assert.ok(measured['agent-0']! < measured['agent-1']! && measured['agent-0']! < measured['agent-2']!);

    let before = await dumps();
    const alice = await joinPeer(roomId, 'alice', 'measure');
    assert.equal(alice.probes!.probes.length, 3, 'every agent offered to the client');
    assert.equal(placedOn(before, await dumps()), 'agent-0', 'alice is nearest to agent-0');
    assert.deepEqual((await alice.client.request<AgentProbes>('getAgentProbes')).probes, [], 'nothing to measure once placed');
    const roomBest = await cluster.createRoom('room-best', 'ROOM-BEST');
    assert.deepEqual((await probesOffered(roomBest)).probes, [], 'ROOM-BEST rooms place without distances');

    await setDelays([FAR, NEAR, FAR]);
    before = await dumps();
    const bob = await joinPeer(roomId, 'bob', 'measure');
    assert.equal(placedOn(before, await dumps()), 'agent-1', 'with the delays swapped, bob is nearest to agent-1');

    const toAlice = await alice.assertReceiving(bob.producerId!);
    const toBob = await bob.assertReceiving(alice.producerId!);
    t.diagnostic(`over 1.2 s across the pipe: alice got ${toAlice.received} packets of bob's, bob ${toBob.received} of alice's`);
    const [a0, a1, a2] = await dumps();
    assert.deepEqual([a0!.pipeTransports, a1!.pipeTransports, a2!.pipeTransports], [1, 1, 0], 'one link, between agent-0 and agent-1');
    assert.deepEqual([a0!.srtpPipeTransports, a1!.srtpPipeTransports], [1, 1], 'SRTP between hosts');
    await alice.close();
    await bob.close();
  });

  test('a client that reports nothing is placed by the agents\' own probes of its address', { timeout: 60_000 }, async () => {
    const roomId = await cluster.createRoom('agents-probe', 'TTL-BEST');
    await setDelays([FAR, FAR, NEAR]);
    const t = await cluster.token(roomId, 'carol');
    const before = await dumps();
    const carol = await MediaPeer.join(viaLink(t.gatewayUrl, 0), t.token, { name: 'carol', hostAddress: clientAddress() });
    peers.push(carol);
    assert.equal(placedOn(before, await dumps()), 'agent-2');
    await carol.close();
  });

  test('an agent cut off mid-join costs the join at most the probe bound', { timeout: 90_000 }, async (ctx) => {
    const roomId = await cluster.createRoom('cut', 'TTL-BEST');
    // agent-0 is the nearest, then becomes unreachable between the probe list and the measurements.
    await setDelays([NEAR, FAR, FAR]);
    try {
      // Who measures, and when agent-0 goes silent: before it answers the probes, or after (chosen, then silent).
      for (const mode of ['client probes', 'agent probes', 'agent probes, cut once measured'] as const) {
        const reporting = mode === 'client probes';
        const t = await cluster.token(roomId, mode.replaceAll(' ', '-').replace(',', ''));
        const client = await ProtooClient.connect(reporting ? t.gatewayUrl : viaLink(t.gatewayUrl, 1), t.token);
        const before = await dumps();
        const started = performance.now();
        const { probes, timeoutMs } = await client.request<AgentProbes>('getAgentProbes');
        if (mode === 'agent probes, cut once measured') await sleep(PROBE_TIMEOUT_MS);
        await spaces[0]!.cut();
        if (reporting) {
          const rtts = await measureAgentRtts(probes, timeoutMs);
          assert.equal(rtts['agent-0'], undefined, 'the cut agent did not answer');
          await client.request('reportAgentRtts', { rtts });
        }
        const placingAt = performance.now();
        await client.request('getRouterRtpCapabilities');
        const placementMs = performance.now() - (mode === 'agent probes, cut once measured' ? placingAt : started);
        await client.request('createWebRtcTransport', { producing: true, consuming: false });
        const now = await Promise.all(cluster.agents.slice(1).map((a) => cluster.agentDump(a.id)));
        const agent = placedOn(before.slice(1), now, 1);
        assert.notEqual(agent, 'agent-0');
        ctx.diagnostic(`${mode}: placed on ${agent} in ${Math.round(placementMs)} ms (bound ${PROBE_TIMEOUT_MS} ms)`);
        // Measuring costs at most the bound; so does opening the room on a chosen agent that went silent since,
        // before the next is used. Plus round trips over the far links; never the bus's 5 s agent timeout.
        assert.ok(placementMs < PROBE_TIMEOUT_MS + 800, `${mode}: placed in ${Math.round(placementMs)} ms`);
        client.close();
        await spaces[0]!.restore();
        await sleep(200);
      }
    } finally {
      await spaces[0]!.restore();
    }
  });

  test('after everyone left, no agent holds a router, transport or pipe', { timeout: 30_000 }, async () => {
    await setDelays([NEAR, NEAR, NEAR]);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const all = await Promise.all(cluster.agents.map((a) => cluster.agentDump(a.id).catch(() => undefined)));
      const busy = all.filter((d) => !d || d.routers + d.transports + d.producers + d.consumers + d.pipeTransports + d.pipedProducers > 0);
      if (busy.length === 0) return;
      if (Date.now() > deadline) throw new Error(`still busy: ${JSON.stringify(all)}`);
      await sleep(200);
    }
  });
});
