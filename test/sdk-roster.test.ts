import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { types as ms } from 'mediasoup-client';
import type { EventArgs } from '../client/src/sdk/emitter.js';
import type { ProtooSocket } from '../client/src/sdk/protoo.js';
import { RemoteRoster, type RosterEvents } from '../client/src/sdk/roster.js';
import type { ServerRequests } from '../src/protocol/notifications.js';

// The SDK's remote roster on its own (no browser): the events it derives from the gateway's messages.

/** Just what the roster uses of a mediasoup-client consumer and transport. */
function fakeRecv() {
  const consumers: { id: string; closed: boolean; paused: boolean }[] = [];
  const recv = {
    consume: async (o: { id: string; kind: string }) => {
      const c = {
        id: o.id,
        track: { kind: o.kind },
        closed: false,
        paused: false,
        close: () => void (c.closed = true),
        pause: () => void (c.paused = true),
        resume: () => void (c.paused = false),
        on: () => undefined,
      };
      consumers.push(c);
      return c;
    },
  };
  return { recv: recv as unknown as ms.Transport, consumers };
}

function harness(autoSubscribe = true) {
  const events: string[] = [];
  const requests: string[] = [];
  const socket = {
    request: async (method: string, data: { consumerId: string }) => void requests.push(`${method} ${data.consumerId}`),
  } as unknown as ProtooSocket;
  const roster = new RemoteRoster({
    autoSubscribe,
    emit: (...[event, first, second]: EventArgs<RosterEvents>) =>
      void events.push(second ? `${event} ${first.id}@${second.id}` : `${event} ${first.id}`),
    socket: () => socket,
  });
  const { recv, consumers } = fakeRecv();
  const consumer = (id: string, peerId: string, kind: 'audio' | 'video' = 'audio', producerPaused = false): ServerRequests['newConsumer'] => ({
    id,
    peerId,
    kind,
    producerId: `p-${id}`,
    rtpParameters: {},
    type: 'simple',
    appData: { source: kind === 'audio' ? 'microphone' : 'camera' },
    producerPaused,
  });
  return { roster, events, requests, recv, socket, consumers, consumer };
}

const peer = (id: string) => ({ id, displayName: id, role: 'presenter', device: {} });

test('a consumer arriving before its peer is held until the peer is known, then announced in order', async () => {
  const h = harness();
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c1', 'ann'));
  assert.deepEqual(h.events, []);
  assert.equal(h.roster.peers.length, 0, 'not a peer yet');
  h.roster.onNotification({ method: 'newPeer', data: peer('ann') });
  assert.deepEqual(h.events, ['peerJoined ann', 'trackAvailable c1@ann', 'trackAdded c1@ann']);
  assert.deepEqual(h.roster.peers.map((p) => [p.id, p.tracks.map((t) => t.source)]), [['ann', ['microphone']]]);
});

test('notifications: mute state, rename, a closed consumer and a closed peer', async () => {
  const h = harness();
  h.roster.sync([peer('ann'), peer('bob')]);
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c1', 'ann'));
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c2', 'bob', 'video', true));
  assert.equal(h.roster.peers[1]!.tracks[0]!.muted, true, 'a paused producer arrives muted');
  h.events.length = 0;
  h.roster.onNotification({ method: 'consumerPaused', data: { consumerId: 'c1' } });
  h.roster.onNotification({ method: 'consumerResumed', data: { consumerId: 'c2' } });
  h.roster.onNotification({ method: 'peerDisplayNameChanged', data: { peerId: 'bob', displayName: 'Bob', oldDisplayName: 'bob' } });
  h.roster.onNotification({ method: 'consumerClosed', data: { consumerId: 'c1' } });
  h.roster.onNotification({ method: 'peerClosed', data: { peerId: 'bob' } });
  // Not the roster's: ignored.
  h.roster.onNotification({ method: 'activeSpeaker', data: { peerId: 'ann', volume: -20 } });
  assert.deepEqual(h.events, [
    'trackMuted c1@ann',
    'trackUnmuted c2@bob',
    'peerUpdated bob',
    'trackRemoved c1@ann',
    'trackUnavailable c1@ann',
    'trackRemoved c2@bob',
    'trackUnavailable c2@bob',
    'peerLeft bob',
  ]);
  assert.deepEqual(h.roster.peers.map((p) => [p.id, p.tracks.length]), [['ann', 0]]);
  assert.deepEqual(h.consumers.map((c) => c.closed), [true, true]);
});

test('a rejoin: tracks go with the session, peers stay; the new join answer drops who left meanwhile', async () => {
  const h = harness();
  h.roster.sync([peer('ann'), peer('bob')]);
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c1', 'ann'));
  h.events.length = 0;
  h.roster.clearTracks();
  assert.deepEqual(h.events, ['trackRemoved c1@ann', 'trackUnavailable c1@ann']);
  h.roster.sync([peer('ann'), peer('cid')]);
  assert.deepEqual(h.events.slice(2), ['peerLeft bob', 'peerJoined cid']);
  h.events.length = 0;
  h.roster.close();
  assert.deepEqual(h.events, ['peerLeft ann', 'peerLeft cid']);
  assert.deepEqual(h.roster.peers, []);
});

test('autoSubscribe off: tracks are available only, paused on the server, until subscribe()', async () => {
  const h = harness(false);
  h.roster.sync([peer('ann')]);
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c1', 'ann'));
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c2', 'ann', 'video'));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(h.events.slice(1), ['trackAvailable c1@ann', 'trackAvailable c2@ann']);
  assert.deepEqual(h.requests, ['pauseConsumer c1', 'pauseConsumer c2']);
  h.events.length = 0;
  await h.roster.subscribe('ann', ['video']);
  assert.deepEqual(h.events, ['trackAdded c2@ann']);
  assert.deepEqual(h.requests.slice(2), ['resumeConsumer c2']);
  // A track arriving after subscribe() is received at once.
  await h.roster.addConsumer(h.recv, h.socket, h.consumer('c3', 'ann'));
  assert.deepEqual(h.events.slice(1), ['trackAvailable c3@ann', 'trackAdded c3@ann']);
  h.events.length = 0;
  await h.roster.unsubscribe('ann', ['audio', 'video']);
  assert.deepEqual(h.events.sort(), ['trackRemoved c2@ann', 'trackRemoved c3@ann']);
});
