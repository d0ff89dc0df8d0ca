import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { MediaRoom } from '../../src/agent/media-room.js';
import { placePeer } from '../../src/agent/room-router.js';
import type { WorkerPool } from '../../src/agent/worker-pool.js';
import type { Logger } from '../../src/core/logger.js';

/** Workers and a room's routers as placement sees them: consumer counts (a router's load) only. */
const worker = (consumers: number, closed = false) => ({ consumers, worker: { closed } });
type W = ReturnType<typeof worker>;
const router = (slot: W, load: number) => ({ slot, load });

test('limit 0: every peer on the home router, whatever its load', () => {
  const [a, b] = [worker(9000), worker(0)];
  const home = router(a, 9000);
  assert.deepEqual(placePeer([home], [a, b], 0), { router: home });
});

test('fills the fullest router under the limit before any other', () => {
  const [a, b, c] = [worker(3), worker(1), worker(0)];
  const home = router(a, 3);
  const second = router(b, 1);
  assert.equal((placePeer([home, second], [a, b, c], 4) as { router: unknown }).router, home);
  // Ties go to the router the room opened first.
  const even = [router(a, 2), router(b, 2)];
  assert.equal((placePeer(even, [a, b], 4) as { router: unknown }).router, even[0]);
});

test('all routers full: a new router on the least-loaded worker the room is not on, skipping dead workers', () => {
  const [a, b, c, d] = [worker(4), worker(50), worker(10), worker(0, true)];
  assert.deepEqual(placePeer([router(a, 4)], [a, b, c, d], 4), { worker: c });
});

test('every worker taken and full: the least-loaded of the room\'s routers', () => {
  const [a, b] = [worker(9), worker(5)];
  const routers = [router(a, 9), router(b, 5)];
  assert.deepEqual(placePeer(routers, [a, b], 4), { router: routers[1] });
});

/** A mediasoup object as MediaRoom tracks it: an id, and a close its observer hears of. */
class Fake {
  static next = 0;
  readonly id = `fake-${Fake.next++}`;
  readonly observer = new EventEmitter();
  closed = false;
  on(): void {}
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.observer.emit('close');
  }
}

/** A room on an agent of `workers` fake workers (routers are Fakes), with one producer to consume. */
async function roomOf(workers: number, limit: number): Promise<MediaRoom> {
  const slots = Array.from({ length: workers }, (_, index) => ({
    index,
    consumers: 0,
    worker: { closed: false, createRouter: async () => new Fake() },
  }));
  const pool = {
    all: () => slots,
    leastLoaded: () => slots[0],
    createRouter: (slot: (typeof slots)[number]) => slot.worker.createRouter(),
  } as unknown as WorkerPool;
  const logger = { debug() {} } as unknown as Logger;
  const room = await MediaRoom.create({ roomId: 'r', gatewayId: 'g', epoch: 'e' }, pool, limit, () => {}, logger);
  room.track('producer', { roomId: 'r', peerId: 'speaker' }, new Fake(), room.routers[0]!);
  return room;
}

const owner = (peerId: string) => ({ roomId: 'r', peerId });

test('peers bound at the same moment, none consuming yet, fill one router to the limit and spread: N and N, not 2N on one', async () => {
  const N = 4;
  const room = await roomOf(2, N);
  // Every peer bound before any of them consumes (a burst of joins), each expecting the room's one producer.
  const placed = await Promise.all(Array.from({ length: 2 * N }, (_, i) => room.routerFor(`p${i}`, room.producerCount)));
  assert.equal(room.routers.length, 2);
  assert.deepEqual(room.routers.map((r) => placed.filter((at) => at === r).length), [N, N]);
  assert.deepEqual(room.routers.map((r) => r.load), [N, N]);
  // Their consumers come: the load is what it was, now as consumers.
  placed.forEach((at, i) => {
    room.track('transport', owner(`p${i}`), new Fake(), at);
    room.track('consumer', owner(`p${i}`), new Fake(), at);
  });
  assert.deepEqual(room.routers.map((r) => [r.consumers, r.expected]), [[N, 0], [N, 0]]);
});

test("a peer's expected consumers count on its router until they come or it leaves; a transport expecting none (plain ingest) adds nothing", async () => {
  const room = await roomOf(1, 100);
  const [home] = room.routers;
  // A transport expecting nothing first (the agent says so for plain ingest): nothing expected yet.
  const at = await room.routerFor('alice', 0);
  assert.equal(home!.load, 0);
  const send = new Fake();
  room.track('transport', owner('alice'), send, at);
  // Its consuming transport: three consumers to come; a second consuming transport adds nothing.
  await room.routerFor('alice', 3);
  await room.routerFor('alice', 5);
  assert.deepEqual([home!.consumers, home!.expected], [0, 3]);
  const consumer = new Fake();
  room.track('consumer', owner('alice'), consumer, at);
  assert.deepEqual([home!.consumers, home!.expected], [1, 2]);
  // Leaving before the rest came: they will not.
  send.close();
  consumer.close();
  assert.deepEqual([home!.consumers, home!.expected], [0, 0]);
  // A peer that leaves before its first transport came (closePeer) takes back what it expected.
  await room.routerFor('bob', 2);
  assert.equal(home!.expected, 2);
  room.closePeer('bob');
  assert.equal(home!.expected, 0);
});
