import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import type { types } from 'mediasoup';
import { gatewayCall, startBroadcast, startEgress } from './helpers/broadcaster.js';
import { AUDIO_PT, AUDIO_SSRC, audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded, watchRouters } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';

let platform: EmbeddedPlatform;
let http: string;

before(async () => {
  platform = await startEmbedded();
  http = platform.gatewayUrl.replace(/^ws/, 'http');
});
after(async () => platform.close());

const call = (method: string, path: string, body?: unknown, secret?: string) => gatewayCall(http, method, path, body, secret);

test('ffmpeg RTP (Opus + VP8) enters as a broadcaster and a second peer receives both', { timeout: 60_000 }, async () => {
  const roomId = await platform.createRoom('broadcast');
  const source = await startBroadcast(http, await platform.token(roomId, 'ffmpeg'));
  // The second peer: an egress broadcaster consuming both producers over plain RTP into local sockets.
  const viewer = await startEgress(http, await platform.token(roomId, 'recorder'), [source.producerIds.audio, source.producerIds.video]);
  try {
    assert.deepEqual(viewer.consumers.map((c) => c.kind), ['audio', 'video']);
    await sleep(3000);
    const first = await viewer.stats();
    await sleep(2000);
    const second = await viewer.stats();
    for (const i of [0, 1]) {
      const kind = viewer.consumers[i]!.kind;
      assert.ok(first[i]!.packets > 0, `${kind} consumer sent packets`);
      assert.ok(second[i]!.packets > first[i]!.packets, `${kind} packets increase`);
      assert.ok(second[i]!.bytes > first[i]!.bytes, `${kind} bytes increase`);
      assert.ok(viewer.consumers[i]!.packetsReceived() > 0, `${kind} RTP arrived at the receiving socket`);
    }
    const producerStats: any[] = await call('GET', `/broadcasters/${source.id}/producers/${source.producerIds.video}/stats`, undefined, source.secret);
    assert.ok(producerStats.some((s) => s.type === 'inbound-rtp' && s.packetCount > 0));
  } finally {
    await viewer.stop();
    await source.stop();
  }
  // The last peer left: the room and its router are gone from the agent.
  await sleep(200);
  const dump = await platform.agent!.dump();
  assert.equal(dump.routers, 0);
  assert.equal(dump.transports, 0);
});

test('broadcaster API refuses bad input, wrong secrets and viewer tokens', async () => {
  const roomId = await platform.createRoom('bc-errors');
  await assert.rejects(call('POST', '/broadcasters', { token: 'not-a-token' }), (e: any) => e.status === 401 && e.body.code === 'TOKEN_MALFORMED');
  await assert.rejects(call('POST', '/broadcasters', {}), (e: any) => e.status === 400 && e.body.code === 'INVALID_REQUEST');
  await assert.rejects(
    call('POST', '/broadcasters', { token: await platform.token(roomId, 'v', 'viewer') }),
    (e: any) => e.status === 403 && e.body.code === 'PRODUCE_NOT_ALLOWED',
  );
  const bc = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'b') });
  await assert.rejects(call('POST', `/broadcasters/${bc.id}/transports`, {}, 'wrong-secret'), (e: any) => e.status === 404);
  const t = await call('POST', `/broadcasters/${bc.id}/transports`, {}, bc.secret);
  await assert.rejects(
    call('POST', `/broadcasters/${bc.id}/transports/${t.id}/producers`, { kind: 'audio', rtpParameters: { codecs: 'nope' } }, bc.secret),
    (e: any) => e.status === 400 && e.body.code === 'INVALID_REQUEST',
  );
  await assert.rejects(
    call('POST', `/broadcasters/${bc.id}/transports/unknown/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, bc.secret),
    (e: any) => e.status === 404,
  );
  await call('DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);
  await assert.rejects(call('DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret), (e: any) => e.status === 404);
});

test('a room gets its audio level observer with its first audio producer, and its loudest producer is the room’s speaker', { timeout: 30_000 }, async () => {
  const roomId = await platform.createRoom('speaker');
  const observers: types.RtpObserver[] = [];
  const watch = (router: types.Router) => router.observer.on('newrtpobserver', (o) => observers.push(o));
  const unwatch = watchRouters(platform, watch);
  const listener = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'listener'));
  const caps = await listener.request('getRouterRtpCapabilities');
  await listener.request('join', { displayName: 'listener', rtpCapabilities: caps });
  const bc = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'speaker'), displayName: 'speaker' });
  const t = await call('POST', `/broadcasters/${bc.id}/transports`, { comedia: true, rtcpMux: true }, bc.secret);
  // Opening the room and joining it created no observer: the join path waits for one worker request less.
  assert.equal(observers.length, 0);
  const AUDIO_LEVEL_ID = 1;
  await call(
    'POST',
    `/broadcasters/${bc.id}/transports/${t.id}/producers`,
    { kind: 'audio', rtpParameters: { ...audioRtpParameters, headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: AUDIO_LEVEL_ID }] } },
    bc.secret,
  );
  assert.equal(observers.length, 1);
  // Loud Opus-sized RTP with the audio level extension (RFC 6464: voice, -10 dBov).
  const socket = createSocket('udp4');
  let seq = 0;
  const timer = setInterval(() => {
    const packet = Buffer.alloc(12 + 8 + 40, 0xab);
    packet[0] = 0x90;
    packet[1] = AUDIO_PT;
    packet.writeUInt16BE(seq & 0xffff, 2);
    packet.writeUInt32BE((seq * 960) >>> 0, 4);
    packet.writeUInt32BE(AUDIO_SSRC, 8);
    packet.writeUInt16BE(0xbede, 12);
    packet.writeUInt16BE(1, 14);
    packet[16] = (AUDIO_LEVEL_ID << 4) | 0;
    packet[17] = 0x80 | 10;
    packet.fill(0, 18, 20);
    seq++;
    socket.send(packet, t.port, t.ip);
  }, 20);
  try {
    const speaker = await listener.waitNotification('activeSpeaker', 10_000);
    assert.equal(speaker.peerId, bc.id);
    assert.ok(speaker.volume > -30, `volume ${speaker.volume}`);
  } finally {
    clearInterval(timer);
    socket.close();
    unwatch();
    listener.close();
    await call('DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret).catch(() => undefined);
  }
});
