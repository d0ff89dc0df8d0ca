/**
 * Join latency and throughput through the embedded platform on loopback,
 * against a baseline: the same media work (two WebRtcTransports on a router)
 * done directly on mediasoup in this process, so the ratio shows what
 * signaling, token checks and the bus add.
 *
 *   node --import tsx bench/join.ts [joins=300] [concurrency=20]
 */
import * as mediasoup from 'mediasoup';
import { startEmbedded } from '../test/helpers/platform.js';
import { measureJoins, printJoins } from './join-load.js';

const total = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 20);

async function baselineP50(n: number): Promise<number> {
  const worker = await mediasoup.createWorker({ logLevel: 'none' });
  const server = await worker.createWebRtcServer({ listenInfos: [{ protocol: 'udp', ip: '127.0.0.1', port: 47001 }] });
  const router = await worker.createRouter({ mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }] });
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const a = await router.createWebRtcTransport({ webRtcServer: server });
    const b = await router.createWebRtcTransport({ webRtcServer: server });
    times.push(performance.now() - t0);
    a.close();
    b.close();
  }
  worker.close();
  return times.sort((x, y) => x - y)[Math.floor(n / 2)]!;
}

const platform = await startEmbedded({ agent: { numWorkers: 1 }, nuve: { tokenTtlSec: 600 } });
const rooms = await Promise.all(Array.from({ length: 10 }, (_, i) => platform.createRoom(`bench-${i}`)));
const results = await measureJoins(
  async (i) => ({ token: await platform.token(rooms[i % rooms.length]!, `user-${i}`), gatewayUrl: platform.gatewayUrl }),
  total,
  concurrency,
);
await platform.close();
const base = await baselineP50(100);
printJoins('embedded', results);
console.log(`baseline, bare mediasoup 2×createWebRtcTransport: p50 ${base.toFixed(2)} ms`);
console.log(`ratio platform/baseline p50: ${(results.sequential.p50 / base).toFixed(2)}`);
