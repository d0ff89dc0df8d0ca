/**
 * The peer for bench/services.ts: the same two measurements on Moleculer 0.14 (its NATS
 * transporter), on the same NATS, so both sit side by side in one run.
 *
 *   node --import tsx bench/services-moleculer.ts [--nats nats://127.0.0.1:4222] [--calls 20000] [--concurrency 64] [--connections 8]
 *
 * (without --nats it starts a private nats-server). Moleculer lives in bench/peers with its own
 * lockfile (`npm ci --prefix bench/peers`), outside the project's dependencies.
 *
 * The setup mirrors ours, one OS process per part as in a deployment:
 *   - service process: a broker with service `bench`, action `empty` (answers null);
 *   - gateway process: a plain WebSocket server (`ws`) in front of a broker without services;
 *     each client message `{id, action, params}` becomes one `broker.call`, its answer one
 *     message `{id, result}` or `{id, error}` — one request/response per message, like our edge;
 *   - this process: the WebSocket clients (c2s) and a caller broker (s2s: broker → broker).
 *
 * Where the comparison favours Moleculer (read the numbers with these in mind):
 *   - its gateway does nothing but forward: no session token, no access check (external /
 *     internal), no schema validation of the call, no per-connection rate limit, no flow counters,
 *     no protoo framing; ours does all of these on every call;
 *   - its action has no params schema (fastest-validator does nothing); ours validates with zod;
 *   - its logger, metrics and tracing are off; our platform keeps its Prometheus counters on;
 *   - its broker balances on the caller's side and sends to the chosen node's own subject, like
 *     our routing, so both take one NATS hop each way; both serialise JSON.
 * And where it favours neither: the same NATS server, the same machine (2 cores shared by the
 * service, the gateway, NATS and the load generator), the same calls, concurrency and clients.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';

const HERE = dirname(fileURLToPath(import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);
/** A client message larger than this is refused by the gateway (its edge is bounded too). */
const MAX_MESSAGE_BYTES = 64 * 1024;

// ---- Moleculer, loaded from bench/peers (its types are not in the project's tree) ----------------

interface Broker {
  createService(schema: { name: string; actions: Record<string, () => unknown> }): unknown;
  start(): Promise<void>;
  stop(): Promise<void>;
  call(action: string, params?: unknown): Promise<unknown>;
  waitForServices(names: string[], timeoutMs?: number): Promise<void>;
}
type BrokerClass = new (options: Record<string, unknown>) => Broker;

function loadServiceBroker(): BrokerClass {
  const require = createRequire(join(HERE, 'peers', 'package.json'));
  try {
    return (require('moleculer') as { ServiceBroker: BrokerClass }).ServiceBroker;
  } catch (err) {
    throw new Error(`Moleculer is not installed in bench/peers: run \`npm ci --prefix bench/peers\` (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** Every broker of the comparison: only what carries calls is on. */
function newBroker(natsUrl: string, nodeID: string): Broker {
  const ServiceBroker = loadServiceBroker();
  return new ServiceBroker({
    nodeID,
    namespace: 'mss-bench',
    transporter: natsUrl,
    logger: false,
    metrics: false,
    tracing: false,
    requestTimeout: 10_000,
  });
}

// ---- the parts ---------------------------------------------------------------------------------

async function runServiceRole(natsUrl: string): Promise<void> {
  const broker = newBroker(natsUrl, `service-${process.pid}`);
  broker.createService({ name: 'bench', actions: { empty: () => null } });
  await broker.start();
  process.stdout.write('ready\n');
}

async function runGatewayRole(natsUrl: string): Promise<void> {
  const broker = newBroker(natsUrl, `gateway-${process.pid}`);
  await broker.start();
  await broker.waitForServices(['bench'], 30_000);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_MESSAGE_BYTES });
  wss.on('connection', (socket) => {
    socket.on('message', (data) => {
      let request: { id?: unknown; action?: unknown; params?: unknown };
      try {
        request = JSON.parse(data.toString());
      } catch {
        socket.send(JSON.stringify({ id: null, error: { name: 'BadRequest', message: 'not JSON' } }));
        return;
      }
      const { id, action, params } = request;
      if (typeof action !== 'string') {
        socket.send(JSON.stringify({ id, error: { name: 'BadRequest', message: 'action must be a string' } }));
        return;
      }
      broker.call(action, params ?? {}).then(
        (result) => socket.send(JSON.stringify({ id, result })),
        (err: Error) => socket.send(JSON.stringify({ id, error: { name: err.name, message: err.message } })),
      );
    });
  });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  process.stdout.write(`ready ${(wss.address() as { port: number }).port}\n`);
}

/** A part of the setup as its own process; resolves with what it printed after `ready`. */
async function spawnRole(role: 'service' | 'gateway', natsUrl: string): Promise<{ proc: ChildProcess; readyLine: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', THIS_FILE, '--role', role, '--nats', natsUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`moleculer ${role} did not start within 60 s:\n${output}`)), 60_000);
    proc.stdout!.on('data', (d: Buffer) => {
      output += d.toString();
      const line = /^ready(.*)$/m.exec(output);
      if (line) {
        clearTimeout(timer);
        resolve(line[1]!.trim());
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`moleculer ${role} exited with ${code}:\n${output}`));
    });
  });
  proc.removeAllListeners('exit');
  return { proc, readyLine };
}

export interface MoleculerPeer {
  /** ws:// URL of the gateway in front of the service. */
  gatewayUrl: string;
  /** A broker in this process, for s2s calls. */
  caller: Broker;
  close(): Promise<void>;
}

/** Starts the service and gateway processes and a caller broker here, all on `natsUrl`. */
export async function startMoleculerPeer(natsUrl: string): Promise<MoleculerPeer> {
  const children: ChildProcess[] = [];
  const stopChildren = async () => {
    await Promise.all(
      children.map((c) =>
        c.exitCode !== null || c.signalCode !== null ? undefined : new Promise<void>((resolve) => (c.once('exit', () => resolve()), c.kill('SIGTERM'))),
      ),
    );
  };
  try {
    children.push((await spawnRole('service', natsUrl)).proc);
    const gateway = await spawnRole('gateway', natsUrl);
    children.push(gateway.proc);
    const caller = newBroker(natsUrl, `caller-${process.pid}`);
    await caller.start();
    await caller.waitForServices(['bench'], 30_000);
    return {
      gatewayUrl: `ws://127.0.0.1:${gateway.readyLine}`,
      caller,
      async close() {
        await caller.stop();
        await stopChildren();
      },
    };
  } catch (err) {
    await stopChildren();
    throw err;
  }
}

// ---- the load --------------------------------------------------------------------------------

export interface LoadOptions {
  /** Calls in all. */
  calls: number;
  /** Calls in flight at any moment. */
  concurrency: number;
}

export interface LoadResult {
  calls: number;
  errors: number;
  seconds: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of this process and all its descendants (gateway, services, NATS server) per call. */
  cpuUsPerCall: number;
  /** The same without this process (the load generator, and for s2s the caller): the servers' own CPU per call. */
  serverCpuUsPerCall: number;
}

/**
 * Sends a load-generating client's frame: the frames its calls send in one tick (answers arrive in bursts, and each
 * frees a call that sends the next) leave in one socket write, as a busy real client's would. One write per frame made
 * the load generator the costliest process on the machine, taking CPU from both servers alike. Same for both peers.
 */
export function sendCoalesced(ws: WebSocket, text: string): void {
  const socket = (ws as unknown as { _socket?: { cork(): void; uncork(): void; corked?: number } })._socket;
  if (socket && !socket.corked) {
    socket.cork();
    process.nextTick(() => socket.uncork());
  }
  ws.send(text);
}

/**
 * CPU time (user + system, ms) of process `root` (this one by default) and
 * every process descended from it, from /proc. Unlike calls/s it barely moves when other work shares
 * the machine, so the side-by-side ratio of it holds on a busy host too.
 */
export function treeCpuMs(root: number = process.pid): number {
  const ticksPerMs = 100 / 1000; // USER_HZ is 100 on Linux
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces), counted from field 3 (state).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(entry), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // The process ended while being read.
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = stats.get(p)?.ppid ?? 0, hops++) if (p === root) return true;
    return false;
  };
  let ticks = 0;
  for (const [pid, s] of stats) if (inTree(pid)) ticks += s.ticks;
  return ticks / ticksPerMs;
}

/** Runs `calls` calls of `call`, `concurrency` at a time; `call(worker)` resolves when its answer is in. */
export async function drive(options: LoadOptions, call: (worker: number) => Promise<boolean>): Promise<LoadResult> {
  const latencies = new Float64Array(options.calls);
  let next = 0;
  let errors = 0;
  const cpu0 = treeCpuMs();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency, options.calls) }, async (_, worker) => {
      for (let i = next++; i < options.calls; i = next++) {
        const start = performance.now();
        if (!(await call(worker))) errors++;
        latencies[i] = performance.now() - start;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpuUsPerCall = ((treeCpuMs() - cpu0) * 1000) / options.calls;
  const own = process.cpuUsage(own0);
  const serverCpuUsPerCall = Math.max(0, cpuUsPerCall - (own.user + own.system) / options.calls);
  latencies.sort();
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))]!;
  return { calls: options.calls, errors, seconds, callsPerSec: options.calls / seconds, p50Ms: pct(50), p99Ms: pct(99), cpuUsPerCall, serverCpuUsPerCall };
}

/** Client → gateway → service: `connections` WebSockets, the calls in flight spread over them. */
export async function runMoleculerC2s(peer: MoleculerPeer, options: LoadOptions & { connections: number }): Promise<LoadResult> {
  const sockets = await Promise.all(
    Array.from({ length: options.connections }, async () => {
      const ws = new WebSocket(peer.gatewayUrl);
      await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
      const pending = new Map<number, (ok: boolean) => void>();
      ws.on('message', (data) => {
        const answer = JSON.parse(data.toString()) as { id: number; error?: unknown };
        pending.get(answer.id)?.(answer.error === undefined);
        pending.delete(answer.id);
      });
      return { ws, pending };
    }),
  );
  let id = 0;
  try {
    // Warm-up: the first calls pay for connections and JIT on every side.
    const call = (worker: number) => {
      const { ws, pending } = sockets[worker % sockets.length]!;
      const callId = ++id;
      return new Promise<boolean>((resolve) => {
        pending.set(callId, resolve);
        sendCoalesced(ws, JSON.stringify({ id: callId, action: 'bench.empty', params: {} }));
      });
    };
    await drive({ calls: Math.min(2000, options.calls), concurrency: options.concurrency }, call);
    return await drive(options, call);
  } finally {
    for (const { ws } of sockets) ws.close();
  }
}

/** Broker → broker over NATS, from the caller broker in this process. */
export async function runMoleculerS2s(peer: MoleculerPeer, options: LoadOptions): Promise<LoadResult> {
  const call = () => peer.caller.call('bench.empty', {}).then(
    () => true,
    () => false,
  );
  await drive({ calls: Math.min(2000, options.calls), concurrency: options.concurrency }, call);
  return drive(options, call);
}

export function formatResult(label: string, r: LoadResult): string {
  return `${label}: ${Math.round(r.callsPerSec)} calls/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, CPU ${Math.round(r.cpuUsPerCall)} µs/call (servers ${Math.round(r.serverCpuUsPerCall)}) (${r.calls} calls, ${r.errors} errors, ${r.seconds.toFixed(1)} s)`;
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      role: { type: 'string' },
      nats: { type: 'string' },
      calls: { type: 'string', default: '20000' },
      concurrency: { type: 'string', default: '64' },
      connections: { type: 'string', default: '8' },
    },
  });
  if (args.role === 'service' || args.role === 'gateway') {
    if (!args.nats) throw new Error('--role needs --nats');
    await (args.role === 'service' ? runServiceRole(args.nats) : runGatewayRole(args.nats));
    // Runs until its parent stops it.
    process.once('SIGTERM', () => process.exit(0));
    return;
  }
  let nats: { url: string; stop(signal?: NodeJS.Signals): Promise<void> } | undefined;
  if (!args.nats) {
    const { startNats } = await import('../test/helpers/services.js');
    nats = await startNats();
  }
  const natsUrl = args.nats ?? nats!.url;
  const peer = await startMoleculerPeer(natsUrl);
  try {
    const load = { calls: Number(args.calls), concurrency: Number(args.concurrency) };
    console.log(`Moleculer 0.14 (NATS transporter at ${natsUrl}), ${load.calls} calls, ${load.concurrency} in flight`);
    console.log(formatResult(`  c2s through a ws gateway (${args.connections} connections)`, await runMoleculerC2s(peer, { ...load, connections: Number(args.connections) })));
    console.log(formatResult('  s2s broker → broker', await runMoleculerS2s(peer, load)));
  } finally {
    await peer.close();
    await nats?.stop('SIGTERM');
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
