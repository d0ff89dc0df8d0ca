/**
 * Push throughput and latency end to end: the app server's REST call (MAuth,
 * batches of users) → Nuve → push role → gateway → a client's `push`
 * callback, with the clients' acknowledgements (safe) going back the same
 * way. The platform runs as its own process (embedded: SQLite file); the
 * app server and the clients share this one. Latency is from the push role
 * accepting a message (its `sentAt`) to the client's callback.
 *
 *   node --import tsx bench/push.ts [--mode unsafe|safe] [--clients 200] [--seconds 10] [--concurrency 4] [--rate 0]
 *                                   [--restore 300] [--store sqlite|postgres]
 *
 * `--rate N` paces the calls to N deliveries/s (0: as fast as answers come) — latency is read at half the
 * maximum; `--restore N` then times N pending messages restored on login (20 logins).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { EmbeddedProcess } from './embedded-process.js';

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'unsafe' },
    clients: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '4' },
    rate: { type: 'string', default: '0' },
    restore: { type: 'string', default: '0' },
    store: { type: 'string', default: 'sqlite' },
  },
});
const safe = args.mode === 'safe';
const clients = Number(args.clients);
const seconds = Number(args.seconds);
const concurrency = Number(args.concurrency);
const rate = Number(args.rate);
const restoreCount = Number(args.restore);

const dir = mkdtempSync(join(tmpdir(), 'mss-push-bench-'));
const platform = new EmbeddedProcess();
const storeEnv: Record<string, string> =
  args.store === 'postgres'
    ? { MSS_STORE__DRIVER: 'postgres', MSS_STORE__POSTGRES_URL: `${process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432'}/mss_push_bench_${randomBytes(4).toString('hex')}` }
    : { MSS_STORE__SQLITE_PATH: join(dir, 'bench.db') };
await platform.start({ ...storeEnv, MSS_PUSH__MAX_PENDING_PER_USER: '100000', MSS_PUSH__MAX_PAYLOAD_BYTES: '4096' });

const auth = () => buildMAuthHeader({ serviceId: platform.superService.id, key: platform.superService.key, cnonce: randomBytes(12).toString('hex') });

async function post(path: string, body: unknown): Promise<any> {
  const res = await fetch(`${platform.nuveUrl}${path}`, {
    method: 'POST',
    headers: { authorization: auth(), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

interface Client {
  ws: WebSocket;
  received: number;
  onPush?: () => void;
}
const latencies: number[] = [];
let received = 0;
let measuring = false;

/** One push session as an app's client: counts pushes, acknowledges safe ones once per turn (≤ 500 ids). */
async function connect(user: string): Promise<Client> {
  const { token } = await post('/sessions', { user, scopes: ['push'] });
  const ws = new WebSocket(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`);
  const client: Client = { ws, received: 0 };
  let acks: string[] = [];
  let id = 0;
  let admitted!: () => void;
  const ready = new Promise<void>((resolve) => (admitted = resolve));
  ws.on('message', (raw) => {
    const message = JSON.parse(String(raw)) as { method?: string; data?: any; response?: boolean; id?: number };
    if (message.response && message.id === -1) return admitted();
    if (message.method !== 'push') return;
    client.received++;
    client.onPush?.();
    if (measuring) {
      received++;
      latencies.push(Date.now() - message.data.sentAt);
    }
    if (message.data.id) {
      if (acks.length === 0) {
        setImmediate(() => {
          for (let i = 0; i < acks.length; i += 500) {
            ws.send(JSON.stringify({ request: true, id: ++id, method: 'pushAck', data: { ids: acks.slice(i, i + 500) } }));
          }
          acks = [];
        });
      }
      acks.push(message.data.id);
    }
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  // Requests wait for admission: its answer says the session is registered.
  ws.send(JSON.stringify({ request: true, id: -1, method: 'pushAck', data: {} }));
  await ready;
  return client;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

const users = Array.from({ length: clients }, (_, i) => `user-${i}`);
const sessions: Client[] = [];
for (let i = 0; i < users.length; i += 20) sessions.push(...(await Promise.all(users.slice(i, i + 20).map(connect))));
console.log(`${clients} push sessions connected; ${args.mode}, ${concurrency} calls in flight, ${rate ? `${rate} deliveries/s` : 'unpaced'}`);

// Warm-up, then the measured window: each call pushes one message to every user.
let reached = 0;
async function run(windowMs: number, count: boolean): Promise<number> {
  const until = Date.now() + windowMs;
  const started = Date.now();
  let calls = 0;
  measuring = count;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        if (rate > 0) {
          const due = started + ((calls * clients) / rate) * 1000;
          calls++;
          if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
          if (Date.now() >= until) break;
        }
        const result = await post('/push/messages', { users, data: { t: Date.now() }, safe });
        if (count) reached += result.reached;
      }
    }),
  );
  return Date.now() - started;
}
await run(2000, false);
await new Promise((r) => setTimeout(r, 1000));
// CPU of the platform process and of this one (app server + clients) over the measured window: on a shared
// machine deliveries/s follows the CPU share the processes get, CPU per delivery much less so.
const platformCpu0 = await platform.metric('mss_process_cpu_seconds_total');
const benchCpu0 = process.cpuUsage();
const elapsed = await run(seconds * 1000, true);
const platformCpu = (await platform.metric('mss_process_cpu_seconds_total')) - platformCpu0;
const benchCpuUsage = process.cpuUsage(benchCpu0);
const benchCpu = (benchCpuUsage.user + benchCpuUsage.system) / 1e6;
const settleUntil = Date.now() + 10_000;
while (received < reached && Date.now() < settleUntil) await new Promise((r) => setTimeout(r, 50));
measuring = false;
latencies.sort((a, b) => a - b);
console.log(
  `deliveries: ${received} of ${reached} reached in ${(elapsed / 1000).toFixed(1)} s = ${Math.round(received / (elapsed / 1000))}/s; ` +
    `latency p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms, max ${latencies.at(-1)} ms`,
);
console.log(
  `CPU: platform ${((platformCpu / received) * 1e6).toFixed(1)} µs/delivery (${Math.round((platformCpu / (elapsed / 1000)) * 100)}% of a core), ` +
    `bench process ${((benchCpu / received) * 1e6).toFixed(1)} µs/delivery (${Math.round((benchCpu / (elapsed / 1000)) * 100)}%)`,
);

if (restoreCount > 0) {
  // Restore on login: N safe messages waiting for an offline user, timed from the socket's opening to the Nth callback.
  const times: number[] = [];
  for (let round = 0; round < 20; round++) {
    const user = `restore-${round}`;
    for (let i = 0; i < restoreCount; i += 1) await post('/push/messages', { users: [user], data: { i }, safe: true });
    const t0 = performance.now();
    const client = await connect(user);
    await new Promise<void>((resolve) => {
      if (client.received >= restoreCount) return resolve();
      client.onPush = () => client.received >= restoreCount && resolve();
    });
    times.push(performance.now() - t0);
    client.ws.close();
  }
  times.sort((a, b) => a - b);
  console.log(`restore of ${restoreCount} on login (20 logins): p50 ${percentile(times, 50).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms`);
}

for (const s of sessions) s.ws.close();
await platform.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
