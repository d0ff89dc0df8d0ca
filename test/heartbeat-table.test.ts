import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import {
  type Bus,
  type ConnectivityListener,
  type MessageHandler,
  type RequestHandler,
  type RequestOptions,
  type SubscribeOptions,
  type Subscription,
  busTimeout,
} from '../src/core/bus/bus.js';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { HeartbeatPublisher } from '../src/core/heartbeat-publisher.js';
import { HeartbeatTable } from '../src/core/heartbeat-table.js';
import { testLogger } from './helpers/nuve-harness.js';

/**
 * One process's connection to a shared bus that the test can cut: while it
 * is down nothing this process publishes leaves and nothing reaches it, and
 * it says so through `connected`/`onConnectivity` as NatsBus does.
 */
class CuttableBus implements Bus {
  connected = true;
  private readonly listeners = new Set<ConnectivityListener>();

  constructor(private readonly shared: MemoryBus) {}

  setConnected(connected: boolean): void {
    this.connected = connected;
    for (const listener of this.listeners) listener(connected);
  }

  onConnectivity(listener: ConnectivityListener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  publish(subject: string, payload: unknown): void {
    if (this.connected) this.shared.publish(subject, payload);
  }

  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): Subscription {
    return this.shared.subscribe(subject, (payload, actual) => (this.connected ? handler(payload, actual) : undefined), options);
  }

  respond(subject: string, handler: RequestHandler, options?: SubscribeOptions): Subscription {
    return this.shared.respond(subject, handler, options);
  }

  request<T>(subject: string, payload: unknown, options?: RequestOptions): Promise<T> {
    if (!this.connected) return Promise.reject(busTimeout(subject, options?.timeoutMs ?? 0));
    return this.shared.request<T>(subject, payload, options);
  }

  gather<T>(subject: string, payload: unknown, options?: RequestOptions): Promise<T[]> {
    return this.connected ? this.shared.gather<T>(subject, payload, options) : Promise.resolve([]);
  }

  async close(): Promise<void> {}
}

const TIMEOUT_MS = 400;

describe('HeartbeatTable', () => {
  let shared: MemoryBus;
  let bus: CuttableBus;
  let table: HeartbeatTable<{ id: string; incarnation?: string }>;
  let removed: { id: string; reason: string; at: number }[];
  let hellos: number;

  beforeEach(() => {
    shared = new MemoryBus(testLogger());
    bus = new CuttableBus(shared);
    table = new HeartbeatTable(bus, testLogger(), {
      heartbeat: 'member.heartbeat',
      down: 'member.down',
      hello: 'member.hello',
      schema: z.object({ id: z.string(), incarnation: z.string().optional() }),
      timeoutMs: TIMEOUT_MS,
      what: 'member',
    });
    removed = [];
    hellos = 0;
    table.on('removed', (m, reason) => removed.push({ id: m.id, reason, at: Date.now() }));
    shared.subscribe('member.hello', () => void hellos++);
    table.start();
  });
  afterEach(async () => {
    table.stop();
    await shared.close();
  });

  const beat = (id: string, incarnation?: string) => shared.publish('member.heartbeat', { id, incarnation });

  test('a new process under a known id (new incarnation) replaces the old member: removed as restarted, then added', async () => {
    const added: string[] = [];
    table.on('added', (m) => added.push(`${m.id}/${m.incarnation}`));
    beat('a', 'first');
    beat('a', 'first');
    await sleep(20);
    beat('a', 'second');
    await sleep(20);
    assert.deepEqual(
      removed.map((r) => [r.id, r.reason]),
      [['a', 'restarted']],
    );
    assert.deepEqual(added, ['a/first', 'a/second']);
    assert.equal(table.get('a')?.incarnation, 'second');
  });

  test('with the bus up, a silent member is removed after the timeout', async () => {
    beat('a');
    await sleep(20);
    assert.equal(table.size, 1);
    await sleep(TIMEOUT_MS + 100);
    assert.deepEqual(
      removed.map((r) => [r.id, r.reason]),
      [['a', 'timeout']],
    );
  });

  test('nobody expires while the bus is down; on its return clocks restart, members are asked to announce, and only those still silent a full timeout later go', async () => {
    beat('alive');
    beat('dead');
    await sleep(20);
    assert.equal(table.size, 2);

    bus.setConnected(false);
    await sleep(TIMEOUT_MS * 3);
    assert.equal(table.size, 2, 'members are not expired while this process is off the bus');
    assert.equal(removed.length, 0);

    const helloBefore = hellos;
    const backAt = Date.now();
    bus.setConnected(true);
    await sleep(20);
    assert.equal(hellos, helloBefore + 1, 'a hello asks every member for a fresh heartbeat');
    beat('alive');

    await sleep(TIMEOUT_MS / 2);
    assert.equal(table.size, 2, 'the silent member gets a full timeout after the bus came back');
    beat('alive');
    await sleep(TIMEOUT_MS / 2 + 150);
    beat('alive');
    assert.deepEqual(
      removed.map((r) => [r.id, r.reason]),
      [['dead', 'timeout']],
      'the member still silent a full timeout after the bus came back is removed',
    );
    assert.ok(removed[0]!.at - backAt >= TIMEOUT_MS, `removed ${removed[0]!.at - backAt} ms after the bus came back`);
    assert.ok(table.get('alive'), 'the member that answered stays');
  });
});

describe('HeartbeatPublisher', () => {
  const subjects = { heartbeat: 'member.heartbeat', down: 'member.down', hello: 'member.hello' };
  let shared: MemoryBus;
  let memberBus: CuttableBus;
  let table: HeartbeatTable<{ id: string; load: number }>;
  let beats: unknown[];
  let load: number;

  beforeEach(() => {
    shared = new MemoryBus(testLogger());
    memberBus = new CuttableBus(shared);
    table = new HeartbeatTable(shared, testLogger(), {
      ...subjects,
      schema: z.object({ id: z.string(), load: z.number() }),
      timeoutMs: 10_000,
      what: 'member',
    });
    table.start();
    beats = [];
    load = 0;
    shared.subscribe(subjects.heartbeat, (payload) => void beats.push(payload));
  });
  afterEach(async () => {
    table.stop();
    await shared.close();
  });

  const publisher = (intervalMs: number, afterBeat?: () => void) =>
    new HeartbeatPublisher(memberBus, { ...subjects, id: 'm1', intervalMs, payload: () => ({ id: 'm1', load: ++load }), afterBeat });

  test('announces at start and every interval, with a payload built for each beat, then runs afterBeat', async () => {
    let after = 0;
    const member = publisher(100, () => {
      assert.equal(after + 1, load, 'afterBeat follows the beat it belongs to');
      after++;
    });
    member.start();
    await sleep(20);
    assert.deepEqual(beats, [{ id: 'm1', load: 1 }], 'the first beat goes out at once');
    assert.deepEqual(table.get('m1')?.load, 1, 'a table of the member registers it');
    await sleep(330);
    assert.ok(beats.length >= 3 && beats.length <= 5, `${beats.length} beats in 350 ms at 100 ms`);
    assert.deepEqual(beats.at(-1), { id: 'm1', load: beats.length });
    assert.equal(after, beats.length);
    member.stop();
  });

  test('answers a hello, announces again when its bus comes back, says down on stop and then stays silent', async () => {
    const member = publisher(60_000);
    member.start();
    shared.publish(subjects.hello, {});
    await sleep(20);
    assert.equal(beats.length, 2, 'a hello is answered at once');

    memberBus.setConnected(false);
    memberBus.setConnected(true);
    await sleep(20);
    assert.equal(beats.length, 3, 'back on the bus: announced at once, before the tables expire it');

    assert.ok(table.get('m1'));
    member.stop();
    await sleep(20);
    assert.equal(table.get('m1'), undefined, 'down: the tables forget it without waiting for the timeout');
    shared.publish(subjects.hello, {});
    memberBus.setConnected(false);
    memberBus.setConnected(true);
    await sleep(20);
    assert.equal(beats.length, 3, 'stopped: no hello or reconnection makes it beat');
  });
});
