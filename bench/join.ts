/**
 * Join latency and throughput through the embedded platform on loopback.
 *
 * A "join" is what a mediasoup-demo client does once it holds a token:
 * WebSocket connect (token consumed at Nuve over the bus) →
 * getRouterRtpCapabilities → createWebRtcTransport ×2 → join.
 * Baseline: the same media work (two WebRtcTransports on a router) done
 * directly on mediasoup in this process, so the ratio shows what signaling,
 * token checks and the bus add.
 *
 *   node --import tsx bench/join.ts [joins=300] [concurrency=20]
 */
import * as mediasoup from 'mediasoup';
import { startEmbedded } from '../test/helpers/platform.js';
import { ProtooClient } from '../test/helpers/protoo-client.js';

const total = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 20);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const summary = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99) };
};

async function baseline(n: number): Promise<number[]> {
  const worker = await mediasoup.createWorker({ logLevel: 'none' });
  const server = await worker.createWebRtcServer({ listenInfos: [{ protocol: 'udp', ip: '127.0.0.1', port: 47001 }] });
  const router = await worker.createRouter({
    mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }],
  });
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
  return times;
}

async function main(): Promise<void> {
  const platform = await startEmbedded({ agent: { numWorkers: 1 }, nuve: { tokenTtlSec: 600 } });
  const rooms = await Promise.all(Array.from({ length: 10 }, (_, i) => platform.createRoom(`bench-${i}`)));

  async function joinOnce(i: number): Promise<{ ms: number; client: ProtooClient }> {
    const token = await platform.token(rooms[i % rooms.length]!, `user-${i}`);
    const t0 = performance.now();
    const client = await ProtooClient.connect(platform.gatewayUrl, token);
    const rtpCapabilities = await client.request('getRouterRtpCapabilities');
    await client.request('createWebRtcTransport', { producing: true });
    await client.request('createWebRtcTransport', { consuming: true });
    await client.request('join', { displayName: `user-${i}`, rtpCapabilities });
    return { ms: performance.now() - t0, client };
  }

  // Latency: one join at a time.
  const sequential: number[] = [];
  for (let i = 0; i < Math.min(100, total); i++) {
    const { ms, client } = await joinOnce(i);
    sequential.push(ms);
    client.close();
    await client.closed;
  }

  // Throughput: `concurrency` joins in flight; everyone stays until the end (rooms fill up).
  const clients: ProtooClient[] = [];
  const loaded: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const { ms, client } = await joinOnce(1000 + next++);
        loaded.push(ms);
        clients.push(client);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await platform.close();

  const base = summary(await baseline(100));
  const seq = summary(sequential);
  const load = summary(loaded);
  console.log(`join latency, one at a time (n=${sequential.length}): p50 ${seq.p50.toFixed(2)} ms, p99 ${seq.p99.toFixed(2)} ms`);
  console.log(`baseline, bare mediasoup 2×createWebRtcTransport: p50 ${base.p50.toFixed(2)} ms, p99 ${base.p99.toFixed(2)} ms`);
  console.log(`ratio platform/baseline p50: ${(seq.p50 / base.p50).toFixed(2)}`);
  console.log(
    `under load (${total} joins, ${concurrency} concurrent, 10 rooms): ${(total / elapsed).toFixed(0)} joins/s, p50 ${load.p50.toFixed(2)} ms, p99 ${load.p99.toFixed(2)} ms`,
  );
}

await main();
