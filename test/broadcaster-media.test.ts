import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { audioRtpParameters, startFfmpegRtp, videoRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';

let platform: EmbeddedPlatform;
let http: string;

before(async () => {
  platform = await startEmbedded();
  http = platform.gatewayUrl.replace(/^ws/, 'http');
});
after(async () => platform.close());

async function call(method: string, path: string, body?: unknown, secret?: string): Promise<any> {
  const res = await fetch(`${http}${path}`, {
    method,
    headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(secret ? { authorization: `Bearer ${secret}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (!res.ok) throw Object.assign(new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`), { status: res.status, body: json });
  return json;
}

function udpSink(): Promise<{ socket: Socket; port: number; packets: () => number; bytes: () => number }> {
  const socket = createSocket('udp4');
  let packets = 0;
  let bytes = 0;
  socket.on('message', (msg) => {
    packets++;
    bytes += msg.length;
  });
  return new Promise((resolve) =>
    socket.bind(0, '127.0.0.1', () => resolve({ socket, port: socket.address().port, packets: () => packets, bytes: () => bytes })),
  );
}

test('ffmpeg RTP (Opus + VP8) enters as a broadcaster and a second peer receives both', { timeout: 60_000 }, async () => {
  const roomId = await platform.createRoom('broadcast');
  const source = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'ffmpeg'), displayName: 'ffmpeg' });
  const audioIn = await call('POST', `/broadcasters/${source.id}/transports`, { comedia: true, rtcpMux: false }, source.secret);
  const videoIn = await call('POST', `/broadcasters/${source.id}/transports`, { comedia: true, rtcpMux: false }, source.secret);
  const audioProducer = await call('POST', `/broadcasters/${source.id}/transports/${audioIn.id}/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, source.secret);
  const videoProducer = await call('POST', `/broadcasters/${source.id}/transports/${videoIn.id}/producers`, { kind: 'video', rtpParameters: videoRtpParameters }, source.secret);

  const ffmpeg = startFfmpegRtp({
    ip: audioIn.ip,
    audioPort: audioIn.port,
    audioRtcpPort: audioIn.rtcpPort,
    videoPort: videoIn.port,
    videoRtcpPort: videoIn.rtcpPort,
  });
  const sinks = [await udpSink(), await udpSink()];
  try {
    // The second peer: an egress broadcaster consuming both producers over plain RTP into local sockets.
    const viewer = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'recorder') }, undefined);
    const consumers = [];
    for (const [i, producerId] of [audioProducer.id, videoProducer.id].entries()) {
      const out = await call('POST', `/broadcasters/${viewer.id}/transports`, { comedia: false, rtcpMux: true }, viewer.secret);
      await call('POST', `/broadcasters/${viewer.id}/transports/${out.id}/connect`, { ip: '127.0.0.1', port: sinks[i]!.port }, viewer.secret);
      consumers.push(await call('POST', `/broadcasters/${viewer.id}/transports/${out.id}/consume`, { producerId }, viewer.secret));
    }
    assert.deepEqual(consumers.map((c) => c.kind), ['audio', 'video']);

    const statsOf = async (consumerId: string) => {
      const stats: any[] = await call('GET', `/broadcasters/${viewer.id}/consumers/${consumerId}/stats`, undefined, viewer.secret);
      const outbound = stats.find((s) => s.type === 'outbound-rtp');
      return { packets: outbound?.packetCount ?? 0, bytes: outbound?.byteCount ?? 0 };
    };
    await sleep(3000);
    const first = await Promise.all(consumers.map((c) => statsOf(c.id)));
    await sleep(2000);
    const second = await Promise.all(consumers.map((c) => statsOf(c.id)));
    for (const i of [0, 1]) {
      assert.ok(first[i]!.packets > 0, `${consumers[i].kind} consumer sent packets`);
      assert.ok(second[i]!.packets > first[i]!.packets, `${consumers[i].kind} packets increase`);
      assert.ok(second[i]!.bytes > first[i]!.bytes, `${consumers[i].kind} bytes increase`);
      assert.ok(sinks[i]!.packets() > 0, `${consumers[i].kind} RTP arrived at the receiving socket`);
    }
    const producerStats: any[] = await call('GET', `/broadcasters/${source.id}/producers/${videoProducer.id}/stats`, undefined, source.secret);
    assert.ok(producerStats.some((s) => s.type === 'inbound-rtp' && s.packetCount > 0));

    await call('DELETE', `/broadcasters/${viewer.id}`, undefined, viewer.secret);
    await call('DELETE', `/broadcasters/${source.id}`, undefined, source.secret);
  } finally {
    ffmpeg.kill('SIGKILL');
    for (const s of sinks) s.socket.close();
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
    (e: any) => e.status === 400 && e.body.code === 'INVALID_PARAMETERS',
  );
  await assert.rejects(
    call('POST', `/broadcasters/${bc.id}/transports/unknown/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, bc.secret),
    (e: any) => e.status === 404,
  );
  await call('DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);
  await assert.rejects(call('DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret), (e: any) => e.status === 404);
});
