import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import * as mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import {
  WeriftRecvTransport,
  WeriftSendTransport,
  recvRtpCapabilities,
  type RemoteTransportParams,
} from './helpers/werift-endpoint.ts';

const mediaCodecs: ms.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: {} },
];

let worker: ms.Worker;
let router: ms.Router;

before(async () => {
  worker = await mediasoup.createWorker({
    logLevel: 'warn',
    ...(process.env.MEDIASOUP_WORKER_BIN ? { workerBin: process.env.MEDIASOUP_WORKER_BIN } : {}),
  } as ms.WorkerSettings);
  router = await worker.createRouter({ mediaCodecs });
});

after(() => {
  worker?.close();
});

function remoteParams(t: ms.WebRtcTransport): RemoteTransportParams {
  return { id: t.id, iceParameters: t.iceParameters, iceCandidates: t.iceCandidates, dtlsParameters: t.dtlsParameters };
}

/** Producer stats: 'inbound-rtp'; consumer stats: 'outbound-rtp' (plus the producer's 'inbound-rtp'). */
async function rtpCounts(
  x: ms.Producer | ms.Consumer,
  wanted: 'inbound-rtp' | 'outbound-rtp',
): Promise<{ packets: number; bytes: number }> {
  const stats = await x.getStats();
  let packets = 0;
  let bytes = 0;
  for (const s of stats as Array<{ type: string; packetCount?: number; byteCount?: number }>) {
    if (s.type !== wanted) continue;
    packets += s.packetCount ?? 0;
    bytes += s.byteCount ?? 0;
  }
  return { packets, bytes };
}

test('werift endpoint sends and receives audio+video through a mediasoup WebRtcTransport', { timeout: 30_000 }, async () => {
  const listenInfos: ms.TransportListenInfo[] = [{ protocol: 'udp', ip: '127.0.0.1' }];
  const msSend = await router.createWebRtcTransport({ listenInfos });
  const msRecv = await router.createWebRtcTransport({ listenInfos });

  const send = await WeriftSendTransport.create(remoteParams(msSend));
  const recv = await WeriftRecvTransport.create(remoteParams(msRecv));
  try {
    // "signaling": dtlsParameters known before ICE starts
    await msSend.connect({ dtlsParameters: send.dtlsParameters });
    await msRecv.connect({ dtlsParameters: recv.dtlsParameters });

    const audioOut = await send.produce({ kind: 'audio' });
    const audioProducer = await msSend.produce({ kind: 'audio', rtpParameters: audioOut.rtpParameters });
    await send.waitForConnected(10_000);
    const audioSrc = await audioOut.startFfmpegSource();
    // second producer on an already connected transport (renegotiation on the send side)
    const videoOut = await send.produce({ kind: 'video' });
    const videoProducer = await msSend.produce({ kind: 'video', rtpParameters: videoOut.rtpParameters });
    const videoSrc = await videoOut.startFfmpegSource();

    // consumers: paused, then resumed; video added later (renegotiation on the recv transport)
    const consumers: ms.Consumer[] = [];
    const weriftConsumers = [];
    for (const producer of [audioProducer, videoProducer]) {
      assert.ok(router.canConsume({ producerId: producer.id, rtpCapabilities: recvRtpCapabilities }));
      const consumer = await msRecv.consume({ producerId: producer.id, rtpCapabilities: recvRtpCapabilities, paused: true });
      const wc = await recv.consume({ id: consumer.id, kind: consumer.kind, rtpParameters: consumer.rtpParameters });
      await recv.waitForConnected(10_000);
      await consumer.resume();
      consumers.push(consumer);
      weriftConsumers.push(wc);
      if (producer === audioProducer) await sleep(300); // peers join at different times
    }

    await Promise.all(weriftConsumers.map((wc) => wc.waitForPackets(5, 10_000)));
    const p1 = await Promise.all([audioProducer, videoProducer].map((p) => rtpCounts(p, 'inbound-rtp')));
    const c1 = await Promise.all(consumers.map((c) => rtpCounts(c, 'outbound-rtp')));
    const w1 = weriftConsumers.map((wc) => ({ packets: wc.packets, bytes: wc.bytes }));
    await sleep(1000);
    const p2 = await Promise.all([audioProducer, videoProducer].map((p) => rtpCounts(p, 'inbound-rtp')));
    const c2 = await Promise.all(consumers.map((c) => rtpCounts(c, 'outbound-rtp')));
    const w2 = weriftConsumers.map((wc) => ({ packets: wc.packets, bytes: wc.bytes }));

    const kinds = ['audio', 'video'];
    for (let i = 0; i < 2; i++) {
      const k = kinds[i];
      assert.ok(p2[i]!.packets > p1[i]!.packets, `${k} producer packets ${p1[i]!.packets} -> ${p2[i]!.packets}`);
      assert.ok(c2[i]!.packets > c1[i]!.packets, `${k} consumer packetCount ${c1[i]!.packets} -> ${c2[i]!.packets}`);
      assert.ok(c2[i]!.bytes > c1[i]!.bytes, `${k} consumer byteCount ${c1[i]!.bytes} -> ${c2[i]!.bytes}`);
      assert.ok(w2[i]!.packets > w1[i]!.packets, `${k} werift received packets ${w1[i]!.packets} -> ${w2[i]!.packets}`);
      assert.ok(w2[i]!.bytes > w1[i]!.bytes, `${k} werift received bytes`);
    }
    assert.ok(audioSrc.packets > 0 && videoSrc.packets > 0, 'ffmpeg sources produced RTP');
    console.log('producers', p2, 'consumers', c2, 'werift', w2, 'ffmpeg', audioSrc.packets, videoSrc.packets);

    // removing a consumer (inactive m-line, renegotiation) keeps the others flowing
    consumers[0]!.close();
    await recv.removeConsumer(consumers[0]!.id);
    await weriftConsumers[1]!.waitForPackets(5, 5_000);
  } finally {
    await send.close();
    await recv.close();
    msSend.close();
    msRecv.close();
  }
});
