import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WebSocket } from 'ws';
import { type PushEvent, Session } from '../client/src/sdk/session.js';
import { SignalError } from '../client/src/sdk/errors.js';
import type { ConfigInput } from '../src/core/config.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type RunningService, type ServiceDefinition, startService } from '../src/services/index.js';
import leaderboard from '../examples/leaderboard.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';

// The example services on NATS, called by SDK Sessions through the gateway. The chat keeps its rooms'
// members in instance memory, so it runs as several instances, each with memory of its own (a fresh copy
// of the module, as a process of its own would have), on its own NATS connection.

const NATS_URL = process.env.TEST_NATS_URL;
const services = { heartbeatMs: 200, timeoutMs: 1500, probeMs: 200 } satisfies ConfigInput['services'];

let platform: EmbeddedPlatform;
let tenant: { id: string; key: string };
const running: RunningService[] = [];
const sessions: Session[] = [];
/** Every chat handler run: which instance ran which method for which room. */
const runs: { instance: string; method: string; room: string; user: string }[] = [];

/** examples/chat.ts as one more instance: a fresh module (its own members), its handlers recorded in `runs`. */
async function startChat(n: number): Promise<RunningService> {
  const chat = ((await import(`../examples/chat.ts?instance=${n}`)) as { default: ServiceDefinition }).default;
  const methods = Object.fromEntries(
    Object.entries(chat.methods).map(([name, method]) => [
      name,
      {
        ...method,
        handler: (args: { room: string }, ctx: { instance: string; caller: { user: string } }) => {
          runs.push({ instance: ctx.instance, method: name, room: args.room, user: ctx.caller.user });
          return method.handler(args, ctx as never);
        },
      },
    ]),
  );
  const instance = await startService(
    { ...chat, methods },
    { url: NATS_URL, config: { log: { level: 'warn', format: 'json' }, services }, instanceId: `chat-${n}` },
  );
  running.push(instance);
  return instance;
}

async function gatewaySees(service: string, count: number): Promise<void> {
  const discovery = platform.gateway!.services.discovery;
  await waitFor(() => discovery.instances(service).length === count, 5000, `gateway sees ${count} ${service}`);
}

before(async () => {
  assert.ok(NATS_URL, 'TEST_NATS_URL (run through test/run.ts)');
  (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
  platform = await startEmbedded({
    bus: { driver: 'nats', natsUrl: NATS_URL },
    services,
    // Each client here joins and talks in 24 rooms at once: the per-connection request limit is not what is tested.
    gateway: { rateLimit: { requestsPerSecPerClient: 100_000, connectionsPerSecPerIp: 1000 } },
  });
  tenant = await platform.createTenant('examples');
  for (let n = 0; n < 3; n++) await startChat(n);
  running.push(await startService(leaderboard, { url: NATS_URL, config: { log: { level: 'warn', format: 'json' }, services } }));
  await gatewaySees('chat', 3);
  await gatewaySees('leaderboard', 1);
});

after(async () => {
  for (const s of sessions) s.close();
  for (const r of running) await r.stop();
  await platform.close();
});

async function connect(user: string): Promise<Session> {
  const session = new Session({
    reconnect: false,
    getToken: async () => {
      const res = await fetch(`${platform.nuveUrl}/sessions`, {
        method: 'POST',
        headers: {
          authorization: buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: Math.random().toString(36).slice(2) }),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ user, scopes: ['rpc', 'push'] }),
      });
      return ((await res.json()) as { token: string }).token;
    },
  });
  await session.connect();
  sessions.push(session);
  return session;
}

/** The pushes a session received, as `from: text` per room. */
function inbox(session: Session): Map<string, string[]> {
  const got = new Map<string, string[]>();
  session.on('push', (m: PushEvent) => {
    const { room, from, text } = m.data as { room: string; from: string; text: string };
    got.set(room, [...(got.get(room) ?? []), `${from}: ${text}`]);
  });
  return got;
}

test('chat: members of a room get each other\'s messages as pushes, in the order said', async () => {
  const ann = await connect('ann');
  const ben = await connect('ben');
  const got: PushEvent[] = [];
  ben.on('push', (m) => got.push(m));
  await ann.call('chat', 'join', { room: 'lobby' });
  assert.deepEqual(await ben.call('chat', 'join', { room: 'lobby' }), { members: ['ann', 'ben'] });
  await Promise.all(['one', 'two', 'three'].map((text) => ann.call('chat', 'say', { room: 'lobby', text })));
  await waitFor(() => got.length === 3, 3000, 'three messages');
  assert.deepEqual(
    got.map((m) => m.data),
    ['one', 'two', 'three'].map((text) => ({ room: 'lobby', from: 'ann', text })),
  );
  await assert.rejects(ann.call('chat', 'members', { room: 'lobby' }), (err: SignalError) => err.code === 'SERVICE_ACCESS_DENIED');
});

test('chat on 3 instances: each room\'s calls reach one instance (hash on the room), rooms spread; a room the ring moves follows it', async () => {
  const users = ['u0', 'u1', 'u2', 'u3'];
  const rooms = Array.from({ length: 24 }, (_, i) => `room-${i}`);
  const clients = await Promise.all(users.map(connect));
  const inboxes = clients.map(inbox);
  const before = runs.length;
  // Whatever strategy a client names, the method's declared hash key routes it.
  for (const c of clients) for (const room of rooms) await c.call('chat', 'join', { room }, { strategy: 'round-robin' });
  for (const [i, c] of clients.entries()) await Promise.all(rooms.map((room) => c.call('chat', 'say', { room, text: `hi from ${users[i]}` })));
  for (const [i, got] of inboxes.entries()) {
    await waitFor(() => rooms.every((room) => (got.get(room)?.length ?? 0) === users.length), 5000, `${users[i]} heard everyone in every room`);
    for (const room of rooms) assert.deepEqual(got.get(room)!.sort(), users.map((u) => `${u}: hi from ${u}`), `${users[i]} in ${room}`);
  }
  const owner = new Map<string, Set<string>>();
  for (const run of runs.slice(before)) owner.set(run.room, (owner.get(run.room) ?? new Set()).add(run.instance));
  for (const room of rooms) assert.equal(owner.get(room)?.size, 1, `${room} ran on ${[...(owner.get(room) ?? [])].join(', ')}`);
  const used = new Set(rooms.map((room) => [...owner.get(room)!][0]));
  assert.ok(used.size >= 2, `the rooms spread over the instances: ${[...used].join(', ')}`);

  // A fourth instance: the ring gives it some rooms, which start empty there. A newcomer joins every room;
  // u0's next message in a moved room is answered NOT_FOUND (its ordered stream followed the room to the
  // new instance instead of staying on the old one), and reaches the newcomer once u0 joined again.
  await startChat(3);
  await gatewaySees('chat', 4);
  const eve = await connect('eve');
  const eveGot = inbox(eve);
  const mark = runs.length;
  for (const room of rooms) await eve.call('chat', 'join', { room });
  const moved = runs.slice(mark).filter((r) => r.instance === 'chat-3').map((r) => r.room);
  assert.ok(moved.length >= 1, 'some rooms moved to the new instance');
  for (const room of rooms) {
    const say = () => clients[0]!.call('chat', 'say', { room, text: 'after' });
    try {
      await say();
      assert.ok(!moved.includes(room), `${room} moved, yet u0's message was taken by its old instance`);
    } catch (err) {
      assert.ok(err instanceof SignalError && err.code === 'NOT_FOUND' && moved.includes(room), `${room}: ${String(err)}`);
      await clients[0]!.call('chat', 'join', { room });
      await say();
    }
  }
  await waitFor(() => rooms.every((room) => eveGot.get(room)?.includes('u0: after')), 5000, 'eve heard u0 in every room');
});

test('leaderboard: best score per player, top list, reset is internal', async () => {
  const a = await connect('p1');
  const b = await connect('p2');
  await a.call('leaderboard', 'submit', { board: 'weekly', score: 10 });
  await a.call('leaderboard', 'submit', { board: 'weekly', score: 5 });
  await b.call('leaderboard', 'submit', { board: 'weekly', score: 20 });
  assert.deepEqual(await b.call('leaderboard', 'top', { board: 'weekly' }), {
    top: [
      { user: 'p2', score: 20 },
      { user: 'p1', score: 10 },
    ],
  });
  await assert.rejects(a.call('leaderboard', 'submit', { board: 'weekly', score: -1 }), (err: SignalError) => err.code === 'SERVICE_INVALID_ARGS');
  await assert.rejects(a.call('leaderboard', 'reset', { board: 'weekly' }), (err: SignalError) => err.code === 'SERVICE_ACCESS_DENIED');
});
