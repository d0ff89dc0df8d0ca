import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
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
  const publisher = new RoomEventPublisher(bus, 'gw', logger, { maxPending: 3, retryMinMs: 5, retryMaxMs: 10 });
  for (const room of ['r1', 'r2', 'r3', 'r4', 'r5']) publisher.emit(started(room));
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
