import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type GroupCallsResult, groupCallsSubjects } from '../src/core/group-calls-protocol.js';
import { NuveClient } from '../src/server/index.js';
import { Cluster } from './helpers/cluster.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type StockClient, joinedAfter, settleStockClients, stockClient } from './helpers/stock-client.js';

/**
 * A crashed gateway leaves no call behind: Nuve, two gateways and an agent as processes over real
 * NATS and PostgreSQL; a stock client in a room of my group on each gateway; one gateway killed
 * with kill -9 (no room_finished ever comes). Nuve's gateway timeout here is 3 s.
 */
const cluster = new Cluster();
let app: NuveClient;
const clients: StockClient[] = [];

before(async () => {
  await cluster.start({ gateways: 2, agents: 1, bus: 'nats' });
  app = new NuveClient({ url: cluster.nuveUrl, serviceId: cluster.superService.id, key: cluster.superService.key });
}, { timeout: 90_000 });
after(async () => {
  for (const c of clients) c.peer.close();
  settleStockClients();
  await cluster.stop();
});

const calls = (userName: string) =>
  cluster.bus.request<GroupCallsResult>(groupCallsSubjects.forUser, { serviceId: cluster.superService.id, userName }, { timeoutMs: 3000 });

test('kill -9 of a gateway: its calls vanish once Nuve drops it; the other gateway’s call stays', { timeout: 60_000 }, async () => {
  await app.addGroupMembers('ops', ['watcher']);
  // A room of the group on each gateway (Nuve's ring decides which; try rooms until both are used).
  const byGateway = new Map<string, { roomId: string; client: StockClient }>();
  for (let i = 0; i < 20 && byGateway.size < 2; i++) {
    const room = await app.createRoom(`ops ${i}`, { group: 'ops' });
    const { token, gatewayId, gatewayUrl } = await cluster.token(room._id, `peer${i}`);
    if (byGateway.has(gatewayId)) continue;
    const client = stockClient(`${gatewayUrl}/?token=${encodeURIComponent(token)}`, `peer${i}`);
    clients.push(client);
    await joinedAfter(client);
    byGateway.set(gatewayId, { roomId: room._id, client });
  }
  assert.equal(byGateway.size, 2, 'a room on each gateway');
  await waitFor(async () => (await calls('watcher')).calls.length === 2, 5000, 'both calls listed');

  const [victimId, victimRoom] = [...byGateway.entries()][0]!;
  const survivorRoom = [...byGateway.values()][1]!.roomId;
  const victim = cluster.gateways.find((g) => g.id === victimId)!;
  await victim.proc.kill('SIGKILL');
  const killedAt = Date.now();
  // Until Nuve drops the gateway the call is still listed (nobody reported its end).
  assert.equal((await calls('watcher')).calls.length, 2);
  await waitFor(async () => (await calls('watcher')).calls.length === 1, 10_000, 'the dead gateway’s call gone');
  const goneMs = Date.now() - killedAt;
  const { calls: left } = await calls('watcher');
  assert.deepEqual(left.map((c) => c.roomId), [survivorRoom]);
  assert.notEqual(left[0]!.roomId, victimRoom.roomId);
  assert.ok(goneMs < 3000 + 2000, `gone ${goneMs} ms after the kill (gateway timeout 3 s)`);
  process.stdout.write(`# the dead gateway's call vanished ${goneMs} ms after kill -9\n`);
});
