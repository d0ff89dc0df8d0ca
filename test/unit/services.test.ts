import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { z } from 'zod';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { ConfigError, loadConfig, parseConfig } from '../../src/core/config.js';
import { AppError } from '../../src/core/errors.js';
import { ServiceCaller } from '../../src/core/service-caller.js';
import { createServiceDiscovery } from '../../src/core/service-discovery-factory.js';
import { EtcdServiceDiscovery } from '../../src/core/etcd-service-discovery.js';
import { BusServiceDiscovery } from '../../src/core/service-bus-discovery.js';
import { type CallerIdentity, serviceSubjects } from '../../src/core/service-protocol.js';
import { type RunningService, defineService, startService } from '../../src/services/index.js';
import { type Execution, echoService } from '../helpers/services-fixtures.js';
import { unitLogger, until } from './helpers/room-harness.js';

// A silence tolerance far above the heartbeat: a test loading the event loop must not expire a live instance.
const config = parseConfig({ services: { heartbeatMs: 100, timeoutMs: 2000, probeMs: 100, maxPayloadBytes: 1024 } });
const client = (user = 'alice', connection = 'conn-1', tenant = 'tenant-a'): CallerIdentity => ({ tenant, user, connection, kind: 'client' });

interface World {
  bus: MemoryBus;
  caller: ServiceCaller;
  discovery: BusServiceDiscovery;
  instances: RunningService[];
  log: Execution[];
  close(): Promise<void>;
}

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

/** `count` instances of the echo service and a caller, each with its own discovery, on one in-process bus. */
async function start(count: number): Promise<World> {
  const logger = unitLogger();
  const bus = new MemoryBus(logger, 1000);
  const log: Execution[] = [];
  const instances: RunningService[] = [];
  for (let i = 0; i < count; i++) instances.push(await startService(echoService(log), { bus, config, logger, instanceId: `echo-${i}` }));
  const discovery = new BusServiceDiscovery(bus, logger, config.services);
  await discovery.start();
  const caller = new ServiceCaller(bus, discovery, logger, config.services);
  caller.start();
  await until(() => discovery.instances('echo').length === count, 'every instance discovered');
  return {
    bus,
    caller,
    discovery,
    instances,
    log,
    close: async () => {
      caller.close();
      await discovery.close();
      for (const instance of instances) await instance.stop();
      await bus.close();
    },
  };
}

async function whoami(w: World, options: Parameters<ServiceCaller['call']>[4], identity = client()): Promise<string> {
  return ((await w.caller.call('echo', 'whoami', {}, identity, options)) as { instance: string }).instance;
}

async function rejects(promise: Promise<unknown>, code: string): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof AppError, `an AppError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe('service calls on the in-process bus', () => {
  test('round-robin goes round every instance in turn', async () => {
    world = await start(3);
    const picked: string[] = [];
    for (let i = 0; i < 9; i++) picked.push(await whoami(world, { strategy: 'round-robin' }));
    for (let i = 3; i < 9; i++) assert.equal(picked[i], picked[i - 3]);
    assert.equal(new Set(picked.slice(0, 3)).size, 3);
  });

  test('random reaches every instance, not in a fixed cycle', async () => {
    world = await start(3);
    const counts = new Map<string, number>();
    const picked: string[] = [];
    for (let i = 0; i < 90; i++) {
      const id = await whoami(world, { strategy: 'random' });
      picked.push(id);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.equal(counts.size, 3);
    const cyclic = picked.every((id, i) => i < 3 || id === picked[i - 3]);
    assert.equal(cyclic, false);
  });

  test('hash: the same key reaches the same instance; keys spread; a key stays when another instance leaves', async () => {
    world = await start(3);
    const owner = new Map<string, string>();
    for (let k = 0; k < 30; k++) owner.set(`room-${k}`, await whoami(world, { strategy: 'hash', key: `room-${k}` }));
    for (let k = 0; k < 30; k++) assert.equal(await whoami(world, { strategy: 'hash', key: `room-${k}` }), owner.get(`room-${k}`));
    assert.equal(new Set(owner.values()).size, 3);
    // Without a key, the caller's user is the key.
    const byUser = await whoami(world, { strategy: 'hash' }, client('bob'));
    assert.equal(await whoami(world, { strategy: 'hash' }, client('bob', 'other-conn')), byUser);
    const leaving = world.instances.find((i) => i.id === 'echo-2')!;
    await leaving.stop();
    await until(() => world!.discovery.instances('echo').length === 2, 'echo-2 gone');
    for (const [key, id] of owner) {
      const now = await whoami(world, { strategy: 'hash', key });
      if (id !== 'echo-2') assert.equal(now, id, `${key} moved though its instance lives`);
      else assert.notEqual(now, 'echo-2');
    }
  });

  test('a method declaring hashKey is routed by hash on that argument, whatever strategy or key the call names', async () => {
    world = await start(3);
    const w = world;
    const byRoom = async (room: string, options: Parameters<ServiceCaller['call']>[4], identity = client()) =>
      ((await w.caller.call('echo', 'byRoom', { room }, identity, options)) as { instance: string }).instance;
    const owner = new Map<string, string>();
    for (let k = 0; k < 30; k++) owner.set(`room-${k}`, await byRoom(`room-${k}`, { strategy: 'round-robin' }));
    assert.equal(new Set(owner.values()).size, 3, 'rooms spread');
    for (const [room, id] of owner) {
      assert.equal(await byRoom(room, { strategy: 'random' }, client('bob', 'conn-2')), id, `${room} for another user`);
      assert.equal(await byRoom(room, { strategy: 'hash', key: 'other' }), id, `${room} with a key of the caller's`);
    }
  });

  test('a hashKey callers could not learn (longer than the probe answer allows) is refused when the service is defined', () => {
    const withKey = (hashKey: string) =>
      defineService({ name: 'keyed', version: '1.0.0', methods: { m: { input: z.object({}), access: 'external', hashKey, handler: () => null } } });
    assert.throws(() => withKey('k'.repeat(65)), /keyed\.m: hashKey must name an argument of 1 to 64 characters/);
    assert.throws(() => withKey(''), /hashKey/);
    assert.equal(withKey('k'.repeat(64)).name, 'keyed');
  });

  test('least-load avoids the instance busy with this caller\'s slow calls', async () => {
    world = await start(2);
    const w = world;
    const busy = w.caller.call('echo', 'slow', { ms: 400 }, client(), { strategy: 'hash', key: 'x' }) as Promise<{ instance: string }>;
    const slow = [busy, ...[1, 2, 3].map(() => w.caller.call('echo', 'slow', { ms: 400 }, client(), { strategy: 'hash', key: 'x' }))];
    const busyId = await until(() => w.log.filter((e) => e.method === 'slow').length === 4, 'slow calls running').then(() => w.log[0]!.instance);
    for (let i = 0; i < 6; i++) assert.notEqual(await whoami(w, { strategy: 'least-load' }), busyId);
    assert.equal((await busy).instance, busyId);
    await Promise.all(slow);
  });

  test('ordered: each client\'s calls run one at a time in call order on one instance, pipelined', async () => {
    world = await start(3);
    const w = world;
    const clients = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
    await Promise.all(
      clients.flatMap((c) =>
        Array.from({ length: 60 }, (_, i) => w.caller.call('echo', 'seq', { client: c, n: i + 1, delayMs: 3 }, client(c, `conn-${c}`))),
      ),
    );
    for (const c of clients) {
      const runs = w.log.filter((e) => e.client === c && e.method === 'seq');
      assert.equal(new Set(runs.map((e) => e.instance)).size, 1, `${c} on one instance`);
      // One at a time, in order: each call starts after the previous one ended.
      const events = w.log.filter((e) => e.client === c).map((e) => `${e.method === 'seq' ? 'start' : 'end'} ${e.n}`);
      assert.deepEqual(events, Array.from({ length: 60 }, (_, i) => [`start ${i + 1}`, `end ${i + 1}`]).flat(), `${c} in order, one at a time`);
    }
    // Six clients on three instances: stickiness is per client, not one instance for all.
    assert.ok(new Set(w.log.map((e) => e.instance)).size > 1);
  });

  test('every failure is a stable code, and the instance goes on answering', async () => {
    world = await start(2);
    const w = world;
    await rejects(w.caller.call('nosuch', 'whoami', {}, client()), 'SERVICE_NOT_RUNNING');
    await rejects(w.caller.call('echo', 'nosuch', {}, client()), 'SERVICE_METHOD_NOT_FOUND');
    await rejects(w.caller.call('echo', 'slow', { ms: 'soon' }, client()), 'SERVICE_INVALID_ARGS');
    await rejects(w.caller.call('echo', 'slow', { ms: 1, extra: 1 }, client()), 'SERVICE_INVALID_ARGS');
    await rejects(w.caller.call('echo', 'whoami', { pad: 'x'.repeat(2000) }, client()), 'SERVICE_PAYLOAD_TOO_LARGE');
    await rejects(w.caller.call('echo', 'secret', {}, client()), 'SERVICE_ACCESS_DENIED');
    const boom = await rejects(w.caller.call('echo', 'boom', {}, client()), 'INTERNAL');
    assert.doesNotMatch(boom.message, /hunter2/);
    // The method's own bound (300 ms) cuts the caller's 5 s.
    const started = Date.now();
    await rejects(w.caller.call('echo', 'hang', {}, client(), { timeoutMs: 5000 }), 'SERVICE_TIMEOUT');
    assert.ok(Date.now() - started < 1500);
    await rejects(w.caller.call('echo', 'slow', { ms: 500 }, client(), { timeoutMs: 100 }), 'SERVICE_TIMEOUT');
    // Services and trusted servers may call internal methods; the caller identity reaches the handler.
    const asService = (await w.caller.call('echo', 'secret', {}, { ...client('carol'), kind: 'service' })) as { secret: number; user: string };
    assert.deepEqual(asService, { secret: 42, user: 'carol', tenant: 'tenant-a', kind: 'service' });
    // s2s: a client's external call relays to an internal method as the service, for the same user.
    assert.deepEqual(await w.caller.call('echo', 'relay', { service: 'echo', method: 'secret' }, client('dave')), {
      secret: 42,
      user: 'dave',
      tenant: 'tenant-a',
      kind: 'service',
    });
    // Nothing timed out at the bus: no instance was taken out of the picks.
    assert.deepEqual(w.caller.describe(), { echo: { instances: 2, answering: 2 } });
    assert.ok(await whoami(w, {}));
  });

  test('an instance that stops answering is out of the picks while registered, and back after a probe', async () => {
    world = await start(2);
    const w = world;
    const mute = w.instances[0]!;
    // Its calls stop being answered while its heartbeats go on: a stuck process.
    (mute.host as unknown as { subscriptions: { unsubscribe(): void }[] }).subscriptions.splice(0).forEach((s) => s.unsubscribe());
    // Calls travel batched on the instance's batch subject, probes on its own subject: both hang.
    const stuckCalls = w.bus.respond(serviceSubjects.instanceBatch('echo', mute.host.id), () => new Promise(() => undefined));
    const stuck = w.bus.respond(mute.host.subject, () => new Promise(() => undefined));
    const results: PromiseSettledResult<string>[] = [];
    for (let i = 0; i < 4; i++) results.push(...(await Promise.allSettled([whoami(w, { strategy: 'round-robin', timeoutMs: 100 })])));
    const lost = results.filter((r) => r.status === 'rejected');
    assert.equal(lost.length, 1, 'only the first call sent to it fails');
    assert.equal(((lost[0] as PromiseRejectedResult).reason as AppError).code, 'SERVICE_INSTANCE_LOST');
    assert.equal(w.discovery.instances('echo').length, 2, 'still registered');
    for (let i = 0; i < 6; i++) assert.equal(await whoami(w, { strategy: 'round-robin' }), 'echo-1');
    stuck.unsubscribe();
    stuckCalls.unsubscribe();
    mute.host.start();
    await until(() => w.caller.describe().echo?.answering === 2, 'probe answered', 2000);
  });

  test('fire-and-forget runs the method without an answer', async () => {
    world = await start(1);
    world.caller.send('echo', 'whoami', {}, client('erin'));
    await until(() => world!.log.some((e) => e.user === 'erin'), 'sent call ran');
  });

  test('the instance tells a gap in an ordered stream, refuses the stream from then on, and refuses malformed calls', async () => {
    world = await start(1);
    const subject = world.instances[0]!.host.subject;
    const call = (n: number, stream = 's1') => world!.bus.request(subject, { m: 'seq', a: { client: 'raw', n }, c: client(), t: 1000, s: stream, n });
    await call(1);
    await call(2);
    await rejects(call(4), 'SERVICE_ORDER_RESET');
    await rejects(call(3), 'SERVICE_ORDER_RESET');
    await rejects(call(2, 'unknown-stream'), 'SERVICE_ORDER_RESET');
    await call(1, 's2');
    await rejects(world.bus.request(subject, { m: 'whoami', c: { ...client(), kind: 'root' }, t: 1000 }), 'VALIDATION_FAILED');
    await rejects(world.bus.request(subject, { m: 'whoami', c: client(), t: 0 }), 'VALIDATION_FAILED');
    // An unordered call of an ordered method is refused before running (the caller then sends it ordered).
    await rejects(world.bus.request(subject, { m: 'seq', a: { client: 'raw', n: 9 }, c: client(), t: 1000 }), 'SERVICE_CALL_MUST_BE_ORDERED');
    assert.deepEqual(
      world.log.filter((e) => e.method === 'seq').map((e) => e.n),
      [1, 2, 1],
    );
  });

  test('discovery: bus by default; etcd when configured, its hosts also as one comma-separated setting', async () => {
    const bus = new MemoryBus(unitLogger(), 1000);
    assert.ok(createServiceDiscovery(config.services, bus, unitLogger()) instanceof BusServiceDiscovery);
    const fromEnv = loadConfig({ env: { MSS_SERVICES__DISCOVERY: 'etcd', MSS_SERVICES__ETCD__HOSTS: ' http://etcd-1:2379, http://etcd-2:2379' } });
    assert.deepEqual(fromEnv.services.etcd.hosts, ['http://etcd-1:2379', 'http://etcd-2:2379']);
    const etcd = createServiceDiscovery(fromEnv.services, bus, unitLogger());
    assert.ok(etcd instanceof EtcdServiceDiscovery);
    await etcd.close();
    assert.throws(() => loadConfig({ env: { MSS_SERVICES__ETCD__HOSTS: 'not a url' } }), ConfigError);
  });

  test('a per-service default strategy applies when the call names none', async () => {
    world = await start(3);
    const hashing = new ServiceCaller(world.bus, world.discovery, unitLogger(), { ...config.services, strategies: { echo: 'hash' } });
    hashing.start();
    try {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) seen.add(((await hashing.call('echo', 'whoami', {}, client('zoe'))) as { instance: string }).instance);
      assert.equal(seen.size, 1, 'hash on tenant/user: one instance for zoe');
      const other = new Set<string>();
      for (let i = 0; i < 6; i++) other.add(await whoami(world, {}, client('zoe')));
      assert.equal(other.size, 3, 'the default (round-robin) elsewhere');
    } finally {
      hashing.close();
    }
  });
});
