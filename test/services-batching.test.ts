import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Bus } from '../src/core/bus/bus.js';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import { RabbitMqBus } from '../src/core/bus/rabbitmq-bus.js';
import { parseConfig } from '../src/core/config.js';
import { AppError } from '../src/core/errors.js';
import { BusServiceDiscovery } from '../src/core/service-bus-discovery.js';
import { ServiceCaller } from '../src/core/service-caller.js';
import { type CallerIdentity, serviceSubjects } from '../src/core/service-protocol.js';
import { type RunningService, startService } from '../src/services/index.js';
import { testLogger, waitFor } from './helpers/nuve-harness.js';
import { type Execution, echoService } from './helpers/services-fixtures.js';
import { assertReachable, serviceUrl } from './helpers/services.js';

// Calls travel batched (one bus request per instance per turn of the event loop, answers per caller): the same
// contract on every bus, since RabbitMQ, unlike NATS, does not keep order between a request's reply and other messages.
const config = parseConfig({ services: { heartbeatMs: 100, timeoutMs: 2000, probeMs: 100 } });
const client = (user = 'alice'): CallerIdentity => ({ tenant: 'tenant-a', user, connection: `conn-${user}`, kind: 'client' });

const implementations: [string, () => Promise<Bus>][] = [
  ['MemoryBus', async () => new MemoryBus(testLogger(), 3000)],
  ['NatsBus', async () => (await assertReachable('nats'), NatsBus.connect(serviceUrl('nats'), testLogger(), 3000))],
  ['RabbitMqBus', async () => (await assertReachable('rabbitmq'), RabbitMqBus.connect(serviceUrl('rabbitmq'), testLogger(), 3000))],
];

/** `bus`, counting the requests made on each subject and keeping the last payload sent on each. */
function counting(bus: Bus): { bus: Bus; requests: Map<string, number>; payloads: Map<string, unknown> } {
  const requests = new Map<string, number>();
  const payloads = new Map<string, unknown>();
  const counted = new Proxy(bus, {
    get(target, property) {
      if (property === 'request') {
        return (subject: string, payload: unknown, options?: object) => {
          requests.set(subject, (requests.get(subject) ?? 0) + 1);
          payloads.set(subject, payload);
          return target.request(subject, payload, options);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { bus: counted, requests, payloads };
}

const code = (result: PromiseSettledResult<unknown>) => (result.status === 'rejected' ? (result.reason as AppError).code : 'OK');

for (const [name, open] of implementations) describe(`batched service calls on ${name}`, () => {
  let bus: Bus;
  let requests: Map<string, number>;
  let payloads: Map<string, unknown>;
  let instance: RunningService;
  let discovery: BusServiceDiscovery;
  let caller: ServiceCaller;
  let log: Execution[];
  let batchSubject: string;

  beforeEach(async () => {
    ({ bus, requests, payloads } = counting(await open()));
    log = [];
    instance = await startService(echoService(log), { bus, config, logger: testLogger(), instanceId: 'echo-0' });
    batchSubject = serviceSubjects.instanceBatch('echo', instance.host.id);
    discovery = new BusServiceDiscovery(bus, testLogger(), config.services);
    await discovery.start();
    caller = new ServiceCaller(bus, discovery, testLogger(), config.services);
    caller.start();
    await waitFor(() => caller.describe().echo?.answering === 1, 5000, 'the instance discovered and probed');
    // A first call: the caller has learnt the service (its probe answered) before the calls counted below.
    await caller.call('echo', 'whoami', {}, client());
  });

  afterEach(async () => {
    caller.close();
    await discovery.close();
    await instance.stop();
    await bus.close();
  });

  test("one turn's calls to an instance travel as one request, and each gets its own answer or error", async () => {
    const before = requests.get(batchSubject) ?? 0;
    const alice = client();
    const results = await Promise.allSettled([
      ...Array.from({ length: 10 }, (_, i) => caller.call('echo', 'whoami', {}, client(`u${i}`))),
      caller.call('echo', 'boom', {}, alice),
      caller.call('echo', 'slow', { ms: -1 }, alice),
      caller.call('echo', 'secret', {}, alice),
      caller.call('echo', 'nope', {}, alice),
    ]);
    assert.equal((requests.get(batchSubject) ?? 0) - before, 1, 'fourteen calls, one bus request');
    const sent = payloads.get(batchSubject) as { ids: CallerIdentity[]; b: { c: number }[] };
    assert.deepEqual(
      sent.ids.map((id) => id.user),
      [...Array.from({ length: 10 }, (_, i) => `u${i}`), 'alice'],
      "each caller's identity travels once; its calls name it by index",
    );
    assert.deepEqual(
      sent.b.map((call) => call.c),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10],
    );
    assert.deepEqual(results.map(code), [...Array(10).fill('OK'), 'INTERNAL', 'SERVICE_INVALID_ARGS', 'SERVICE_ACCESS_DENIED', 'SERVICE_METHOD_NOT_FOUND']);
    // Each answer is its own call's: the identity of the caller it was made for.
    for (let i = 0; i < 10; i++) {
      const answer = (results[i] as PromiseFulfilledResult<{ caller: CallerIdentity }>).value;
      assert.equal(answer.caller.user, `u${i}`);
    }
  });

  /**
   * A second caller with `batchHoldMs`: a slow call, then one call in each of the next three turns (made while the
   * slow call's batch is unanswered). How many batch requests that took, and how long until the three answered.
   */
  async function slowThenThreeTurns(batchHoldMs: number): Promise<{ batches: number; ms: number }> {
    const second = new ServiceCaller(bus, discovery, testLogger(), { ...config.services, batchHoldMs });
    second.start();
    try {
      await waitFor(() => second.describe().echo?.answering === 1, 5000, 'the instance probed by the second caller');
      await second.call('echo', 'whoami', {}, client());
      const before = requests.get(batchSubject) ?? 0;
      const started = Date.now();
      const slow = second.call('echo', 'slow', { ms: 300 }, client());
      const fast: Promise<unknown>[] = [];
      for (let turn = 0; turn < 3; turn++) {
        await new Promise((resolve) => setImmediate(resolve));
        fast.push(second.call('echo', 'whoami', {}, client(`t${turn}`)));
      }
      await Promise.all(fast);
      const result = { batches: (requests.get(batchSubject) ?? 0) - before, ms: Date.now() - started };
      await slow;
      return result;
    } finally {
      second.close();
    }
  }

  test("calls wait to go together while the instance has answered nothing of the caller's last batch, until its first answer", async () => {
    const { batches, ms } = await slowThenThreeTurns(2000);
    assert.equal(batches, 2, "the slow call's batch, then one batch of three turns' calls");
    assert.ok(ms >= 250 && ms < 1500, `the held calls went with the first answer (${ms} ms), not at the 2 s bound`);
  });

  test('with batchHoldMs 0, every turn sends its own batch', async () => {
    assert.equal((await slowThenThreeTurns(0)).batches, 4);
  });

  test('a slow call does not hold up the fast calls of its batch', async () => {
    const started = Date.now();
    const settled: string[] = [];
    const slow = caller.call('echo', 'slow', { ms: 800 }, client()).then(() => settled.push('slow'));
    const fast = Array.from({ length: 5 }, () => caller.call('echo', 'whoami', {}, client()).then(() => settled.push('fast')));
    await Promise.all(fast);
    assert.ok(Date.now() - started < 600, `the fast calls answered in ${Date.now() - started} ms`);
    await slow;
    assert.deepEqual(settled, ['fast', 'fast', 'fast', 'fast', 'fast', 'slow']);
  });

  test("a client's ordered calls of one turn run in call order, and per-call deadlines hold within a batch", async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => caller.call('echo', 'seq', { client: 'x', n, delayMs: 5 }, client('x'))));
    assert.deepEqual(
      answers.map((a) => (a as { n: number }).n),
      Array.from({ length: 20 }, (_, n) => n),
    );
    assert.deepEqual(
      log.filter((e) => e.method === 'seq').map((e) => e.n),
      Array.from({ length: 20 }, (_, n) => n),
      'run one at a time in call order',
    );
    const results = await Promise.allSettled([
      caller.call('echo', 'slow', { ms: 400 }, client(), { timeoutMs: 100 }),
      caller.call('echo', 'slow', { ms: 50 }, client(), { timeoutMs: 1000 }),
    ]);
    assert.deepEqual(results.map(code), ['SERVICE_TIMEOUT', 'OK']);
  });

  test("a turn's calls past services.maxPayloadBytes split into batches within it, in order", async () => {
    const sizes: number[] = [];
    const watched = new Proxy(bus, {
      get: (target, property) =>
        property === 'request'
          ? (subject: string, payload: unknown, options?: object) => {
              if (subject === batchSubject) sizes.push(Buffer.byteLength(JSON.stringify(payload)));
              return target.request(subject, payload, options);
            }
          : Reflect.get(target, property, target),
    });
    const sizing = new ServiceCaller(watched, discovery, testLogger(), config.services);
    sizing.start();
    try {
      await waitFor(() => sizing.describe().echo?.answering === 1, 5000, 'the instance probed');
      // 12 ordered calls of ~8 kB each: ~96 kB in one turn, past the 64 kB bound.
      const pad = 'p'.repeat(8000);
      const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => sizing.call('echo', 'seq', { client: `${pad}${n}`, n }, client('big'))));
      assert.deepEqual(
        answers.map((a) => (a as { n: number }).n),
        Array.from({ length: 12 }, (_, n) => n),
      );
      assert.ok(sizes.length > 1, `${sizes.length} batch(es)`);
      for (const size of sizes) assert.ok(size <= config.services.maxPayloadBytes, `a batch of ${size} bytes`);
    } finally {
      sizing.close();
    }
  });

  test('calls to an instance that is gone fail as SERVICE_INSTANCE_LOST, not hang', async () => {
    // Its subscriptions end while its registration lingers: nobody answers its subjects.
    for (const sub of (instance.host as unknown as { subscriptions: { unsubscribe(): void }[] }).subscriptions.splice(0)) sub.unsubscribe();
    const results = await Promise.allSettled(Array.from({ length: 3 }, () => caller.call('echo', 'whoami', {}, client())));
    assert.deepEqual(results.map(code), ['SERVICE_INSTANCE_LOST', 'SERVICE_INSTANCE_LOST', 'SERVICE_INSTANCE_LOST']);
  });
});
