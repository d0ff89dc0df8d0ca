import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gatewayCall, openAudioBroadcaster } from './helpers/broadcaster.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type LargeRoom, quantile, startLargeRoom } from './helpers/large-room.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { type StockClient, opened, settleStockClients, stockClient } from './helpers/stock-client.js';

/** protoo-client keeps requests pending after a final close; settle them so the process can exit. */
after(settleStockClients);

describe('listeners (join with listener: true) are not announced until they publish', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded();
  });
  after(async () => platform.close());

  /** What a client received, notifications and server requests in one ordered list. */
  function received(client: StockClient): { method: string; data: any }[] {
    const log: { method: string; data: any }[] = [];
    client.peer.on('notification', (n) => log.push({ method: n.method, data: n.data }));
    client.peer.on('request', (r) => log.push({ method: r.method, data: r.data }));
    return log;
  }

  async function join(roomId: string, user: string, listener?: boolean) {
    const token = encodeURIComponent(await platform.token(roomId, user));
    const client = stockClient(`${platform.gatewayUrl}/?token=${token}&peerId=${user}`);
    const log = received(client);
    await opened(client);
    const rtpCapabilities = await client.peer.request('getRouterRtpCapabilities');
    const send = await client.peer.request('createWebRtcTransport', { producing: true, consuming: false });
    await client.peer.request('createWebRtcTransport', { producing: false, consuming: true });
    const { peers } = await client.peer.request('join', { displayName: user, rtpCapabilities, ...(listener === undefined ? {} : { listener }) });
    return { client, log, send, peerIds: (peers as { id: string }[]).map((p) => p.id) };
  }

  test('a joined client hears of publishers (newPeer, newConsumer) and of no listener', async () => {
    const roomId = await platform.createRoom('quiet-listeners');
    const watcher = await join(roomId, 'watcher');
    const quiet = await join(roomId, 'quiet', true);
    const http = platform.gatewayUrl.replace(/^ws/, 'http');
    const plainListener = await gatewayCall(http, 'POST', '/broadcasters', { token: await platform.token(roomId, 'plain'), listener: true });
    const loud = await join(roomId, 'loud', false);
    assert.deepEqual(loud.peerIds, ['watcher'], 'a join lists the announced peers: no listener');
    assert.deepEqual(quiet.peerIds, ['watcher'], 'a listener is told of the peers announced before it');

    // A publisher (a broadcaster streaming in) is announced and offered as before.
    const { source: speaker } = await openAudioBroadcaster(http, await platform.token(roomId, 'speaker'), { displayName: 'speaker' });
    await waitFor(() => watcher.log.some((m) => m.method === 'newConsumer' && m.data.peerId === speaker.id), 5000, 'the speaker offered');

    const announced = () => watcher.log.filter((m) => m.method === 'newPeer').map((m) => m.data.id as string);
    // loud joined without the flag: announced as mediasoup-demo does; quiet and the plain-RTP listener are not.
    assert.deepEqual(announced(), ['loud', speaker.id], 'newPeer for the publisher and the non-listener only');
    assert.ok(
      quiet.log.some((m) => m.method === 'newConsumer' && m.data.peerId === speaker.id),
      'a listener still receives the publishers',
    );

    // A listener that starts publishing becomes known first (newPeer), then its media is offered.
    const { id: producerId } = await quiet.client.peer.request('produce', {
      transportId: quiet.send.id,
      kind: 'audio',
      rtpParameters: { ...audioRtpParameters, mid: '0' },
    });
    await waitFor(() => watcher.log.some((m) => m.method === 'newConsumer' && m.data.producerId === producerId), 5000, 'the listener offered');
    const newPeerAt = watcher.log.findIndex((m) => m.method === 'newPeer' && m.data.id === 'quiet');
    const consumerAt = watcher.log.findIndex((m) => m.method === 'newConsumer' && m.data.producerId === producerId);
    assert.ok(newPeerAt !== -1 && newPeerAt < consumerAt, 'newPeer of the new publisher before its newConsumer');

    // Leaving: the plain listener's departure is news to no one; loud's is.
    await gatewayCall(http, 'DELETE', `/broadcasters/${plainListener.id}`, undefined, plainListener.secret);
    loud.client.peer.close();
    await waitFor(() => watcher.log.some((m) => m.method === 'peerClosed'), 5000, 'peerClosed of loud');
    await new Promise((r) => setTimeout(r, 200));
    const closed = watcher.log.filter((m) => m.method === 'peerClosed').map((m) => m.data.peerId);
    assert.deepEqual(closed, ['loud'], 'peerClosed for loud, none for the listener');
    for (const c of [watcher, quiet]) c.client.peer.close();
    await gatewayCall(http, 'DELETE', `/broadcasters/${speaker.id}`, undefined, speaker.secret);
  });
});

/**
 * One room, one audio publisher, N plain-RTP listeners (default 3,000; LARGE_ROOM_LISTENERS sets it)
 * through the broadcaster API on an agent with two workers: past `agent.routerConsumerLimit` (1,500
 * here) the room spreads to the other worker's router, fed by pipeToRouter.
 */
describe('a large room', () => {
  const n = Number(process.env.LARGE_ROOM_LISTENERS ?? 3000);
  let room: LargeRoom;
  before(async () => {
    room = await startLargeRoom({
      config: {
        agent: { numWorkers: 2, plainRtpMinPort: 42000, plainRtpMaxPort: 49999, routerConsumerLimit: 1500 },
        nuve: { tokenTtlSec: 3600, rateLimit: { enabled: false } },
        gateway: { rateLimit: { enabled: false }, agentRequestTimeoutMs: 5000 },
      },
      quietListeners: true,
      sinkSockets: 16,
    });
  });
  after(async () => room.close());

  test(`${n} listeners all join and receive ≥ 99 % of the packets; the room is then torn down to zero objects`, async () => {
    const joined = await room.addListeners(n, 16);
    assert.equal(joined.length, n, 'every listener answered');
    const join = joined.map((l) => l.joinMs);
    console.log(`# ${n} listeners: join p50 ${quantile(join, 0.5).toFixed(1)} ms, p99 ${quantile(join, 0.99).toFixed(1)} ms`);
    const slots = room.platform.agent!.pool.all();
    console.log(`# consumers per worker: ${slots.map((s) => s.consumers).join(', ')}`);
    assert.ok(slots.every((s) => s.consumers > 0), 'the room spans both workers');

    await new Promise((r) => setTimeout(r, 1000));
    // The better of two 4 s windows (by its worst listener), as bench/consumers-per-worker.ts does: on a
    // shared 2-core host one scheduling hiccup of the sink should not decide the run.
    let ratios: number[] = [];
    for (let w = 0; w < 2; w++) {
      const window = [...(await room.delivery(4000)).values()];
      if (ratios.length === 0 || Math.min(...window) > Math.min(...ratios)) ratios = window;
    }
    const worst = Math.min(...ratios);
    console.log(`# delivery: min ${(worst * 100).toFixed(2)} %, p1 ${(quantile(ratios, 0.01) * 100).toFixed(2)} %, mean ${((ratios.reduce((a, b) => a + b, 0) / ratios.length) * 100).toFixed(2)} %`);
    assert.ok(worst >= 0.99, `every listener receives ≥ 99 % (worst ${(worst * 100).toFixed(2)} %)`);

    await room.leave();
    const agent = room.platform.agent!;
    let dump = await agent.dump();
    await waitFor(async () => {
      // A dump of thousands of objects is itself work for the workers: asked every 250 ms, not every 10.
      await new Promise((r) => setTimeout(r, 250));
      dump = await agent.dump();
      return dump.routers === 0 && dump.transports === 0 && dump.consumers === 0 && dump.producers === 0;
    }, 20_000, 'the agent at zero objects');
    assert.deepEqual({ routers: dump.routers, transports: dump.transports, producers: dump.producers, consumers: dump.consumers }, { routers: 0, transports: 0, producers: 0, consumers: 0 });
  });
});
