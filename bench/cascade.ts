/**
 * What a cascaded stream costs: one audio stream that crosses a PipeTransport
 * link from router A (worker 1) to router B (worker 2), as the platform
 * cascades a room across two media agents, against the same stream consumed
 * locally on router A. Real mediasoup, loopback only, one process.
 *
 *   node --import tsx bench/cascade.ts [--streams 200] [--duration 8] [--warmup 2] [--rounds 3]
 *                                      [--latency-streams 5] [--latency-duration 4] [--pipe-rcvbuf 1048576]
 *
 * Each stream: a producer on router A fed through a PlainTransport by a Node
 * socket sending hand-made Opus-sized RTP (50 packets/s, 172 bytes; the
 * payload's first 8 bytes carry process.hrtime.bigint() at send time), one
 * plain-RTP consumer to a Node receiving socket. Three configurations:
 *   local        consumer on router A;
 *   piped+srtp   A → B over two PipeTransports made and connected by hand as the agents do
 *                (enableSrtp: true, enableRtx: true; pipe consumer on A, pipe producer with the
 *                same id on B), consumer on router B;
 *   piped        the same with enableSrtp: false;
 *   piped+srtp+buf   piped+srtp with `recvBufferSize` (--pipe-rcvbuf bytes, 0 = leave out) on both pipes'
 *                listenInfo (CPU phase only): the default socket buffer (net.core.rmem_default, 208 KiB)
 *                overflows on bursts of a few hundred packets, which NACK/RTX then repairs late.
 * Two phases, each configuration run `rounds` times, alternating (the order rotates per round) so
 * the machine's state weighs on all equally; medians over rounds are reported:
 *   latency      few streams (machine idle): one-way latency = receive hrtime − send hrtime;
 *   CPU          `streams` streams: worker CPU (getResourceUsage, ru_utime + ru_stime) per 1,000
 *                packets delivered; worker 1 only for local, worker 1 + worker 2 for piped.
 * Only packets sent inside the measured window count, sent vs received (loss). Per run it also prints
 * the kernel's UDP receive-buffer drops (/proc/net/snmp RcvbufErrors, machine-wide) and the packets
 * the pipe producer on B NACKed / the pipe consumer on A retransmitted.
 *
 * The ingest PlainTransport gets a 4 MiB receive buffer: here every stream enters through one socket in
 * one burst per 20 ms, which real clients (a transport each) never do, and it must not be what drops.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}
const STREAMS = arg('streams', 200);
const DURATION_S = arg('duration', 8);
const WARMUP_S = arg('warmup', 2);
const ROUNDS = arg('rounds', 3);
const LAT_STREAMS = arg('latency-streams', 5);
const LAT_DURATION_S = arg('latency-duration', 4);
const PIPE_RCVBUF = arg('pipe-rcvbuf', 1 << 20);

const PT = 100;
const SSRC_BASE = 0x11110000;
const PAYLOAD_BYTES = 160;
const TICK_MS = 20; // 50 packets/s per stream, like 20 ms Opus frames
const LISTEN = { protocol: 'udp', ip: '127.0.0.1' } as const;
const mediaCodecs: types.RouterRtpCodecCapability[] = [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }];

type Config = 'local' | 'piped+srtp' | 'piped' | 'piped+srtp+buf';
const LAT_CONFIGS: Config[] = ['local', 'piped+srtp', 'piped'];
const CPU_CONFIGS: Config[] = PIPE_RCVBUF > 0 ? [...LAT_CONFIGS, 'piped+srtp+buf'] : LAT_CONFIGS;

interface Run {
  config: Config;
  sent: number;
  received: number;
  latUs: Float64Array;
  w1Ms: number;
  w2Ms: number;
  nodeMs: number;
  wallMs: number;
  rcvbufErrors: number;
  nacked: number;
  retransmitted: number;
}

/** Machine-wide UDP receive-buffer drops (Linux), or NaN where /proc/net/snmp is not there. */
function udpRcvbufErrors(): number {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
    const names = lines[0]!.split(/\s+/);
    return Number(lines[1]!.split(/\s+/)[names.indexOf('RcvbufErrors')]);
  } catch {
    return NaN;
  }
}

const workerOpts = { logLevel: 'error' as const, rtcMinPort: 40000, rtcMaxPort: 59999 };
const worker1 = await mediasoup.createWorker(workerOpts);
const worker2 = await mediasoup.createWorker(workerOpts);
const cpuMs = async (w: types.Worker) => {
  const u = await w.getResourceUsage();
  return u.ru_utime + u.ru_stime;
};

async function bindSocket(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  s.setRecvBufferSize(16 * 1024 * 1024);
  s.setSendBufferSize(16 * 1024 * 1024);
  return s;
}

/** Offset of the RTP payload (consumers may add header extensions), or -1 for RTCP / garbage. */
function payloadOffset(msg: Buffer): number {
  if (msg.length < 12 || (msg[0]! & 0xc0) !== 0x80) return -1;
  const pt = msg[1]!;
  if (pt >= 192 && pt <= 223) return -1; // RTCP (rtcpMux)
  let off = 12 + (msg[0]! & 0x0f) * 4;
  if (msg[0]! & 0x10) {
    if (msg.length < off + 4) return -1;
    off += 4 + msg.readUInt16BE(off + 2) * 4;
  }
  return msg.length >= off + 8 ? off : -1;
}

async function runOnce(config: Config, streams: number, warmupS: number, durationS: number): Promise<Run> {
  const routerA = await worker1.createRouter({ mediaCodecs });
  const routerB = config === 'local' ? undefined : await worker2.createRouter({ mediaCodecs });
  const sender = await bindSocket();
  const receiver = await bindSocket();

  // Ingest on A: one PlainTransport, one producer per SSRC.
  const input = await routerA.createPlainTransport({ listenInfo: { ...LISTEN, recvBufferSize: 4 << 20 }, rtcpMux: true, comedia: false });
  await input.connect({ ip: '127.0.0.1', port: sender.address().port });
  const producers: types.Producer[] = [];
  for (let i = 0; i < streams; i++) {
    producers.push(
      await input.produce({
        kind: 'audio',
        rtpParameters: {
          codecs: [{ mimeType: 'audio/opus', payloadType: PT, clockRate: 48000, channels: 2 }],
          encodings: [{ ssrc: SSRC_BASE + i }],
        },
      }),
    );
  }

  // Egress: the router the consumers live on (A, or B across the pipe link).
  let egressRouter = routerA;
  const pipeConsumers: types.Consumer[] = [];
  const pipeProducers: types.Producer[] = [];
  if (routerB) {
    const enableSrtp = config !== 'piped';
    const listenInfo = config === 'piped+srtp+buf' ? { ...LISTEN, recvBufferSize: PIPE_RCVBUF } : LISTEN;
    const pipeA = await routerA.createPipeTransport({ listenInfo, enableSrtp, enableRtx: true });
    const pipeB = await routerB.createPipeTransport({ listenInfo, enableSrtp, enableRtx: true });
    await pipeA.connect({ ip: pipeB.tuple.localAddress, port: pipeB.tuple.localPort, srtpParameters: pipeB.srtpParameters });
    await pipeB.connect({ ip: pipeA.tuple.localAddress, port: pipeA.tuple.localPort, srtpParameters: pipeA.srtpParameters });
    for (const producer of producers) {
      const pipeConsumer = await pipeA.consume({ producerId: producer.id });
      pipeConsumers.push(pipeConsumer);
      pipeProducers.push(
        await pipeB.produce({
          id: producer.id,
          kind: pipeConsumer.kind,
          rtpParameters: pipeConsumer.rtpParameters,
          paused: pipeConsumer.producerPaused,
          appData: {},
        }),
      );
    }
    egressRouter = routerB;
  }
  const output = await egressRouter.createPlainTransport({ listenInfo: LISTEN, rtcpMux: true, comedia: false });
  await output.connect({ ip: '127.0.0.1', port: receiver.address().port });
  for (const producer of producers) {
    const consumer = await output.consume({ producerId: producer.id, rtpCapabilities: egressRouter.rtpCapabilities, paused: true });
    await consumer.resume();
  }

  // Window bounds in hrtime; a packet counts iff its send stamp falls inside.
  let winStart = BigInt(Number.MAX_SAFE_INTEGER) * 1_000_000n;
  let winEnd = winStart;
  let received = 0;
  const lat: number[] = [];
  receiver.on('message', (msg) => {
    const now = process.hrtime.bigint();
    const off = payloadOffset(msg);
    if (off < 0) return;
    const sentAt = msg.readBigUInt64BE(off);
    if (sentAt < winStart || sentAt >= winEnd) return;
    received++;
    lat.push(Number(now - sentAt) / 1000);
  });

  // Sender: every 20 ms one packet per stream, stamped just before its send.
  let sent = 0;
  let seq = 0;
  const packets = Array.from({ length: streams }, (_, i) => {
    const p = Buffer.alloc(12 + PAYLOAD_BYTES);
    p[0] = 0x80;
    p[1] = PT;
    p.writeUInt32BE(SSRC_BASE + i, 8);
    p.fill(0x5a, 20);
    return p;
  });
  const port = input.tuple.localPort;
  const timer = setInterval(() => {
    seq = (seq + 1) & 0xffff;
    const ts = (seq * 960) >>> 0;
    for (const p of packets) {
      p.writeUInt16BE(seq, 2);
      p.writeUInt32BE(ts, 4);
      p.writeBigUInt64BE(process.hrtime.bigint(), 12);
      sender.send(p, port, '127.0.0.1');
      sent++;
    }
  }, TICK_MS);

  await sleep(warmupS * 1000);
  winStart = process.hrtime.bigint();
  winEnd = BigInt(Number.MAX_SAFE_INTEGER) * 1_000_000n;
  const sent0 = sent;
  const drops0 = udpRcvbufErrors();
  const node0 = process.cpuUsage();
  const [a0, b0] = await Promise.all([cpuMs(worker1), cpuMs(worker2)]);
  await sleep(durationS * 1000);
  winEnd = process.hrtime.bigint();
  const sentInWindow = sent - sent0;
  const rcvbufErrors = udpRcvbufErrors() - drops0;
  const node1 = process.cpuUsage(node0);
  const [a1, b1] = await Promise.all([cpuMs(worker1), cpuMs(worker2)]);
  const wallMs = Number(winEnd - winStart) / 1e6;
  clearInterval(timer);
  await sleep(300); // stragglers sent inside the window

  // Whole-run NACK / RTX counters of the link (warm-up included).
  let nacked = 0;
  let retransmitted = 0;
  for (const c of pipeConsumers) for (const st of await c.getStats()) retransmitted += st.packetsRetransmitted;
  for (const p of pipeProducers) for (const st of await p.getStats()) nacked += st.nackPacketCount;

  sender.close();
  receiver.close();
  routerA.close();
  routerB?.close();
  return {
    config,
    sent: sentInWindow,
    received,
    latUs: Float64Array.from(lat).sort(),
    w1Ms: a1 - a0,
    w2Ms: b1 - b0,
    nodeMs: (node1.user + node1.system) / 1000,
    wallMs,
    rcvbufErrors,
    nacked,
    retransmitted,
  };
}

const pct = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const mean = (xs: Float64Array) => xs.reduce((a, x) => a + x, 0) / Math.max(1, xs.length);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const latStats = (r: Run) => ({ p50: pct(r.latUs, 50), p90: pct(r.latUs, 90), p99: pct(r.latUs, 99), mean: mean(r.latUs) });
const lossPct = (r: Run) => (100 * (r.sent - r.received)) / Math.max(1, r.sent);
const cpuPerK = (r: Run) => (r.config === 'local' ? r.w1Ms : r.w1Ms + r.w2Ms) / (r.received / 1000);

async function phase(label: string, configs: Config[], streams: number, warmupS: number, durationS: number): Promise<Map<Config, Run[]>> {
  console.log(`\n${label}: ${streams} streams × 50 packets/s, ${warmupS} s warm-up + ${durationS} s measured, ${ROUNDS} rounds`);
  const runs = new Map<Config, Run[]>(configs.map((c) => [c, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
    for (const config of order) {
      const r = await runOnce(config, streams, warmupS, durationS);
      runs.get(config)!.push(r);
      const l = latStats(r);
      console.log(
        `  round ${round + 1} ${config.padEnd(14)} sent ${r.sent} recv ${r.received} loss ${lossPct(r).toFixed(3)} % | ` +
          `kernel drops ${r.rcvbufErrors} NACKed ${r.nacked} RTX ${r.retransmitted} | ` +
          `latency µs p50 ${l.p50.toFixed(0)} p90 ${l.p90.toFixed(0)} p99 ${l.p99.toFixed(0)} mean ${l.mean.toFixed(0)} | ` +
          `CPU ms w1 ${r.w1Ms.toFixed(0)} w2 ${r.w2Ms.toFixed(0)} node ${r.nodeMs.toFixed(0)} (${((100 * r.nodeMs) / r.wallMs).toFixed(0)} %) | ` +
          `${cpuPerK(r).toFixed(2)} ms/1k pkts | load ${loadavg()[0]!.toFixed(2)}`,
      );
    }
  }
  return runs;
}

function latencyTable(runs: Map<Config, Run[]>) {
  const med = (c: Config, k: 'p50' | 'p90' | 'p99' | 'mean') => median(runs.get(c)!.map((r) => latStats(r)[k]));
  const samples = (c: Config) => runs.get(c)!.reduce((a, r) => a + r.latUs.length, 0);
  const configs = [...runs.keys()];
  console.log('| path | p50 µs | p90 µs | p99 µs | mean µs | samples | loss |');
  console.log('|---|---|---|---|---|---|---|');
  for (const c of configs) {
    const loss = median(runs.get(c)!.map(lossPct));
    console.log(`| ${c} | ${med(c, 'p50').toFixed(0)} | ${med(c, 'p90').toFixed(0)} | ${med(c, 'p99').toFixed(0)} | ${med(c, 'mean').toFixed(0)} | ${samples(c)} | ${loss.toFixed(2)} % |`);
  }
  for (const c of configs.filter((x) => x !== 'local')) {
    const d = (k: 'p50' | 'p90' | 'p99' | 'mean') => (med(c, k) - med('local', k)).toFixed(0);
    console.log(`| ${c} − local | ${d('p50')} | ${d('p90')} | ${d('p99')} | ${d('mean')} | | |`);
  }
}

function cpuTable(runs: Map<Config, Run[]>) {
  const med = (c: Config, f: (r: Run) => number) => median(runs.get(c)!.map(f));
  const perK = (c: Config) => med(c, cpuPerK);
  console.log('| path | worker CPU ms / 1k pkts (median) | rounds | worker 1 | worker 2 | Node process | loss | kernel drops / NACKed / RTX per run |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const c of runs.keys()) {
    const all = runs.get(c)!.map(cpuPerK);
    const pctOf = (f: (r: Run) => number) => `${med(c, (r) => (100 * f(r)) / r.wallMs).toFixed(1)} %`;
    console.log(
      `| ${c} | ${perK(c).toFixed(3)} | ${Math.min(...all).toFixed(3)} – ${Math.max(...all).toFixed(3)} | ` +
        `${pctOf((r) => r.w1Ms)} | ${pctOf((r) => r.w2Ms)} | ${pctOf((r) => r.nodeMs)} | ${med(c, lossPct).toFixed(3)} % | ` +
        `${med(c, (r) => r.rcvbufErrors)} / ${med(c, (r) => r.nacked)} / ${med(c, (r) => r.retransmitted)} |`,
    );
  }
  const ratios = [...runs.keys()].filter((c) => c !== 'local').map((c) => `${c} / local ×${(perK(c) / perK('local')).toFixed(2)}`);
  // SRTP's own cost without the retransmissions that the default buffer's drops cause, where measured.
  const srtp: Config = runs.has('piped+srtp+buf') ? 'piped+srtp+buf' : 'piped+srtp';
  console.log(`${ratios.join('; ')}; SRTP on the link (${srtp} − piped): +${(perK(srtp) - perK('piped')).toFixed(3)} ms / 1k pkts`);
}

console.log(`mediasoup ${mediasoup.version}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
{
  // What an idle worker burns (its timers), to read the per-packet figures against.
  const [a0, b0] = await Promise.all([cpuMs(worker1), cpuMs(worker2)]);
  await sleep(2000);
  const [a1, b1] = await Promise.all([cpuMs(worker1), cpuMs(worker2)]);
  console.log(`idle workers, 2 s: worker 1 ${a1 - a0} ms, worker 2 ${b1 - b0} ms of CPU`);
}
const latRuns = await phase('latency', LAT_CONFIGS, LAT_STREAMS, 1, LAT_DURATION_S);
const cpuRuns = await phase('CPU', CPU_CONFIGS, STREAMS, WARMUP_S, DURATION_S);

console.log(`\nOne-way latency, ${LAT_STREAMS} streams (median of ${ROUNDS} rounds' percentiles):`);
latencyTable(latRuns);
console.log(`\nOne-way latency under load, ${STREAMS} streams (includes the Node sender's 20 ms bursts):`);
latencyTable(cpuRuns);
console.log(`\nWorker CPU, ${STREAMS} streams = ${STREAMS * 50} packets/s:`);
cpuTable(cpuRuns);

worker1.close();
worker2.close();
