/**
 * Nuve's side of group calls, on each store engine: what the presence costs per room event, and how
 * long the distributor's question (`nuve.groups.calls`) takes.
 *
 *   node --import tsx bench/group-calls.ts [--groups 20] [--rooms 200] [--peers 10] [--queries 2000]
 *
 * In this process, on the repositories (no bus): SQLite in memory, and PostgreSQL (TEST_PG_URL's
 * server, else a private one started here).
 * 1. presence: batches of 100 joins then 100 leaves, as a gateway sends them; events/s applied.
 * 2. calls: a user in `groups` groups whose `rooms` rooms each hold `peers` peers (the answer lists
 *    100 calls of 10); and a user in one group with one call; latency percentiles of `queries` asks.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { RoomEvent } from '../src/core/room-events.js';
import { newId } from '../src/core/ids.js';
import { type Store, openStore } from '../src/nuve/store/store.js';
import { startPostgres } from '../test/helpers/services.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const groups = arg('groups', 20);
const rooms = arg('rooms', 200);
const peers = arg('peers', 10);
const queries = arg('queries', 2000);

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

async function run(engine: string, store: Store): Promise<void> {
  const serviceId = newId();
  await store.createService({ id: serviceId, name: 'bench', key: 'k'.repeat(24), isSuper: false, createdAt: Date.now() });
  let at = Date.now();
  const event = (type: RoomEvent['type'], roomId: string, peer?: string): RoomEvent => ({
    id: randomUUID(),
    type,
    at: ++at,
    serviceId,
    roomId,
    ...(peer !== undefined && { participant: { id: peer, identity: peer, name: peer, role: 'presenter' } }),
  });

  // 1. Presence writes: 100-event batches over 50 rooms.
  const churnRooms = Array.from({ length: 50 }, () => newId());
  for (const id of churnRooms) await store.createRoom({ id, serviceId, name: id, data: undefined, p2p: false, mediaConfiguration: null, eapolicy: 'ROOM-BEST', gatewayId: null, createdAt: at });
  await store.calls.apply('gw', churnRooms.map((id) => event('room_started', id)));
  const batches = 100;
  let events = 0;
  const started = performance.now();
  for (let b = 0; b < batches; b++) {
    const joins = Array.from({ length: 100 }, (_, i) => event('participant_joined', churnRooms[i % 50]!, `p${b}-${i}`));
    await store.calls.apply('gw', joins);
    await store.calls.apply('gw', joins.map((j) => event('participant_left', j.roomId, j.participant!.id)));
    events += 200;
  }
  const writeSec = (performance.now() - started) / 1000;
  console.log(`${engine}: presence ${Math.round(events / writeSec)} events/s applied (batches of 100, ${events} events)`);

  // 2. The question: a busy user and a typical one.
  const groupNames = Array.from({ length: groups }, (_, i) => `g${i}`);
  for (const g of groupNames) await store.groups.addMembers(serviceId, g, ['busy']);
  await store.groups.addMembers(serviceId, 'solo', ['typical']);
  const live: RoomEvent[] = [];
  for (let r = 0; r < rooms; r++) {
    const id = newId();
    await store.createRoom({ id, serviceId, name: id, data: undefined, p2p: false, mediaConfiguration: null, eapolicy: 'ROOM-BEST', gatewayId: null, createdAt: at, group: groupNames[r % groups]! });
    live.push(event('room_started', id));
    for (let p = 0; p < peers; p++) live.push(event('participant_joined', id, `r${r}p${p}`));
  }
  const soloRoom = newId();
  await store.createRoom({ id: soloRoom, serviceId, name: 'solo', data: undefined, p2p: false, mediaConfiguration: null, eapolicy: 'ROOM-BEST', gatewayId: null, createdAt: at, group: 'solo' });
  live.push(event('room_started', soloRoom), event('participant_joined', soloRoom, 'friend'));
  for (let i = 0; i < live.length; i += 500) await store.calls.apply('gw', live.slice(i, i + 500));

  for (const user of ['busy', 'typical']) {
    const times: number[] = [];
    let listed = 0;
    for (let q = 0; q < queries; q++) {
      const t = performance.now();
      listed = (await store.calls.callsOf(serviceId, user)).calls.length;
      times.push(performance.now() - t);
    }
    times.sort((x, y) => x - y);
    console.log(
      `${engine}: calls of a user (${user === 'busy' ? `${groups} groups, ${rooms} live rooms of ${peers}` : '1 group, 1 live room'}; ${listed} listed): ` +
        `p50 ${percentile(times, 50).toFixed(2)} ms, p99 ${percentile(times, 99).toFixed(2)} ms over ${queries}`,
    );
  }
}

const sqlite = await openStore({ driver: 'sqlite', sqlitePath: ':memory:', postgresUrl: '', poolSize: 1 });
await run('sqlite', sqlite);
await sqlite.close();

const own = process.env.TEST_PG_URL ? undefined : await startPostgres();
const server = (process.env.TEST_PG_URL ?? own!.url).replace(/\/+$/, '');
const pgStore = await openStore({ driver: 'postgres', sqlitePath: ':memory:', postgresUrl: `${server}/mss_bench_groups_${randomBytes(3).toString('hex')}`, poolSize: 10 });
await run('postgres', pgStore);
await pgStore.close();
await own?.stop();
