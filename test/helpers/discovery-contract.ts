/**
 * What every `ServiceDiscovery` must do, whatever carries it (the bus's heartbeats, etcd):
 * instances registered in one process appear in every view with their load, leave every
 * view at once when withdrawn or closed (`down`), come back as `restarted` under a new
 * incarnation, and the views list them sorted. Run it with a factory of discoveries that
 * share one backend:
 *
 *   describe('etcd discovery', () => runDiscoveryContract(() => ({ create: () => new EtcdServiceDiscovery(...), refreshMs: 300 })));
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, it } from 'node:test';
import type { ServiceDiscovery, ServiceInstance, ServiceRemovalReason } from '../../src/core/service-discovery.js';

export interface DiscoveryContractSetup {
  /** A new discovery, not started, on the same backend as every other one this returns (another process's view). */
  create(): ServiceDiscovery;
  /** How often a registration's load is published: load updates must show within a few of these. */
  refreshMs: number;
  /** A withdrawal must show in other views within this (default 1000 ms; "at once", well under any timeout). */
  promptMs?: number;
}

export type DiscoveryEvent =
  | { kind: 'added'; instance: ServiceInstance; at: number }
  | { kind: 'updated'; instance: ServiceInstance; at: number }
  | { kind: 'removed'; instance: ServiceInstance; reason: ServiceRemovalReason; at: number };

/** Every event one view emits, in order, with a way to wait for one. */
export class ViewRecorder {
  readonly events: DiscoveryEvent[] = [];

  constructor(readonly discovery: ServiceDiscovery) {
    discovery.on('added', (instance) => this.events.push({ kind: 'added', instance, at: Date.now() }));
    discovery.on('updated', (instance) => this.events.push({ kind: 'updated', instance, at: Date.now() }));
    discovery.on('removed', (instance, reason) => this.events.push({ kind: 'removed', instance, reason, at: Date.now() }));
  }

  /** The first event (recorded before or after the call) matching `match`; fails after `timeoutMs`. */
  async next(match: (e: DiscoveryEvent) => boolean, timeoutMs: number, what = 'event'): Promise<DiscoveryEvent> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (Date.now() > until) throw new assert.AssertionError({ message: `no ${what} within ${timeoutMs} ms; saw: ${this.describe()}` });
      await sleep(20);
    }
  }

  describe(): string {
    return this.events.map((e) => `${e.kind} ${e.instance.service}/${e.instance.id}${e.kind === 'removed' ? ` (${e.reason})` : ''}`).join(', ') || 'nothing';
  }
}

/** Polls `check` until it holds; fails after `timeoutMs` with `what` and the last value seen. */
export async function eventually<T>(read: () => T | Promise<T>, check: (v: T) => boolean, timeoutMs: number, what: string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > until) throw new assert.AssertionError({ message: `${what} not within ${timeoutMs} ms; last: ${JSON.stringify(value)}` });
    await sleep(20);
  }
}

let serial = 0;
/** A service name no other test of this run uses (the backend is shared). */
export function uniqueServiceName(base: string): string {
  return `${base}-${process.pid}-${++serial}-${randomUUID().slice(0, 6)}`;
}

export function instanceOf(service: string, id: string, more: Partial<ServiceInstance> = {}): ServiceInstance {
  return { id, incarnation: 'inc-1', service, version: '1.0.0', subject: `svc.${service}.${id}`, inFlight: 0, weight: 1, ...more };
}

/** Registers the contract's tests (call inside a `describe`). */
export function runDiscoveryContract(setup: () => DiscoveryContractSetup | Promise<DiscoveryContractSetup>): void {
  const open: ServiceDiscovery[] = [];
  after(async () => {
    await Promise.all(open.splice(0).map((d) => d.close()));
  });
  /** A started discovery with a recorder of its events, closed after the suite. */
  async function view(s: DiscoveryContractSetup): Promise<ViewRecorder> {
    const d = s.create();
    open.push(d);
    const recorder = new ViewRecorder(d);
    await d.start();
    return recorder;
  }

  it('an instance registered in one process appears in every view, listed sorted by id, services sorted by name', async () => {
    const s = await setup();
    const [a, b] = [await view(s), await view(s)];
    const chat = uniqueServiceName('chat');
    const board = uniqueServiceName('board');
    a.discovery.register(() => instanceOf(chat, 'i-2'));
    a.discovery.register(() => instanceOf(chat, 'i-1', { weight: 3 }));
    a.discovery.register(() => instanceOf(board, 'x'));
    for (const v of [a, b]) {
      await eventually(() => v.discovery.instances(chat).map((i) => i.id), (ids) => ids.length === 2, 5000, `both ${chat} instances`);
      assert.deepEqual(v.discovery.instances(chat).map((i) => i.id), ['i-1', 'i-2']);
      assert.deepEqual(v.discovery.instances(chat)[0], instanceOf(chat, 'i-1', { weight: 3 }));
      await eventually(() => v.discovery.instances(board).length, (n) => n === 1, 5000, `the ${board} instance`);
      const names = v.discovery.services().filter((n) => n === chat || n === board);
      assert.deepEqual(names, [board, chat].sort());
      assert.deepEqual(v.discovery.services(), [...v.discovery.services()].sort());
    }
    const added = b.events.filter((e) => e.kind === 'added' && e.instance.service === chat);
    assert.equal(added.length, 2, `one 'added' per instance: ${b.describe()}`);
    assert.deepEqual(b.discovery.instances(uniqueServiceName('nobody')), []);
  });

  it('load changes reach the other views as updates', async () => {
    const s = await setup();
    const [a, b] = [await view(s), await view(s)];
    const service = uniqueServiceName('load');
    let inFlight = 0;
    a.discovery.register(() => instanceOf(service, 'l-1', { inFlight }));
    await b.next((e) => e.kind === 'added' && e.instance.service === service, 5000, 'added');
    inFlight = 7;
    const updated = await b.next((e) => e.kind === 'updated' && e.instance.service === service && e.instance.inFlight === 7, s.refreshMs * 3 + 1000, 'update to inFlight 7');
    assert.equal(updated.instance.id, 'l-1');
    assert.equal(b.discovery.instances(service)[0]?.inFlight, 7);
    // Unchanged values published again are no news.
    const before = b.events.filter((e) => e.instance.service === service).length;
    await sleep(s.refreshMs * 3);
    assert.equal(b.events.filter((e) => e.instance.service === service).length, before, `no events without a change: ${b.describe()}`);
  });

  it('withdraw: every other view drops the instance at once, as down', async () => {
    const s = await setup();
    const [a, b] = [await view(s), await view(s)];
    const service = uniqueServiceName('withdraw');
    const stays = a.discovery.register(() => instanceOf(service, 'w-stays'));
    const leaves = a.discovery.register(() => instanceOf(service, 'w-leaves'));
    await eventually(() => b.discovery.instances(service).length, (n) => n === 2, 5000, 'both instances');
    const t0 = Date.now();
    await leaves.withdraw();
    const removed = await b.next((e) => e.kind === 'removed' && e.instance.id === 'w-leaves', s.promptMs ?? 1000, 'removal');
    assert.equal(removed.kind === 'removed' && removed.reason, 'down');
    assert.ok(removed.at - t0 <= (s.promptMs ?? 1000), `removed after ${removed.at - t0} ms`);
    assert.deepEqual(b.discovery.instances(service).map((i) => i.id), ['w-stays']);
    // It stays gone (no refresh puts it back) and the other one stays.
    await sleep(s.refreshMs * 3);
    assert.deepEqual(b.discovery.instances(service).map((i) => i.id), ['w-stays']);
    await leaves.withdraw(); // twice is harmless
    await stays.withdraw();
    await b.next((e) => e.kind === 'removed' && e.instance.id === 'w-stays', s.promptMs ?? 1000, 'second removal');
    assert.deepEqual(b.discovery.services().filter((n) => n === service), []);
  });

  it("close(): the process's instances leave every other view at once, as down", async () => {
    const s = await setup();
    const [a, b] = [await view(s), await view(s)];
    const service = uniqueServiceName('closing');
    a.discovery.register(() => instanceOf(service, 'c-1'));
    a.discovery.register(() => instanceOf(service, 'c-2'));
    await eventually(() => b.discovery.instances(service).length, (n) => n === 2, 5000, 'both instances');
    const t0 = Date.now();
    await a.discovery.close();
    for (const id of ['c-1', 'c-2']) {
      const removed = await b.next((e) => e.kind === 'removed' && e.instance.id === id, s.promptMs ?? 1000, `removal of ${id}`);
      assert.equal(removed.kind === 'removed' && removed.reason, 'down');
      assert.ok(removed.at - t0 <= (s.promptMs ?? 1000), `removed after ${removed.at - t0} ms`);
    }
  });

  it('the same id with a new incarnation replaces the old one as restarted', async () => {
    const s = await setup();
    const [a, b] = [await view(s), await view(s)];
    const service = uniqueServiceName('restart');
    // What a process restarted under the same id announces; here the same registration
    // changes its incarnation, so no old process lingers to announce the old one again.
    let incarnation = 'first';
    a.discovery.register(() => instanceOf(service, 'r-1', { incarnation }));
    await b.next((e) => e.kind === 'added' && e.instance.service === service, 5000, 'added');
    incarnation = 'second';
    const removed = await b.next((e) => e.kind === 'removed' && e.instance.service === service, s.refreshMs * 3 + 1000, 'removal of the old incarnation');
    assert.equal(removed.kind === 'removed' && removed.reason, 'restarted');
    assert.equal(removed.instance.incarnation, 'first');
    const added = await b.next((e) => e.kind === 'added' && e.instance.service === service && e.instance.incarnation === 'second', 1000, 'the new incarnation');
    assert.ok(added.at >= removed.at);
    assert.deepEqual(b.discovery.instances(service).map((i) => i.incarnation), ['second']);
    assert.equal(b.events.filter((e) => e.kind === 'updated' && e.instance.service === service).length, 0, `a new incarnation is no update: ${b.describe()}`);
  });
}
