import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { type AgentHeartbeat, agentSubjects } from '../../src/core/agent-protocol.js';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { AgentRegistry } from '../../src/gateway/agent-registry.js';
import { placeWithRoom, rankByDistance } from '../../src/gateway/placement.js';
import { type Harness, joinWithMedia, roomHarness, settle, unitLogger } from './helpers/room-harness.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An AgentRegistry fed with one heartbeat per agent. */
async function registryOf(agents: { id: string; routers: number; peers?: number; state?: 'available' | 'draining' }[]): Promise<AgentRegistry> {
  const bus = new MemoryBus(unitLogger(), 1000);
  const registry = new AgentRegistry(bus, unitLogger(), 2000, 3000);
  registry.start();
  cleanups.push(() => bus.close(), () => registry.stop());
  for (const a of agents) {
    const heartbeat: AgentHeartbeat = {
      id: a.id,
      state: a.state ?? 'available',
      load: { workers: 1, routers: a.routers, transports: 0, producers: 0, consumers: 0, peers: a.peers ?? 0, cpu: 0 },
    };
    bus.publish(agentSubjects.heartbeat, heartbeat);
  }
  await settle();
  return registry;
}

function track(h: Harness): Harness {
  cleanups.push(() => h.close());
  return h;
}

describe('ROOM-BEST placement', () => {
  test('a new room goes to the available agent with the fewest routers, counting this gateway\'s own recent placements', async () => {
    const registry = await registryOf([
      { id: 'busy', routers: 5 },
      { id: 'empty', routers: 1, peers: 10 },
      { id: 'middle', routers: 3 },
      { id: 'draining', routers: 0, state: 'draining' },
    ]);
    // empty (1), empty (1+1 < 3), then a tie at 3 that the fewer peers break: middle.
    assert.deepEqual([registry.choose()?.id, registry.choose()?.id, registry.choose()?.id], ['empty', 'empty', 'middle']);
    assert.equal(registry.choose(new Set(['empty', 'middle']))?.id, 'busy');
  });

  test("the room stays on its agent until its consumers there reach the spill threshold, then spills to the emptiest other", async () => {
    const registry = await registryOf([
      { id: 'a', routers: 1 },
      { id: 'b', routers: 4 },
      { id: 'c', routers: 2 },
    ]);
    let consumers = 9;
    const room = { agentIds: new Set(['a']), consumersOn: (id: string) => (id === 'a' ? consumers : 0) };
    assert.deepEqual(placeWithRoom(room, registry, 10), ['a']);
    consumers = 10;
    assert.deepEqual(placeWithRoom(room, registry, 10), ['c']);
    assert.deepEqual(placeWithRoom(room, registry, 0), ['a'], '0: never spill');
    // Every other agent is taken already: the room's own, full or not.
    const everywhere = { agentIds: new Set(['a', 'b', 'c']), consumersOn: () => 100 };
    assert.deepEqual(placeWithRoom(everywhere, registry, 10), ['a']);
    // An agent of the room that is no longer registered is not offered.
    const gone = { agentIds: new Set(['vanished']), consumersOn: () => 0 };
    assert.deepEqual(placeWithRoom(gone, registry, 10), ['a']);
  });

  test('peers arriving together in a new room share one agent (one choice at a time)', async () => {
    const registry = await registryOf([
      { id: 'agent-a', routers: 0 },
      { id: 'agent-b', routers: 0 },
    ]);
    const h = track(roomHarness({ agents: ['agent-a', 'agent-b'], place: async (room) => placeWithRoom(room, registry, 0) }));
    const placed = await Promise.all(['p1', 'p2', 'p3'].map((id) => h.room.placed(h.addPeer(id).peer)));
    assert.equal(new Set(placed).size, 1, `placed on ${placed.join(', ')}`);
    assert.equal(h.agent(placed[0]!).callsOf('ensureRouter').length, 1);
  });
});

describe('TTL-BEST placement', () => {
  test('agents are ranked by RTT, a room agent within tolerance first, unmeasured ones last', () => {
    const candidates = [
      { id: 'far', load: 0 },
      { id: 'near', load: 5 },
      { id: 'room', load: 9 },
      { id: 'unmeasured-room', load: 9 },
      { id: 'unmeasured', load: 0 },
    ];
    const rtts = { far: 120, near: 10, room: 25 };
    assert.deepEqual(rankByDistance(candidates, rtts, new Set(), 20), ['near', 'room', 'far', 'unmeasured', 'unmeasured-room']);
    assert.deepEqual(rankByDistance(candidates, rtts, new Set(['room', 'unmeasured-room']), 20), [
      'room',
      'near',
      'far',
      'unmeasured-room',
      'unmeasured',
    ]);
    // Beyond the tolerance the nearest wins even over the room's agent.
    assert.deepEqual(rankByDistance(candidates, rtts, new Set(['room']), 10).slice(0, 2), ['near', 'room']);
  });

  test("a peer goes where its reported RTTs say; RTTs reported once it is placed change nothing", async () => {
    const h = track(
      roomHarness({
        agents: ['agent-a', 'agent-b'],
        policy: 'TTL-BEST',
        place: async (room, peer) =>
          rankByDistance([{ id: 'agent-a', load: 0 }, { id: 'agent-b', load: 0 }], peer.reportedRtts ?? {}, room.agentIds, 0).slice(0, 2),
      }),
    );
    const { peer } = h.addPeer('client');
    await h.room.handle(peer, 'reportAgentRtts', { rtts: { 'agent-a': 80, 'agent-b': 12 } });
    await h.room.handle(peer, 'join', {});
    assert.equal(peer.agentId, 'agent-b');
    await h.room.handle(peer, 'reportAgentRtts', { rtts: { 'agent-a': 1, 'agent-b': 500 } });
    assert.deepEqual(peer.reportedRtts, { 'agent-a': 80, 'agent-b': 12 });
    assert.deepEqual(await h.room.handle(peer, 'getAgentProbes', {}), { probes: [], timeoutMs: 0 });
  });

  test('a first choice that does not open the room in time gives way to the next, and its late router is closed', async () => {
    const h = track(
      roomHarness({
        agents: ['agent-a', 'agent-b'],
        policy: 'TTL-BEST',
        fallbackAfterMs: 50,
        agentTimeoutMs: 2000,
        place: async () => ['agent-a', 'agent-b'],
      }),
    );
    // agent-a has become slow since it was measured: it answers, but long after the fallback.
    h.agent('agent-a').override('ensureRouter', () => new Promise((resolve) => setTimeout(() => resolve({ rtpCapabilities: {} }), 300)));
    const started = Date.now();
    const { peer } = await joinWithMedia(h, 'client');
    const elapsed = Date.now() - started;
    assert.equal(peer.agentId, 'agent-b');
    assert.ok(elapsed < 1000, `placed after ${elapsed} ms: the fallback waited for the full agent timeout`);
    const a = h.agent('agent-a');
    assert.deepEqual(
      a.callsOf('closeRouter').map((c) => c.epoch),
      a.callsOf('ensureRouter').map((c) => c.epoch),
    );
    assert.deepEqual([...h.room.agentIds], ['agent-b']);
  });
});
