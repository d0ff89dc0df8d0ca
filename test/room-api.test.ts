import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';
import { WebhookReceiver } from './helpers/webhook-receiver.js';

let platform: EmbeddedPlatform;
let receiver: WebhookReceiver;
before(async () => {
  platform = await startEmbedded();
  receiver = await WebhookReceiver.start();
});
after(async () => {
  await platform.close();
  await receiver.close();
});

async function api(method: string, path: string, body?: unknown, as?: { id: string; key: string }) {
  const su = as ?? platform.nuve!.superServiceRecord;
  const res = await fetch(`${platform.nuveUrl}${path}`, {
    method,
    headers: {
      authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: Math.random().toString(36).slice(2) }),
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any = text;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    // Licode's plain-text answers ("Room Updated").
  }
  return { status: res.status, json };
}

async function joined(roomId: string, name: string) {
  const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name), `&peerId=${name}`);
  client.handleRequests(() => ({}));
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  const send = await client.request('createWebRtcTransport', { producing: true, consuming: false });
  await client.request('createWebRtcTransport', { producing: false, consuming: true });
  await client.request('join', { displayName: name, device: { name: 'test' }, rtpCapabilities });
  return { client, send };
}

/** No further notification of `method` arrives within a moment. */
async function none(client: ProtooClient, method: string): Promise<void> {
  await sleep(150);
  assert.equal(client.notifications.filter((n) => n.method === method).length, 0, `unexpected ${method}`);
}

test('the room API: participants and tracks listed, changed, muted, messaged and the room closed, each seen by connected clients', async () => {
  assert.equal((await api('PUT', '/webhook', { url: receiver.url, include: ['participant_metadata_changed'] })).status, 200);
  const roomId = await platform.createRoom('stage', { data: { topic: 'start' } });
  const other = { id: '', key: 'other-tenant-key-0123456789' };
  other.id = (await api('POST', '/services', { name: 'other', key: other.key })).json;
  const alice = await joined(roomId, 'alice');
  const bob = await joined(roomId, 'bob');
  const { id: trackId } = await alice.client.request('produce', { transportId: alice.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });

  // Listed with live counts and tracks.
  const list = await api('GET', `/rooms/${roomId}/participants`);
  assert.equal(list.status, 200);
  assert.deepEqual(list.json.map((p: { id: string }) => p.id).sort(), ['alice', 'bob']);
  const a = list.json.find((p: { id: string }) => p.id === 'alice');
  assert.deepEqual(a.tracks, [{ id: trackId, kind: 'audio', muted: false }]);
  assert.deepEqual(a.permissions, { publish: true, subscribe: true, publishData: true });
  assert.deepEqual((await api('GET', '/live/rooms')).json, [{ id: roomId, name: 'stage', participants: 2, tracks: 1 }]);
  assert.equal((await api('GET', `/rooms/${roomId}/participants/bob`)).json.identity, 'bob');

  // Name, metadata and permissions of bob: everyone is told, and bob may no longer publish.
  const patched = await api('PATCH', `/rooms/${roomId}/participants/bob`, { name: 'Bobby', metadata: { seat: 3 }, permissions: { publish: false } });
  assert.equal(patched.status, 200, JSON.stringify(patched.json));
  assert.equal(patched.json.name, 'Bobby');
  for (const c of [alice.client, bob.client]) {
    const n = await c.waitNotification('participantUpdated');
    assert.deepEqual(n, { peerId: 'bob', displayName: 'Bobby', metadata: { seat: 3 }, permissions: { publish: false, subscribe: true, publishData: true } });
  }
  // The app's own change reaches its webhook too.
  await waitFor(() => receiver.accepted.length === 1, 5000, 'participant_metadata_changed webhook');
  const { body: changed } = receiver.accepted[0]!;
  assert.equal(changed.event, 'participant_metadata_changed');
  assert.deepEqual([changed.participant?.id, changed.participant?.name, changed.metadata], ['bob', 'Bobby', { seat: 3 }]);
  await assert.rejects(
    bob.client.request('produce', { transportId: bob.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } }),
    (e: { errorName?: string }) => e.errorName === 'PRODUCE_NOT_ALLOWED',
  );

  // Mute: the publisher is told; its subscriber's consumer pauses. Remote unmute is off by default.
  const muted = await api('POST', `/rooms/${roomId}/participants/alice/tracks/${trackId}/mute`, { muted: true });
  assert.equal(muted.status, 200);
  assert.deepEqual(muted.json.tracks, [{ id: trackId, kind: 'audio', muted: true }]);
  assert.deepEqual(await alice.client.waitNotification('trackMuted'), { producerId: trackId, muted: true });
  await bob.client.waitNotification('consumerPaused');
  const unmute = await api('POST', `/rooms/${roomId}/participants/alice/tracks/${trackId}/mute`, { muted: false });
  assert.equal(unmute.status, 403);
  assert.equal(unmute.json.code, 'REMOTE_UNMUTE_NOT_ALLOWED');
  await none(alice.client, 'trackMuted');
  // The tenant allows remote unmuting for itself; another tenant's setting is its own and stays off.
  assert.deepEqual((await api('GET', '/settings')).json, { allowRemoteUnmute: false });
  assert.deepEqual((await api('PATCH', '/settings', { allowRemoteUnmute: true })).json, { allowRemoteUnmute: true });
  assert.deepEqual((await api('GET', '/settings', undefined, other)).json, { allowRemoteUnmute: false });
  assert.equal((await api('PATCH', '/settings', { allowRemoteUnmute: 'yes' })).json.code, 'VALIDATION_FAILED');
  assert.equal((await api('PATCH', '/settings', { allowRemoteUnmuted: true })).json.code, 'VALIDATION_FAILED');
  try {
    assert.equal((await api('POST', `/rooms/${roomId}/participants/alice/tracks/${trackId}/mute`, { muted: false })).status, 200);
    assert.deepEqual(await alice.client.waitNotification('trackMuted'), { producerId: trackId, muted: false });
    await bob.client.waitNotification('consumerResumed');
  } finally {
    assert.deepEqual((await api('PATCH', '/settings', { allowRemoteUnmute: false })).json, { allowRemoteUnmute: false });
  }
  const again = await api('POST', `/rooms/${roomId}/participants/alice/tracks/${trackId}/mute`, { muted: false });
  assert.equal(again.json.code, 'REMOTE_UNMUTE_NOT_ALLOWED', 'the tenant turned it off again');

  // Data with a topic: to everyone, or only to those named; an unknown name sends nothing.
  assert.deepEqual((await api('POST', `/rooms/${roomId}/data`, { topic: 'chat', payload: { text: 'hi' } })).json, { delivered: 2 });
  for (const c of [alice.client, bob.client]) assert.deepEqual(await c.waitNotification('roomData'), { topic: 'chat', payload: { text: 'hi' } });
  assert.deepEqual((await api('POST', `/rooms/${roomId}/data`, { topic: 'dm', payload: 1, participants: ['bob'] })).json, { delivered: 1 });
  assert.deepEqual(await bob.client.waitNotification('roomData'), { topic: 'dm', payload: 1 });
  const unknown = await api('POST', `/rooms/${roomId}/data`, { topic: 'dm', payload: 2, participants: ['bob', 'nobody'] });
  assert.equal(unknown.json.code, 'PARTICIPANT_NOT_FOUND');
  await none(alice.client, 'roomData');
  await none(bob.client, 'roomData');

  // Room metadata (its Licode `data`): the peers are told.
  assert.equal((await api('PATCH', `/rooms/${roomId}`, { options: { data: { topic: 'q&a' } } })).status, 200);
  for (const c of [alice.client, bob.client]) assert.deepEqual(await c.waitNotification('roomMetadataChanged'), { metadata: { topic: 'q&a' } });

  // Bad input: clear codes.
  const bad: [string, string, unknown, number, string][] = [
    ['GET', `/rooms/${roomId}/participants/nobody`, undefined, 404, 'PARTICIPANT_NOT_FOUND'],
    ['PATCH', `/rooms/${roomId}/participants/nobody`, { name: 'x' }, 404, 'PARTICIPANT_NOT_FOUND'],
    ['POST', `/rooms/${roomId}/participants/alice/tracks/nope/mute`, { muted: true }, 404, 'TRACK_NOT_FOUND'],
    ['POST', `/rooms/${roomId}/participants/bob/tracks/${trackId}/mute`, { muted: true }, 404, 'TRACK_NOT_FOUND'],
    ['PATCH', `/rooms/${roomId}/participants/bob`, {}, 400, 'VALIDATION_FAILED'],
    ['PATCH', `/rooms/${roomId}/participants/bob`, { metadata: { big: 'x'.repeat(2000) } }, 400, 'VALIDATION_FAILED'],
    ['PATCH', `/rooms/${roomId}/participants/bob`, { metadata: Array.from({ length: 300 }, (_, i) => i) }, 400, 'VALIDATION_FAILED'],
    ['PATCH', `/rooms/${roomId}/participants/bob`, { permissions: { record: true } }, 400, 'VALIDATION_FAILED'],
    ['POST', `/rooms/${roomId}/data`, { topic: '', payload: 1 }, 400, 'VALIDATION_FAILED'],
    ['POST', `/rooms/${roomId}/participants/alice/tracks/${trackId}/mute`, {}, 400, 'VALIDATION_FAILED'],
    ['GET', '/rooms/000000000000000000000000/participants', undefined, 404, 'ROOM_NOT_FOUND'],
  ];
  for (const [method, path, body, status, code] of bad) {
    const res = await api(method, path, body);
    assert.equal(res.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.json)}`);
    assert.equal(res.json.code, code, `${method} ${path}`);
  }

  // Another tenant cannot see or touch this room.
  for (const [method, path, body] of [
    ['GET', `/rooms/${roomId}/participants`],
    ['PATCH', `/rooms/${roomId}/participants/bob`, { name: 'x' }],
    ['POST', `/rooms/${roomId}/participants/alice/tracks/${trackId}/mute`, { muted: true }],
    ['POST', `/rooms/${roomId}/data`, { topic: 't', payload: 1 }],
    ['POST', `/rooms/${roomId}/close`],
  ] as [string, string, unknown?][]) {
    const res = await api(method, path, body, other);
    assert.equal(res.json.code, 'ROOM_NOT_FOUND', `${method} ${path}`);
  }
  assert.deepEqual((await api('GET', '/live/rooms', undefined, other)).json, []);
  await none(bob.client, 'participantUpdated');

  // Close: everyone is disconnected, the room stays.
  assert.equal((await api('POST', `/rooms/${roomId}/close`)).status, 204);
  await Promise.all([alice.client.closed, bob.client.closed]);
  assert.match(alice.client.closeReason ?? '', /ROOM_CLOSED/);
  assert.equal((await api('GET', `/rooms/${roomId}`)).status, 200);
  await waitFor(async () => (await api('GET', `/rooms/${roomId}/participants`)).json.length === 0, 3000, 'room empty');
});
