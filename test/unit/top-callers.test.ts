import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TopCallers } from '../../src/gateway/top-callers.js';

test('top callers: the last complete window\'s busiest, by calls per second, in bounded memory', async () => {
  // Windows of 200 ms, the top 2, at most 3 callers tracked per window.
  const top = new TopCallers(200, 2, 3);
  try {
    const key = (user: string) => TopCallers.callerOf('client', 't1', user);
    assert.deepEqual(top.snapshot().callers, [], 'nothing before the first window ends');
    for (let i = 0; i < 10; i++) top.count(key('ann'));
    for (let i = 0; i < 4; i++) top.count(key('ben'));
    top.count(key('cy'));
    // Past the bound: counted together, never a fourth entry.
    for (let i = 0; i < 6; i++) top.count(key(`extra-${i}`));
    top.count(TopCallers.callerOf('trusted', 't2', 'ann'));
    await sleep(300);
    const snapshot = top.snapshot();
    assert.deepEqual(snapshot.callers, [
      { kind: 'client', tenant: 't1', user: 'ann', callsPerSec: 50 },
      { kind: 'client', tenant: 't1', user: 'ben', callsPerSec: 20 },
    ]);
    assert.equal(snapshot.untrackedCallsPerSec, 35);
    assert.equal(snapshot.windowSec, 0.2);
    // A quiet window empties the list again.
    await sleep(200);
    assert.deepEqual(top.snapshot().callers, []);
  } finally {
    top.close();
  }
});
