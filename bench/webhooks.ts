/**
 * Webhook delivery from the outbox on PostgreSQL: events/s delivered and event-to-delivery latency.
 *
 *   node --import tsx bench/webhooks.ts [--rooms 100] [--rate 1000] [--duration 10] [--burst 20000]
 *                                       [--outage 10] [--outage-rate 200] [--per-tenant 4] [--concurrency 32]
 *
 * In this process: Nuve (MemoryBus, PostgreSQL: TEST_PG_URL's server, else a private one started
 * here with fsync off) and a gateway's RoomEventPublisher. The receiver is a forked child (its own
 * event loop), answering 200 at once and noting each event's arrival minus its `createdAt`.
 * 1. steady: `rate` events/s over `rooms` rooms for `duration` s; delivered/s and latency percentiles.
 * 2. burst: `burst` events at once; how fast the outbox drains.
 * 3. outage: the receiver refuses connections for `outage` s while `outage-rate` events/s arrive,
 *    then comes back; every event must arrive once, in order per room (LiveKit's in-memory queue of
 *    100 per URL, 5 attempts in about a minute, drops them).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { RoomEventPublisher } from '../src/gateway/room-events.js';
import { Nuve } from '../src/nuve/nuve.js';
import { openStore } from '../src/nuve/store/store.js';
import { startPostgres } from '../test/helpers/services.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};

interface ReceiverStats {
  count: number;
  duplicates: number;
  outOfOrder: number;
  latencies: number[];
}

/** The forked receiver: counts, checks order per room (by the bench's `seq` in the room name), times. */
function receiverChild(): void {
  const seen = new Set<string>();
  const lastSeq = new Map<string, number>();
  let stats: ReceiverStats = { count: 0, duplicates: 0, outOfOrder: 0, latencies: [] };
  let server: Server | undefined;
  const listen = (port: number) =>
    new Promise<number>((resolve) => {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString()) as { id: string; createdAt: number; room: { id: string }; reason?: string };
          res.writeHead(200).end();
          if (seen.has(body.id)) return void stats.duplicates++;
          seen.add(body.id);
          const seq = Number(body.reason);
          if (seq <= (lastSeq.get(body.room.id) ?? -1)) stats.outOfOrder++;
          lastSeq.set(body.room.id, seq);
          stats.count++;
          stats.latencies.push(Date.now() - body.createdAt);
        });
      }).listen(port, '127.0.0.1', () => resolve((server!.address() as { port: number }).port));
    });
  process.on('message', async (m: { op: string; port?: number }) => {
    if (m.op === 'listen') process.send!({ port: await listen(m.port ?? 0) });
    else if (m.op === 'down') {
      server!.closeAllConnections();
      server!.close(() => process.send!({ ok: true }));
    } else if (m.op === 'stats') {
      process.send!(stats);
      stats = { count: 0, duplicates: 0, outOfOrder: 0, latencies: [] };
    }
  });
}

function ask<T>(child: ChildProcess, message: unknown): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send(message as object);
  });
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

async function main(): Promise<void> {
  const rooms = arg('rooms', 100);
  const rate = arg('rate', 1000);
  const duration = arg('duration', 10);
  const burst = arg('burst', 20_000);
  const outage = arg('outage', 10);
  const outageRate = arg('outage-rate', 200);

  const own = process.env.TEST_PG_URL ? undefined : await startPostgres();
  const server = (process.env.TEST_PG_URL ?? own!.url).replace(/\/+$/, '');
  const db = `mss_bench_webhooks_${randomBytes(3).toString('hex')}`;
  const logger = createLogger({ level: 'warn', pretty: false });
  const config = loadConfig({
    env: {},
    overrides: {
      log: { level: 'warn' },
      store: { driver: 'postgres', postgresUrl: `${server}/${db}`, poolSize: 10 },
      // The default backoff (1 s doubling): what an outage really costs in drain time.
      nuve: { port: 0, rateLimit: { enabled: false }, webhooks: { perTenantConcurrency: arg('per-tenant', 4), concurrency: arg('concurrency', 32) } },
    },
  });
  const bus = new MemoryBus(logger, config.bus.requestTimeoutMs);
  const store = await openStore(config.store);
  const nuve = new Nuve({ config, bus, store, logger });
  await nuve.start();
  const child = fork(fileURLToPath(import.meta.url), ['--receiver'], { execArgv: ['--import', 'tsx'] });
  const { port } = await ask<{ port: number }>(child, { op: 'listen' });

  const serviceId = randomBytes(12).toString('hex');
  await store.createService({ id: serviceId, name: 'bench', key: 'bench-key-0123456789', isSuper: false, createdAt: Date.now() });
  await store.webhooks.setEndpoint({ serviceId, roomId: '', url: `http://127.0.0.1:${port}/hook`, createdAt: Date.now() });
  const roomIds = Array.from({ length: rooms }, (_, i) => `room${i}`);
  const seqs = new Map<string, number>();
  const publisher = new RoomEventPublisher(bus, 'gw-bench', logger, { retryMinMs: 50, retryMaxMs: 1000 });
  let next = 0;
  const emit = () => {
    const roomId = roomIds[next++ % rooms]!;
    const seq = (seqs.get(roomId) ?? 0) + 1;
    seqs.set(roomId, seq);
    // The room's sequence number rides in `reason` so the receiver can check the order.
    publisher.emit({ type: 'participant_joined', serviceId, roomId, reason: String(seq), participant: { id: 'p', identity: 'u', name: 'U', role: 'presenter' } });
  };
  const drained = async (total: number) => {
    let got: ReceiverStats = { count: 0, duplicates: 0, outOfOrder: 0, latencies: [] };
    for (;;) {
      const s = await ask<ReceiverStats>(child, { op: 'stats' });
      got = { count: got.count + s.count, duplicates: got.duplicates + s.duplicates, outOfOrder: got.outOfOrder + s.outOfOrder, latencies: got.latencies.concat(s.latencies) };
      if (got.count >= total) return got;
      await sleep(100);
    }
  };
  const report = (name: string, total: number, ms: number, s: ReceiverStats) => {
    const sorted = s.latencies.sort((a, b) => a - b);
    console.log(
      `${name}: ${total} events, delivered ${s.count} in ${(ms / 1000).toFixed(1)} s = ${Math.round((s.count * 1000) / ms)}/s; ` +
        `latency p50 ${pct(sorted, 50)} ms, p99 ${pct(sorted, 99)} ms, max ${sorted.at(-1)} ms; duplicates ${s.duplicates}, out of order ${s.outOfOrder}`,
    );
  };
  console.log(`${cpus().length} CPUs, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${rooms} rooms; PostgreSQL ${own ? 'private (fsync off)' : server}`);

  // 1. Steady rate.
  let start = Date.now();
  const steadyTotal = rate * duration;
  for (let sent = 0; sent < steadyTotal; ) {
    const due = Math.min(steadyTotal, Math.floor(((Date.now() - start) / 1000) * rate));
    while (sent < due) {
      emit();
      sent++;
    }
    await sleep(5);
  }
  let got = await drained(steadyTotal);
  report(`steady ${rate}/s`, steadyTotal, Date.now() - start, got);

  // 2. Burst.
  start = Date.now();
  for (let i = 0; i < burst; i++) emit();
  got = await drained(burst);
  report('burst', burst, Date.now() - start, got);

  // 3. Outage.
  await ask(child, { op: 'down' });
  start = Date.now();
  const outageTotal = outage * outageRate;
  for (let sent = 0; sent < outageTotal; ) {
    const due = Math.min(outageTotal, Math.floor(((Date.now() - start) / 1000) * outageRate));
    while (sent < due) {
      emit();
      sent++;
    }
    await sleep(10);
  }
  const pending = await store.webhooks.pendingCount(serviceId);
  await ask(child, { op: 'listen', port });
  const back = Date.now();
  const s = await drained(outageTotal);
  // From the first event of the outage to the last delivered.
  console.log(`outage ${outage} s at ${outageRate}/s: ${pending} events waiting in the outbox when the receiver came back; drained in ${((Date.now() - back) / 1000).toFixed(1)} s`);
  report('outage', outageTotal, Date.now() - start, s);

  await publisher.close();
  await nuve.close();
  await store.close();
  child.kill();
  const admin = new pg.Client({ connectionString: `${server}/postgres` });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  await admin.end();
  await own?.stop();
}

if (process.argv.includes('--receiver')) receiverChild();
else await main();
