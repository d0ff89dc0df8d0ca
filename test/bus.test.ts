import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Bus, subjectMatches } from '../src/core/bus/bus.js';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { AppError } from '../src/core/errors.js';
import { startNats } from './helpers/cluster.js';
import { testLogger, waitFor } from './helpers/nuve-harness.js';
import { assertReachable, serviceUrl } from './helpers/services.js';

async function rejectsWithCode(promise: Promise<unknown>, code: string, status?: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AppError, `AppError expected, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (status !== undefined) assert.equal(err.status, status);
    return true;
  });
}

describe('subject matching', () => {
  test('NATS wildcard semantics', () => {
    const cases: [string, string, boolean][] = [
      ['a.b.c', 'a.b.c', true],
      ['a.b.c', 'a.b', false],
      ['a.b', 'a.b.c', false],
      ['a.*.c', 'a.x.c', true],
      ['a.*.c', 'a.x.y.c', false],
      ['a.*', 'a', false],
      ['*.*', 'a.b', true],
      ['a.>', 'a.b', true],
      ['a.>', 'a.b.c.d', true],
      ['a.>', 'a', false],
      ['>', 'anything.at.all', true],
      ['gateway.*.rpc', 'gateway.gw-1.rpc', true],
      ['gateway.*.rpc', 'gateway.gw-1.other', false],
    ];
    for (const [pattern, subject, expected] of cases) {
      assert.equal(subjectMatches(pattern, subject), expected, `${pattern} vs ${subject}`);
    }
  });
});

// The same contract on both implementations: the in-process bus and NATS (the test run's server,
// TEST_NATS_URL). NatsBus.connect waits for a first connection forever, so NATS is checked first:
// without it the NATS tests fail at once, naming it, instead of hanging.
let natsReachable: Promise<void> | undefined; // checked once per file: every test then fails at once
const implementations: [string, () => Promise<Bus>][] = [
  ['MemoryBus', async () => new MemoryBus(testLogger(), 1000)],
  [
    'NatsBus',
    async () => {
      await (natsReachable ??= Promise.resolve().then(() => assertReachable('nats')));
      return NatsBus.connect(serviceUrl('nats'), testLogger(), 1000);
    },
  ],
];

for (const [name, open] of implementations) describe(name, () => {
  let bus: Bus;
  beforeEach(async () => {
    bus = await open();
  });
  afterEach(async () => bus.close());

  test('publish reaches every subscriber with a copy of the payload', async () => {
    const payload = { n: 1, list: [1, 2] };
    const got: unknown[] = [];
    bus.subscribe('news', (p) => {
      (p as { n: number }).n = 99; // a handler mutating its copy changes nobody else's
      got.push(p);
    });
    bus.subscribe('news', (p) => void got.push(p));
    bus.publish('news', payload);
    payload.n = 2; // nor does the publisher mutating after publishing
    await waitFor(() => got.length === 2);
    // Subscribers are not ordered among themselves (NATS delivers each subscription on its own).
    got.sort((a, b) => (b as { n: number }).n - (a as { n: number }).n);
    assert.deepEqual(got, [
      { n: 99, list: [1, 2] },
      { n: 1, list: [1, 2] },
    ]);
  });

  test('a failing subscriber does not stop the others', async () => {
    const got: string[] = [];
    bus.subscribe('x', () => {
      throw new Error('boom');
    });
    bus.subscribe('x', async () => {
      throw new Error('async boom');
    });
    bus.subscribe('x', (_, subject) => void got.push(subject));
    bus.publish('x', null);
    await waitFor(() => got.length === 1);
    assert.deepEqual(got, ['x']);
  });

  test('unsubscribe stops delivery', async () => {
    let count = 0;
    const sub = bus.subscribe('tick', () => void count++);
    bus.publish('tick', 1);
    await waitFor(() => count === 1);
    sub.unsubscribe();
    bus.publish('tick', 2);
    await sleep(50);
    assert.equal(count, 1);
  });

  test('a subscriber or responder added after its subject was used gets the next messages', async () => {
    const early: unknown[] = [];
    const late: unknown[] = [];
    bus.subscribe('late.news', (p) => void early.push(p));
    bus.publish('late.news', 1);
    await waitFor(() => early.length === 1);
    bus.subscribe('late.news', (p) => void late.push(p));
    await waitFor(() => {
      bus.publish('late.news', 2);
      return late.length > 0;
    }, 3000, 'the late subscriber reached');
    await rejectsWithCode(bus.request('late.ask', {}), 'BUS_NO_RESPONDERS');
    bus.respond('late.ask', () => 'here');
    let answer: unknown;
    await waitFor(async () => (answer = await bus.request('late.ask', {}, { timeoutMs: 500 }).catch(() => undefined)) === 'here', 3000, 'the late responder answers');
    assert.equal(answer, 'here');
  });

  test('request/reply', async () => {
    bus.respond('math.double', (p) => (p as { n: number }).n * 2);
    bus.respond('math.async', async (p) => {
      await sleep(5);
      return { echo: p };
    });
    bus.respond('math.nothing', () => undefined);
    assert.equal(await bus.request<number>('math.double', { n: 21 }), 42);
    assert.deepEqual(await bus.request('math.async', [1, 'a']), { echo: [1, 'a'] });
    assert.equal(await bus.request('math.nothing', {}), null);
  });

  test('a slow responder times out with BUS_TIMEOUT', async () => {
    bus.respond('slow', async () => {
      await sleep(600);
      return 'late';
    });
    const started = Date.now();
    await rejectsWithCode(bus.request('slow', {}, { timeoutMs: 50 }), 'BUS_TIMEOUT', 504);
    assert.ok(Date.now() - started < 500, 'the requester is not kept waiting for the responder');
  });

  test('nobody answering is BUS_NO_RESPONDERS, at once', async () => {
    bus.subscribe('only.subscribers', () => undefined); // subscribers do not answer requests
    // NATS counts a plain subscriber as a listener, so the request waits for its timeout there; the
    // platform never mixes subscribers and responders on one subject, so either answer is a refusal.
    await rejectsWithCode(bus.request('only.subscribers', {}), name === 'NatsBus' ? 'BUS_TIMEOUT' : 'BUS_NO_RESPONDERS');
    const started = Date.now();
    await rejectsWithCode(bus.request('nobody.home', {}), 'BUS_NO_RESPONDERS', 503);
    assert.ok(Date.now() - started < 500, 'no responders is known at once, not after the timeout');
  });

  test("a responder's AppError reaches the requester with code, message and status", async () => {
    bus.respond('strict', () => {
      throw new AppError('ALREADY_JOINED', 'joined twice');
    });
    await assert.rejects(bus.request('strict', {}), (err: unknown) => {
      assert.ok(err instanceof AppError);
      assert.equal(err.code, 'ALREADY_JOINED');
      assert.equal(err.message, 'joined twice');
      assert.equal(err.status, 409);
      return true;
    });
    bus.respond('async.strict', async () => {
      throw new AppError('TOKEN_EXPIRED');
    });
    await rejectsWithCode(bus.request('async.strict', {}), 'TOKEN_EXPIRED', 401);
    // A newer responder's code this process's catalogue lacks (rolling upgrade) is passed on, not turned into INTERNAL.
    bus.respond('newer', () => {
      throw AppError.fromRemote('ROOM_FULL', 'the room is full', 409);
    });
    await rejectsWithCode(bus.request('newer', {}), 'ROOM_FULL', 409);
  });

  test('unexpected errors are not leaked to the requester', async () => {
    bus.respond('buggy', () => {
      throw new TypeError('secret internals');
    });
    await assert.rejects(bus.request('buggy', {}), (err: unknown) => {
      assert.ok(err instanceof AppError);
      assert.equal(err.code, 'INTERNAL');
      assert.ok(!err.message.includes('secret'));
      return true;
    });
  });

  test('wildcards work for subscribers and responders', async () => {
    const seen: string[] = [];
    bus.subscribe('gateway.*.events', (_, subject) => void seen.push(`star:${subject}`));
    bus.subscribe('gateway.>', (_, subject) => void seen.push(`tail:${subject}`));
    bus.publish('gateway.gw-1.events', {});
    bus.publish('gateway.gw-2.rpc.extra', {});
    bus.publish('gatewayx.gw-3.events', {});
    await waitFor(() => seen.length >= 3);
    await sleep(20); // nothing more arrives
    assert.deepEqual(seen.sort(), ['star:gateway.gw-1.events', 'tail:gateway.gw-1.events', 'tail:gateway.gw-2.rpc.extra']);

    bus.respond('gateway.*.rpc', (_, subject) => subject.split('.')[1]);
    assert.equal(await bus.request('gateway.gw-9.rpc', {}), 'gw-9');
  });

  test('queue groups split publications; plain subscribers still get all', async () => {
    const counts = new Map<string, number>();
    const count = (name: string) => () => void counts.set(name, (counts.get(name) ?? 0) + 1);
    bus.subscribe('jobs', count('q1'), { queue: 'workers' });
    bus.subscribe('jobs', count('q2'), { queue: 'workers' });
    bus.subscribe('jobs', count('q3'), { queue: 'workers' });
    bus.subscribe('jobs', count('other-group'), { queue: 'auditors' });
    bus.subscribe('jobs', count('plain'));
    // NATS picks a group member at random: enough messages that each member's share is certain.
    const n = 90;
    for (let i = 0; i < n; i++) bus.publish('jobs', i);
    const grouped = () => (counts.get('q1') ?? 0) + (counts.get('q2') ?? 0) + (counts.get('q3') ?? 0);
    await waitFor(() => counts.get('plain') === n && counts.get('other-group') === n && grouped() === n);
    await sleep(20); // and no duplicates arrive late
    assert.equal(counts.get('plain'), n);
    assert.equal(counts.get('other-group'), n);
    assert.equal(grouped(), n, 'each message once per group');
    for (const q of ['q1', 'q2', 'q3']) assert.ok((counts.get(q) ?? 0) >= 10, `${q} got its share: ${JSON.stringify([...counts])}`);
  });

  test('queue-grouped responders share the requests', async () => {
    const served = new Map<string, number>();
    for (const name of ['nuve-1', 'nuve-2', 'nuve-3']) {
      bus.respond(
        'nuve.token.consume',
        () => {
          served.set(name, (served.get(name) ?? 0) + 1);
          return name;
        },
        { queue: 'nuve' },
      );
    }
    const answers = await Promise.all(Array.from({ length: 150 }, () => bus.request<string>('nuve.token.consume', {})));
    await sleep(20); // a request served twice would show now
    // Each request reached one member, whose answer came back: what each served is what it answered.
    const answered = new Map<string, number>();
    for (const name of answers) answered.set(name, (answered.get(name) ?? 0) + 1);
    assert.deepEqual(served, answered);
    for (const name of ['nuve-1', 'nuve-2', 'nuve-3']) {
      assert.ok((served.get(name) ?? 0) >= 20, `${name} served ${served.get(name) ?? 0}`);
    }
  });

  test('close lets in-flight handlers finish, then refuses work', async () => {
    let finished = false;
    bus.respond('work', async () => {
      await sleep(30);
      finished = true;
      return 'done';
    });
    const pending = bus.request('work', {});
    await bus.close();
    assert.equal(finished, true);
    assert.equal(await pending, 'done');
    await rejectsWithCode(bus.request('work', {}), 'BUS_NO_RESPONDERS');
    let delivered = false;
    bus.subscribe('after', () => void (delivered = true));
    bus.publish('after', {});
    await sleep(50);
    assert.equal(delivered, false);
  });

  test('close is not held forever by a handler that never settles', async () => {
    const stuck = new MemoryBus(testLogger(), 100);
    stuck.respond('hang', () => new Promise(() => undefined));
    await rejectsWithCode(stuck.request('hang', {}), 'BUS_TIMEOUT');
    const started = Date.now();
    await stuck.close();
    assert.ok(Date.now() - started < 1000);
  });
});

describe('NatsBus across a NATS server restart', () => {
  test('reports losing and regaining the server, and its subscriptions and responders work again afterwards', { timeout: 30_000 }, async () => {
    const server = await startNats();
    const url = `nats://127.0.0.1:${server.port}`;
    const listener = await NatsBus.connect(url, testLogger(), 1000);
    const speaker = await NatsBus.connect(url, testLogger(), 1000);
    try {
      const changes: boolean[] = [];
      listener.onConnectivity((connected) => changes.push(connected));
      const received: unknown[] = [];
      listener.subscribe('news', (payload) => void received.push(payload));
      listener.respond('ask', (payload) => ({ echo: payload }));
      assert.equal(listener.connected, true);

      await server.stop();
      await waitFor(() => !listener.connected, 5000, 'the bus to report the lost server');
      assert.deepEqual(changes, [false]);

      await sleep(1500);
      await server.start();
      await waitFor(() => listener.connected && speaker.connected, 10_000, 'both buses to reconnect');
      assert.deepEqual(changes, [false, true]);

      // Subscriptions made before the outage are back without anyone subscribing again.
      await waitFor(
        async () => {
          speaker.publish('news', { n: 1 });
          await sleep(50);
          return received.length > 0;
        },
        5000,
        'a publication to reach the old subscription',
      );
      assert.deepEqual(await speaker.request('ask', 'again'), { echo: 'again' });
    } finally {
      await listener.close();
      await speaker.close();
      await server.stop();
    }
  });

  test('closing while the server is away closes at once and for good (a process stopping during an outage is not held)', { timeout: 30_000 }, async () => {
    const server = await startNats();
    const bus = await NatsBus.connect(`nats://127.0.0.1:${server.port}`, testLogger(), 1000);
    try {
      const changes: boolean[] = [];
      bus.onConnectivity((connected) => changes.push(connected));
      bus.subscribe('news', () => undefined);
      await server.stop();
      await waitFor(() => !bus.connected, 5000, 'the bus to report the lost server');
      const started = Date.now();
      await bus.close();
      assert.ok(Date.now() - started < 300, `closed after ${Date.now() - started} ms`);
      // A connection left draining would still be dialling, and would come back with the server.
      await server.start();
      await sleep(1500);
      assert.deepEqual(changes, [false], 'a closed bus does not reconnect');
    } finally {
      await server.stop();
    }
  });
});
