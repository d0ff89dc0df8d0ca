import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { verifyWebhook } from '../src/server/index.js';
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

async function nuve(method: string, path: string, body?: unknown): Promise<Response> {
  const su = platform.nuve!.superServiceRecord;
  return fetch(`${platform.nuveUrl}${path}`, {
    method,
    headers: {
      authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: Math.random().toString(36).slice(2) }),
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function joined(roomId: string, name: string) {
  const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name));
  client.handleRequests(() => ({}));
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  const send = await client.request('createWebRtcTransport', { producing: true, consuming: false });
  await client.request('join', { displayName: name, device: { name: 'test' }, rtpCapabilities });
  return { client, send };
}

/** Waits for the receiver's next event and returns it as "type participant-identity [reason]". */
let seen = 0;
async function next(): Promise<string> {
  await waitFor(() => receiver.accepted.length > seen, 5000, `webhook event #${seen + 1}`);
  const { body } = receiver.accepted[seen++]!;
  return [body.event, body.participant?.identity, body.track?.kind, body.reason].filter(Boolean).join(' ');
}

test("a room's life, driven by real clients and the API, reaches its webhook in order and signed", async () => {
  assert.equal((await nuve('PUT', '/webhook', { url: receiver.url })).status, 200);
  const roomId = await platform.createRoom('live');

  const alice = await joined(roomId, 'alice');
  assert.equal(await next(), 'room_started');
  assert.equal(await next(), 'participant_joined alice');

  // Connected, then gone without joining.
  const ghost = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'ghost'));
  ghost.close();
  assert.equal(await next(), 'participant_connection_aborted ghost disconnected');

  const bob = await joined(roomId, 'bob');
  assert.equal(await next(), 'participant_joined bob');

  const { id: producerId } = await alice.client.request('produce', { transportId: alice.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
  assert.equal(await next(), 'track_published alice audio');

  await alice.client.request('changeDisplayName', { displayName: 'Alice A.' });
  const renamed = await next();
  assert.equal(renamed, 'participant_metadata_changed alice');
  assert.equal(receiver.accepted[seen - 1]!.body.participant?.name, 'Alice A.');

  assert.equal((await nuve('PATCH', `/rooms/${roomId}`, { options: { data: { topic: 'launch' } } })).status, 200);
  assert.equal(await next(), 'room_metadata_changed');
  assert.deepEqual(receiver.accepted[seen - 1]!.body.metadata, { topic: 'launch' });

  await alice.client.request('closeProducer', { producerId });
  assert.equal(await next(), 'track_unpublished alice audio closed');

  // A track still published when its participant leaves ends with it, before the leave.
  await bob.client.request('produce', { transportId: bob.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
  assert.equal(await next(), 'track_published bob audio');
  bob.client.close();
  assert.equal(await next(), 'track_unpublished bob audio disconnected');
  assert.equal(await next(), 'participant_left bob disconnected');

  alice.client.close();
  assert.equal(await next(), 'participant_left alice disconnected');
  assert.equal(await next(), 'room_finished');

  await sleep(200);
  assert.equal(receiver.accepted.length, seen, 'no event beyond those expected');
  const key = platform.nuve!.superServiceRecord.key;
  for (const r of receiver.accepted) {
    const event = verifyWebhook(r.raw, r.headers, key);
    assert.equal(event.room.id, roomId);
    assert.equal(event.room.name, 'live');
  }
});
