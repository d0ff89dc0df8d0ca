/**
 * How many audio consumers one mediasoup worker carries with media flowing
 * before it falls behind: one Opus stream from ffmpeg, consumers added in
 * steps, each step measured over a few seconds as (RTP packets arriving at
 * the receiving socket) / (packets the producer received × consumers). Through the platform
 * (broadcaster ingest + plain-RTP egress consumers via the gateway's HTTP
 * API, one worker) and through a bare mediasoup script on the same machine.
 *
 *   node --import tsx bench/consumers-per-worker.ts [steps=200,400,800,1200,1600,2000]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { gatewayCall, openAudioBroadcaster } from '../test/helpers/broadcaster.js';
import { AUDIO_PT, AUDIO_SSRC, audioRtpParameters } from '../test/helpers/ffmpeg.js';
import { startEmbedded } from '../test/helpers/platform.js';

const steps = (process.argv[2] ?? '200,400,800,1200,1600,2000').split(',').map(Number);

/** A sink for all consumers' RTP: counts RTP datagrams (not RTCP) as they arrive and drops them. */
let sinkRtp = 0;
const sink = createSocket('udp4');
sink.on('message', (msg) => {
  const second = msg[1] ?? 0;
  if (second < 192 || second > 223) sinkRtp++;
});
await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
sink.setRecvBufferSize(64 * 1024 * 1024);
const sinkPort = sink.address().port;

function opusFfmpeg(ip: string, port: number, rtcpPort: number): ChildProcess {
  return spawn('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-c:a', 'libopus', '-ac', '2', '-ab', '64k', '-payload_type', String(AUDIO_PT), '-ssrc', String(AUDIO_SSRC),
    '-f', 'rtp', `rtp://${ip}:${port}?rtcpport=${rtcpPort}&pkt_size=1200`,
  ], { stdio: 'ignore' });
}

interface Target {
  addConsumers(n: number): Promise<void>;
  producerPackets(): Promise<number>;
  workerCpuMs(): Promise<number>;
  close(): Promise<void>;
}

const sum = (stats: { type: string; packetCount: number }[], type: string) =>
  stats.filter((s) => s.type === type).reduce((a, s) => a + s.packetCount, 0);

async function bare(): Promise<Target> {
  const worker = await mediasoup.createWorker({ logLevel: 'error', rtcMinPort: 40000, rtcMaxPort: 59999 });
  const router = await worker.createRouter({ mediaCodecs: [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }] });
  const input = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, comedia: true, rtcpMux: false });
  const producer = await input.produce({ kind: 'audio', rtpParameters: audioRtpParameters as types.RtpParameters });
  const ffmpeg = opusFfmpeg('127.0.0.1', input.tuple.localPort, input.rtcpTuple!.localPort);
  return {
    async addConsumers(n) {
      for (let i = 0; i < n; i++) {
        const t = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: false });
        await t.connect({ ip: '127.0.0.1', port: sinkPort });
        await t.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities });
      }
    },
    producerPackets: async () => sum((await producer.getStats()) as never, 'inbound-rtp'),
    workerCpuMs: async () => {
      const u = await worker.getResourceUsage();
      return u.ru_utime + u.ru_stime;
    },
    async close() {
      ffmpeg.kill('SIGKILL');
      worker.close();
    },
  };
}

async function platformTarget(): Promise<Target> {
  const platform = await startEmbedded({
    agent: { numWorkers: 1, plainRtpMinPort: 40000, plainRtpMaxPort: 59999 },
    nuve: { tokenTtlSec: 3600, rateLimit: { enabled: false } },
    // One egress broadcaster holds every consumer and its transport, far past a client's limits.
    gateway: { rateLimit: { enabled: false }, limits: { maxTransportsPerPeer: 10000, maxConsumersPerPeer: 10000 } },
  });
  const http = platform.gatewayUrl.replace(/^ws/, 'http');
  const call = (method: string, path: string, body?: unknown, secret?: string) => gatewayCall(http, method, path, body, secret);
  const roomId = await platform.createRoom('capacity');
  const { source, input, producer } = await openAudioBroadcaster(http, await platform.token(roomId, 'ffmpeg'), { rtcpMux: false });
  const ffmpeg = opusFfmpeg(input.ip, input.port, input.rtcpPort);
  const egress = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'egress') });
  const worker = platform.agent!.pool.all()[0]!.worker;
  return {
    async addConsumers(n) {
      for (let i = 0; i < n; i++) {
        const t = await call('POST', `/broadcasters/${egress.id}/transports`, { comedia: false, rtcpMux: true }, egress.secret);
        await call('POST', `/broadcasters/${egress.id}/transports/${t.id}/connect`, { ip: '127.0.0.1', port: sinkPort }, egress.secret);
        await call('POST', `/broadcasters/${egress.id}/transports/${t.id}/consume`, { producerId: producer.id }, egress.secret);
      }
    },
    producerPackets: async () => sum(await call('GET', `/broadcasters/${source.id}/producers/${producer.id}/stats`, undefined, source.secret), 'inbound-rtp'),
    workerCpuMs: async () => {
      const u = await worker.getResourceUsage();
      return u.ru_utime + u.ru_stime;
    },
    async close() {
      ffmpeg.kill('SIGKILL');
      await platform.close();
    },
  };
}

/** Per step: delivery ratio and worker CPU, the better of two 4 s windows. */
async function run(label: string, target: Target): Promise<{ consumers: number; delivery: number; cpu: number }[]> {
  const rows = [];
  let have = 0;
  await sleep(2000);
  for (const n of steps) {
    try {
      await target.addConsumers(n - have);
    } catch (err) {
      console.log(`${label}: could not add consumers beyond ${have}: ${(err as Error).message}`);
      break;
    }
    have = n;
    await sleep(1500);
    // Delivered packets are counted where they arrive (one sink for every consumer), at the moment the
    // producer's counter is read, so no polling of N consumers skews the window.
    const sample = async () => {
      const produced = await target.producerPackets();
      return { consumed: sinkRtp, produced, cpu: await target.workerCpuMs(), at: Date.now() };
    };
    // Two 4-second windows; the better one counts (a receiver-side hiccup should not end the run).
    const windows = [];
    for (let w = 0; w < 2; w++) {
      const a = await sample();
      await sleep(4000);
      const z = await sample();
      windows.push({ delivery: (z.consumed - a.consumed) / Math.max(1, (z.produced - a.produced) * n), cpu: (z.cpu - a.cpu) / (z.at - a.at) });
    }
    const { delivery, cpu } = windows.reduce((x, y) => (y.delivery > x.delivery ? y : x));
    rows.push({ consumers: n, delivery, cpu });
    console.log(`${label}: ${n} consumers: delivery ${(delivery * 100).toFixed(1)} %, worker CPU ${(cpu * 100).toFixed(0)} %`);
    if (delivery < 0.95) break;
  }
  await target.close();
  return rows;
}

// A step counts as carried at ≥95 % delivery (the Node sink itself may drop a little at high rates);
// the worker CPU per consumer is the steadier figure.
const capacity = (rows: { consumers: number; delivery: number }[]) =>
  rows.filter((r) => r.delivery >= 0.95).reduce((m, r) => Math.max(m, r.consumers), 0);
const cpuPer1000 = (rows: { consumers: number; cpu: number; delivery: number }[]) => {
  const carried = rows.filter((r) => r.delivery >= 0.95);
  const last = carried[carried.length - 1];
  return last ? (last.cpu / last.consumers) * 1000 : NaN;
};

const bareRows = await run('bare mediasoup', await bare());
const ourRows = await run('platform', await platformTarget());
sink.close();
const [b, o] = [capacity(bareRows), capacity(ourRows)];
const [bc, oc] = [cpuPer1000(bareRows), cpuPer1000(ourRows)];
console.log(`carried with media flowing (largest step ${steps[steps.length - 1]}): platform ${o}, bare ${b}, ratio ${(o / b).toFixed(2)}`);
console.log(
  `worker CPU per 1000 audio consumers: platform ${(oc * 100).toFixed(1)} %, bare ${(bc * 100).toFixed(1)} %, ratio ${(oc / bc).toFixed(2)}; ` +
    `projected at 100 % of one worker: platform ${Math.round(1000 / oc)}, bare ${Math.round(1000 / bc)}`,
);
