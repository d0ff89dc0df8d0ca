/**
 * The push store alone, as a safe push drives it: per round, 200 users each get one message (one
 * batched INSERT), the cap check, and each user's acknowledgement (one batch). No bus, gateway or
 * sockets: the store's share of a safe delivery, steadier than the end-to-end bench on a shared VM.
 *
 *   node --import tsx bench/push-store.ts [--rounds 1000] [--users 200] [--cap 1000] [--src ../src]
 *
 * `--src` points at another checkout's src/ to compare (e.g. a worktree of an older commit).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1000' },
    users: { type: 'string', default: '200' },
    cap: { type: 'string', default: '1000' },
    src: { type: 'string', default: join(import.meta.dirname, '../src') },
  },
});
const src = pathToFileURL(resolve(args.src!)).href;
const { openDatabase } = (await import(`${src}/core/database.ts`)) as typeof import('../src/core/database.js');
const { PushStore } = (await import(`${src}/push/store.ts`)) as typeof import('../src/push/store.js');

const dir = mkdtempSync(join(tmpdir(), 'mss-push-store-bench-'));
const database = await openDatabase({ driver: 'sqlite', sqlitePath: join(dir, 'bench.db'), postgresUrl: '', poolSize: 1 });
const store = await PushStore.open(database);
const users = Array.from({ length: Number(args.users) }, (_, i) => `user-${i}`);
const cap = Number(args.cap);
const phases = { add: 0, cap: 0, ack: 0 };
let seq = 0;

async function round(): Promise<void> {
  const messages = users.map((userName) => {
    seq++;
    return { id: `pm_${seq.toString(36)}_${Math.random().toString(36).slice(2)}`, seq, serviceId: 's', userName, data: { t: seq }, createdAt: 1, expiresAt: null };
  });
  let t = performance.now();
  await Promise.all(messages.map((m) => store.add(m)));
  phases.add += performance.now() - t;
  t = performance.now();
  await store.enforceCap('s', users, cap);
  phases.cap += performance.now() - t;
  t = performance.now();
  await Promise.all(messages.map((m) => store.ack('s', m.userName, [m.id])));
  phases.ack += performance.now() - t;
}

for (let i = 0; i < 200; i++) await round();
phases.add = phases.cap = phases.ack = 0;
const rounds = Number(args.rounds);
const cpu0 = process.cpuUsage();
for (let i = 0; i < rounds; i++) await round();
const cpu = process.cpuUsage(cpu0);
const per = (ms: number) => ((ms * 1000) / rounds / users.length).toFixed(2);
console.log(
  `${args.src}: CPU ${((cpu.user + cpu.system) / rounds / users.length).toFixed(2)} µs/delivery; ` +
    `wall µs/delivery: insert ${per(phases.add)}, cap ${per(phases.cap)}, ack ${per(phases.ack)}`,
);
await store.close();
await database.close();
rmSync(dir, { recursive: true, force: true });
