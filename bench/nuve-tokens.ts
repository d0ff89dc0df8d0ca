/**
 * Nuve token-creation throughput: POST /rooms/:room/tokens over HTTP.
 *
 *   node --import tsx bench/nuve-tokens.ts [--engines sqlite,postgres] [--duration 10] [--warmup 3]
 *                                          [--concurrency 64] [--rooms 100] [--repeat 1] [--client raw|http]
 *                                          [--rate-limit on|off] [--nuves 1|2] [--bus memory|nats]
 *                                          [--replay memory|redis]
 *
 * Nuve runs in this process exactly as embedded (SQLite file in a temp dir),
 * then again on PostgreSQL (a throw-away database). The load comes from a
 * forked child process so the client never shares Nuve's event loop: it
 * keeps `concurrency` requests in flight over keep-alive connections, each
 * with a fresh MAuth header (a 96-bit cnonce, where Licode's 0..99998 would
 * collide at these rates), for `warmup` + `duration` seconds and reports
 * what it saw during `duration`. `--client http` uses node:http instead of
 * the minimal raw-socket client; on a 2-core machine node:http's own CPU
 * cost caps what it can measure.
 *
 * `--nuves 2` starts a second Nuve in this process on the same bus and the same database (its own
 * HTTP port and connection pool), as two instances of a cluster: the load's connections alternate
 * between them, rooms are created on the first. `--bus nats` puts both on a NATS server
 * (TEST_NATS_URL, default nats://127.0.0.1:4222) instead of the in-process bus; `--replay redis`
 * gives them the shared Redis replay guard a cluster runs with (TEST_REDIS_URL, default
 * redis://127.0.0.1:6379) instead of one in-memory guard each.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Bus } from '../src/core/bus/bus.js';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { openStore } from '../src/nuve/store/store.js';
import { GatewayPresence } from '../src/gateway/presence.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { Nuve } from '../src/nuve/nuve.js';
import { RedisReplayGuard } from '../src/nuve/replay-guard.js';
import type { Store } from '../src/nuve/store/store.js';

type Engine = 'sqlite' | 'postgres';

interface LoadJob {
  /** The Nuves to load: connection i goes to urls[i % urls.length]. */
  urls: string[];
  serviceId: string;
  key: string;
  rooms: string[];
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  client: 'raw' | 'http';
}

interface LoadResult {
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  elapsedMs: number;
  clientCpu: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// ---------------------------------------------------------------- load generator (child process)

interface Recorder {
  measuring: boolean;
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  latencies: number[];
}

function record(rec: Recorder, started: number, outcome: number | string): void {
  if (!rec.measuring) return;
  if (outcome === 200) {
    rec.ok++;
    rec.latencies.push(performance.now() - started);
  } else {
    rec.errors++;
    rec.statuses[String(outcome)] = (rec.statuses[String(outcome)] ?? 0) + 1;
  }
}

let noncePool = Buffer.alloc(0);
let nonceOffset = 0;

/** 96 random bits, hex; drawn from a pool so the client spends its CPU on requests, not on getrandom(). */
function cnonce(): string {
  if (nonceOffset + 12 > noncePool.length) {
    noncePool = randomBytes(12 * 1024);
    nonceOffset = 0;
  }
  nonceOffset += 12;
  return noncePool.toString('hex', nonceOffset - 12, nonceOffset);
}

function authorization(job: LoadJob, user: string): string {
  // Licode's client uses a 0..99998 cnonce; thousands of requests per millisecond-timestamp would collide.
  return buildMAuthHeader({ serviceId: job.serviceId, key: job.key, username: user, role: 'presenter', cnonce: cnonce() });
}

/** node:http with a keep-alive agent: the ordinary client, but it costs about as much CPU as the server. */
function httpConnection(job: LoadJob, url: string, rec: Recorder, next: () => { room: string; user: string }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  const one = () =>
    new Promise<void>((resolve) => {
      const { room, user } = next();
      const started = performance.now();
      const req = http.request(
        {
          agent,
          host: target.hostname,
          port: target.port,
          method: 'POST',
          path: `/rooms/${room}/tokens`,
          headers: { authorization: authorization(job, user), 'content-length': 0 },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            record(rec, started, res.statusCode ?? 0);
            resolve();
          });
        },
      );
      req.on('error', (err) => {
        record(rec, started, err.message);
        resolve();
      });
      req.end();
    });
  return { one, close: () => agent.destroy() };
}

/**
 * A minimal HTTP/1.1 keep-alive client on a raw socket (one request in flight
 * per connection, Content-Length responses): a fraction of node:http's CPU,
 * so on a small machine the server, not the load generator, is measured.
 */
function rawConnection(job: LoadJob, url: string, rec: Recorder, next: () => { room: string; user: string }) {
  const target = new URL(url);
  const socket = net.connect({ host: target.hostname, port: Number(target.port), noDelay: true });
  let buffer: Buffer = Buffer.alloc(0);
  let pending: { started: number; resolve: () => void } | undefined;
  let failed: Error | undefined;
  const fail = (err: Error) => {
    failed = err;
    if (pending) {
      record(rec, pending.started, err.message);
      pending.resolve();
      pending = undefined;
    }
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('connection closed')));
  socket.on('data', (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    const headerEnd = buffer.indexOf('\r\n\r\n');
    if (headerEnd < 0 || !pending) return;
    const head = buffer.toString('latin1', 0, headerEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) return fail(new Error('response without content-length'));
    const total = headerEnd + 4 + Number(length[1]);
    if (buffer.length < total) return;
    const status = Number(head.slice(9, 12));
    buffer = buffer.subarray(total);
    const done = pending;
    pending = undefined;
    record(rec, done.started, status);
    done.resolve();
  });
  const one = () =>
    new Promise<void>((resolve) => {
      if (failed) {
        record(rec, performance.now(), failed.message);
        return setTimeout(resolve, 10);
      }
      const { room, user } = next();
      pending = { started: performance.now(), resolve };
      socket.write(
        `POST /rooms/${room}/tokens HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: ${authorization(job, user)}\r\n` +
          'Content-Length: 0\r\n\r\n',
      );
    });
  return { one, close: () => socket.destroy() };
}

async function runLoad(job: LoadJob): Promise<LoadResult> {
  const rec: Recorder = { measuring: false, ok: 0, errors: 0, statuses: {}, latencies: [] };
  let seq = 0;
  const next = () => ({ room: job.rooms[seq % job.rooms.length]!, user: `user${seq++}` });
  const connections = Array.from({ length: job.concurrency }, (_, i) => {
    const url = job.urls[i % job.urls.length]!;
    return job.client === 'http' ? httpConnection(job, url, rec, next) : rawConnection(job, url, rec, next);
  });
  let stopping = false;
  const loops = connections.map(async (c) => {
    while (!stopping) await c.one();
  });
  await sleep(job.warmupMs);
  const cpu0 = process.cpuUsage();
  process.send?.({ type: 'measuring' });
  rec.measuring = true;
  const t0 = performance.now();
  await sleep(job.durationMs);
  rec.measuring = false;
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  process.send?.({ type: 'measured' });
  stopping = true;
  await Promise.all(loops);
  for (const c of connections) c.close();
  const sorted = Float64Array.from(rec.latencies).sort();
  return {
    ok: rec.ok,
    errors: rec.errors,
    statuses: rec.statuses,
    elapsedMs,
    clientCpu: (cpu.user + cpu.system) / 1000 / elapsedMs,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

/** Runs the load in a forked child; `serverCpu` is this process's CPU share during the measured window. */
function loadInChild(job: LoadJob): Promise<LoadResult & { serverCpu: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--load-generator'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let cpu0 = process.cpuUsage();
    let t0 = performance.now();
    let serverCpu = Number.NaN;
    child.on('message', (msg: { type: string; result?: LoadResult }) => {
      if (msg.type === 'measuring') {
        cpu0 = process.cpuUsage();
        t0 = performance.now();
      } else if (msg.type === 'measured') {
        const cpu = process.cpuUsage(cpu0);
        serverCpu = (cpu.user + cpu.system) / 1000 / (performance.now() - t0);
      } else if (msg.type === 'result') resolve({ ...msg.result!, serverCpu });
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`load generator exited with ${code}`));
    });
    child.send(job);
  });
}

// ---------------------------------------------------------------- Nuve under test (this process)

interface BenchOptions {
  durationMs: number;
  warmupMs: number;
  concurrency: number;
  rooms: number;
  client: 'raw' | 'http';
  rateLimit: boolean;
  nuves: number;
  bus: 'memory' | 'nats';
  replay: 'memory' | 'redis';
}

async function benchEngine(engine: Engine, opts: BenchOptions) {
  const dir = mkdtempSync(join(tmpdir(), 'mss-bench-'));
  const pgServer = (process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432').replace(/\/+$/, '');
  const pgDb = `mss_bench_${process.pid}_${randomBytes(3).toString('hex')}`;
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: 'warn' },
      store: { driver: engine, sqlitePath: join(dir, 'nuve.db'), postgresUrl: `${pgServer}/${pgDb}`, poolSize: 10 },
      // The limiter stays in the path, with limits far above what one machine can send.
      nuve: {
        host: '127.0.0.1',
        port: 0,
        rateLimit: opts.rateLimit
          ? { enabled: true, perIpPerSec: 1_000_000, globalPerSec: 1_000_000, hardCapPerSec: 1_000_000 }
          : { enabled: false },
      },
    },
  });
  const logger = createLogger(config.log);
  const natsUrl = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
  const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  // One bus connection per Nuve, as separate instances have; the gateway's presence on the first.
  const buses: Bus[] = [];
  const stores: Store[] = [];
  const nuves: Nuve[] = [];
  const redis = opts.replay === 'redis' ? new Redis(redisUrl) : undefined;
  const memoryBus = opts.bus === 'memory' ? new MemoryBus(logger) : undefined;
  // SQLite is the embedded store, one process's own (exclusive locking): one Nuve.
  const nuveCount = engine === 'sqlite' ? 1 : opts.nuves;
  for (let i = 0; i < nuveCount; i++) {
    const nuveBus = memoryBus ?? (await NatsBus.connect(natsUrl, logger));
    if (!memoryBus || i === 0) buses.push(nuveBus);
    // Opened one after the other: the first runs the migrations.
    const nuveStore = await openStore(config.store);
    stores.push(nuveStore);
    const replay = redis && new RedisReplayGuard(redis, config.nuve.authWindowSec * 1000, `mss:bench:${pgDb}:`);
    const instance = new Nuve({ config, bus: nuveBus, store: nuveStore, logger, replay, redis });
    await instance.start();
    nuves.push(instance);
  }
  const nuve = nuves[0]!;
  const bus = buses[0]!;
  const presence = new GatewayPresence(bus, logger, { id: 'gw-bench', url: 'ws://127.0.0.1:8080/', weight: 1 }, 1000, () => ({
    rooms: 0,
    peers: 0,
  }));
  presence.start();
  try {
    while (!nuves.every((n) => n.registry.get('gw-bench'))) await sleep(5);
    const su = nuve.superServiceRecord;
    const rooms: string[] = [];
    for (let i = 0; i < opts.rooms; i++) {
      const res = await fetch(`${nuve.url}/rooms`, {
        method: 'POST',
        headers: {
          authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: randomBytes(12).toString('hex') }),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ name: `bench-${i}` }),
      });
      if (res.status !== 200) throw new Error(`createRoom: ${res.status} ${await res.text()}`);
      rooms.push(((await res.json()) as { _id: string })._id);
    }
    const result = await loadInChild({
      urls: nuves.map((n) => n.url),
      serviceId: su.id,
      key: su.key,
      rooms,
      concurrency: opts.concurrency,
      warmupMs: opts.warmupMs,
      durationMs: opts.durationMs,
      client: opts.client,
    });
    return { engine, nuves: nuveCount, ...result };
  } finally {
    presence.stop();
    for (const n of nuves) await n.close();
    for (const s of stores) await s.close();
    for (const b of buses) await b.close();
    redis?.disconnect();
    rmSync(dir, { recursive: true, force: true });
    if (engine === 'postgres') {
      const client = new pg.Client({ connectionString: `${pgServer}/postgres` });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${pgDb}" WITH (FORCE)`);
      await client.end();
    }
  }
}

async function main(): Promise<void> {
  const engines = arg('engines', 'sqlite,postgres').split(',') as Engine[];
  const repeat = Number(arg('repeat', '1'));
  const opts = {
    durationMs: Number(arg('duration', '10')) * 1000,
    warmupMs: Number(arg('warmup', '3')) * 1000,
    concurrency: Number(arg('concurrency', '64')),
    rooms: Number(arg('rooms', '100')),
    client: arg('client', 'raw') === 'http' ? ('http' as const) : ('raw' as const),
    rateLimit: arg('rate-limit', 'on') !== 'off',
    nuves: Number(arg('nuves', '1')),
    bus: arg('bus', 'memory') === 'nats' ? ('nats' as const) : ('memory' as const),
    replay: arg('replay', 'memory') === 'redis' ? ('redis' as const) : ('memory' as const),
  };
  console.log(
    `Nuve POST /rooms/:room/tokens — ${opts.concurrency} concurrent keep-alive requests (${opts.client} client) from a child process, ` +
      `${opts.warmupMs / 1000} s warmup + ${opts.durationMs / 1000} s measured, ${opts.rooms} rooms, ` +
      `rate limiter ${opts.rateLimit ? 'on (limits raised)' : 'off'}, ` +
      `${opts.nuves} Nuve${opts.nuves > 1 ? 's' : ''} on the ${opts.bus} bus, replay guard in ${opts.replay}, ` +
      `node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`,
  );
  let failed = false;
  for (const engine of engines) {
    const rates: number[] = [];
    for (let run = 1; run <= repeat; run++) {
      // Other work on the machine skews the numbers; the load average says whether there was any.
      const load = loadavg()[0]!.toFixed(2);
      const r = await benchEngine(engine, opts);
      const rate = r.ok / (r.elapsedMs / 1000);
      rates.push(rate);
      failed ||= r.errors > 0;
      console.log(
        `${`${engine}×${r.nuves}`.padEnd(11)} ${rate.toFixed(0).padStart(6)} tokens/s  p50 ${r.p50.toFixed(2)} ms  p90 ${r.p90.toFixed(2)} ms  ` +
          `p99 ${r.p99.toFixed(2)} ms  max ${r.max.toFixed(1)} ms  ok ${r.ok}  errors ${r.errors}` +
          `${r.errors ? ` ${JSON.stringify(r.statuses)}` : ''}  server CPU ${(r.serverCpu * 100).toFixed(0)}%  ` +
          `client CPU ${(r.clientCpu * 100).toFixed(0)}%  load before ${load}`,
      );
    }
    if (repeat > 1) {
      const sorted = [...rates].sort((a, b) => a - b);
      console.log(`${engine.padEnd(9)} median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} tokens/s over ${repeat} runs`);
    }
  }
  if (failed) process.exitCode = 1;
}

if (process.argv.includes('--load-generator')) {
  process.once('message', (job) => {
    void runLoad(job as LoadJob).then((result) => {
      process.send!({ type: 'result', result }, () => process.exit(0));
    });
  });
} else {
  await main();
}
