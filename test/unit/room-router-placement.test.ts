import assert from 'node:assert/strict';
import { test } from 'node:test';
import { placePeer } from '../../src/agent/room-router.js';

/** Workers and a room's routers as placement sees them: consumer counts only. */
const worker = (consumers: number, closed = false) => ({ consumers, worker: { closed } });
type W = ReturnType<typeof worker>;
const router = (slot: W, consumers: number) => ({ slot, consumers });

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
