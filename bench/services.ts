/**
 * Service calls, ours and Moleculer's side by side in one run, on one private NATS:
 *
 *   node --import tsx bench/services.ts [--calls 30000] [--concurrency 64[,256,…]] [--connections 8] [--rounds 2]
 *
 * With several concurrency levels, each level's rounds run in turn (c2s sockets: `--connections`, or one per
 * 8 calls in flight when levels are several), then each system's peak throughput over the levels is compared:
 * at 64 in flight the loop is bound by latency, further up by CPU.
 *
 * (Moleculer: `npm ci --prefix bench/peers` first.) Every part in its own OS process, as deployed:
 *   ours  — the platform (`all`: Nuve for the session tokens, the gateway's edge) and one service
 *           instance (`bench.empty`, schema `{}`, external) started with the service SDK;
 *           c2s: `--connections` WebSockets with session tokens (scope rpc), protoo `call` requests,
 *           `--concurrency` in flight over them; s2s: this process's ServiceCaller → the instance.
 *   peer  — bench/services-moleculer.ts: a Moleculer service, a `ws` gateway in front of a broker,
 *           and a caller broker here (what favours it is listed there).
 * Rounds alternate ours and the peer so that a disturbance of the shared machine hits both.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { z } from 'zod';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { BusServiceDiscovery } from '../src/core/service-bus-discovery.js';
import { ServiceCaller } from '../src/core/service-caller.js';
import type { CallerIdentity } from '../src/core/service-protocol.js';
import { NuveClient } from '../src/server/index.js';
import { defineService, startService } from '../src/services/index.js';
import { startNats } from '../test/helpers/services.js';
import { EmbeddedProcess } from './embedded-process.js';
import {
  type LoadOptions,
  type LoadResult,
  drive,
  formatResult,
  runMoleculerC2s,
  runMoleculerS2s,
  sendCoalesced,
  startMoleculerPeer,
} from './services-moleculer.js';

const THIS_FILE = fileURLToPath(import.meta.url);

const benchService = defineService({
  name: 'bench',
  version: '1.0.0',
  methods: { empty: { input: z.object({}).strict(), access: 'external', handler: () => null } },
});

const { values: args } = parseArgs({
  options: {
    serve: { type: 'string' },
    calls: { type: 'string', default: '30000' },
    concurrency: { type: 'string', default: '64' },
    connections: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '2' },
  },
});

if (args.serve) {
  // The service instance's own process.
  const running = await startService(benchService, { config: { log: { level: 'warn', format: 'json' }, bus: { driver: 'nats', natsUrl: args.serve } } });
  process.once('SIGTERM', () => void running.stop().then(() => process.exit(0)));
  process.stdout.write('service ready\n');
} else {
  await main();
}

/** The peer's load driver after a warm-up of 2,000 calls (the first calls pay for connections and JIT on every side). */
async function warmedUp(options: LoadOptions, call: (worker: number) => Promise<boolean>): Promise<LoadResult> {
  await drive({ calls: Math.min(2000, options.calls), concurrency: options.concurrency }, call);
  return drive(options, call);
}

async function startServiceProcess(natsUrl: string): Promise<ChildProcess> {
  // BENCH_CPU_PROF_DIR: the service process writes a V8 CPU profile there (as the role processes do).
  const profile = process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', THIS_FILE, '--serve', natsUrl], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('service ready') && resolve());
    child.once('exit', (code) => reject(new Error(`the service process exited (${code})`)));
  });
  return child;
}

async function main(): Promise<void> {
  const calls = Number(args.calls);
  const levels = args.concurrency.split(',').map(Number);
  if (levels.some((level) => !Number.isInteger(level) || level < 1)) throw new Error('--concurrency: positive integers, comma-separated');
  const connectionsFor = (concurrency: number) => (levels.length > 1 ? Math.max(1, Math.round(concurrency / 8)) : Number(args.connections));
  const nats = await startNats();
  const silent = createLogger({ level: 'silent', pretty: false });

  // ── ours ──
  const platform = new EmbeddedProcess();
  await platform.start({ MSS_BUS__DRIVER: 'nats', MSS_BUS__NATS_URL: nats.url });
  const service = await startServiceProcess(nats.url);
  const app = new NuveClient({ url: platform.nuveUrl, serviceId: platform.superService.id, key: platform.superService.key });
  const bus = await NatsBus.connect(nats.url, silent);
  const discovery = new BusServiceDiscovery(bus, silent, { heartbeatMs: 1000, timeoutMs: 3000 });
  await discovery.start();
  const caller = new ServiceCaller(bus, discovery, silent, loadConfig({ env: {} }).services);
  caller.start();
  while (discovery.instances('bench').length === 0) await new Promise((r) => setTimeout(r, 50));
  const identity: CallerIdentity = { tenant: platform.superService.id, user: 'bench', connection: 'bench-caller', kind: 'service', service: 'bench-caller' };

  const oursC2s = async (concurrency: number, connections: number): Promise<LoadResult> => {
    const sockets = await Promise.all(
      Array.from({ length: connections }, async (_, i) => {
        const token = await app.createSession({ user: `bench-${i}`, scopes: ['rpc'] });
        const ws = new WebSocket(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`, 'protoo');
        await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
        const pending = new Map<number, (ok: boolean) => void>();
        ws.on('message', (data) => {
          const answer = JSON.parse(data.toString()) as { response?: boolean; id: number; ok?: boolean };
          if (!answer.response) return;
          pending.get(answer.id)?.(answer.ok === true);
          pending.delete(answer.id);
        });
        return { ws, pending };
      }),
    );
    let id = 0;
    try {
      return await warmedUp({ calls, concurrency }, (worker) => {
        const { ws, pending } = sockets[worker % sockets.length]!;
        const requestId = ++id;
        return new Promise<boolean>((resolve) => {
          pending.set(requestId, resolve);
          sendCoalesced(ws, JSON.stringify({ request: true, id: requestId, method: 'call', data: { service: 'bench', method: 'empty', args: {} } }));
        });
      });
    } finally {
      for (const { ws } of sockets) ws.close();
    }
  };
  const oursS2s = (concurrency: number) =>
    warmedUp({ calls, concurrency }, () =>
      caller.call('bench', 'empty', {}, identity).then(
        () => true,
        () => false,
      ),
    );

  // ── the peer ──
  const peer = await startMoleculerPeer(nats.url);

  const median = (values: number[]) => values.sort((x, y) => x - y)[Math.floor((values.length - 1) / 2)]!;
  const peaks = { oursC2s: 0, peerC2s: 0, oursS2s: 0, peerS2s: 0 };
  for (const concurrency of levels) {
    const connections = connectionsFor(concurrency);
    const results: Record<keyof typeof peaks, LoadResult[]> = { oursC2s: [], peerC2s: [], oursS2s: [], peerS2s: [] };
    for (let round = 0; round < Number(args.rounds); round++) {
      results.oursC2s.push(await oursC2s(concurrency, connections));
      results.peerC2s.push(await runMoleculerC2s(peer, { calls, concurrency, connections }));
      results.oursS2s.push(await oursS2s(concurrency));
      results.peerS2s.push(await runMoleculerS2s(peer, { calls, concurrency }));
    }
    console.log(`${calls} empty calls per run, ${concurrency} in flight, c2s over ${connections} WebSockets; ${args.rounds} alternating rounds`);
    for (const kind of ['C2s', 'S2s'] as const) {
      const ours = results[`ours${kind}`];
      const theirs = results[`peer${kind}`];
      const name = kind.toLowerCase();
      for (let round = 0; round < ours.length; round++) {
        console.log(formatResult(`${name} round ${round + 1} mediasoup-signal`, ours[round]!));
        console.log(formatResult(`${name} round ${round + 1} Moleculer 0.14  `, theirs[round]!));
      }
      // Per round, ours against the peer's run next to it; the median of those ratios (the lower one for an even count).
      const ratio = (f: (ours: LoadResult, theirs: LoadResult) => number) => median(ours.map((r, i) => f(r, theirs[i]!))).toFixed(2);
      console.log(
        `${name} ratio (median of rounds): ${ratio((o, t) => o.callsPerSec / t.callsPerSec)}× the calls/s, p99 ${ratio((o, t) => o.p99Ms / t.p99Ms)}×, ` +
          `${ratio((o, t) => t.cpuUsPerCall / o.cpuUsPerCall)}× less CPU per call (servers alone ${ratio((o, t) => t.serverCpuUsPerCall / o.serverCpuUsPerCall)}×)`,
      );
      peaks[`ours${kind}`] = Math.max(peaks[`ours${kind}`], median(ours.map((r) => r.callsPerSec)));
      peaks[`peer${kind}`] = Math.max(peaks[`peer${kind}`], median(theirs.map((r) => r.callsPerSec)));
    }
  }
  if (levels.length > 1) {
    // Each system at its best level: the medians of its rounds there.
    for (const kind of ['C2s', 'S2s'] as const) {
      const ours = peaks[`ours${kind}`];
      const theirs = peaks[`peer${kind}`];
      console.log(`${kind.toLowerCase()} peak over ${levels.join(', ')} in flight: ${Math.round(ours)} against ${Math.round(theirs)} calls/s, ${(ours / theirs).toFixed(2)}×`);
    }
  }

  await peer.close();
  caller.close();
  await discovery.close();
  await bus.close();
  await new Promise((resolve) => (service.once('exit', resolve), service.kill('SIGTERM')));
  await platform.stop();
  await nats.stop();
  process.exit(0);
}
