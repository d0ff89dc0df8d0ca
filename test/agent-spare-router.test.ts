/**
 * Spare routers (agent.spareRouters): each worker keeps one idle router, a
 * new room takes it instead of waiting for createRouter on its first join's
 * path, and a new spare is made behind it. Counted from what the mediasoup
 * workers report (worker.dump()), not from the agent's bookkeeping.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';

const platforms: EmbeddedPlatform[] = [];
after(async () => Promise.all(platforms.map((p) => p.close())));

async function start(spareRouters: boolean): Promise<EmbeddedPlatform> {
  const platform = await startEmbedded({ agent: { numWorkers: 2, spareRouters } });
  platforms.push(platform);
  return platform;
}

/** The router ids each worker holds, as the worker itself reports them. */
const routersPerWorker = (platform: EmbeddedPlatform) =>
  Promise.all(platform.agent!.pool.all().map(async (slot) => (await slot.worker.dump()).routerIds));

async function joinRoom(platform: EmbeddedPlatform, roomId: string, name: string): Promise<{ client: ProtooClient; caps: any }> {
  const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name));
  const caps = await client.request('getRouterRtpCapabilities');
  await client.request('join', { displayName: name, device: { name: 'test' }, rtpCapabilities: caps });
  return { client, caps };
}

test('a new room opens on its worker\'s spare router, a new spare is made behind it, and the room\'s router goes with the room', async () => {
  const platform = await start(true);
  await waitFor(async () => (await platform.agent!.dump()).spareRouters === 2, 5000, 'a spare on each worker');
  const spares = (await routersPerWorker(platform)).map((ids) => {
    assert.equal(ids.length, 1, 'each worker holds exactly its spare');
    return ids[0]!;
  });
  assert.deepEqual(spares.map((id) => platform.agent!.pool.isSpare(id)), [true, true]);
  const idle = await platform.agent!.dump();
  assert.deepEqual([idle.routers, idle.spareRouters], [0, 2], 'spares are not counted as rooms\' routers');

  const roomId = await platform.createRoom('spare');
  const { client, caps } = await joinRoom(platform, roomId, 'alice');
  assert.ok(caps.codecs.some((c: { mimeType: string }) => c.mimeType === 'audio/opus'), "the spare's capabilities are the rooms' codecs");
  // The room is on the least-loaded worker (the first): its router is that worker's former spare.
  assert.equal(platform.agent!.pool.isSpare(spares[0]!), false, 'the spare was handed to the room');
  await waitFor(async () => (await platform.agent!.dump()).spareRouters === 2, 5000, 'a new spare behind it');
  const [first, second] = await routersPerWorker(platform);
  assert.equal(first!.length, 2, "the first worker: the room's router and a new spare");
  assert.ok(first!.includes(spares[0]!), "the room's router is the former spare, not a new router");
  assert.deepEqual(second, [spares[1]], 'the other worker kept its spare');
  const dump = await platform.agent!.dump();
  assert.deepEqual([dump.routers, dump.spareRouters], [1, 2]);

  // A second room takes the first worker's new spare (no consumers anywhere: the first worker is least loaded).
  const other = await joinRoom(platform, await platform.createRoom('spare-2'), 'bob');
  await waitFor(async () => {
    const d = await platform.agent!.dump();
    return d.routers === 2 && d.spareRouters === 2;
  }, 5000, 'two rooms and two spares');

  client.ws.close();
  other.client.ws.close();
  await waitFor(async () => {
    const d = await platform.agent!.dump();
    return d.routers === 0 && d.spareRouters === 2;
  }, 5000, 'the rooms gone, the spares kept');
  const left = (await routersPerWorker(platform)).flat();
  assert.ok(!left.includes(spares[0]!), "the room's router (the former spare) closed with the room");
  assert.equal(left.length, 2);
});

test('with agent.spareRouters off, a worker holds only the rooms\' routers', async () => {
  const platform = await start(false);
  await sleep(200);
  assert.deepEqual(await routersPerWorker(platform), [[], []]);
  const { client } = await joinRoom(platform, await platform.createRoom('no-spare'), 'carol');
  await sleep(200);
  assert.deepEqual((await routersPerWorker(platform)).map((ids) => ids.length), [1, 0]);
  const dump = await platform.agent!.dump();
  assert.deepEqual([dump.routers, dump.spareRouters], [1, 0]);
  client.ws.close();
  await waitFor(async () => (await platform.agent!.dump()).routers === 0, 5000, 'the room gone');
  assert.deepEqual(await routersPerWorker(platform), [[], []]);
});

test('a worker that dies takes its spare with it, and its replacement gets a new one', async () => {
  const platform = await start(true);
  await waitFor(async () => (await platform.agent!.dump()).spareRouters === 2, 5000, 'a spare on each worker');
  const [, dying] = platform.agent!.pool.all();
  const lostSpare = dying!.spare!.id;
  process.kill(dying!.worker.pid, 'SIGKILL');
  await waitFor(async () => {
    const d = await platform.agent!.dump();
    return d.workers === 2 && d.spareRouters === 2;
  }, 15_000, 'the worker replaced with its spare');
  const [, replacement] = await routersPerWorker(platform);
  assert.equal(replacement!.length, 1);
  assert.notEqual(replacement![0], lostSpare, 'a new spare, on the new worker');
  // The new spare serves a room like any other.
  const { client } = await joinRoom(platform, await platform.createRoom('after-death'), 'dave');
  assert.equal((await platform.agent!.dump()).routers, 1);
  client.ws.close();
});
