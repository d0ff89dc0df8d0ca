import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { AppError } from '../../src/core/errors.js';
import { type Harness, joinWithMedia, roomHarness, settle, until } from './helpers/room-harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('Room (fake agent)', () => {
  test('a peer joining a room with producers gets a consumer of each, offered paused and resumed once accepted', async () => {
    h = roomHarness();
    const alice = await joinWithMedia(h, 'alice', ['audio', 'video']);
    const bob = await joinWithMedia(h, 'bob');
    await until(() => h!.agent('agent-a').callsOf('resumeConsumer').length === 2, 'both consumers resumed');
    const offered = bob.conn.asked('newConsumer') as { peerId: string; producerId: string; id: string }[];
    assert.deepEqual(offered.map((o) => o.producerId).sort(), [...alice.producerIds].sort());
    assert.ok(offered.every((o) => o.peerId === 'alice'));
    assert.deepEqual([...bob.peer.consumers.values()].sort(), [...alice.producerIds].sort());
    // Each consumer was created for bob, then resumed (never before the client accepted it).
    const agent = h.agent('agent-a');
    assert.ok(agent.callsOf('consume').every((c) => c.peerId === 'bob'));
    assert.deepEqual(
      agent.callsOf('resumeConsumer').map((c) => c.consumerId).sort(),
      offered.map((o) => o.id).sort(),
    );
    // alice is told of bob, bob learns of alice in join's answer; alice consumes nothing (bob produces nothing).
    assert.deepEqual((alice.conn.notified('newPeer') as { id: string }[]).map((p) => p.id), ['bob']);
    assert.equal(alice.conn.asked('newConsumer').length, 0);
  });

  test('a new producer is offered to every joined peer but its own', async () => {
    h = roomHarness();
    const alice = await joinWithMedia(h, 'alice');
    const bob = await joinWithMedia(h, 'bob');
    const carol = await joinWithMedia(h, 'carol', ['audio']);
    await until(() => alice.peer.consumers.size === 1 && bob.peer.consumers.size === 1, 'alice and bob consume carol');
    assert.equal(carol.peer.consumers.size, 0);
    assert.equal(carol.conn.asked('newConsumer').length, 0);
  });

  test('a viewer may not produce, and is refused before the agent is asked', async () => {
    h = roomHarness();
    const { peer } = await joinWithMedia(h, 'viewer', [], 'viewer');
    const transportId = [...peer.transports.keys()][0]!;
    await assert.rejects(
      h.room.handle(peer, 'produce', { transportId, kind: 'audio', rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000 }] } }),
      (err: unknown) => err instanceof AppError && err.code === 'PRODUCE_NOT_ALLOWED',
    );
    assert.equal(h.agent('agent-a').callsOf('produce').length, 0);
  });

  test('requests are validated and need join first', async () => {
    h = roomHarness();
    const { peer } = h.addPeer('early');
    const code = (p: Promise<unknown>) => p.then(() => 'ok', (err: unknown) => (err instanceof AppError ? err.code : String(err)));
    assert.equal(await code(h.room.handle(peer, 'noSuchMethod', {})), 'UNKNOWN_METHOD');
    assert.equal(await code(h.room.handle(peer, 'toString', {})), 'UNKNOWN_METHOD');
    assert.equal(await code(h.room.handle(peer, 'changeDisplayName', { displayName: 'x' })), 'NOT_JOINED');
    assert.equal(await code(h.room.handle(peer, 'join', { displayName: 42 })), 'INVALID_REQUEST');
    assert.equal(await code(h.room.handle(peer, 'join', {})), 'ok');
    assert.equal(await code(h.room.handle(peer, 'changeDisplayName', { displayName: 'x' })), 'ok');
    assert.equal(await code(h.room.handle(peer, 'join', {})), 'ALREADY_JOINED');
  });

  test("a peer leaving: the others are told, its media is closed on the agent, and their consumers of it close", async () => {
    h = roomHarness();
    const alice = await joinWithMedia(h, 'alice', ['audio', 'video']);
    const bob = await joinWithMedia(h, 'bob');
    await until(() => bob.peer.consumers.size === 2, 'bob consumes alice');
    const bobConsumers = [...bob.peer.consumers.keys()];
    assert.equal(await h.room.handle(alice.peer, 'leave', {}), null);
    assert.equal(alice.peer.closed, true);
    assert.equal(h.room.peers.has('alice'), false);
    assert.deepEqual(bob.conn.notified('peerClosed'), [{ peerId: 'alice' }]);
    assert.deepEqual(h.agent('agent-a').callsOf('closePeer').map((c) => c.peerId), ['alice']);
    await until(() => bob.peer.consumers.size === 0, "bob's consumers of alice closed");
    assert.deepEqual((bob.conn.notified('consumerClosed') as { consumerId: string }[]).map((n) => n.consumerId).sort(), bobConsumers.sort());
    // bob is still there: the room and its router stay.
    assert.equal(h.room.closed, false);
    assert.equal(h.agent('agent-a').callsOf('closeRouter').length, 0);
  });

  test('closing a peer from outside (its socket dropped) is the same as its leave; the last one closes the room and its router', async () => {
    h = roomHarness();
    const alice = await joinWithMedia(h, 'alice', ['audio']);
    let roomClosed = false;
    h.room.once('close', () => (roomClosed = true));
    const reasons: string[] = [];
    alice.peer.on('close', (reason) => reasons.push(reason));
    h.room.removePeer(alice.peer, 'disconnected');
    h.room.removePeer(alice.peer, 'again');
    assert.deepEqual(reasons, ['disconnected']);
    assert.equal(roomClosed, true);
    await settle();
    const agent = h.agent('agent-a');
    // Its media went with the router: no closePeer before the closeRouter.
    assert.equal(agent.callsOf('closePeer').length, 0);
    assert.equal(agent.callsOf('closeRouter').length, 1);
    assert.equal(agent.routers.size, 0);
  });

  test('a peer replaced under its id leaves after the newcomer is in, so the room stays open', async () => {
    h = roomHarness();
    const first = await joinWithMedia(h, 'same');
    const { peer: second } = h.addPeer('same');
    assert.equal(first.peer.closed, true);
    assert.equal(h.room.closed, false);
    assert.equal(h.room.peers.get('same'), second);
  });

  test('closing the room closes the peers still in it and its routers', async () => {
    h = roomHarness();
    const alice = await joinWithMedia(h, 'alice');
    const bob = await joinWithMedia(h, 'bob');
    h.room.close();
    assert.equal(alice.peer.closed, true);
    assert.equal(bob.peer.closed, true);
    assert.equal(h.room.peers.size, 0);
    await settle();
    assert.equal(h.agent('agent-a').callsOf('closeRouter').length, 1);
    // The router went with the room: no closePeer was needed.
    assert.equal(h.agent('agent-a').callsOf('closePeer').length, 0);
  });

  test('a peer may hold at most its limit, requests sent together included', async () => {
    h = roomHarness();
    const { peer } = h.addPeer('greedy');
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => h!.room.handle(peer, 'createWebRtcTransport', { producing: true })),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 4);
    assert.ok(results.every((r) => r.status === 'fulfilled' || (r.reason instanceof AppError && r.reason.code === 'PEER_LIMIT_REACHED')));
  });

  test('active speaker: the loudest of what each agent reports, told to every joined peer', async () => {
    h = roomHarness();
    const alice = await joinWithMedia(h, 'alice', ['audio']);
    const bob = await joinWithMedia(h, 'bob');
    h.agent('agent-a').emit({ type: 'activeSpeaker', roomId: h.room.id, producerId: alice.producerIds[0]!, volume: -20 });
    await until(() => bob.conn.notified('activeSpeaker').length === 1, 'speaker told');
    assert.deepEqual(bob.conn.notified('activeSpeaker'), [{ peerId: 'alice', volume: -20 }]);
    assert.deepEqual(alice.conn.notified('activeSpeaker'), [{ peerId: 'alice', volume: -20 }]);
  });
});
