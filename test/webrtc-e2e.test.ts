import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';
import {
  type WeriftConsumer,
  WeriftRecvTransport,
  WeriftSendTransport,
  weriftRtpCapabilities,
} from './helpers/werift-endpoint.js';

let platform: EmbeddedPlatform;
before(async () => {
  platform = await startEmbedded();
});
after(async () => platform.close());

test('real WebRTC (ICE + DTLS + SRTP): a Node peer publishes audio and video, another receives both', { timeout: 60_000 }, async () => {
  const roomId = await platform.createRoom('webrtc');

  // Publisher: mediasoup-demo's order — transport, connect, join, produce.
  const pub = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'alice'));
  await pub.request('getRouterRtpCapabilities');
  const sendInfo = await pub.request('createWebRtcTransport', { producing: true, consuming: false });
  const send = await WeriftSendTransport.create(sendInfo);
  await pub.request('connectWebRtcTransport', { transportId: sendInfo.id, dtlsParameters: send.dtlsParameters });
  await pub.request('join', { displayName: 'alice', rtpCapabilities: weriftRtpCapabilities });
  const producers = [];
  for (const kind of ['audio', 'video'] as const) {
    const local = await send.produce({ kind });
    const { id } = await pub.request('produce', { transportId: sendInfo.id, kind, rtpParameters: local.rtpParameters });
    producers.push({ id, local });
  }
  await send.waitForConnected();
  for (const p of producers) await p.local.startFfmpegSource();

  // Subscriber: receives newConsumer requests for both producers when it joins.
  const sub = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'bob', 'viewer'));
  const recvInfo = await sub.request('createWebRtcTransport', { producing: false, consuming: true });
  const recv = await WeriftRecvTransport.create(recvInfo);
  await sub.request('connectWebRtcTransport', { transportId: recvInfo.id, dtlsParameters: recv.dtlsParameters });
  const consumers: { id: string; kind: string; local: WeriftConsumer }[] = [];
  sub.handleRequests(async (method, data) => {
    if (method === 'newConsumer') {
      consumers.push({ id: data.id, kind: data.kind, local: await recv.consume(data) });
    }
    return {};
  });
  await sub.request('join', { displayName: 'bob', rtpCapabilities: weriftRtpCapabilities });

  try {
    const until = Date.now() + 10_000;
    while (consumers.length < 2 && Date.now() < until) await sleep(50);
    assert.deepEqual(consumers.map((c) => c.kind).sort(), ['audio', 'video']);
    await recv.waitForConnected();
    for (const c of consumers) await c.local.waitForPackets(10, 15_000);

    const sample = async () =>
      Promise.all(
        consumers.map(async (c) => {
          const stats: any[] = await sub.request('getConsumerStats', { consumerId: c.id });
          const outbound = stats.find((s) => s.type === 'outbound-rtp');
          return { packets: outbound.packetCount as number, bytes: outbound.byteCount as number, received: c.local.packets };
        }),
      );
    const first = await sample();
    await sleep(1500);
    const second = await sample();
    for (const i of [0, 1]) {
      const kind = consumers[i]!.kind;
      assert.ok(second[i]!.packets > first[i]!.packets, `${kind}: server sent more packets`);
      assert.ok(second[i]!.bytes > first[i]!.bytes, `${kind}: server sent more bytes`);
      assert.ok(second[i]!.received > first[i]!.received, `${kind}: the Node peer decrypted more packets`);
    }
    const transportStats: any[] = await sub.request('getTransportStats', { transportId: recvInfo.id });
    assert.equal(transportStats[0].dtlsState, 'connected');
    assert.equal(transportStats[0].iceState === 'completed' || transportStats[0].iceState === 'connected', true);
  } finally {
    await send.close();
    await recv.close();
    pub.close();
    sub.close();
    await Promise.all([pub.closed, sub.closed]);
  }
  const deadline = Date.now() + 5000;
  while ((await platform.agent!.dump()).routers > 0 && Date.now() < deadline) await sleep(50);
  assert.equal((await platform.agent!.dump()).routers, 0);
});
