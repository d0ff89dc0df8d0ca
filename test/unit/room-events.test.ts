import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { createLogger } from '../../src/core/logger.js';
import type { RoomEventBatch } from '../../src/core/room-events.js';
import { subjects } from '../../src/core/subjects.js';
import { RoomEventPublisher } from '../../src/gateway/room-events.js';

// A gateway's room events on their way to Nuve, against a stand-in Nuve on the in-process bus.

const logger = createLogger({ level: 'silent', pretty: false });
const started = (roomId: string) => ({ type: 'room_started' as const, serviceId: 's', roomId });

test('kept until a Nuve answers, resent with the same ids, in order; past maxPending the oldest go', async () => {
  const bus = new MemoryBus(logger, 1000);
  // Each turn's events go at its end (no batch window), so r1 is in flight from the next turn on.
  const publisher = new RoomEventPublisher(bus, 'gw', logger, { maxPending: 3, retryMinMs: 5, retryMaxMs: 10, batchWindowMs: 0 });
  // A Nuve that takes r1 and fails to answer it: r1 is in flight, from the turn before, while the others come.
  const failing = bus.respond(subjects.roomEvents, async () => {
    await sleep(10);
    throw new Error('lost');
  });
  publisher.emit(started('r1'));
  await nextTurn();
  failing.unsubscribe();
  for (const room of ['r2', 'r3', 'r4', 'r5']) publisher.emit(started(room));
  // Nobody answers: no more than maxPending kept, the oldest dropped — but never the batch in flight (r1
  // was being sent when r4 and r5 came: a Nuve may have committed it already).
  await sleep(30);
  assert.equal(publisher.pending, 3);
  assert.equal(publisher.dropped, 2);

  const batches: RoomEventBatch[] = [];
  let refuse = 1;
  const sub = bus.respond(subjects.roomEvents, (payload) => {
    batches.push(payload as RoomEventBatch);
    // The first answer is lost (as if Nuve committed, then its reply timed out): the same batch comes again.
    if (refuse-- > 0) throw new Error('lost');
    return { accepted: (payload as RoomEventBatch).events.length };
  });
  await sleep(100);
  assert.equal(publisher.pending, 0);
  assert.equal(batches.length, 2);
  assert.deepEqual(batches[1]!.events.map((e) => e.id), batches[0]!.events.map((e) => e.id), 'resent with the same ids');
  assert.deepEqual(batches[1]!.events.map((e) => e.roomId), ['r1', 'r4', 'r5']);
  sub.unsubscribe();
  await publisher.close(0);
  await bus.close();
});

test('a stopping gateway waits for the events in flight while Nuve answers, and not at all without one', async () => {
  const bus = new MemoryBus(logger, 1000);
  const publisher = new RoomEventPublisher(bus, 'gw', logger, { retryMinMs: 5, retryMaxMs: 10 });
  publisher.emit(started('r1'));
  let t = Date.now();
  await publisher.close(2000);
  assert.ok(Date.now() - t < 500, `waited ${Date.now() - t} ms for a Nuve that is not there`);

  const answered: string[] = [];
  bus.respond(subjects.roomEvents, async (payload) => {
    await sleep(100);
    answered.push(...(payload as RoomEventBatch).events.map((e) => e.type));
    return {};
  });
  const second = new RoomEventPublisher(bus, 'gw', logger);
  second.emit(started('r2'));
  second.emit({ type: 'room_finished', serviceId: 's', roomId: 'r2' });
  t = Date.now();
  await second.close(2000);
  assert.deepEqual(answered, ['room_started', 'room_finished']);
  assert.equal(second.pending, 0);
  // Closed: further events are not taken.
  second.emit(started('r3'));
  assert.equal(second.pending, 0);
  await bus.close();
});

test('the events of one batch window go in one request, in order; later ones wait for the answer, none lost or doubled across a slow or restarted Nuve', async () => {
  const bus = new MemoryBus(logger, 1000);
  const publisher = new RoomEventPublisher(bus, 'gw', logger, { requestTimeoutMs: 100, retryMinMs: 5, retryMaxMs: 10, batchWindowMs: 50 });
  const batches: string[][] = [];
  const committed: string[] = [];
  /** Answers past the request timeout still to give (committed, the answer lost). */
  let late = 0;
  const nuve = () =>
    bus.respond(subjects.roomEvents, async (payload) => {
      const { events } = payload as RoomEventBatch;
      batches.push(events.map((e) => e.roomId));
      // The outbox's unique event id: a batch sent again adds nothing twice.
      for (const e of events) if (!committed.includes(e.id)) committed.push(e.id);
      // Slow: what comes meanwhile queues behind this batch (past the request timeout, the answer is lost).
      await sleep(late-- > 0 ? 150 : 30);
      return { accepted: events.length };
    });
  let sub = nuve();
  const emitted: string[] = [];
  const emit = (roomId: string) => {
    publisher.emit(started(roomId));
    emitted.push(roomId);
  };
  // A join's events, turns apart (room_started at connection, participant_joined, then a leave and the room's end in one turn).
  emit('a1');
  await nextTurn();
  emit('a2');
  await sleep(5);
  emit('a3');
  emit('a4');
  await sleep(5);
  assert.deepEqual(batches, [], 'nothing sent before the window ends');
  await sleep(60);
  assert.deepEqual(batches, [['a1', 'a2', 'a3', 'a4']], 'one request for the window, in order');
  await sleep(40);
  // Events while a batch is in flight wait for its answer, then go together (whatever their window).
  emit('b1');
  await sleep(60);
  emit('b2');
  await nextTurn();
  emit('b3');
  await sleep(100);
  assert.deepEqual(batches.slice(1), [['b1'], ['b2', 'b3']]);
  assert.equal(publisher.pending, 0);

  // Nuve restarts: gone for a while (the publisher retries), then back, its first answer too late (committed, answer lost).
  sub.unsubscribe();
  emit('c1');
  emit('c2');
  await sleep(80);
  emit('c3');
  late = 1;
  sub = nuve();
  for (let waited = 0; publisher.pending > 0 && waited < 2000; waited += 10) await sleep(10);
  assert.equal(publisher.pending, 0);
  assert.deepEqual(batches.slice(3), [['c1', 'c2', 'c3'], ['c1', 'c2', 'c3']], 'kept across the restart, resent as one batch, in order');
  assert.equal(committed.length, emitted.length, 'each event committed exactly once');
  sub.unsubscribe();
  await publisher.close(0);
  await bus.close();
});
