import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Bus, subjectMatches } from '../src/core/bus/bus.js';
import { connect as amqpConnect } from 'amqplib';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { PUBLISH_EXCHANGE, REQUEST_EXCHANGE, RabbitMqBus, bindingKey, invalidSubject } from '../src/core/bus/rabbitmq-bus.js';
import { AppError } from '../src/core/errors.js';
import { startNats } from './helpers/cluster.js';
import { testLogger, waitFor } from './helpers/nuve-harness.js';
import { assertReachable, serviceUrl, startRabbitMq } from './helpers/services.js';

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

describe('RabbitMQ subject mapping', () => {
  test('NATS patterns become topic binding keys; `>` is one or more tokens, never zero', () => {
    assert.equal(bindingKey('gateway.*.rpc'), 'gateway.*.rpc');
    assert.equal(bindingKey('gateway.>'), 'gateway.*.#');
    assert.equal(bindingKey('>'), '*.#');
    assert.equal(bindingKey('plain.subject'), 'plain.subject');
  });

  test('subjects AMQP cannot carry are named', () => {
    assert.equal(invalidSubject('agent.a-1.rpc', false), undefined);
    assert.equal(invalidSubject('gateway.*.>', true), undefined);
    for (const [subject, pattern] of [
      ['a..b', false],
      ['', false],
      ['a b', false],
      ['a.*', false],
      ['a.>', false],
      ['a.#', true],
      ['a.>.b', true],
      [`a.${'x'.repeat(255)}`, false],
    ] as const) {
      assert.ok(invalidSubject(subject, pattern), `${subject} refused`);
    }
  });
});

// The same contract on every implementation: the in-process bus, NATS and RabbitMQ (the test run's
// servers, TEST_NATS_URL and TEST_RABBITMQ_URL). NatsBus/RabbitMqBus.connect wait for a first
// connection forever, so each server is checked first: without it those tests fail at once, naming
// it, instead of hanging.
let natsReachable: Promise<void> | undefined; // checked once per file: every test then fails at once
let rabbitReachable: Promise<void> | undefined;
const implementations: [string, () => Promise<Bus>][] = [
  ['MemoryBus', async () => new MemoryBus(testLogger(), 1000)],
  [
    'NatsBus',
    async () => {
      await (natsReachable ??= Promise.resolve().then(() => assertReachable('nats')));
      return NatsBus.connect(serviceUrl('nats'), testLogger(), 1000);
    },
  ],
  [
    'RabbitMqBus',
    async () => {
      await (rabbitReachable ??= Promise.resolve().then(() => assertReachable('rabbitmq')));
      return RabbitMqBus.connect(serviceUrl('rabbitmq'), testLogger(), 1000);
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
    // NATS counts a plain subscriber as a listener, so the request waits for its timeout there (RabbitMQ
    // routes requests on their own exchange, the in-process bus knows its responders); the platform never
    // mixes subscribers and responders on one subject, so either answer is a refusal.
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
    bus.publish('gateway', {}); // `>` needs at least one token after the prefix
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

// A private server of each kind, stopped and started under open buses. RabbitMQ takes seconds to boot,
// so one server serves both tests. `keepsWhileAway`: a publication made while off the server is sent
// once back (RabbitMqBus's outbox; nats.js does not deliver it to the bus's own subscription here).
const restartable: [string, () => Promise<{ url: string; stop(): Promise<void>; start(): Promise<void>; dispose(): Promise<void> }>, (url: string) => Promise<Bus>, boolean][] = [
  [
    'NatsBus across a NATS server restart',
    async () => {
      const server = await startNats();
      return Object.assign(server, { dispose: () => server.stop() });
    },
    (url) => NatsBus.connect(url, testLogger(), 1000),
    false,
  ],
  ['RabbitMqBus across a RabbitMQ broker restart', startRabbitMq, (url) => RabbitMqBus.connect(url, testLogger(), 1000), true],
];

for (const [title, startServer, connectTo, keepsWhileAway] of restartable) describe(title, () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    server = await startServer();
  }, { timeout: 120_000 });
  after(async () => server?.dispose());

  test('reports losing and regaining the server, and its subscriptions and responders work again afterwards', { timeout: 60_000 }, async () => {
    const listener = await connectTo(server.url);
    const speaker = await connectTo(server.url);
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
      // Published while away: kept, and sent once the bus is back (after its own subscriptions are).
      if (keepsWhileAway) listener.publish('news', { n: 'while away' });

      await sleep(1500);
      await server.start();
      await waitFor(() => listener.connected && speaker.connected, 10_000, 'both buses to reconnect');
      assert.deepEqual(changes, [false, true]);
      if (keepsWhileAway) {
        await waitFor(() => received.length > 0, 5000, 'the publication made while away');
        assert.deepEqual(received.splice(0), [{ n: 'while away' }]);
      }

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
    }
  });

  test('closing while the server is away closes at once and for good (a process stopping during an outage is not held)', { timeout: 60_000 }, async () => {
    const bus = await connectTo(server.url);
    const changes: boolean[] = [];
    bus.onConnectivity((connected) => changes.push(connected));
    bus.subscribe('news', () => undefined);
    await server.stop();
    await waitFor(() => !bus.connected, 5000, 'the bus to report the lost server');
    const started = Date.now();
    await bus.close();
    assert.ok(Date.now() - started < 300, `closed after ${Date.now() - started} ms`);
    // A connection left dialling would come back with the server.
    await server.start();
    await sleep(1500);
    assert.deepEqual(changes, [false], 'a closed bus does not reconnect');
  });
});

describe('RabbitMqBus: bad input, and queues deleted under it', () => {
  test('malformed messages, requests without a reply address and subjects AMQP cannot carry are dropped with a log line; the bus keeps working', async () => {
    await assertReachable('rabbitmq');
    const lines: string[] = [];
    const logger = testLogger();
    const record = (level: string) => (obj: unknown, msg?: string) => void lines.push(`${level} ${typeof obj === 'string' ? obj : msg}`);
    const spied = Object.assign(Object.create(logger) as typeof logger, { warn: record('warn'), debug: record('debug') });
    const bus = await RabbitMqBus.connect(serviceUrl('rabbitmq'), spied, 1000);
    const raw = await amqpConnect(serviceUrl('rabbitmq'));
    try {
      const got: unknown[] = [];
      bus.subscribe('feed.*', (p) => void got.push(p));
      let served = 0;
      bus.respond('svc', () => ++served);
      await bus.request('svc', {}); // both are bound now
      const channel = await raw.createChannel();
      await channel.consume('amq.rabbitmq.reply-to', () => undefined, { noAck: true });

      channel.publish(PUBLISH_EXCHANGE, 'feed.x', Buffer.from('{not json'));
      channel.publish(REQUEST_EXCHANGE, 'svc', Buffer.from('{}')); // no reply-to: nobody to answer
      bus.publish('feed..x', { n: 0 });
      bus.publish(`feed.${'y'.repeat(300)}`, { n: 0 });
      await rejectsWithCode(bus.request('a..b', {}), 'BUS_NO_RESPONDERS');
      await waitFor(() => lines.filter((l) => l.startsWith('warn')).length >= 5, 3000, 'a log line for each');
      assert.deepEqual(
        lines.filter((l) => l.startsWith('warn')).sort(),
        [
          'warn dropping bus request without a direct reply-to address',
          'warn dropping non-JSON bus message',
          'warn publish dropped: subject cannot be a routing key',
          'warn publish dropped: subject cannot be a routing key',
          'warn request refused: subject cannot be a routing key',
        ],
      );
      assert.deepEqual(got, []);
      assert.equal(served, 1, 'the request without a reply address was not served');

      // A request whose payload is not JSON is answered with MALFORMED_MESSAGE, as on NATS.
      const replies: unknown[] = [];
      const asking = await raw.createChannel();
      await asking.consume('amq.rabbitmq.reply-to', (msg) => msg && replies.push(JSON.parse(msg.content.toString())), { noAck: true });
      asking.publish(REQUEST_EXCHANGE, 'svc', Buffer.from('<xml/>'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'x' });
      await waitFor(() => replies.length === 1, 3000, 'the refusal');
      assert.deepEqual((replies[0] as { error: { code: string } }).error.code, 'MALFORMED_MESSAGE');

      // And the bus still carries everything.
      bus.publish('feed.ok', { n: 1 });
      await waitFor(() => got.length === 1);
      assert.deepEqual(got, [{ n: 1 }]);
      assert.equal(await bus.request('svc', {}), 2);
      assert.equal(bus.connected, true);
    } finally {
      await raw.close();
      await bus.close();
    }
  });

  test('a subscription whose queue is deleted on the broker (an operator, a policy) is set up again', async () => {
    await assertReachable('rabbitmq');
    const bus = await RabbitMqBus.connect(serviceUrl('rabbitmq'), testLogger(), 1000);
    const raw = await amqpConnect(serviceUrl('rabbitmq'));
    try {
      const got: unknown[] = [];
      bus.subscribe('orders', (p) => void got.push(p), { queue: 'billing' });
      bus.publish('orders', 1);
      await waitFor(() => got.length === 1);
      const channel = await raw.createChannel();
      await channel.deleteQueue(`${PUBLISH_EXCHANGE}.billing.orders`);
      await waitFor(
        async () => {
          bus.publish('orders', 2);
          await sleep(50);
          return got.includes(2);
        },
        5000,
        'the subscription to receive again',
      );
      assert.equal(bus.connected, true);
    } finally {
      await raw.close();
      await bus.close();
    }
  });
});
