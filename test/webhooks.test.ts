import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomUUID } from 'node:crypto';
import type { RoomEventType } from '../src/core/room-events.js';
import { subjects } from '../src/core/subjects.js';
import { RoomEventPublisher, type RoomEventInput } from '../src/gateway/room-events.js';
import { Nuve } from '../src/nuve/nuve.js';
import { openStore } from '../src/nuve/store/store.js';
import { verifyWebhook } from '../src/server/index.js';
import { type NuveHarness, type TestService, startNuve, testLogger, waitFor } from './helpers/nuve-harness.js';
import { type Received, WebhookReceiver } from './helpers/webhook-receiver.js';

/** Fast retries so an outage of a second sees many attempts. */
const fast = { backoffBaseMs: 20, backoffMaxMs: 100, pollMs: 50, timeoutMs: 2000 };

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function harness(webhooks: Record<string, number> = {}): Promise<NuveHarness> {
  const h = await startNuve({ store: 'postgres', nuve: { webhooks: { ...fast, ...webhooks } } });
  cleanups.push(() => h.close());
  return h;
}

async function receiver(): Promise<WebhookReceiver> {
  const r = await WebhookReceiver.start();
  cleanups.push(() => r.close());
  return r;
}

/** A gateway's publisher on the harness's bus, retrying fast. */
function publisher(h: NuveHarness, gatewayId = 'gw-1'): RoomEventPublisher {
  const p = new RoomEventPublisher(h.bus, gatewayId, testLogger(), { retryMinMs: 10, retryMaxMs: 100, requestTimeoutMs: 500 });
  cleanups.push(() => p.close(0));
  return p;
}

async function setWebhook(h: NuveHarness, tenant: TestService, body: unknown, path = '/webhook') {
  return h.call('PUT', path, { service: tenant.id, key: tenant.key, body });
}

/** A room's life as a gateway reports it: `n` participants join, publish, and leave. */
function lifeOf(serviceId: string, roomId: string, n: number): RoomEventInput[] {
  const events: RoomEventInput[] = [{ type: 'room_started', serviceId, roomId }];
  for (let i = 0; i < n; i++) {
    const participant = { id: `p${i}`, identity: `user${i}`, name: `User ${i}`, role: 'presenter' };
    events.push({ type: 'participant_joined', serviceId, roomId, participant });
    events.push({ type: 'track_published', serviceId, roomId, participant, track: { id: `t${i}`, kind: 'audio' } });
  }
  for (let i = 0; i < n; i++) {
    const participant = { id: `p${i}`, identity: `user${i}`, name: `User ${i}`, role: 'presenter' };
    events.push({ type: 'track_unpublished', serviceId, roomId, participant, track: { id: `t${i}`, kind: 'audio' }, reason: 'leave' });
    events.push({ type: 'participant_left', serviceId, roomId, participant, reason: 'leave' });
  }
  events.push({ type: 'room_finished', serviceId, roomId });
  return events;
}

/** Emits each room's events interleaved across rooms, keeping each room's order. */
function emitInterleaved(p: RoomEventPublisher, lives: RoomEventInput[][]): void {
  const longest = Math.max(...lives.map((l) => l.length));
  for (let i = 0; i < longest; i++) for (const life of lives) if (life[i]) p.emit(life[i]!);
}

/** What a room's receiver saw, as "type:participant:track" in arrival order. */
const sequence = (received: Received[], roomId: string) =>
  received.filter((r) => r.body.room.id === roomId).map((r) => `${r.body.event}:${r.body.participant?.id ?? ''}:${r.body.track?.id ?? ''}`);
const expected = (life: RoomEventInput[]) => life.map((e) => `${e.type}:${e.participant?.id ?? ''}:${e.track?.id ?? ''}`);

function assertOncePerId(received: Received[]): void {
  const ids = received.map((r) => r.body.id);
  assert.equal(new Set(ids).size, ids.length, 'an event was delivered (answered 2xx) twice');
}

describe('webhooks from the outbox (PostgreSQL)', () => {
  test('a receiver down for a while, and Nuve restarted during the outage: every event once, in order per room, signed', async () => {
    const h = await harness();
    const tenant = await h.createService();
    const rooms = [await h.createRoom(tenant, 'r1'), await h.createRoom(tenant, 'r2'), await h.createRoom(tenant, 'r3')];
    const r = await receiver();
    assert.equal((await setWebhook(h, tenant, { url: r.url })).status, 200);
    await r.down();

    const p = publisher(h);
    const before = rooms.map((room) => lifeOf(tenant.id, room, 3));
    emitInterleaved(p, before.map((life) => life.slice(0, 5)));
    await waitFor(() => p.pending === 0, 5000, 'first events in the outbox');
    // Several attempts fail against the closed port; the events stay.
    await sleep(300);
    assert.equal(await h.store.webhooks.pendingCount(tenant.id), 15);

    // Nuve stops in the middle of the outage; the gateway goes on emitting meanwhile and keeps what nobody took.
    await h.nuve.close();
    emitInterleaved(p, before.map((life) => life.slice(5)));
    await sleep(300);
    assert.ok(p.pending > 0, 'with no Nuve, the gateway keeps its events');
    const restarted = new Nuve({ config: h.config, bus: h.bus, store: h.store, logger: testLogger() });
    await restarted.start();
    cleanups.push(() => restarted.close());
    await waitFor(() => p.pending === 0, 5000, 'the rest in the outbox after the restart');
    await r.up();
    const total = before.reduce((n, life) => n + life.length, 0);
    await waitFor(() => r.accepted.length >= total, 10_000, `all ${total} events delivered`);
    await sleep(200);
    assert.equal(r.accepted.length, total);
    assertOncePerId(r.accepted);
    rooms.forEach((room, i) => assert.deepEqual(sequence(r.accepted, room), expected(before[i]!)));
    for (const received of r.accepted) {
      const event = verifyWebhook(received.raw, received.headers, tenant.key);
      assert.equal(event.serviceId, tenant.id);
      assert.equal(received.headers['mss-webhook-id'], event.id);
      assert.match(event.room.name ?? '', /^r[123]$/);
    }
    assert.equal(await h.store.webhooks.pendingCount(), 0);
  });

  test("a batch sent again (its answer was lost) adds nothing: the event is delivered once", async () => {
    const h = await harness();
    const tenant = await h.createService();
    const roomId = await h.createRoom(tenant, 'r');
    const r = await receiver();
    await r.down();
    await setWebhook(h, tenant, { url: r.url });
    const events = ['room_started', 'room_finished'].map((type, i) => ({ id: randomUUID(), type, at: Date.now() + i, serviceId: tenant.id, roomId }));
    for (let i = 0; i < 3; i++) await h.bus.request(subjects.roomEvents, { gatewayId: 'gw-1', events });
    assert.equal(await h.store.webhooks.pendingCount(tenant.id), 2);
    await r.up();
    await waitFor(() => r.accepted.length >= 2, 5000, 'delivered');
    await sleep(200);
    assert.deepEqual(r.accepted.map((x) => x.body.id), events.map((e) => e.id));
  });

  test('two Nuves on one database deliver each event once, never two of a room at once', async () => {
    const h = await harness();
    const otherStore = await openStore(h.config.store);
    const other = new Nuve({ config: h.config, bus: h.bus, store: otherStore, logger: testLogger() });
    await other.start();
    cleanups.push(async () => {
      await other.close();
      await otherStore.close();
    });
    const tenant = await h.createService();
    const rooms = await Promise.all([1, 2, 3, 4, 5].map((i) => h.createRoom(tenant, `r${i}`)));
    const r = await receiver();
    r.delayMs = 15;
    await setWebhook(h, tenant, { url: r.url });
    const lives = rooms.map((room) => lifeOf(tenant.id, room, 4));
    emitInterleaved(publisher(h), lives);
    const total = lives.reduce((n, life) => n + life.length, 0);
    await waitFor(() => r.accepted.length >= total, 15_000, `all ${total} events delivered`);
    await sleep(200);
    assert.equal(r.accepted.length, total);
    assertOncePerId(r.accepted);
    assert.equal(r.maxConcurrentPerRoom, 1, 'two deliveries of one room overlapped');
    rooms.forEach((room, i) => assert.deepEqual(sequence(r.accepted, room), expected(lives[i]!)));
    const delivered = h.nuve.webhookDelivery.stats.delivered + other.webhookDelivery.stats.delivered;
    assert.equal(delivered, total);
    assert.ok(h.nuve.webhookDelivery.stats.delivered > 0 && other.webhookDelivery.stats.delivered > 0, 'both Nuves delivered');
  });

  test('a receiver answering 500 forever is given up after the retention, recorded, and blocks no other tenant', async () => {
    const h = await harness({ retentionSec: 1 });
    const [a, b] = [await h.createService('a'), await h.createService('b')];
    const [roomA, roomB] = [await h.createRoom(a, 'ra'), await h.createRoom(b, 'rb')];
    const [ra, rb] = [await receiver(), await receiver()];
    ra.status = 500;
    await setWebhook(h, a, { url: ra.url });
    await setWebhook(h, b, { url: rb.url });
    const lifeA = lifeOf(a.id, roomA, 2);
    const lifeB = lifeOf(b.id, roomB, 2);
    const p = publisher(h);
    const started = Date.now();
    emitInterleaved(p, [lifeA, lifeB]);
    await waitFor(() => rb.accepted.length === lifeB.length, 3000, "b's events");
    assert.ok(Date.now() - started < 1000, `b waited ${Date.now() - started} ms behind a's failing receiver`);
    assert.deepEqual(sequence(rb.accepted, roomB), expected(lifeB));

    await waitFor(() => p.pending === 0, 5000, 'events in the outbox');
    await waitFor(async () => (await h.store.webhooks.pendingCount(a.id)) === 0, 5000, "a's events given up");
    assert.ok(ra.attempts > lifeA.length, `a's receiver tried only ${ra.attempts} times`);
    assert.equal(ra.accepted.length, 0);
    const failed = await h.call('GET', '/webhook/failed', { service: a.id, key: a.key });
    assert.equal(failed.status, 200);
    assert.equal(failed.json.length, lifeA.length);
    for (const f of failed.json) {
      assert.equal(f.lastError, 'HTTP 500');
      assert.equal(f.roomId, roomA);
      assert.ok(f.failedAt - f.createdAt >= 1000, 'given up before the retention');
    }
    // The record is the tenant's own.
    assert.deepEqual((await h.call('GET', '/webhook/failed', { service: b.id, key: b.key })).json, []);
    // Neither receiver saw the other tenant's events.
    assert.ok(rb.accepted.every((x) => x.body.serviceId === b.id && x.body.room.id === roomB));
  });

  test("redirects are not followed; only http(s) URLs; filters; another tenant's room is not reachable", async () => {
    const h = await harness({ retentionSec: 1 });
    const [a, b] = [await h.createService('a'), await h.createService('b')];
    const roomA = await h.createRoom(a, 'ra');
    const [redirecting, target] = [await receiver(), await receiver()];
    redirecting.status = 302;
    redirecting.headers = { location: target.url };

    for (const url of ['ftp://127.0.0.1/x', 'javascript:alert(1)', 'not a url', 'file:///etc/passwd', `http://x/${'a'.repeat(2100)}`]) {
      const res = await setWebhook(h, a, { url });
      assert.equal(res.status, 400, url);
      assert.equal(res.json.code, 'VALIDATION_FAILED');
    }
    for (const body of [
      { url: target.url, include: ['nope'] },
      { url: target.url, include: ['room_started', 'room_started'] },
      { url: target.url, extra: 1 },
    ]) {
      assert.equal((await setWebhook(h, a, body)).status, 400, JSON.stringify(body));
    }
    assert.equal((await h.call('GET', '/webhook', { service: a.id, key: a.key })).json.code, 'WEBHOOK_NOT_FOUND');
    // b may not see or set a's room's webhook.
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await h.call(method, `/rooms/${roomA}/webhook`, { service: b.id, key: b.key, body: method === 'PUT' ? { url: target.url } : undefined });
      assert.equal(res.status, 404, method);
      assert.equal(res.json.code, 'ROOM_NOT_FOUND');
    }

    // The room's own webhook takes its events instead of the tenant's, through its filters.
    const tenantWide = await receiver();
    await setWebhook(h, a, { url: tenantWide.url });
    const put = await setWebhook(h, a, { url: redirecting.url, exclude: ['participant_joined'] }, `/rooms/${roomA}/webhook`);
    assert.deepEqual(put.json, { url: redirecting.url, room: roomA, exclude: ['participant_joined'] });
    const life = lifeOf(a.id, roomA, 1);
    const p = publisher(h);
    emitInterleaved(p, [life]);
    // In the outbox first, then given up (an empty outbox before the intake proves nothing).
    await waitFor(() => p.pending === 0, 5000, 'events in the outbox');
    await waitFor(async () => (await h.store.webhooks.pendingCount(a.id)) === 0, 5000, 'given up');
    assert.equal(target.attempts, 0, 'a redirect was followed');
    assert.equal(tenantWide.attempts, 0, "the tenant's URL got the room's events");
    const failed = (await h.call('GET', '/webhook/failed', { service: a.id, key: a.key })).json as { type: RoomEventType; lastError: string }[];
    assert.equal(failed.length, life.length - 1, 'participant_joined was not excluded');
    assert.ok(failed.every((f) => f.type !== 'participant_joined' && f.lastError === 'HTTP 302: redirects are not followed'));

    // include: only those types.
    redirecting.status = 200;
    redirecting.headers = {};
    await setWebhook(h, a, { url: redirecting.url, include: ['room_started', 'room_finished'] }, `/rooms/${roomA}/webhook`);
    emitInterleaved(publisher(h), [life]);
    await waitFor(() => redirecting.accepted.length === 2, 5000, 'included events');
    await sleep(150);
    assert.deepEqual(redirecting.accepted.map((x) => x.body.event), ['room_started', 'room_finished']);
  });
});
