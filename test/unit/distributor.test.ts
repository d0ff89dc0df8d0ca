import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { parseConfig } from '../../src/core/config.js';
import { AppError } from '../../src/core/errors.js';
import { type GroupCall, type GroupCallsResult, groupCallsSubjects } from '../../src/core/group-calls-protocol.js';
import { createLogger } from '../../src/core/logger.js';
import { type OnlineBatchResult, type OnlineEvent, type OwnerQueryResult, onlineSubjects, ringKey } from '../../src/core/online-events.js';
import { type PushSend, pushSubjects } from '../../src/core/push-protocol.js';
import { Distributor } from '../../src/distributor/distributor.js';
import type { GroupCallsNotification } from '../../src/distributor/notification.js';

// One distributor against stand-ins of Nuve (nuve.groups.calls) and the push role (push.send) on the
// in-process bus: what it pushes for each kind of user, and how it drops copies of an event.

const logger = createLogger({ level: 'silent', pretty: false });
const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

const call = (roomId: string, group = 'team', since = 1000): GroupCall => ({
  roomId,
  roomName: `Room ${roomId}`,
  group,
  since,
  participants: [{ id: 'p1', name: 'Ann', since }],
  participantCount: 1,
});

interface Harness {
  bus: MemoryBus;
  distributor: Distributor;
  registry: Registry;
  pushes: PushSend[];
  lookups: string[];
  /** What Nuve answers for a user (called once per lookup, in order). */
  calls: (user: string, nth: number) => GroupCallsResult | Promise<GroupCallsResult>;
  /** What the push role does with a push. */
  push: (send: PushSend) => unknown;
  send(events: OnlineEvent[]): Promise<OnlineBatchResult>;
}

async function harness(distributor: Record<string, unknown> = {}): Promise<Harness> {
  const bus = new MemoryBus(logger, 1000);
  const config = parseConfig({ distributor: { id: 'd1', heartbeatMs: 50, timeoutMs: 300, ...distributor } });
  const registry = new Registry();
  const h: Harness = {
    bus,
    distributor: new Distributor(config, bus, logger),
    registry,
    pushes: [],
    lookups: [],
    calls: () => ({ groups: 1, calls: [call('r1')] }),
    push: (send) => ({ messages: [], reached: 1, offline: [] }),
    send: (events) => bus.request<OnlineBatchResult>(onlineSubjects.online('d1'), { events }, { timeoutMs: 3000 }),
  };
  bus.respond(groupCallsSubjects.forUser, (payload) => {
    const { userName } = payload as { userName: string };
    h.lookups.push(userName);
    return h.calls(userName, h.lookups.filter((u) => u === userName).length);
  }, { queue: 'nuve' });
  bus.respond(pushSubjects.send, (payload) => {
    h.pushes.push(payload as PushSend);
    return h.push(payload as PushSend);
  }, { queue: 'push' });
  h.distributor.registerMetrics(registry);
  await h.distributor.start();
  cleanup.push(() => h.distributor.close());
  return h;
}

const event = (userName: string, serviceId = 'tenant'): OnlineEvent => ({ id: randomUUID(), serviceId, userName, at: Date.now() - 5, source: 'gateway' });

async function metric(registry: Registry, line: RegExp): Promise<number> {
  const match = line.exec(await registry.metrics());
  return match ? Number(match[1]) : Number.NaN;
}

test('a user with calls in its groups gets one unsafe push listing them, under the event id', async () => {
  const h = await harness();
  const e = event('ann');
  h.calls = () => ({ groups: 2, calls: [call('r1', 'team', 1000), call('r2', 'family', 2000)] });
  assert.deepEqual(await h.send([e]), { acked: [e.id] });
  assert.equal(h.pushes.length, 1);
  const push = h.pushes[0]!;
  assert.deepEqual([push.serviceId, push.users, push.safe, push.messageId, push.ttlSec], ['tenant', ['ann'], false, e.id, undefined]);
  const data = push.data as unknown as GroupCallsNotification;
  assert.equal(data.type, 'groupCalls');
  assert.equal(data.eventId, e.id);
  assert.deepEqual(data.calls.map((c) => [c.roomId, c.group, c.participants[0]!.name]), [
    ['r2', 'family', 'Ann'],
    ['r1', 'team', 'Ann'],
  ]);
  assert.equal(await metric(h.registry, /mss_distributor_events_total\{outcome="notified"\} (\d+)/), 1);
  assert.equal(await metric(h.registry, /mss_distributor_lag_seconds_count (\d+)/), 1);
});

test('safe when configured, with the short TTL', async () => {
  const h = await harness({ push: 'safe', safeTtlSec: 7 });
  const e = event('bob');
  await h.send([e]);
  assert.deepEqual([h.pushes[0]!.safe, h.pushes[0]!.ttlSec, h.pushes[0]!.messageId], [true, 7, e.id]);
});

test('no group, or groups without calls: nothing is pushed, and the event is acknowledged', async () => {
  const h = await harness();
  h.calls = (user) => (user === 'loner' ? { groups: 0, calls: [] } : { groups: 3, calls: [] });
  const events = [event('loner'), event('quiet')];
  assert.deepEqual(new Set((await h.send(events)).acked), new Set(events.map((e) => e.id)));
  assert.equal(h.pushes.length, 0);
  assert.equal(await metric(h.registry, /mss_distributor_events_total\{outcome="no_groups"\} (\d+)/), 1);
  assert.equal(await metric(h.registry, /mss_distributor_events_total\{outcome="no_calls"\} (\d+)/), 1);
});

test('a call that ends between the lookup and the push is not announced (the calls are asked again just before)', async () => {
  const h = await harness();
  // The first lookup sees r1 and r2; by the second r1 ended.
  h.calls = (_user, nth) => ({ groups: 1, calls: nth === 1 ? [call('r1'), call('r2')] : [call('r2')] });
  await h.send([event('carl')]);
  assert.deepEqual((h.pushes[0]!.data as unknown as GroupCallsNotification).calls.map((c) => c.roomId), ['r2']);
  // Every call ended: nothing pushed at all.
  h.calls = (user, nth) => ({ groups: 1, calls: nth === 1 ? [call('r3')] : [] });
  await h.send([event('dora')]);
  assert.equal(h.pushes.length, 1);
  assert.equal(await metric(h.registry, /mss_distributor_events_total\{outcome="ended"\} (\d+)/), 1);
});

test('without the re-check, the first answer is pushed as it was (what recheckCalls prevents)', async () => {
  const h = await harness({ recheckCalls: false });
  h.calls = (_user, nth) => ({ groups: 1, calls: nth === 1 ? [call('r3')] : [] });
  await h.send([event('dora')]);
  assert.deepEqual((h.pushes[0]!.data as unknown as GroupCallsNotification).calls.map((c) => c.roomId), ['r3']);
  assert.equal(h.lookups.length, 1);
});

test('a user offline by the push: unsafe reaches nobody and is counted, not retried', async () => {
  const h = await harness();
  h.push = (send) => ({ messages: [], reached: 0, offline: send.users });
  const e = event('gone');
  assert.deepEqual(await h.send([e]), { acked: [e.id] });
  assert.equal(h.pushes.length, 1);
  assert.equal(await metric(h.registry, /mss_distributor_events_total\{outcome="unreached"\} (\d+)/), 1);
});

test('copies of an event, during its handling or after, are acknowledged without a second push', async () => {
  const h = await harness();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  h.calls = async () => {
    await gate;
    return { groups: 1, calls: [call('r1')] };
  };
  const e = event('eve');
  const first = h.send([e]);
  await sleep(20);
  const during = h.send([e]);
  await sleep(20);
  release();
  assert.deepEqual(await first, { acked: [e.id] });
  assert.deepEqual(await during, { acked: [e.id] });
  assert.deepEqual(await h.send([e]), { acked: [e.id] }, 'a late copy');
  assert.equal(h.pushes.length, 1);
  assert.equal(await metric(h.registry, /mss_distributor_duplicates_total (\d+)/), 2);
});

test('the memory of handled ids is bounded (dedupeSize): the oldest are forgotten', async () => {
  const h = await harness({ dedupeSize: 2 });
  h.calls = () => ({ groups: 1, calls: [call('r1')] });
  const [a, b, c] = [event('a'), event('b'), event('c')];
  for (const e of [a, b, c]) await h.send([e]);
  await h.send([c]);
  assert.equal(h.pushes.length, 3, 'c remembered');
  await h.send([a]);
  assert.equal(h.pushes.length, 4, 'a forgotten: handled again (the SDK drops the copy by id)');
  assert.equal(h.pushes[3]!.messageId, a.id);
});

test('Nuve or the push role not answering: the event is not acknowledged (its sender retries), and a retry is handled', async () => {
  const h = await harness();
  h.push = () => {
    throw new AppError('PUSH_UNAVAILABLE');
  };
  const e = event('fay');
  assert.deepEqual(await h.send([e]), { acked: [] });
  h.push = () => ({ messages: [], reached: 1, offline: [] });
  assert.deepEqual(await h.send([e]), { acked: [e.id] });
  assert.equal(h.pushes.length, 2);
  // A refusal is final: acknowledged, counted as failed, not pushed.
  h.calls = () => {
    throw new AppError('VALIDATION_FAILED');
  };
  const bad = event('gus');
  assert.deepEqual(await h.send([bad]), { acked: [bad.id] });
  assert.equal(await metric(h.registry, /mss_distributor_events_total\{outcome="failed"\} (\d+)/), 1);
});

test('a malformed batch or Nuve answer is refused with a catalogued code, never handled', async () => {
  const h = await harness();
  await assert.rejects(h.bus.request(onlineSubjects.online('d1'), { events: [{ id: 'x' }] }), { code: 'VALIDATION_FAILED' });
  await assert.rejects(h.bus.request(onlineSubjects.online('d1'), { events: [] }), { code: 'VALIDATION_FAILED' });
  h.calls = () => ({ groups: 1, calls: [{ roomId: 'r1' }] }) as unknown as GroupCallsResult;
  const e = event('hal');
  assert.deepEqual(await h.send([e]), { acked: [e.id] });
  assert.equal(h.pushes.length, 0);
});

test('a long list is cut to maxPayloadBytes: fewer participants listed first, then the oldest calls', async () => {
  const h = await harness({ maxPayloadBytes: 1024 });
  const many = Array.from({ length: 30 }, (_, i) => ({
    ...call(`room-${i}`, 'g', 1000 + i),
    participants: Array.from({ length: 40 }, (_, j) => ({ id: `p${j}`, name: `Participant ${j}`, since: 1 })),
    participantCount: 40,
  }));
  h.calls = () => ({ groups: 1, calls: many });
  await h.send([event('ian')]);
  const data = h.pushes[0]!.data as unknown as GroupCallsNotification;
  assert.ok(Buffer.byteLength(JSON.stringify(data)) <= 1024);
  assert.ok(data.calls.length > 0 && data.calls.every((c) => c.participants.length === 3 && c.participantCount === 40));
  assert.equal(data.calls[0]!.roomId, 'room-29', 'the most recent first');
  assert.equal(data.calls.length + data.moreCalls!, 30);
});

test('owner queries answer the ring version and owners; drain leaves the ring after the events in hand', async () => {
  const h = await harness();
  const seen: { id: string; state: string }[] = [];
  h.bus.subscribe(onlineSubjects.heartbeat, (p) => {
    seen.push(p as { id: string; state: string });
  });
  const users = Array.from({ length: 20 }, (_, i) => ({ serviceId: 't', userName: `u${i}` }));
  const answer = await h.bus.request<OwnerQueryResult>(onlineSubjects.owner('d1'), { users });
  assert.equal(answer.version, h.distributor.ring.version);
  assert.deepEqual(answer.owners, users.map(() => 'd1'));
  assert.equal(h.distributor.ring.lookup(ringKey('t', 'u1')), 'd1');
  assert.match(await h.registry.metrics(), /mss_distributor_owned_share\{distributor="d1"\} 1\n/);

  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  h.calls = async () => {
    await gate;
    return { groups: 0, calls: [] };
  };
  const inHand = h.send([event('jo')]);
  await sleep(10);
  let drained = false;
  const drain = h.distributor.drain().then(() => (drained = true));
  await sleep(30);
  assert.equal(drained, false, 'an event in hand holds the drain');
  assert.ok(seen.some((b) => b.id === 'd1' && b.state === 'draining'), 'announced draining');
  assert.equal(h.distributor.ring.size, 0, 'out of its own ring');
  assert.match(await h.registry.metrics(), /mss_distributor_owned_share\{distributor="d1"\} 0\n/);
  release();
  await drain;
  assert.equal((await inHand).acked.length, 1);
});

test('its probe server: /ready until it drains, /metrics with the ops token only', async () => {
  const token = 'distributor-ops-token-0123456789';
  const bus = new MemoryBus(logger, 1000);
  const config = parseConfig({ ops: { token }, distributor: { id: 'd-probe', healthPort: 0 } });
  const distributor = new Distributor(config, bus, logger);
  const registry = new Registry();
  distributor.registerMetrics(registry);
  await distributor.start();
  cleanup.push(() => distributor.close());
  const base = `http://127.0.0.1:${distributor.healthPort}`;
  assert.equal((await fetch(`${base}/ready`)).status, 200);
  assert.equal((await fetch(`${base}/metrics`)).status, 401);
  const metrics = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(metrics.status, 200);
  const text = await metrics.text();
  assert.match(text, /mss_distributor_owned_share\{distributor="d-probe"\} 1/);
  assert.match(text, /mss_distributor_ring_members 1/);
  await distributor.drain();
  assert.equal((await fetch(`${base}/ready`)).status, 503);
});
