import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HashRing } from '../src/core/hash-ring.js';
import { startBroadcast, startEgress } from './helpers/broadcaster.js';
import { Cluster } from './helpers/cluster.js';
import { ProtooClient } from './helpers/protoo-client.js';

/** Graceful drain of a gateway and an agent, each its own process, with a call in progress. */
const cluster = new Cluster();
before(async () => cluster.start({ gateways: 2, agents: 2 }), { timeout: 90_000 });
after(async () => cluster.stop());

async function hostingAgent(): Promise<string | undefined> {
  for (const a of cluster.agents.filter((x) => x.proc.running)) if ((await cluster.agentDump(a.id)).routers > 0) return a.id;
  return undefined;
}

/** A client joined to a new room of its own (so the room gets a router). */
async function joinNewRoom(name: string): Promise<{ client: ProtooClient; gatewayId: string }> {
  const t = await cluster.token(await cluster.createRoom(name), name);
  const client = await ProtooClient.connect(t.gatewayUrl, t.token);
  await client.request('join', { displayName: name, rtpCapabilities: await client.request('getRouterRtpCapabilities') });
  return { client, gatewayId: t.gatewayId };
}

test('SIGTERM drains: new rooms go elsewhere, the call keeps flowing, each process exits when its last client leaves', { timeout: 90_000 }, async () => {
  const roomId = await cluster.createRoom('draining-call');
  const t = await cluster.token(roomId, 'source');
  const http = t.gatewayUrl.replace(/^ws/, 'http');
  const source = await startBroadcast(http, t.token);
  const egress = await startEgress(http, (await cluster.token(roomId, 'viewer')).token, [source.producerIds.audio, source.producerIds.video]);
  const agentId = (await hostingAgent())!;
  const gateway = cluster.gateways.find((g) => g.id === t.gatewayId)!;
  const agent = cluster.agents.find((a) => a.id === agentId)!;
  const otherAgent = cluster.agents.find((a) => a.id !== agentId)!;

  // Load alone must point at the agent about to drain: the other one gets more rooms first (placement
  // takes the agent with fewest routers), so only the drain can keep the next room off it. A filler
  // placed on the agent to drain leaves again, taking its room with it.
  const fillers: ProtooClient[] = [];
  const routers = async () => [(await cluster.agentDump(agentId)).routers, (await cluster.agentDump(otherAgent.id)).routers] as const;
  for (let i = 0; i < 10; i++) {
    const [draining, other] = await routers();
    if (other > draining) break;
    const filler = (await joinNewRoom(`filler-${i}`)).client;
    if ((await routers())[0] === draining) {
      fillers.push(filler);
      continue;
    }
    filler.close();
    for (let t = 0; t < 50 && (await routers())[0] !== draining; t++) await sleep(100);
  }
  const [drainingBefore, otherBefore] = await routers();
  assert.ok(otherBefore > drainingBefore, `setup: the other agent carries more rooms (${otherBefore} vs ${drainingBefore})`);

  gateway.proc.signal('SIGTERM');
  agent.proc.signal('SIGTERM');
  await sleep(1500);

  // Readiness turns false; new rooms go to the other gateway and the other agent.
  assert.equal((await fetch(`http://127.0.0.1:${gateway.port}/ready`)).status, 503);
  // A room Nuve's ring gives the draining gateway while both are available: only the drain sends it elsewhere.
  const ring = new HashRing(cluster.gateways.map((g) => ({ id: g.id, weight: 1 })));
  let other = await cluster.createRoom('new-room');
  for (let i = 0; ring.lookup(other) !== gateway.id && i < 50; i++) other = await cluster.createRoom(`new-room-${i}`);
  assert.equal(ring.lookup(other), gateway.id, 'setup: a room hashed to the draining gateway');
  const t2 = await cluster.token(other, 'newcomer');
  assert.notEqual(t2.gatewayId, gateway.id, 'the new room is on the other gateway');
  const client = await ProtooClient.connect(t2.gatewayUrl, t2.token);
  await client.request('join', { displayName: 'newcomer', rtpCapabilities: await client.request('getRouterRtpCapabilities') });
  assert.deepEqual(await routers(), [drainingBefore, otherBefore + 1], 'the new room is on the other agent');
  client.close();
  // Fillers on the draining gateway would keep it from exiting below.
  for (const filler of fillers) filler.close();

  // The call on the draining pair goes on.
  const before = await egress.stats();
  await sleep(1500);
  const afterwards = await egress.stats();
  for (const i of [0, 1]) assert.ok(afterwards[i]!.packets > before[i]!.packets, 'media keeps flowing while draining');
  assert.ok(gateway.proc.running && agent.proc.running, 'both wait for their clients');

  // The last clients leave: both exit by themselves, cleanly.
  const leftAt = Date.now();
  await egress.stop();
  await source.stop();
  assert.equal(await gateway.proc.exited(), 0);
  assert.equal(await agent.proc.exited(), 0);
  assert.ok(Date.now() - leftAt < 5000, `exited ${Date.now() - leftAt} ms after the last client left`);
});

test('a second SIGTERM forces an immediate exit', { timeout: 60_000 }, async () => {
  const id = await cluster.addGateway();
  const gateway = cluster.gateways.find((g) => g.id === id)!;
  // Make sure the new gateway hosts a live client: try rooms until one lands on it.
  let client: ProtooClient | undefined;
  for (let i = 0; i < 40 && !client; i++) {
    const t = await cluster.token(await cluster.createRoom(`force-${i}`), 'stay');
    if (t.gatewayId !== id) continue;
    client = await ProtooClient.connect(t.gatewayUrl, t.token);
    await client.request('join', { displayName: 'stay', rtpCapabilities: await client.request('getRouterRtpCapabilities') });
  }
  assert.ok(client, 'a room landed on the new gateway');
  gateway.proc.signal('SIGTERM');
  await sleep(1000);
  assert.ok(gateway.proc.running, 'draining while a client stays');
  const t0 = Date.now();
  gateway.proc.signal('SIGTERM');
  await gateway.proc.exited();
  assert.ok(Date.now() - t0 < 1000, 'forced exit is immediate');
  client!.close();
});
