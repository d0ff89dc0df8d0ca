import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { agentSubjects } from '../../src/core/agent-protocol.js';
import type { AgentCall } from '../../src/gateway/cascade.js';
import { Cascade } from '../../src/gateway/cascade.js';
import type { Peer } from '../../src/gateway/peer.js';
import { GATEWAY_ID, type Harness, joinWithMedia, roomHarness, settle, unitLogger, until } from './helpers/room-harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A room spread over agent-a and agent-b, each peer on the agent `home` names. */
function twoAgents(home: Record<string, string>): Harness {
  return roomHarness({
    agents: ['agent-a', 'agent-b'],
    policy: 'TTL-BEST',
    place: async (_room, peer: Peer) => [home[peer.id] ?? 'agent-a'],
  });
}

describe('Cascade in a room (fake agents)', () => {
  test('a producer is piped once for two consumers on the far agent, unpiped after both leave, and the link closes with its last pipe', async () => {
    h = twoAgents({ alice: 'agent-a', bob: 'agent-b', carol: 'agent-b', dave: 'agent-b' });
    const a = h.agent('agent-a');
    const b = h.agent('agent-b');
    const alice = await joinWithMedia(h, 'alice', ['audio']);
    // dave stays on agent-b, so its router (and with it the link) is only released by the cascade itself.
    h.addPeer('dave');
    await h.room.placed(h.room.peers.get('dave')!);
    const bob = await joinWithMedia(h, 'bob');
    const carol = await joinWithMedia(h, 'carol');
    await until(() => bob.peer.consumers.size === 1 && carol.peer.consumers.size === 1, 'bob and carol consume alice');
    assert.equal(a.callsOf('pipeConsume').length, 1);
    assert.equal(b.callsOf('pipeProduce').length, 1);
    assert.equal(b.callsOf('pipeProduce')[0]!.producerId, alice.producerIds[0]);
    assert.equal(a.callsOf('createPipeTransport').length, 1);
    assert.equal(b.callsOf('createPipeTransport').length, 1);
    assert.deepEqual(h.room.cascadeSize, { links: 1, pipes: 1 });
    // The consumers are on agent-b, where the producer was piped in.
    assert.ok(b.callsOf('consume').length === 2 && a.callsOf('consume').length === 0);

    bob.peer.close('leave');
    await settle();
    assert.equal(a.callsOf('unpipe').length + b.callsOf('unpipe').length, 0, 'carol still consumes it');

    carol.peer.close('leave');
    await until(() => a.callsOf('closePipeTransport').length === 1 && b.callsOf('closePipeTransport').length === 1, 'link closed');
    assert.deepEqual(a.callsOf('unpipe').map((c) => c.producerId), alice.producerIds);
    assert.deepEqual(b.callsOf('unpipe').map((c) => c.producerId), alice.producerIds);
    assert.deepEqual(h.room.cascadeSize, { links: 0, pipes: 0 });
    assert.equal(a.links.size + b.links.size, 0);
  });

  test('a lost agent: only its peers are told and disconnected; the others lose what came from it', async () => {
    h = twoAgents({ alice: 'agent-a', carol: 'agent-a', bob: 'agent-b' });
    const alice = await joinWithMedia(h, 'alice', ['audio']);
    const carol = await joinWithMedia(h, 'carol');
    const bob = await joinWithMedia(h, 'bob');
    await until(() => bob.peer.consumers.size === 1, 'bob consumes alice over the link');
    h.room.agentLost('agent-a', 'agent-removed', true);
    assert.deepEqual(alice.conn.notified('mediaAgentLost'), [{ reason: 'agent-removed' }]);
    assert.deepEqual(carol.conn.notified('mediaAgentLost'), [{ reason: 'agent-removed' }]);
    assert.deepEqual(bob.conn.notified('mediaAgentLost'), []);
    assert.deepEqual(h.mediaLost.map((l) => l.peerId).sort(), ['alice', 'carol']);
    assert.ok(alice.peer.closed && carol.peer.closed && !bob.peer.closed);
    assert.deepEqual((bob.conn.notified('peerClosed') as { peerId: string }[]).map((p) => p.peerId).sort(), ['alice', 'carol']);
    assert.deepEqual([...h.room.agentIds], ['agent-b']);
    assert.equal(h.room.closed, false);
    await settle();
    // agent-b closes its end of the link (and with it the piped copy and bob's consumer); agent-a is asked to close the router it may still hold.
    assert.deepEqual(h.agent('agent-b').callsOf('closePipeTransport').map((c) => c.remoteAgentId), ['agent-a']);
    assert.equal(h.agent('agent-a').callsOf('closeRouter').length, 1);
    assert.deepEqual(h.room.cascadeSize, { links: 0, pipes: 0 });
  });

  test('routerClosed moves the peers of that opening only; an agent answering ROOM_NOT_FOUND for an open router counts as its loss', async () => {
    h = twoAgents({ alice: 'agent-a', bob: 'agent-b' });
    const alice = await joinWithMedia(h, 'alice');
    const bob = await joinWithMedia(h, 'bob');
    const a = h.agent('agent-a');
    // About an earlier opening: nothing of this room was on it.
    a.emit({ type: 'routerClosed', roomId: h.room.id, epoch: 'stale-epoch', reason: 'worker-died' });
    await settle();
    assert.equal(alice.peer.closed, false);
    a.emit({ type: 'routerClosed', roomId: h.room.id, epoch: String(a.callsOf('ensureRouter')[0]!.epoch), reason: 'worker-died' });
    await until(() => alice.peer.closed, 'alice moved');
    assert.deepEqual(alice.conn.notified('mediaAgentLost'), [{ reason: 'worker-died' }]);
    assert.equal(bob.peer.closed, false);

    // agent-b restarts under its id without a word: the next request finds no router.
    h.agent('agent-b').forgetRouters();
    await assert.rejects(h.room.handle(bob.peer, 'getTransportStats', { transportId: [...bob.peer.transports.keys()][0]! }));
    assert.deepEqual(bob.conn.notified('mediaAgentLost'), [{ reason: 'router-lost' }]);
    assert.equal(bob.peer.closed, true);
  });
});

describe('Cascade (reference counts over fake agents)', () => {
  /** A Cascade calling the fake agents over the bus, logging each call when it starts and when it ends. */
  async function cascadeOverBus(harness: Harness, log: string[]): Promise<{ cascade: Cascade; producerIds: string[] }> {
    const call: AgentCall = async (agentId, method, data) => {
      log.push(`${agentId} ${method} start`);
      try {
        return await harness.bus.request(agentSubjects.rpc(agentId), { method, data: { ...data, gatewayId: GATEWAY_ID } });
      } finally {
        log.push(`${agentId} ${method} end`);
      }
    };
    const roomId = harness.room.id;
    for (const agentId of ['agent-a', 'agent-b']) await call(agentId, 'ensureRouter', { roomId, epoch: `e-${agentId}` });
    const producerIds: string[] = [];
    for (const kind of ['audio', 'video'] as const) {
      const rtpParameters = { codecs: [{ mimeType: `${kind}/x`, payloadType: 100, clockRate: 90000 }] };
      const { id } = await call('agent-a', 'produce', { roomId, peerId: 'alice', transportId: 't', kind, rtpParameters });
      producerIds.push(id);
    }
    log.length = 0;
    return { cascade: new Cascade(roomId, call, false, unitLogger()), producerIds };
  }

  test('an unpipe racing a new consumer of the same producer completes before the pipe is opened again', async () => {
    h = twoAgents({});
    const log: string[] = [];
    const { cascade, producerIds } = await cascadeOverBus(h, log);
    const [p] = producerIds;
    cascade.bind('c1', await cascade.hold(p!, 'agent-a', 'agent-b'));
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    h.agent('agent-b').override('unpipe', async () => {
      await gate;
      return null;
    });
    cascade.release('c1');
    const again = cascade.hold(p!, 'agent-a', 'agent-b');
    await settle();
    assert.equal(h.agent('agent-a').callsOf('pipeConsume').length, 1, 'the new pipe waits for the unpipe in progress');
    openGate();
    cascade.bind('c2', await again);
    const unpiped = log.indexOf('agent-b unpipe end');
    const repiped = log.lastIndexOf('agent-a pipeConsume start');
    assert.ok(unpiped >= 0 && repiped > unpiped, log.join('\n'));
    // The link went with its only pipe and was opened anew after it closed.
    assert.ok(log.indexOf('agent-a closePipeTransport end') < log.lastIndexOf('agent-a createPipeTransport start'), log.join('\n'));
    assert.deepEqual(cascade.size, { links: 1, pipes: 1 });
    assert.deepEqual([...h.agent('agent-b').pipedIn.keys()], [p]);
  });

  test('two producers share one link; it closes only when the last pipe goes', async () => {
    h = twoAgents({});
    const log: string[] = [];
    const { cascade, producerIds } = await cascadeOverBus(h, log);
    const [p1, p2] = producerIds;
    cascade.bind('c1', await cascade.hold(p1!, 'agent-a', 'agent-b'));
    cascade.bind('c2', await cascade.hold(p2!, 'agent-a', 'agent-b'));
    cascade.bind('c3', await cascade.hold(p2!, 'agent-a', 'agent-b'));
    const a = h.agent('agent-a');
    assert.equal(a.callsOf('createPipeTransport').length, 1);
    assert.equal(a.callsOf('pipeConsume').length, 2);
    assert.deepEqual(cascade.receiversOf(p2!), ['agent-b']);
    cascade.release('c1');
    cascade.release('c2');
    await settle();
    assert.deepEqual(a.callsOf('unpipe').map((c) => c.producerId), [p1]);
    assert.equal(a.callsOf('closePipeTransport').length, 0, 'p2 still crosses the link');
    cascade.release('c3');
    await until(() => a.callsOf('closePipeTransport').length === 1, 'link closed with its last pipe');
    assert.equal(h.agent('agent-b').callsOf('closePipeTransport').length, 1);
    assert.deepEqual(cascade.size, { links: 0, pipes: 0 });
    assert.deepEqual(cascade.receiversOf(p2!), []);
  });

  test('a data producer is piped over the same link once for its data consumers there; its closing unpipes only its data copy', async () => {
    h = twoAgents({});
    const log: string[] = [];
    const { cascade, producerIds } = await cascadeOverBus(h, log);
    const [p] = producerIds;
    const dp = 'data-producer-1';
    const a = h.agent('agent-a');
    const b = h.agent('agent-b');
    cascade.bind('c1', await cascade.hold(p!, 'agent-a', 'agent-b'));
    cascade.bind('d1', await cascade.holdData(dp, 'agent-a', 'agent-b'));
    cascade.bind('d2', await cascade.holdData(dp, 'agent-a', 'agent-b'));
    assert.equal(a.callsOf('createPipeTransport').length, 1, 'media and data share the link');
    assert.deepEqual(a.callsOf('pipeConsumeData').map((c) => c.dataProducerId), [dp], 'sent once for two data consumers');
    const produced = b.callsOf('pipeProduceData');
    assert.equal(produced.length, 1);
    assert.deepEqual([produced[0]!.dataProducerId, produced[0]!.sctpStreamParameters, produced[0]!.label], [dp, { streamId: 1 }, 'chat']);
    assert.deepEqual(cascade.size, { links: 1, pipes: 2 });
    assert.deepEqual(cascade.receiversOf(dp), [], 'receiversOf names media copies only (their pause state)');

    cascade.release('d1');
    await settle();
    assert.equal(a.callsOf('unpipeData').length + b.callsOf('unpipeData').length, 0, 'd2 still consumes it');
    // The data producer closed on agent-a: its copy on agent-b goes (closing d2 there, whose release then ends the pipe).
    cascade.dataProducerClosed(dp);
    await until(() => b.callsOf('unpipeData').length === 1, 'copy closed');
    assert.deepEqual(b.callsOf('unpipeData')[0], { roomId: h.room.id, gatewayId: GATEWAY_ID, remoteAgentId: 'agent-a', dataProducerId: dp });
    assert.equal(a.callsOf('unpipe').length + b.callsOf('unpipe').length, 0, "the media producer's pipe is untouched");
    cascade.release('d2');
    await until(() => a.dataPipedOut.size === 0 && b.dataPipedIn.size === 0, 'both ends unpiped');
    assert.deepEqual(cascade.size, { links: 1, pipes: 1 }, 'the link stays for the media pipe');
    cascade.release('c1');
    await until(() => a.callsOf('closePipeTransport').length === 1, 'link closed with its last pipe');
    assert.deepEqual(cascade.size, { links: 0, pipes: 0 });
  });

  test('an agent leaving the room takes its data pipes with it: the far end of the link closes, and nothing is unpiped later', async () => {
    h = twoAgents({});
    const { cascade } = await cascadeOverBus(h, []);
    const a = h.agent('agent-a');
    cascade.bind('d1', await cascade.holdData('data-producer-1', 'agent-a', 'agent-b'));
    assert.deepEqual(cascade.size, { links: 1, pipes: 1 });
    cascade.agentGone('agent-b');
    assert.deepEqual(cascade.size, { links: 0, pipes: 0 });
    // agent-a's end of the link closes, and with it the data producer's stream over it.
    await until(() => a.callsOf('closePipeTransport').length === 1, 'far end of the link closed');
    cascade.dataProducerClosed('data-producer-1');
    cascade.release('d1');
    await settle();
    assert.equal(a.callsOf('unpipeData').length + h.agent('agent-b').callsOf('unpipeData').length, 0, 'the forgotten pipe is not unpiped again');
  });
});
