import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SignalError } from '../client/src/sdk/errors.js';
import { type ReconnectOptions, Reconnector } from '../client/src/sdk/reconnect.js';

// The SDK's rejoin loop on its own (no browser): what it asks of its RoomClient, and when it stops.

/** A Reconnector whose attempts fail with the given errors in turn (then succeed), recording every hook call. */
function harness(failures: SignalError[], options: { reconnect?: ReconnectOptions; getToken?: (() => Promise<string>) | null } = {}) {
  const calls: string[] = [];
  let tokens = 0;
  let outcome: SignalError | undefined;
  const reconnector = new Reconnector(
    {
      ...(options.reconnect !== undefined ? { reconnect: options.reconnect } : { reconnect: { initialDelayMs: 5, maxDelayMs: 20 } }),
      ...(options.getToken === null ? {} : { getToken: options.getToken ?? (async () => `t${++tokens}`) }),
    },
    {
      begin: (reason) => void calls.push(`begin ${reason}`),
      attempt: async (token) => {
        calls.push(`attempt ${token}`);
        const failure = failures.shift();
        if (failure) throw failure;
      },
      succeeded: () => void calls.push('succeeded'),
      failed: (error, reason) => {
        calls.push(`failed ${reason}`);
        outcome = error;
      },
    },
  );
  return { reconnector, calls, outcome: () => outcome };
}

test('tries fresh tokens until one attempt succeeds; asking again meanwhile joins the same loop', async () => {
  const h = harness([new SignalError('CONNECTION_FAILED', 'refused'), new SignalError('NO_AGENT_AVAILABLE', 'busy')]);
  const first = h.reconnector.rejoin('media agent lost');
  const second = h.reconnector.rejoin('transport failed');
  assert.equal(first, second);
  await first;
  assert.deepEqual(h.calls, ['begin media agent lost', 'attempt t1', 'attempt t2', 'attempt t3', 'succeeded']);
});

test('a refusal a new token cannot mend stops at once, reported as RECONNECT_FAILED with its cause', async () => {
  const h = harness([new SignalError('KICKED', 'removed by the service')]);
  await h.reconnector.rejoin('connection lost');
  assert.deepEqual(h.calls, ['begin connection lost', 'attempt t1', 'failed removed by the service']);
  assert.equal(h.outcome()?.code, 'RECONNECT_FAILED');
  assert.equal((h.outcome()?.cause as SignalError).code, 'KICKED');
});

test('gives up after maxAttempts; without getToken or with reconnect off, no attempt is made', async () => {
  const lost = () => new SignalError('CONNECTION_FAILED', 'lost');
  const limited = harness([lost(), lost(), lost()], { reconnect: { maxAttempts: 2, initialDelayMs: 1 } });
  await limited.reconnector.rejoin('x');
  assert.deepEqual(limited.calls, ['begin x', 'attempt t1', 'attempt t2', 'failed lost']);

  const tokenless = harness([], { getToken: null });
  await tokenless.reconnector.rejoin('x');
  assert.equal(tokenless.calls.length, 2);
  assert.equal((tokenless.outcome()?.cause as SignalError).code, 'TOKEN_REFRESH_FAILED');

  const off = harness([], { reconnect: false });
  await off.reconnector.rejoin('x');
  assert.deepEqual(off.calls, ['begin x', 'failed could not rejoin']);
});

test('a getToken that throws counts as a failed attempt (TOKEN_REFRESH_FAILED), and the loop goes on', async () => {
  let n = 0;
  const h = harness([], {
    getToken: async () => {
      if (++n === 1) throw new Error('app server down');
      return `t${n}`;
    },
  });
  await h.reconnector.rejoin('x');
  assert.deepEqual(h.calls, ['begin x', 'attempt t2', 'succeeded']);
});

test('close() during the backoff ends the loop at once, reporting neither success nor failure', async () => {
  const h = harness([new SignalError('CONNECTION_FAILED', 'lost')], { reconnect: { initialDelayMs: 60_000 } });
  const running = h.reconnector.rejoin('x');
  while (!h.calls.includes('attempt t1')) await new Promise((r) => setImmediate(r));
  const closedAt = Date.now();
  h.reconnector.close();
  await running;
  assert.ok(Date.now() - closedAt < 1000, 'not after the 60 s backoff');
  assert.deepEqual(h.calls, ['begin x', 'attempt t1']);
  await h.reconnector.rejoin('again');
  assert.deepEqual(h.calls, ['begin x', 'attempt t1'], 'a closed Reconnector starts nothing');
});
