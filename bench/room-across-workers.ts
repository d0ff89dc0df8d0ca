/**
 * One room across two workers: one Opus-shaped RTP stream (50 packets/s from
 * this process), plain-RTP listeners added in steps. Through the platform
 * (numWorkers 2, agent.routerConsumerLimit = LIMIT: the first LIMIT listeners
 * on the home router, the rest on a router of the other worker, linked by
 * pipeToRouter), and through bare mediasoup with the same layout (two
 * workers, the second router fed by pipeToRouter) in the same run. Per step:
 * delivery (RTP arriving at the listeners' sink / packets sent × listeners)
 * and the two workers' CPU, the better of two 4 s windows.
 *
 *   node --import tsx bench/room-across-workers.ts [limit=1000] [steps=500,1000,1500,2000]
 */
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { mediaCodecs } from '../src/agent/media-codecs.js';
import { gatewayCall } from '../test/helpers/broadcaster.js';
import { AUDIO_PT, AUDIO_SSRC, audioRtpParameters } from '../test/helpers/ffmpeg.js';
import { startEmbedded } from '../test/helpers/platform.js';

const limit = Number(process.argv[2] ?? 1000);
const steps = (process.argv[3] ?? '500,1000,1500,2000').split(',').map(Number);

/** One sink for every listener's RTP: counts RTP (not RTCP) datagrams. */
let sinkRtp = 0;
const sink = createSocket('udp4');
sink.on('message', (msg) => {
  const second = msg[1] ?? 0;
  if (second < 192 || second > 223) sinkRtp++;
});
await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
sink.setRecvBufferSize(64 * 1024 * 1024);
const sinkPort = sink.address().port;

/** 20 ms Opus-sized RTP packets to a comedia PlainTransport (rtcp-mux). */
function rtpSender(port: number): { sent(): number; stop(): void } {
  const socket = createSocket('udp4');
  let seq = 0;
  const timer = setInterval(() => {
    const packet = Buffer.alloc(12 + 160, 0xab);
    packet[0] = 0x80;
    packet[1] = AUDIO_PT;
    packet.writeUInt16BE(seq & 0xffff, 2);
    packet.writeUInt32BE((seq * 960) >>> 0, 4);
    packet.writeUInt32BE(AUDIO_SSRC, 8);
    seq++;
    socket.send(packet, port, '127.0.0.1');
  }, 20);
  return { sent: () => seq, stop: () => (clearInterval(timer), socket.close()) };
}

interface Target {
  addListeners(n: number): Promise<void>;
  sent(): number;
  workersCpuMs(): Promise<number>;
  close(): Promise<void>;
}

const cpuMs = async (workers: types.Worker[]) =>
  (await Promise.all(workers.map((w) => w.getResourceUsage()))).reduce((s, u) => s + u.ru_utime + u.ru_stime, 0);

async function bare(): Promise<Target> {
  const workers = [
    await mediasoup.createWorker({ logLevel: 'error', rtcMinPort: 40000, rtcMaxPort: 49999 }),
    await mediasoup.createWorker({ logLevel: 'error', rtcMinPort: 50000, rtcMaxPort: 59999 }),
  ];
  const routers = await Promise.all(workers.map((w) => w.createRouter({ mediaCodecs })));
  const [home, second] = routers as [types.Router, types.Router];
  const input = await home.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, comedia: true, rtcpMux: true });
  const producer = await input.produce({ kind: 'audio', rtpParameters: audioRtpParameters as types.RtpParameters });
  const sender = rtpSender(input.tuple.localPort);
  let listeners = 0;
  let piped = false;
  return {
    async addListeners(n) {
      for (let i = 0; i < n; i++, listeners++) {
        const router = listeners < limit ? home : second;
        if (router === second && !piped) {
          await home.pipeToRouter({ producerId: producer.id, router: second });
          piped = true;
        }
        const t = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: false });
        await t.connect({ ip: '127.0.0.1', port: sinkPort });
        await t.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities });
      }
    },
    sent: sender.sent,
    workersCpuMs: () => cpuMs(workers),
    async close() {
      sender.stop();
      for (const w of workers) w.close();
    },
  };
}

async function platformTarget(): Promise<Target> {
  const platform = await startEmbedded({
    agent: { numWorkers: 2, routerConsumerLimit: limit, plainRtpMinPort: 40000, plainRtpMaxPort: 59999 },
    nuve: { tokenTtlSec: 3600, rateLimit: { enabled: false } },
    gateway: { rateLimit: { enabled: false } },
  });
  const http = platform.gatewayUrl.replace(/^ws/, 'http');
  const call = (method: string, path: string, body?: unknown, secret?: string) => gatewayCall(http, method, path, body, secret);
  const roomId = await platform.createRoom('across-workers');
  const source = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'speaker') });
  const input = await call('POST', `/broadcasters/${source.id}/transports`, { comedia: true, rtcpMux: true }, source.secret);
  const producer = await call('POST', `/broadcasters/${source.id}/transports/${input.id}/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, source.secret);
  const sender = rtpSender(input.port);
  const workers = platform.agent!.pool.all().map((s) => s.worker);
  let listeners = 0;
  return {
    async addListeners(n) {
      // Each listener its own peer (a broadcaster with one PlainTransport): peers, not transports, are placed.
      for (let i = 0; i < n; i++, listeners++) {
        const bc = await call('POST', '/broadcasters', { token: await platform.token(roomId, `l${listeners}`) });
        const t = await call('POST', `/broadcasters/${bc.id}/transports`, { comedia: false, rtcpMux: true }, bc.secret);
        await call('POST', `/broadcasters/${bc.id}/transports/${t.id}/connect`, { ip: '127.0.0.1', port: sinkPort }, bc.secret);
        await call('POST', `/broadcasters/${bc.id}/transports/${t.id}/consume`, { producerId: producer.id }, bc.secret);
      }
    },
    sent: sender.sent,
    workersCpuMs: () => cpuMs(workers),
    async close() {
      sender.stop();
      const d = await platform.agent!.dump();
      console.log(`platform: agent dump at the end: ${d.routers} routers, ${d.consumers} consumers (pipes included)`);
      await platform.close();
    },
  };
}

async function run(label: string, target: Target): Promise<{ n: number; delivery: number; cpu: number }[]> {
  const rows = [];
  let have = 0;
  for (const n of steps) {
    const t0 = Date.now();
    await target.addListeners(n - have);
    have = n;
    const joinMs = Date.now() - t0;
    await sleep(1500);
    const sample = async () => ({ got: sinkRtp, sent: target.sent(), cpu: await target.workersCpuMs(), at: Date.now() });
    const windows = [];
    for (let w = 0; w < 2; w++) {
      const a = await sample();
      await sleep(4000);
      const z = await sample();
      windows.push({ delivery: (z.got - a.got) / Math.max(1, (z.sent - a.sent) * n), cpu: (z.cpu - a.cpu) / (z.at - a.at) });
    }
    const { delivery, cpu } = windows.reduce((x, y) => (y.delivery > x.delivery ? y : x));
    rows.push({ n, delivery, cpu });
    console.log(`${label}: ${n} listeners (+${joinMs} ms to add): delivery ${(delivery * 100).toFixed(1)} %, two workers' CPU ${(cpu * 100).toFixed(0)} % of a core`);
  }
  await target.close();
  return rows;
}

const bareRows = await run('bare mediasoup', await bare());
const ourRows = await run('platform', await platformTarget());
sink.close();
for (const [i, o] of ourRows.entries()) {
  const b = bareRows[i]!;
  console.log(
    `${o.n} listeners (limit ${limit}): delivery platform ${(o.delivery * 100).toFixed(1)} % / bare ${(b.delivery * 100).toFixed(1)} %; ` +
      `worker CPU per 1000 listeners platform ${((o.cpu / o.n) * 100_000).toFixed(1)} % / bare ${((b.cpu / b.n) * 100_000).toFixed(1)} %, ratio bare/platform ${(b.cpu / o.cpu).toFixed(2)}`,
  );
}
