import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { AppError } from '../../src/core/errors.js';
import { HeartbeatPublisher } from '../../src/core/heartbeat-publisher.js';
import { createLogger } from '../../src/core/logger.js';
import {
  type OnlineBatch,
  type OnlineEvent,
  OnlineEventSender,
  onlineSubjects,
  ringKey,
} from '../../src/core/online-events.js';

// The sender's retries against stand-in distributors on the in-process bus: what it does when an
// owner times out, is missing, refuses part of a batch, or leaves the table.

const logger = createLogger({ level: 'silent', pretty: false });
const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

interface FakeDistributor {
  id: string;
  received: OnlineEvent[];
  /** How to answer a batch: ids acknowledged, or a thrown error / a promise that never settles. */
  answer: (batch: OnlineBatch) => unknown;
  /** What its heartbeats say (every 50 ms). */
  state: 'available' | 'draining';
  stop(): void;
}

function fakeDistributor(bus: MemoryBus, id: string, weight = 1): FakeDistributor {
  const fake: FakeDistributor = {
    id,
    received: [],
    answer: (batch) => ({ acked: batch.events.map((e) => e.id) }),
    state: 'available',
    stop: () => undefined,
  };
  const sub = bus.respond(onlineSubjects.online(id), (payload) => {
    const batch = payload as OnlineBatch;
    fake.received.push(...batch.events);
    return fake.answer(batch);
  });
  const publisher = new HeartbeatPublisher(bus, {
    heartbeat: onlineSubjects.heartbeat,
    down: onlineSubjects.down,
    hello: onlineSubjects.hello,
    id,
    intervalMs: 50,
    payload: () => ({ id, incarnation: `${id}-1`, weight, state: fake.state }),
  });
  publisher.start();
  fake.stop = () => {
    sub.unsubscribe();
    publisher.stop();
  };
  cleanup.push(() => fake.stop());
  return fake;
}

/** A dead process: its subscription gone, no goodbye; its heartbeats stop. */
function kill(bus: MemoryBus, fake: FakeDistributor): void {
  fake.answer = () => new Promise(() => undefined);
  // Stop beating without `down`: the table times it out.
  const publishing = bus.publish.bind(bus);
  bus.publish = (subject, payload) => {
    if ((subject === onlineSubjects.heartbeat && (payload as { id: string }).id === fake.id) || (subject === onlineSubjects.down && (payload as { id: string }).id === fake.id)) return;
    publishing(subject, payload);
  };
}

function sender(bus: MemoryBus, options: Partial<ConstructorParameters<typeof OnlineEventSender>[3]> = {}): OnlineEventSender {
  const s = new OnlineEventSender(bus, logger, 'gateway', {
    distributorTimeoutMs: 300,
    requestTimeoutMs: 100,
    retryMinMs: 10,
    retryMaxMs: 40,
    ...options,
  });
  s.start();
  cleanup.push(() => s.close(0));
  return s;
}

async function until(what: string, condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

function counts(events: OnlineEvent[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of events) m.set(e.id, (m.get(e.id) ?? 0) + 1);
  return m;
}

test('events go to the owner on the ring, batched per owner, and leave the queue once acknowledged', async () => {
  const bus = new MemoryBus(logger, 1000);
  const a = fakeDistributor(bus, 'a');
  const b = fakeDistributor(bus, 'b');
  const s = sender(bus);
  await until('both distributors in the ring', () => s.ring.members.length === 2);
  const requests: number[] = [];
  const request = bus.request.bind(bus);
  bus.request = (subject, payload, options) => {
    if (subject.endsWith('.online')) requests.push((payload as OnlineBatch).events.length);
    return request(subject, payload, options);
  };
  const events = Array.from({ length: 100 }, (_, i) => s.online('tenant', `user-${i}`));
  await until('all acknowledged', () => s.backlog === 0);
  assert.equal(a.received.length + b.received.length, 100);
  for (const e of events) {
    const owner = s.ring.lookup(ringKey(e.serviceId, e.userName));
    assert.ok((owner === 'a' ? a : b).received.some((r) => r.id === e.id), `${e.userName} went to its owner ${owner}`);
  }
  assert.equal(requests.length, 2, 'one request per owner for one turn of events');
  assert.equal(new Set(events.map((e) => e.id)).size, 100);
  assert.ok(events.every((e) => e.source === 'gateway' && e.serviceId === 'tenant'));
});

test('a timed-out batch and an event left unacknowledged are sent again with the same ids until acknowledged', async () => {
  const bus = new MemoryBus(logger, 1000);
  const a = fakeDistributor(bus, 'a');
  const s = sender(bus);
  await until('a in the ring', () => s.ring.members.length === 1);
  let calls = 0;
  a.answer = (batch) => {
    calls++;
    if (calls === 1) return new Promise(() => undefined); // times out (the owner may have handled it: its ack was lost)
    if (calls === 2) return { acked: batch.events.slice(1).map((e) => e.id) }; // the first one not handled
    return { acked: batch.events.map((e) => e.id) };
  };
  const e1 = s.online('t', 'u1');
  const e2 = s.online('t', 'u2');
  await until('all acknowledged', () => s.backlog === 0);
  const seen = counts(a.received);
  assert.equal(seen.get(e1.id), 3, 'e1: timed out, refused, acknowledged');
  assert.equal(seen.get(e2.id), 2, 'e2: timed out, acknowledged');
  assert.deepEqual(new Set(a.received.map((e) => e.id)), new Set([e1.id, e2.id]), 'copies carry the same ids');
});

test('an owner that dies: its events go to the next owner once it leaves the table; none lost', async () => {
  const bus = new MemoryBus(logger, 1000);
  const a = fakeDistributor(bus, 'a');
  const b = fakeDistributor(bus, 'b');
  const s = sender(bus, { requestTimeoutMs: 5000 });
  await until('both in the ring', () => s.ring.members.length === 2);
  kill(bus, a);
  // In flight to a, which never answers (requestTimeoutMs 5 s): the table's removal of a (300 ms) sends them on.
  const events = Array.from({ length: 50 }, (_, i) => s.online('t', `user-${i}`));
  const toA = events.filter((e) => s.ring.lookup(ringKey('t', e.userName)) === 'a');
  assert.ok(toA.length > 5, 'a owns some of them');
  const started = Date.now();
  await until('all acknowledged', () => s.backlog === 0, 3000);
  assert.ok(Date.now() - started < 2000, 'resent when a left the table, not after the request timeout');
  assert.deepEqual(s.ring.members, ['b']);
  for (const e of toA) assert.ok(b.received.some((r) => r.id === e.id), `${e.userName} reached b`);
});

test('with no distributor at all events wait (backoff) and go when one appears; too old they are dropped with a metric', async () => {
  const bus = new MemoryBus(logger, 1000);
  const registry = new Registry();
  const s = sender(bus, { maxAgeMs: 400 });
  s.registerMetrics(registry);
  const dropped: string[] = [];
  s.on('dropped', (e, reason) => dropped.push(`${e.userName}:${reason}`));
  s.online('t', 'early');
  await sleep(150);
  const a = fakeDistributor(bus, 'a');
  await until('acknowledged once a appeared', () => s.backlog === 0);
  assert.deepEqual(a.received.map((e) => e.userName), ['early']);
  a.stop();
  await until('a gone', () => s.ring.members.length === 0);
  s.online('t', 'stale');
  await until('dropped as too old', () => dropped.length === 1, 2000);
  assert.deepEqual(dropped, ['stale:age']);
  assert.equal(s.backlog, 0);
  assert.match(await registry.metrics(), /mss_online_events_dropped_total\{source="gateway",reason="age"\} 1/);
  // No distributor for longer than maxAgeMs (a cluster without any): new events are not even kept.
  await sleep(100);
  s.online('t', 'nobody');
  assert.equal(s.backlog, 0);
  assert.deepEqual(dropped, ['stale:age', 'nobody:no_distributor']);
  // One appearing ends that at once.
  const b = fakeDistributor(bus, 'b');
  await until('b in the ring', () => s.ring.members.length === 1);
  s.online('t', 'somebody');
  await until('acknowledged', () => b.received.some((e) => e.userName === 'somebody'));
});

test('the queue is bounded: past maxPending the oldest unsent event is dropped (overflow)', async () => {
  const bus = new MemoryBus(logger, 1000);
  const s = sender(bus, { maxPending: 3 });
  const dropped: string[] = [];
  s.on('dropped', (e, reason) => dropped.push(`${e.userName}:${reason}`));
  for (const user of ['u1', 'u2', 'u3', 'u4']) s.online('t', user);
  assert.deepEqual(dropped, ['u1:overflow']);
  assert.equal(s.backlog, 3);
  assert.equal(s.hasRoomFor(1), false);
});

test('an owner answering an error is retried; a draining distributor leaves the ring', async () => {
  const bus = new MemoryBus(logger, 1000);
  const a = fakeDistributor(bus, 'a');
  const b = fakeDistributor(bus, 'b');
  const s = sender(bus);
  await until('both in the ring', () => s.ring.members.length === 2);
  let refusals = 2;
  a.answer = (batch) => {
    if (refusals-- > 0) throw new AppError('BUS_TIMEOUT');
    return { acked: batch.events.map((e) => e.id) };
  };
  const user = Array.from({ length: 50 }, (_, i) => `u${i}`).find((u) => s.ring.lookup(ringKey('t', u)) === 'a')!;
  const e = s.online('t', user);
  await until('acknowledged', () => s.backlog === 0);
  assert.equal(counts(a.received).get(e.id), 3);
  // a drains: its heartbeats say so and it leaves every ring (for good: the next ones say it again).
  a.state = 'draining';
  await until('a out of the ring', () => s.ring.members.join() === 'b');
  await sleep(120);
  assert.equal(s.ring.members.join(), 'b', 'still out after more heartbeats');
  void b;
});
