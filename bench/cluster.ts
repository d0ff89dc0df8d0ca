/**
 * Joins per second and join latency across a multi-process cluster (1 Nuve,
 * 2 gateways, 2 agents over NATS, PostgreSQL, Redis) vs the embedded platform,
 * measured the same way in the same run.
 *
 *   node --import tsx bench/cluster.ts [joins=300] [concurrency=20]
 */
import { Cluster } from '../test/helpers/cluster.js';
import { startEmbedded } from '../test/helpers/platform.js';
import { type JoinResults, measureJoins, printJoins } from './join-load.js';

const total = Number(process.argv[2] ?? 300);
const concurrency = Number(process.argv[3] ?? 20);

const embedded = await startEmbedded({ agent: { numWorkers: 1 }, nuve: { tokenTtlSec: 600 } });
const embeddedRooms = await Promise.all(Array.from({ length: 10 }, (_, i) => embedded.createRoom(`bench-${i}`)));
const embeddedResults = await measureJoins(
  async (i) => ({ token: await embedded.token(embeddedRooms[i % 10]!, `user-${i}`), gatewayUrl: embedded.gatewayUrl }),
  total,
  concurrency,
);
await embedded.close();

const cluster = new Cluster();
let clusterResults: JoinResults;
try {
  await cluster.start({ gateways: 2, agents: 2, env: { MSS_NUVE__TOKEN_TTL_SEC: '600' } });
  const rooms = await Promise.all(Array.from({ length: 10 }, (_, i) => cluster.createRoom(`bench-${i}`)));
  clusterResults = await measureJoins((i) => cluster.token(rooms[i % 10]!, `user-${i}`), total, concurrency);
} finally {
  await cluster.stop();
}

printJoins('embedded', embeddedResults);
printJoins('cluster ', clusterResults);
console.log(
  `cluster/embedded: latency p50 ×${(clusterResults.sequential.p50 / embeddedResults.sequential.p50).toFixed(2)}, throughput ×${(clusterResults.loaded.joinsPerSec / embeddedResults.loaded.joinsPerSec).toFixed(2)}`,
);
