/**
 * Joins through the platform against a mediasoup-demo-style baseline, side by
 * side in one run: the embedded platform (`npm start`'s process, one mediasoup
 * worker) and bench/protoo-baseline (protoo-server, one worker, the demo's
 * handlers), each its own OS process, driven by the same client load
 * (join-load's measureJoins: connect, getRouterRtpCapabilities,
 * createWebRtcTransport ×2, join), in alternating rounds.
 *
 * Per server: one join at a time p50/p99, joins/s with `concurrency` in flight,
 * and the CPU per join of its whole process tree (Node and mediasoup worker),
 * which holds on a busy machine where joins/s does not. Tokens are issued
 * before each round (issuance is the management API's cost, measured by
 * bench/nuve-tokens), so the platform's numbers are the token's consumption
 * and the join itself.
 *
 *   node --import tsx bench/join.ts [joins=300] [concurrency=20] [rounds=3]
 */
import { type JoinResults, type TokenSource, measureJoins, printJoins, startPlatformRooms, startProtooBaseline } from './join-load.js';
import { treeCpuMs } from './services-moleculer.js';

const total = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 20);
const rounds = Number(process.argv[4] ?? 3);
const ROOMS = 10;
/** measureJoins' sequential part (up to 100) plus the loaded part. */
const joinsPerRound = Math.min(100, total) + total;

interface Contender {
  label: string;
  pid: number;
  /** Tokens for one round, made before it starts. */
  prepare(round: number): Promise<TokenSource>;
  stop(): Promise<void>;
}

async function platform(): Promise<Contender> {
  const { embedded, tokens: tokensFor } = await startPlatformRooms(ROOMS, 'bench');
  return {
    label: 'platform',
    pid: embedded.proc.pid!,
    async prepare(round) {
      // measureJoins names users 0..99 (one at a time) and 1000.. (loaded).
      const users = [...Array.from({ length: Math.min(100, total) }, (_, i) => i), ...Array.from({ length: total }, (_, i) => 1000 + i)];
      const tokens = await tokensFor(users, round);
      return async (i) => ({ token: tokens.get(i)!, gatewayUrl: embedded.gatewayUrl });
    },
    stop: () => embedded.stop(),
  };
}

async function baseline(): Promise<Contender> {
  const server = await startProtooBaseline();
  return {
    label: 'protoo baseline',
    pid: server.pid,
    async prepare(round) {
      return async (i) => ({ token: `bench-${i % ROOMS}:user-${round}-${i}`, gatewayUrl: server.url });
    },
    stop: () => server.stop(),
  };
}

const contenders: Contender[] = [];
// Should the bench fail half-way, its servers (each a process tree) must not outlive it.
process.on('exit', () => {
  for (const c of contenders) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // Already stopped.
    }
  }
});
contenders.push(await platform(), await baseline());
const results = new Map<string, { runs: JoinResults[]; cpuMs: number }>(contenders.map((c) => [c.label, { runs: [], cpuMs: 0 }]));
for (let round = 0; round < rounds; round++) {
  // Alternate who goes first, so neither always runs on a machine the other just warmed or loaded.
  const order = round % 2 === 0 ? contenders : [...contenders].reverse();
  for (const c of order) {
    const source = await c.prepare(round);
    const cpu0 = treeCpuMs(c.pid);
    const r = await measureJoins(source, total, concurrency);
    const entry = results.get(c.label)!;
    entry.cpuMs += treeCpuMs(c.pid) - cpu0;
    entry.runs.push(r);
    printJoins(`round ${round + 1} ${c.label}`, r);
  }
}
for (const c of contenders) await c.stop();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const summary = (label: string) => {
  const { runs, cpuMs } = results.get(label)!;
  return {
    p50: median(runs.map((r) => r.sequential.p50)),
    p99: median(runs.map((r) => r.sequential.p99)),
    joinsPerSec: median(runs.map((r) => r.loaded.joinsPerSec)),
    loadedP50: median(runs.map((r) => r.loaded.p50)),
    loadedP99: median(runs.map((r) => r.loaded.p99)),
    cpuMsPerJoin: cpuMs / (runs.length * joinsPerRound),
  };
};
const ours = summary('platform');
const base = summary('protoo baseline');
const f = (n: number) => n.toFixed(2);
console.log(`\nmedians over ${rounds} rounds; ${total} joins with ${concurrency} in flight, ${ROOMS} rooms, one worker each; load avg ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (const [label, s] of [['platform', ours], ['protoo baseline', base]] as const) {
  console.log(
    `${label.padEnd(16)} one at a time p50 ${f(s.p50)} ms p99 ${f(s.p99)} ms | loaded ${s.joinsPerSec.toFixed(0)} joins/s p50 ${f(s.loadedP50)} ms p99 ${f(s.loadedP99)} ms | CPU ${f(s.cpuMsPerJoin)} ms/join`,
  );
}
console.log(
  `ratio platform/baseline: joins/s ${f(ours.joinsPerSec / base.joinsPerSec)}, single-join p50 ${f(ours.p50 / base.p50)}, CPU per join ${f(ours.cpuMsPerJoin / base.cpuMsPerJoin)}`,
);
