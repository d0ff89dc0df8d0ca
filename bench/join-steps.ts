/**
 * Where a join's time and CPU go, one join at a time: the embedded platform
 * and bench/protoo-baseline side by side (each its own OS process, taking
 * turns join by join, so that both see the same moments of a shared VM whose
 * speed drifts by tens of percent within seconds), the client timing each step of a mediasoup-demo join
 * (connect, getRouterRtpCapabilities, createWebRtcTransport ×2, join; then it
 * leaves, so every join opens and closes its room), and the server's CPU per
 * join split by thread: the Node main thread, its other threads (V8's GC and
 * compiler helpers, libuv) and the mediasoup worker. Tokens are issued
 * before each round, outside the measurement.
 *
 * With `gapMs` > 0 each join starts that long after the previous one left, on a server done with
 * the previous visit (its teardown, its room events' 10 ms window): a join on an idle server, as most
 * joins are, instead of back to back with the previous leave's teardown.
 *
 *   node --import tsx bench/join-steps.ts [joins=300] [rounds=2] [gapMs=0]
 */
import { readFileSync, readdirSync } from 'node:fs';
import { ProtooClient } from '../test/helpers/protoo-client.js';
import { startPlatformRooms, startProtooBaseline } from './join-load.js';

const joins = Number(process.argv[2] ?? 300);
const rounds = Number(process.argv[3] ?? 2);
const gapMs = Number(process.argv[4] ?? 0);
const ROOMS = 10;
const STEPS = ['connect', 'caps', 'transport', 'transport', 'join'] as const;

/** CPU ms so far of the process `pid`: its main thread, its other threads, and its children (the mediasoup worker). */
function cpuOf(pid: number): { main: number; threads: number; worker: number } {
  const ms = (stat: string) => {
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // USER_HZ 100
  };
  let main = 0;
  let threads = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const t = ms(readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8'));
    if (Number(task) === pid) main = t;
    else threads += t;
  }
  let worker = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) worker += ms(stat);
    } catch {
      // Gone meanwhile.
    }
  }
  return { main, threads, worker };
}

interface Server {
  label: string;
  pid: number;
  tokens(round: number): Promise<{ url: string; token(i: number): string }>;
  stop(): Promise<void>;
}

async function platform(): Promise<Server> {
  const { embedded, tokens: tokensFor } = await startPlatformRooms(ROOMS, 'steps');
  return {
    label: 'platform',
    pid: embedded.proc.pid!,
    async tokens(round) {
      const tokens = await tokensFor(Array.from({ length: joins }, (_, i) => i), round);
      return { url: embedded.gatewayUrl, token: (i) => tokens.get(i)! };
    },
    stop: () => embedded.stop(),
  };
}

async function baseline(): Promise<Server> {
  const server = await startProtooBaseline();
  return {
    label: 'protoo baseline',
    pid: server.pid,
    tokens: async (round) => ({ url: server.url, token: (i) => `steps-${i % ROOMS}:user-${round}-${i}` }),
    stop: () => server.stop(),
  };
}

const servers = [await platform(), await baseline()];
const results = new Map(servers.map((s) => [s.label, { steps: STEPS.map(() => [] as number[]), totals: [] as number[], main: 0, threads: 0, worker: 0 }]));
for (let round = 0; round < rounds; round++) {
  const tokens = await Promise.all(servers.map((server) => server.tokens(round)));
  const before = servers.map((server) => cpuOf(server.pid));
  for (let i = 0; i < joins; i++) {
    for (const s of i % 2 === 0 ? [0, 1] : [1, 0]) {
      const { url, token } = tokens[s]!;
      const r = results.get(servers[s]!.label)!;
      const t = [performance.now()];
      const client = await ProtooClient.connect(url, token(i), '', {}, ['protoo']);
      t.push(performance.now());
      const rtpCapabilities = await client.request('getRouterRtpCapabilities');
      t.push(performance.now());
      await client.request('createWebRtcTransport', { producing: true });
      t.push(performance.now());
      await client.request('createWebRtcTransport', { consuming: true });
      t.push(performance.now());
      await client.request('join', { displayName: `user-${i}`, rtpCapabilities });
      t.push(performance.now());
      client.close();
      await client.closed;
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
      STEPS.forEach((_, step) => r.steps[step]!.push(t[step + 1]! - t[step]!));
      r.totals.push(t[STEPS.length]! - t[0]!);
    }
  }
  // The last leave's teardown belongs to the round.
  await new Promise((resolve) => setTimeout(resolve, 200));
  servers.forEach((server, s) => {
    const after = cpuOf(server.pid);
    const r = results.get(server.label)!;
    r.main += after.main - before[s]!.main;
    r.threads += after.threads - before[s]!.threads;
    r.worker += after.worker - before[s]!.worker;
  });
}
for (const server of servers) await server.stop();

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f = (n: number) => n.toFixed(2);
const n = joins * rounds;
console.log(`${n} joins one at a time per server over ${rounds} rounds${gapMs > 0 ? `, ${gapMs} ms apart` : ''}; p50 ms per step; CPU ms per join; load avg ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (const [label, r] of results) {
  console.log(
    `${label.padEnd(16)} ${STEPS.map((s, i) => `${s} ${f(p50(r.steps[i]!))}`).join(' · ')} · total ${f(p50(r.totals))} | CPU main thread ${f(r.main / n)}, other threads ${f(r.threads / n)}, worker ${f(r.worker / n)}, all ${f((r.main + r.threads + r.worker) / n)}`,
  );
}
