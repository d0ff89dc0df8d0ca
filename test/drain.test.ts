import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
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

test('SIGTERM drains: new rooms go elsewhere, the call keeps flowing, each process exits when its last client leaves', { timeout: 90_000 }, async () => {
  const roomId = await cluster.createRoom('draining-call');
  const t = await cluster.token(roomId, 'source');
  const http = t.gatewayUrl.replace(/^ws/, 'http');
  const source = await startBroadcast(http, t.token);
  const egress = await startEgress(http, (await cluster.token(roomId, 'viewer')).token, [source.producerIds.audio, source.producerIds.video]);
  const agentId = (await hostingAgent())!;
  const gateway = cluster.gateways.find((g) => g.id === t.gatewayId)!;
  const agent = cluster.agents.find((a) => a.id === agentId)!;

  gateway.proc.signal('SIGTERM');
  agent.proc.signal('SIGTERM');
  await sleep(1500);

  // Readiness turns false; new rooms go to the other gateway and the other agent.
  assert.equal((await fetch(`http://127.0.0.1:${gateway.port}/ready`)).status, 503);
  const other = await cluster.createRoom('new-room');
  const t2 = await cluster.token(other, 'newcomer');
  assert.notEqual(t2.gatewayId, gateway.id);
  const client = await ProtooClient.connect(t2.gatewayUrl, t2.token);
  await client.request('join', { displayName: 'newcomer', rtpCapabilities: await client.request('getRouterRtpCapabilities') });
  const otherAgent = cluster.agents.find((a) => a.id !== agentId)!;
  assert.equal((await cluster.agentDump(otherAgent.id)).routers, 1, 'the new room is on the other agent');
  client.close();

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
