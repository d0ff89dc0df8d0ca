/**
 * One room across the two workers of one agent (agent.routerConsumerLimit):
 * listeners fill the home router, then the room spreads to a router on the
 * other worker, linked by pipeToRouter only for what is consumed there.
 * Everything real: mediasoup workers, the gateway's broadcaster HTTP API,
 * RTP over loopback sockets, and werift data channels (SCTP over DTLS).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { types } from 'mediasoup';
import { gatewayCall, openAudioBroadcaster } from './helpers/broadcaster.js';
import { AUDIO_PT, AUDIO_SSRC } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded, watchRouters } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';
import { WeriftDataEndpoint, opened } from './helpers/werift-data.js';

const LIMIT = 4;
let platform: EmbeddedPlatform;
let http: string;
/** Every router the agent's workers create, as mediasoup reports it (not the agent's bookkeeping). */
const routers: { router: types.Router; worker: number }[] = [];

before(async () => {
  // No spares: every router the workers create is then a room's, in the order the rooms asked for them.
  platform = await startEmbedded({ agent: { numWorkers: 2, routerConsumerLimit: LIMIT, spareRouters: false } });
  http = platform.gatewayUrl.replace(/^ws/, 'http');
  watchRouters(platform, (router, worker) => routers.push({ router, worker }));
});
after(async () => platform.close());

const call = (method: string, path: string, body?: unknown, secret?: string) => gatewayCall(http, method, path, body, secret);

/** The room's speaker: a broadcaster sending one audio track over plain RTP. */
const speaker = async (roomId: string) => openAudioBroadcaster(http, await platform.token(roomId, 'speaker'));

/** A plain-RTP sender: Opus-shaped RTP packets (20 ms) to a comedia PlainTransport, as ffmpeg would send them. */
function rtpSender(port: number): { sent(): number; stop(): void } {
  const socket = createSocket('udp4');
  let seq = 0;
  const timer = setInterval(() => {
    const packet = Buffer.alloc(12 + 40, 0xab);
    packet[0] = 0x80;
    packet[1] = AUDIO_PT;
    packet.writeUInt16BE(seq & 0xffff, 2);
    packet.writeUInt32BE((seq * 960) >>> 0, 4);
    packet.writeUInt32BE(AUDIO_SSRC, 8);
    seq++;
    socket.send(packet, port, '127.0.0.1');
  }, 20);
  return {
    sent: () => seq,
    stop() {
      clearInterval(timer);
      socket.close();
    },
  };
}

interface Listener {
  id: string;
  secret: string;
  consumerId: string;
  ssrc: number;
  sink: Socket;
  /** RTP packets that arrived with this listener's consumer SSRC. */
  received(): number;
  leave(): Promise<void>;
}

/** A plain-RTP listener: its own broadcaster peer (one PlainTransport) consuming the producer into its own socket. */
async function listen(roomId: string, name: string, producerId: string): Promise<Listener> {
  const bc = await call('POST', '/broadcasters', { token: await platform.token(roomId, name), displayName: name });
  const sink = createSocket('udp4');
  const bySsrc = new Map<number, number>();
  sink.on('message', (msg) => {
    if (msg.length < 12 || (msg[1]! >= 192 && msg[1]! <= 223)) return; // RTCP (rtcp-mux)
    const ssrc = msg.readUInt32BE(8);
    bySsrc.set(ssrc, (bySsrc.get(ssrc) ?? 0) + 1);
  });
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  const out = await call('POST', `/broadcasters/${bc.id}/transports`, { comedia: false, rtcpMux: true }, bc.secret);
  await call('POST', `/broadcasters/${bc.id}/transports/${out.id}/connect`, { ip: '127.0.0.1', port: sink.address().port }, bc.secret);
  const consumer = await call('POST', `/broadcasters/${bc.id}/transports/${out.id}/consume`, { producerId }, bc.secret);
  const ssrc = consumer.rtpParameters.encodings[0].ssrc as number;
  return {
    id: bc.id,
    secret: bc.secret,
    consumerId: consumer.id,
    ssrc,
    sink,
    received: () => bySsrc.get(ssrc) ?? 0,
    async leave() {
      await call('DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);
      sink.close();
    },
  };
}

/** The worker whose router holds consumer `consumerId` (mediasoup's own dumps). */
async function workerOfConsumer(consumerId: string): Promise<number> {
  for (const { router, worker } of routers) {
    if (router.closed) continue;
    const dump = await router.dump();
    if (dump.mapConsumerIdProducerId.some((e) => e.key === consumerId)) return worker;
  }
  throw new Error(`consumer ${consumerId} is on no router`);
}

/** Whether a router holds a producer of that id (a pipe producer keeps the original's id). */
async function hasProducer(router: types.Router, producerId: string): Promise<boolean> {
  const dump = await router.dump();
  return dump.mapProducerIdConsumerIds.some((e) => e.key === producerId);
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function assertZeroOnAgent(): Promise<void> {
  await until('the room to be gone from the agent', async () => (await platform.agent!.dump()).routers === 0);
  const dump = await platform.agent!.dump();
  assert.deepEqual(
    { routers: dump.routers, transports: dump.transports, producers: dump.producers, consumers: dump.consumers, dataProducers: dump.dataProducers, dataConsumers: dump.dataConsumers },
    { routers: 0, transports: 0, producers: 0, consumers: 0, dataProducers: 0, dataConsumers: 0 },
  );
  assert.equal(platform.agent!.load().routers, 0);
  for (const slot of platform.agent!.pool.all()) assert.equal(slot.consumers, 0, `worker ${slot.index} load back to zero`);
}

test('listeners fill the home router, then spread to the other worker; RTP reaches all; pipes follow the consumers', { timeout: 90_000 }, async () => {
  routers.length = 0;
  const roomId = await platform.createRoom('multiworker-audio');
  const { source, input, producer } = await speaker(roomId);
  const sender = rtpSender(input.port);
  const listeners: Listener[] = [];
  try {
    assert.equal(routers.length, 1, 'the room opens with one router');
    const home = routers[0]!;
    for (let i = 0; i < 12; i++) listeners.push(await listen(roomId, `listener-${i}`, producer.id));

    // Two routers of the room, one per worker.
    assert.equal(routers.length, 2, 'the room spread to a second router');
    const second = routers[1]!;
    assert.notEqual(second.worker, home.worker, 'the second router is on the other worker');
    const perWorker = await Promise.all(platform.agent!.pool.all().map(async (s) => (await s.worker.dump()).routerIds.length));
    assert.deepEqual(perWorker, [1, 1]);
    assert.equal(platform.agent!.load().routers, 2);
    assert.equal((await platform.agent!.dump()).routers, 2);

    // Fill first: LIMIT on home, LIMIT on the second, then the least-loaded router of the two in turn.
    const placed = await Promise.all(listeners.map((l) => workerOfConsumer(l.consumerId)));
    const [h, o] = [home.worker, second.worker];
    assert.deepEqual(placed, [h, h, h, h, o, o, o, o, h, o, h, o]);

    // The producer lives on the home router and is piped to the second one (same id), once.
    assert.ok(await hasProducer(home.router, producer.id));
    assert.ok(await hasProducer(second.router, producer.id), 'piped to the second router');

    // Real RTP reaches every listener, on both workers: count packets with each consumer's SSRC over a window.
    await until('RTP at every listener', () => listeners.every((l) => l.received() > 0), 10_000);
    const before = { sent: sender.sent(), got: listeners.map((l) => l.received()) };
    await sleep(2000);
    const sent = sender.sent() - before.sent;
    listeners.forEach((l, i) => {
      const got = l.received() - before.got[i]!;
      assert.ok(got >= sent * 0.9, `listener ${i} (worker ${placed[i]}) got ${got} of ${sent} RTP packets`);
    });

    // The pipe lives while a listener on the second router consumes it, and goes with the last one.
    const onSecond = listeners.filter((_, i) => placed[i] === o);
    for (const l of onSecond.slice(0, -1)) await l.leave();
    await sleep(200);
    assert.ok(await hasProducer(second.router, producer.id), 'pipe kept while one listener there consumes');
    await onSecond.at(-1)!.leave();
    await until('the pipe producer to close on the second router', async () => !(await hasProducer(second.router, producer.id)));
    // The pipe consumer on the home router went with it: only the home listeners' consumers remain.
    const homeDump = await home.router.dump();
    assert.equal(homeDump.mapConsumerIdProducerId.length, listeners.length - onSecond.length);
    for (const l of onSecond) listeners.splice(listeners.indexOf(l), 1);

    // The home router is full: the next listener goes to the second router, which pipes the producer anew.
    const late = await listen(roomId, 'late', producer.id);
    listeners.push(late);
    assert.equal(await workerOfConsumer(late.consumerId), o);
    assert.ok(await hasProducer(second.router, producer.id), 'piped again on demand');
    await until('RTP at the late listener', () => late.received() > 10, 5000);

    // Both routers under the limit again (home 3, second 1): the next listener fills the fuller one, the home router.
    const onHome = listeners.filter((l) => l !== late);
    for (const l of onHome.slice(0, onHome.length - 3)) {
      await l.leave();
      listeners.splice(listeners.indexOf(l), 1);
    }
    const fill = await listen(roomId, 'fill', producer.id);
    listeners.push(fill);
    assert.equal(await workerOfConsumer(fill.consumerId), h, 'fills the fuller router before the emptier');
  } finally {
    sender.stop();
    for (const l of listeners) await l.leave().catch(() => undefined);
    await call('DELETE', `/broadcasters/${source.id}`, undefined, source.secret).catch(() => undefined);
  }
  await assertZeroOnAgent();
  for (const { router } of routers) assert.ok(router.closed, 'every router of the room closed');
});

test('a data channel message from a data producer on the home router reaches a data consumer on the other worker', { timeout: 60_000 }, async () => {
  routers.length = 0;
  const roomId = await platform.createRoom('multiworker-data');
  const sctpCapabilities = { numStreams: { OS: 1024, MIS: 1024 } };
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  try {
    // The data producer's peer joins first: bound to the home router.
    const alice = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'alice'));
    cleanup.push(() => alice.close());
    alice.handleRequests(() => ({}));
    const aliceSend = await alice.request('createWebRtcTransport', { producing: true, consuming: false, sctpCapabilities });
    const aliceEnd = await WeriftDataEndpoint.create(aliceSend);
    cleanup.push(() => aliceEnd.close());
    await alice.request('connectWebRtcTransport', { transportId: aliceSend.id, dtlsParameters: aliceEnd.dtlsParameters });
    await alice.request('join', { displayName: 'alice', sctpCapabilities });

    // Plain-RTP listeners fill the home router to the limit, so the next peer goes to the other worker. alice's
    // transport already holds one place: a WebRTC peer's first transport reserves what it is expected to consume.
    const { source, producer } = await speaker(roomId);
    cleanup.push(() => call('DELETE', `/broadcasters/${source.id}`, undefined, source.secret));
    for (let i = 0; i < LIMIT - 1; i++) {
      const l = await listen(roomId, `filler-${i}`, producer.id);
      cleanup.push(() => l.leave());
    }
    assert.equal(routers.length, 1);

    // bob: a receiver on the second router.
    const bob = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'bob'));
    cleanup.push(() => bob.close());
    const offered: { id: string; dataProducerId: string; sctpStreamParameters: { streamId: number }; label: string }[] = [];
    bob.handleRequests((method, data) => {
      if (method === 'newDataConsumer') offered.push(data);
      return {};
    });
    const bobRecv = await bob.request('createWebRtcTransport', { producing: false, consuming: true, sctpCapabilities });
    const bobEnd = await WeriftDataEndpoint.create(bobRecv);
    cleanup.push(() => bobEnd.close());
    await bob.request('connectWebRtcTransport', { transportId: bobRecv.id, dtlsParameters: bobEnd.dtlsParameters });
    await bob.request('join', { displayName: 'bob', sctpCapabilities });
    assert.equal(routers.length, 2, 'bob opened a router on the other worker');
    const [home, second] = [routers[0]!, routers[1]!];
    assert.notEqual(home.worker, second.worker);
    assert.equal((await second.router.dump()).transportIds.length, 1, "bob's transport is on the second router");

    // alice produces data on the home router; bob's data consumer on the second router pipes it over.
    const aliceChannel = aliceEnd.channel('chat', 0);
    const { id: dataProducerId } = await alice.request('produceData', {
      transportId: aliceSend.id,
      sctpStreamParameters: { streamId: 0, ordered: true },
      label: 'chat',
    });
    await until('newDataConsumer at bob', () => offered.length === 1, 5000);
    const dataConsumer = offered[0]!;
    assert.equal(dataConsumer.dataProducerId, dataProducerId);
    const homeDump = await home.router.dump();
    const secondDump = await second.router.dump();
    assert.ok(homeDump.mapDataProducerIdDataConsumerIds.some((e) => e.key === dataProducerId), 'data producer on the home router');
    assert.ok(secondDump.mapDataProducerIdDataConsumerIds.some((e) => e.key === dataProducerId), 'piped to the second router under its id');
    assert.ok(secondDump.mapDataConsumerIdDataProducerId.some((e) => e.key === dataConsumer.id), "bob's data consumer on the second router");

    const received: string[] = [];
    const bobChannel = bobEnd.channel(dataConsumer.label, dataConsumer.sctpStreamParameters.streamId);
    bobChannel.onMessage.subscribe((m) => received.push(m.toString()));
    await Promise.all([opened(aliceChannel), opened(bobChannel)]);
    // SCTP may take a moment after the channel opens on both ends: send until one arrives, then a known sequence.
    await until('a first message across the workers', () => {
      aliceChannel.send('ping');
      return received.length > 0;
    }, 10_000);
    for (const text of ['one', 'two', 'three']) aliceChannel.send(text);
    await until('the sequence at bob', () => received.slice(-3).join() === 'one,two,three', 5000);

    // alice leaves: her data producer closes, the pipe with it, and bob is told his data consumer closed.
    const closed = bob.waitNotification('dataConsumerClosed', 5000);
    alice.close();
    assert.equal((await closed).dataConsumerId, dataConsumer.id);
    await until('the pipe to close on the second router', async () => (await second.router.dump()).mapDataProducerIdDataConsumerIds.length === 0);
  } finally {
    for (const undo of cleanup.reverse()) await Promise.resolve(undo()).catch(() => undefined);
  }
  await assertZeroOnAgent();
});

test('mediasoup-demo clients joining at once, each creating its sending transport first, split at the limit', { timeout: 60_000 }, async () => {
  routers.length = 0;
  const roomId = await platform.createRoom('multiworker-webrtc-burst');
  const { source } = await speaker(roomId);
  const clients: ProtooClient[] = [];
  try {
    // As mediasoup-demo's client: the sending transport first, nothing consumed yet by anyone.
    const sendTransports = await Promise.all(
      Array.from({ length: 2 * LIMIT }, async (_, i) => {
        const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, `webrtc-${i}`));
        clients.push(client);
        await client.request('getRouterRtpCapabilities');
        return (await client.request('createWebRtcTransport', { producing: true, consuming: false })).id as string;
      }),
    );
    assert.equal(routers.length, 2, 'the room spread to the second worker');
    const held = await Promise.all(routers.map(async ({ router }) => (await router.dump()).transportIds));
    assert.deepEqual(
      held.map((ids) => sendTransports.filter((id) => ids.includes(id)).length),
      [LIMIT, LIMIT],
    );
  } finally {
    for (const c of clients) c.close();
    await call('DELETE', `/broadcasters/${source.id}`, undefined, source.secret).catch(() => undefined);
  }
  await assertZeroOnAgent();
});

test('listeners joining at once, bound before any consumes, split at the limit instead of all landing on the home router', { timeout: 60_000 }, async () => {
  routers.length = 0;
  const roomId = await platform.createRoom('multiworker-burst');
  const { source, producer } = await speaker(roomId);
  const listeners: Listener[] = [];
  try {
    // Placement counts each bound listener's expected consumer from its transport on, whichever consumes first.
    listeners.push(...(await Promise.all(Array.from({ length: 2 * LIMIT }, (_, i) => listen(roomId, `burst-${i}`, producer.id)))));
    assert.equal(routers.length, 2);
    const placed = await Promise.all(listeners.map((l) => workerOfConsumer(l.consumerId)));
    assert.deepEqual(
      routers.map((r) => placed.filter((w) => w === r.worker).length),
      [LIMIT, LIMIT],
    );
  } finally {
    for (const l of listeners) await l.leave().catch(() => undefined);
    await call('DELETE', `/broadcasters/${source.id}`, undefined, source.secret).catch(() => undefined);
  }
  await assertZeroOnAgent();
});

test("a worker dying under the room's second router closes the whole room, and its peers on the home router are told", { timeout: 60_000 }, async () => {
  routers.length = 0;
  const roomId = await platform.createRoom('multiworker-loss');
  // alice: a signaling peer bound to the home router (one transport is enough).
  const alice = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'alice'));
  alice.handleRequests(() => ({}));
  const rtpCapabilities = await alice.request('getRouterRtpCapabilities');
  await alice.request('createWebRtcTransport', { producing: false, consuming: true });
  await alice.request('join', { displayName: 'alice', rtpCapabilities });
  const { producer } = await speaker(roomId);
  const listeners: Listener[] = [];
  try {
    for (let i = 0; i <= LIMIT; i++) listeners.push(await listen(roomId, `listener-${i}`, producer.id));
    assert.equal(routers.length, 2);
    const [home, second] = [routers[0]!, routers[1]!];
    const lost = alice.waitNotification('mediaAgentLost', 10_000);
    const secondWorker = platform.agent!.pool.all()[second.worker]!.worker;
    process.kill(secondWorker.pid, 'SIGKILL');
    assert.equal((await lost).reason, 'worker-died');
    await until('the home router closed with the room', () => home.router.closed);
    await until('the room gone from the agent', () => platform.agent!.load().routers === 0);
    // The dead worker is replaced in place: the agent has two live workers again.
    await until('the worker replaced', async () => (await platform.agent!.dump()).workers === 2, 15_000);
  } finally {
    alice.close();
    for (const l of listeners) l.sink.close();
  }
  await assertZeroOnAgent();
});
