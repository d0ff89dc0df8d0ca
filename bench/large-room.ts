/**
 * Listeners per room (issue 20): one audio publisher (Node plain-RTP sender, Opus-sized, 50
 * packets/s) and plain-RTP listeners added in steps through the broadcaster HTTP API, each with its
 * own token and broadcaster (`listener: true`), on one agent with two workers. Per step: delivery
 * (packets per listener's SSRC at the sink / packets sent), join latency of that step's listeners
 * (POST /broadcasters: token consumed, placed, in the room) and worker CPU, side by side with the
 * same consumer layout on bare mediasoup (same workers, routers and pipeToRouter) set up beside it.
 * Worker CPU is measured in alternating windows (`--rounds`, each side first in every other round;
 * only the measured side's publisher sends) and reported as each side's median.
 *
 * `--control` puts bare mediasoup in both columns: the ratio two identical sides get here.
 *
 *   node --import tsx bench/large-room.ts [steps=1000,2000,3000,4000,5000,6000] [--concurrency 1] [--rounds 3] [--window 4000] [--control]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { AUDIO_PT, AUDIO_SSRC, audioRtpParameters } from '../test/helpers/ffmpeg.js';
import { measureDelivery, quantile, startLargeRoom } from '../test/helpers/large-room.js';
import { type RtpSender, startRtpSender, startRtpSink } from '../test/helpers/rtp-load.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    concurrency: { type: 'string', default: '1' },
    window: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '3' },
    control: { type: 'boolean', default: false },
  },
});
const steps = (positionals[0] ?? '1000,2000,3000,4000,5000,6000').split(',').map(Number);
const concurrency = Number(values.concurrency);
const windowMs = Number(values.window);
const rounds = Number(values.rounds);
/** Listeners on one router of the room before new ones go to the other worker's. */
const ROUTER_CONSUMER_LIMIT = 1500;
const SINK_SOCKETS = 32;

type Usage = { ru_utime: number; ru_stime: number };
/** Per worker: CPU ms so far, in user space and in the kernel (its sends, loopback delivery to the sink included). */
const cpuMs = async (workers: readonly types.Worker[]) =>
  (await Promise.all(workers.map((w) => w.getResourceUsage()))).map((u: Usage) => ({ user: u.ru_utime, kernel: u.ru_stime }));

interface Row {
  listeners: number;
  perWorker: number[];
  delivery: { mean: number; p1: number; min: number };
  /** Worker CPU: the median of the step's windows. */
  cpu: number;
  /** Each window's worker CPU, in the order measured. */
  cpus: number[];
  /** The kernel's share of the worker CPU, median of the windows. */
  kernel: number;
  join?: { p50: number; p99: number };
  /** Platform: join + transport + connect + consume answered; bare: createPlainTransport + connect + consume. */
  setup: { p50: number; p99: number };
}

const stats = (ratios: number[]) => ({
  mean: ratios.reduce((a, b) => a + b, 0) / ratios.length,
  p1: quantile(ratios, 0.01),
  min: Math.min(...ratios),
});

/** Worker CPU (sum over workers, 1 = one core) over one delivery window, its kernel share, and the window's delivery ratios. */
async function measure(workers: readonly types.Worker[], delivery: () => Promise<number[]>) {
  const a = { cpu: await cpuMs(workers), at: Date.now() };
  const ratios = await delivery();
  const z = { cpu: await cpuMs(workers), at: Date.now() };
  const user = z.cpu.reduce((s, ms, i) => s + (ms.user - a.cpu[i]!.user), 0);
  const kernel = z.cpu.reduce((s, ms, i) => s + (ms.kernel - a.cpu[i]!.kernel), 0);
  return { ratios, cpu: (user + kernel) / (z.at - a.at), kernel: kernel / (user + kernel) };
}

/**
 * One side of the comparison: its workers and its publisher. Both sides stay up for the whole run
 * and only the measured one's publisher sends, so the two are measured in alternating windows
 * under the same background load (on a shared machine, a phase after phase comparison measured
 * mostly what the rest of the machine did meanwhile).
 */
interface Side {
  workers(): readonly types.Worker[];
  sender: RtpSender;
  delivery(windowMs: number): Promise<number[]>;
}

let sending: Side | undefined;
/** Only `side`'s publisher sends from now on. */
async function only(side: Side, sides: readonly Side[]): Promise<void> {
  if (sending === side) return;
  for (const s of sides) if (s !== side) await s.sender.pause();
  await side.sender.resume();
  sending = side;
}

/** Bare mediasoup with the platform's layout: as many consumers on each worker as the platform has. */
async function openBare(minPort = 50000) {
  const codecs: types.RouterRtpCodecCapability[] = [{ kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 }];
  const workers = await Promise.all([0, 1].map(() => mediasoup.createWorker({ logLevel: 'error', rtcMinPort: minPort, rtcMaxPort: minPort + 9999 })));
  const routers = await Promise.all(workers.map((w) => w.createRouter({ mediaCodecs: codecs })));
  const listen = { protocol: 'udp', ip: '127.0.0.1' } as const;
  const input = await routers[0]!.createPlainTransport({ listenInfo: listen, comedia: true, rtcpMux: true });
  const producer = await input.produce({ kind: 'audio', rtpParameters: audioRtpParameters as types.RtpParameters });
  const sender = await startRtpSender({ ip: '127.0.0.1', port: input.tuple.localPort, ssrc: AUDIO_SSRC, payloadType: AUDIO_PT });
  await sender.pause();
  const sink = await startRtpSink(SINK_SOCKETS);
  const ssrcs: { ssrc: number }[] = [];
  const have = [0, 0];
  let piped = false;
  const side: Side = {
    workers: () => workers,
    sender,
    delivery: async (windowMs) => [...(await measureDelivery(sender, sink, ssrcs, windowMs)).values()],
  };
  return {
    side,
    have,
    /** Consumers added until each worker has `perWorker[i]`; each one's setup time (ms). */
    async fill(perWorker: number[]): Promise<number[]> {
      const setup: number[] = [];
      for (const [w, want] of perWorker.entries()) {
        if (w > 0 && want > 0 && !piped) {
          await routers[0]!.pipeToRouter({ producerId: producer.id, router: routers[w]! });
          piped = true;
        }
        for (; have[w]! < want; have[w]!++) {
          const started = performance.now();
          const t = await routers[w]!.createPlainTransport({ listenInfo: listen, rtcpMux: true, comedia: false });
          await t.connect({ ip: '127.0.0.1', port: sink.ports[ssrcs.length % sink.ports.length]! });
          const c = await t.consume({ producerId: producer.id, rtpCapabilities: routers[w]!.rtpCapabilities });
          ssrcs.push({ ssrc: c.rtpParameters.encodings![0]!.ssrc! });
          setup.push(performance.now() - started);
        }
      }
      return setup;
    },
    async close() {
      await sender.close();
      await sink.close();
      for (const w of workers) w.close();
    },
  };
}

const median = (xs: number[]) => quantile(xs, 0.5);
const p50p99 = (xs: number[]) => ({ p50: quantile(xs, 0.5), p99: quantile(xs, 0.99) });

/** `rounds` windows per side, alternating (each side first in every other round): each side's delivery and median worker CPU. */
async function alternate(sides: readonly Side[]) {
  const windows = new Map<Side, { ratios: number[]; cpu: number; kernel: number }[]>(sides.map((s) => [s, []]));
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 === 0 ? sides : [...sides].reverse()) {
      await only(side, sides);
      await new Promise((res) => setTimeout(res, 1500));
      windows.get(side)!.push(await measure(side.workers(), () => side.delivery(windowMs)));
    }
  }
  return (side: Side) => {
    const ws = windows.get(side)!;
    const cpus = ws.map((w) => w.cpu);
    return { delivery: stats(ws.flatMap((w) => w.ratios)), cpu: median(cpus), cpus, kernel: median(ws.map((w) => w.kernel)) };
  };
}

function printRounds(ours: Row, bare: Row): void {
  console.log(`  bare ÷ platform worker CPU by round: ${ours.cpus.map((c, i) => (bare.cpus[i]! / c).toFixed(2)).join(', ')}`);
}

/**
 * `--control`: bare mediasoup in the platform's column too (its own workers, the platform's placement:
 * up to ROUTER_CONSUMER_LIMIT on the first worker), measured in the same alternation: how far apart
 * two identical sides come out on this host, i.e. what the bench can tell.
 */
async function control(): Promise<{ ours: Row[]; bare: Row[] }> {
  const a = await openBare(40000);
  const b = await openBare(50000);
  const sides = [a.side, b.side];
  const ours: Row[] = [];
  const theirs: Row[] = [];
  try {
    for (const n of steps) {
      const first = Math.min(n, ROUTER_CONSUMER_LIMIT);
      await only(a.side, sides);
      const setupA = await a.fill([first, n - first]);
      await only(b.side, sides);
      const setupB = await b.fill([first, n - first]);
      const summary = await alternate(sides);
      const row = (setup: number[], have: number[], side: Side): Row => ({
        listeners: n,
        perWorker: [...have],
        ...summary(side),
        setup: p50p99(setup),
      });
      ours.push(row(setupA, a.have, a.side));
      theirs.push(row(setupB, b.have, b.side));
      print('bare (control, platform column)', ours.at(-1)!);
      print('bare', theirs.at(-1)!);
      printRounds(ours.at(-1)!, theirs.at(-1)!);
    }
  } finally {
    await a.close();
    await b.close();
  }
  return { ours, bare: theirs };
}

async function run(): Promise<{ ours: Row[]; bare: Row[] }> {
  const room = await startLargeRoom({
    config: {
      log: { level: 'error' },
      agent: { numWorkers: 2, plainRtpMinPort: 40000, plainRtpMaxPort: 49999, routerConsumerLimit: ROUTER_CONSUMER_LIMIT },
      nuve: { tokenTtlSec: 3600, rateLimit: { enabled: false } },
      // Past ~2,500 consumers a worker answers its channel after each packet's fan-out pass (docs/benchmarks.md):
      // the listeners' setup time is measured, not cut off at the default 5 s agent request timeout.
      gateway: { rateLimit: { enabled: false }, agentRequestTimeoutMs: 30_000 },
    },
    quietListeners: true,
    sinkSockets: SINK_SOCKETS,
  });
  const platform: Side = {
    workers: () => room.platform.agent!.pool.all().map((s) => s.worker),
    sender: room.sender,
    delivery: async (windowMs) => [...(await room.delivery(windowMs)).values()],
  };
  sending = platform;
  const bare = await openBare();
  const sides = [platform, bare.side];
  const ours: Row[] = [];
  const theirs: Row[] = [];
  try {
    for (const n of steps) {
      // Each side's listeners are set up with its own media flowing, the other side silent.
      await only(platform, sides);
      let added;
      try {
        added = await room.addListeners(n - room.listeners.length, concurrency);
      } catch (err) {
        console.log(`platform: could not add listeners beyond ${room.listeners.length}: ${(err as Error).message}`);
        break;
      }
      const perWorker = room.platform.agent!.pool.all().map((s) => s.consumers);
      await only(bare.side, sides);
      const bareSetup = await bare.fill(perWorker);
      const summary = await alternate(sides);
      const join = added.map((l) => l.joinMs);
      const ready = added.map((l) => l.readyMs);
      const row: Row = {
        listeners: n,
        perWorker,
        ...summary(platform),
        join: p50p99(join),
        setup: p50p99(ready),
      };
      const bareRow: Row = { listeners: n, perWorker: [...bare.have], ...summary(bare.side), setup: p50p99(bareSetup) };
      ours.push(row);
      theirs.push(bareRow);
      print('platform', row);
      const calls = Object.keys(added[0]!.calls) as (keyof (typeof added)[0]['calls'])[];
      console.log(`  p50 / p99 by call: ${calls.map((k) => `${k} ${quantile(added.map((l) => l.calls[k]), 0.5).toFixed(1)} / ${quantile(added.map((l) => l.calls[k]), 0.99).toFixed(1)}`).join(', ')} ms`);
      print('bare', bareRow);
      printRounds(row, bareRow);
      if (row.delivery.mean < 0.95) break;
    }
  } finally {
    await bare.close();
    await room.close();
  }
  return { ours, bare: theirs };
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
function print(label: string, r: Row): void {
  const join = `${r.join ? `, join p50 ${r.join.p50.toFixed(1)} ms p99 ${r.join.p99.toFixed(1)} ms` : ''}, setup p50 ${r.setup.p50.toFixed(1)} ms p99 ${r.setup.p99.toFixed(1)} ms`;
  console.log(
    `${label}: ${r.listeners} listeners (per worker ${r.perWorker.join('/')}): delivery mean ${pct(r.delivery.mean)} p1 ${pct(r.delivery.p1)} ` +
      `min ${pct(r.delivery.min)}, worker CPU ${pct(r.cpu)} (windows ${r.cpus.map(pct).join(', ')}; in the kernel ${pct(r.kernel)})${join}`,
  );
}

const { ours, bare } = values.control ? await control() : await run();
const carried = (rows: Row[]) => rows.filter((r) => r.delivery.mean >= 0.99).reduce((m, r) => Math.max(m, r.listeners), 0);
console.log(`\n${values.control ? 'CONTROL (bare in both columns), ' : ''}steps ${steps.join(',')}, join concurrency ${concurrency}, routerConsumerLimit ${ROUTER_CONSUMER_LIMIT}, ${rounds} rounds of ${windowMs} ms windows`);
console.log(
  '| listeners (per worker) | delivery mean / p1: platform | bare | join p50 / p99 (ms) | setup p50 / p99 (ms): platform | bare | worker CPU platform / bare | CPU per 1,000: platform / bare (bare ÷ platform) |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const [i, o] of ours.entries()) {
  const b = bare[i];
  if (!b) continue;
  const [po, pb] = [(o.cpu / o.listeners) * 1000, (b.cpu / b.listeners) * 1000];
  console.log(
    `| ${o.listeners.toLocaleString('en')} (${o.perWorker.join('/')}) | ${pct(o.delivery.mean)} / ${pct(o.delivery.p1)} | ${pct(b.delivery.mean)} / ${pct(b.delivery.p1)} | ` +
      `${o.join ? `${o.join.p50.toFixed(1)} / ${o.join.p99.toFixed(1)}` : '–'} | ${o.setup.p50.toFixed(1)} / ${o.setup.p99.toFixed(1)} | ${b.setup.p50.toFixed(1)} / ${b.setup.p99.toFixed(1)} | ${pct(o.cpu)} / ${pct(b.cpu)} | ${pct(po)} / ${pct(pb)} (${(pb / po).toFixed(2)}) |`,
  );
}
console.log(`listeners carried at ≥ 99 % mean delivery: platform ${carried(ours)}, bare ${carried(bare)}`);
