/**
 * The request latency of adding plain-RTP consumers to one worker with media flowing, as
 * bench/consumers-per-worker.ts adds them (one egress broadcaster, transport + connect + consume
 * per consumer), with the RTP sink on the platform's own event loop (`main`, as that bench had it)
 * or on threads (`threads`): docs/benchmarks.md, "the slowdown past 2,000 consumers".
 * Stops after LIMIT_S seconds (default 150), so `node --cpu-prof` always writes its profile.
 *
 *   node --import tsx bench/consumer-request-latency.ts main|threads [steps=1000,2000,3000]
 */
import { createSocket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { gatewayCall, openAudioBroadcaster } from '../test/helpers/broadcaster.js';
import { AUDIO_PT, AUDIO_SSRC } from '../test/helpers/ffmpeg.js';
import { startEmbedded } from '../test/helpers/platform.js';
import { quantile } from '../test/helpers/large-room.js';
import { startRtpSender, startRtpSink } from '../test/helpers/rtp-load.js';

const mode = process.argv[2] ?? 'main';
setTimeout(() => { console.log('time limit'); process.exit(0); }, Number(process.env.LIMIT_S ?? 150) * 1000).unref();
const steps = (process.argv[3] ?? '1000,2000,3000').split(',').map(Number);
let sinkRtp = 0;
let sinkPort: number;
let ports: number[] = [];
if (mode === 'main') {
  const sink = createSocket('udp4');
  sink.on('message', () => sinkRtp++);
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  sink.setRecvBufferSize(64 * 1024 * 1024);
  sinkPort = sink.address().port;
  ports = [sinkPort];
} else {
  ports = (await startRtpSink(16)).ports;
}
const platform = await startEmbedded({
  log: { level: 'error' },
  agent: { numWorkers: 1, plainRtpMinPort: 40000, plainRtpMaxPort: 59999 },
  nuve: { tokenTtlSec: 3600, rateLimit: { enabled: false } },
  gateway: { rateLimit: { enabled: false }, limits: { maxTransportsPerPeer: 10000, maxConsumersPerPeer: 10000 } },
});
const http = platform.gatewayUrl.replace(/^ws/, 'http');
const call = (method: string, path: string, body?: unknown, secret?: string) => gatewayCall(http, method, path, body, secret);
const roomId = await platform.createRoom('repro');
const { input, producer } = await openAudioBroadcaster(http, await platform.token(roomId, 'src'));
const sender = await startRtpSender({ ip: input.ip, port: input.port, ssrc: AUDIO_SSRC, payloadType: AUDIO_PT });
const egress = await call('POST', '/broadcasters', { token: await platform.token(roomId, 'egress') });
const worker = platform.agent!.pool.all()[0]!.worker;
let have = 0;
for (const n of steps) {
  const lat = { create: [] as number[], connect: [] as number[], consume: [] as number[] };
  const u0 = await worker.getResourceUsage();
  const t0 = Date.now();
  for (; have < n; have++) {
    let t = performance.now();
    const tr = await call('POST', `/broadcasters/${egress.id}/transports`, { comedia: false, rtcpMux: true }, egress.secret);
    lat.create.push(performance.now() - t);
    t = performance.now();
    await call('POST', `/broadcasters/${egress.id}/transports/${tr.id}/connect`, { ip: '127.0.0.1', port: ports[have % ports.length] }, egress.secret);
    lat.connect.push(performance.now() - t);
    t = performance.now();
    await call('POST', `/broadcasters/${egress.id}/transports/${tr.id}/consume`, { producerId: producer.id }, egress.secret);
    lat.consume.push(performance.now() - t);
    if (have % 250 === 249) console.log(`${have + 1} at ${((Date.now() - t0) / 1000).toFixed(1)} s; consume p50 ${quantile(lat.consume.slice(-250), 0.5).toFixed(1)} max ${Math.max(...lat.consume.slice(-250)).toFixed(0)}`);
  }
  const u1 = await worker.getResourceUsage();
  const cpu = (u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime) / (Date.now() - t0);
  const f = (a: number[]) => `p50 ${quantile(a, 0.5).toFixed(1)} p99 ${quantile(a, 0.99).toFixed(1)} max ${Math.max(...a).toFixed(0)}`;
  console.log(`${mode}: to ${n}: create ${f(lat.create)} | connect ${f(lat.connect)} | consume ${f(lat.consume)} | worker CPU while adding ${(cpu * 100).toFixed(0)} % | sink main ${sinkRtp}`);
}
await sender.close();
await platform.close();
process.exit(0);
