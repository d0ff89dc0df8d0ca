/**
 * Joins per second and join latency across a multi-process cluster (1 Nuve,
 * 2 gateways, 2 agents, PostgreSQL, Redis) on each cluster bus (NATS, RabbitMQ)
 * vs the embedded platform, measured the same way in the same run; and the bus
 * request round trip on each bus (this process → an agent's `dump` → back).
 *
 *   node --import tsx bench/cluster.ts [joins=300] [concurrency=20] [busRequests=1000]
 *
 * The clusters' databases go to TEST_PG_URL, else to a private PostgreSQL started for the run.
 */
import { performance } from 'node:perf_hooks';
import { agentSubjects } from '../src/core/agent-protocol.js';
import { BUS_LABEL, Cluster, type ClusterBus } from '../test/helpers/cluster.js';
import { startEmbedded } from '../test/helpers/platform.js';
import { type RunningService, startPostgres } from '../test/helpers/services.js';
import { type JoinResults, measureJoins, printJoins } from './join-load.js';

const total = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 20);
const busRequests = Number(process.argv[4] ?? 1000);
for (const [name, value] of [['joins', total], ['concurrency', concurrency], ['busRequests', busRequests]] as const) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const embedded = await startEmbedded({ agent: { numWorkers: 1 }, nuve: { tokenTtlSec: 600 } });
const embeddedRooms = await Promise.all(Array.from({ length: 10 }, (_, i) => embedded.createRoom(`bench-${i}`)));
const embeddedResults = await measureJoins(
  async (i) => ({ token: await embedded.token(embeddedRooms[i % 10]!, `user-${i}`), gatewayUrl: embedded.gatewayUrl }),
  total,
  concurrency,
);
await embedded.close();

interface BusResults {
  joins: JoinResults;
  /** One request at a time, then 20 in flight: round trip in ms. */
  request: { p50: number; p99: number; loadedPerSec: number };
}

async function measureBus(bus: ClusterBus): Promise<BusResults> {
  const cluster = new Cluster();
  try {
    await cluster.start({ gateways: 2, agents: 2, bus, env: { MSS_NUVE__TOKEN_TTL_SEC: '600' } });
    const rooms = await Promise.all(Array.from({ length: 10 }, (_, i) => cluster.createRoom(`bench-${i}`)));
    const joins = await measureJoins((i) => cluster.token(rooms[i % 10]!, `user-${i}`), total, concurrency);
    const ask = () => cluster.bus.request(agentSubjects.rpc('agent-0'), { method: 'dump', data: {} }, { timeoutMs: 3000 });
    for (let i = 0; i < 50; i++) await ask(); // warm up
    const times: number[] = [];
    for (let i = 0; i < busRequests; i++) {
      const t = performance.now();
      await ask();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    let sent = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (sent++ < busRequests) await ask();
      }),
    );
    const loadedPerSec = busRequests / ((performance.now() - started) / 1000);
    return { joins, request: { p50: percentile(times, 50), p99: percentile(times, 99), loadedPerSec } };
  } finally {
    await cluster.stop();
  }
}

let postgres: RunningService | undefined;
if (!process.env.TEST_PG_URL) {
  postgres = await startPostgres();
  process.env.TEST_PG_URL = postgres.url;
}
const results: [ClusterBus, BusResults][] = [];
try {
  for (const bus of ['nats', 'rabbitmq'] as const) results.push([bus, await measureBus(bus)]);
} finally {
  await postgres?.stop();
}

printJoins('embedded', embeddedResults);
for (const [bus, r] of results) {
  const label = `cluster on ${BUS_LABEL[bus]}`;
  printJoins(label, r.joins);
  console.log(
    `${label}: bus request round trip (n=${busRequests}) p50 ${r.request.p50.toFixed(2)} ms, p99 ${r.request.p99.toFixed(2)} ms; 20 in flight: ${r.request.loadedPerSec.toFixed(0)} requests/s`,
  );
  console.log(
    `${label} / embedded: latency p50 ×${(r.joins.sequential.p50 / embeddedResults.sequential.p50).toFixed(2)}, throughput ×${(r.joins.loaded.joinsPerSec / embeddedResults.loaded.joinsPerSec).toFixed(2)}`,
  );
}
