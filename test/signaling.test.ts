import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient, type ProtooError } from './helpers/protoo-client.js';

let platform: EmbeddedPlatform;

before(async () => {
  // 50 join cycles open ~40 connections a second from one address: more than its default budget allows at times.
  platform = await startEmbedded({ nuve: { tokenTtlSec: 2 }, gateway: { port: 0, rateLimit: { connectionsPerSecPerIp: 1000 } } });
});
after(async () => platform.close());

/** A peer that joins like mediasoup-demo's client: transports first, then join with the router's capabilities. */
async function joinedPeer(roomId: string, name: string, role: 'presenter' | 'viewer' = 'presenter') {
  const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name, role));
  const consumers: any[] = [];
  client.handleRequests((method, data) => {
    if (method === 'newConsumer') consumers.push(data);
    return {};
  });
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  const send = await client.request('createWebRtcTransport', { producing: true, consuming: false });
  const recv = await client.request('createWebRtcTransport', { producing: false, consuming: true });
  const joined = await client.request('join', { displayName: name, device: { name: 'test' }, rtpCapabilities });
  return { client, send, recv, joined, consumers, rtpCapabilities };
}

const rejectsWith = (p: Promise<unknown>, errorCode: number, errorName: string) =>
  assert.rejects(p, (e: ProtooError) => {
    assert.equal(e.errorCode, errorCode, e.message);
    assert.equal(e.errorName, errorName);
    return true;
  });

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(20);
  }
}

async function zeroOnAgent(): Promise<void> {
  await waitFor(async () => {
    const d = await platform.agent!.dump();
    return d.routers + d.transports + d.producers + d.consumers === 0;
  });
}

describe('token validation at connect', () => {
  const expectRefusal = async (token: string | null, code: number) => {
    const client = await ProtooClient.connect(platform.gatewayUrl, token ?? '', '');
    const notice = await client.waitNotification('closing');
    assert.equal(notice.code, code);
    assert.equal(notice.rejoin, false);
    assert.equal(await client.closed, 4000, 'final for protoo-client');
    assert.equal(client.closeReason, `${notice.errorName}: ${notice.reason}`);
  };

  test('missing, malformed, reused and expired tokens are refused with stable codes', async () => {
    const roomId = await platform.createRoom('tokens');
    await expectRefusal(null, 1000);
    await expectRefusal('bm90IGpzb24=', 1001);
    const token = await platform.token(roomId, 'alice');
    const first = await ProtooClient.connect(platform.gatewayUrl, token);
    await first.request('getRouterRtpCapabilities');
    await expectRefusal(token, 1004);
    const tampered = JSON.parse(Buffer.from(await platform.token(roomId, 'bob', 'viewer'), 'base64').toString());
    tampered.role = 'presenter';
    await expectRefusal(Buffer.from(JSON.stringify(tampered)).toString('base64'), 1002);
    const expiring = await platform.token(roomId, 'carol');
    await sleep(2100);
    await expectRefusal(expiring, 1003);
    first.close();
    await first.closed;
  });
});

describe('signaling', () => {
  test('peers see each other, produce and consume, pause, rename, leave', async () => {
    const roomId = await platform.createRoom('call');
    const a = await joinedPeer(roomId, 'alice');
    assert.deepEqual(a.joined.peers, []);
    const b = await joinedPeer(roomId, 'bob');
    assert.deepEqual(b.joined.peers.map((p: any) => p.displayName), ['alice']);
    const newPeer = await a.client.waitNotification('newPeer');
    assert.equal(newPeer.displayName, 'bob');

    const { id: producerId } = await a.client.request('produce', {
      transportId: a.send.id,
      kind: 'audio',
      rtpParameters: { ...audioRtpParameters, mid: '0' },
    });
    await waitFor(() => b.consumers.length === 1);
    assert.equal(b.consumers[0].producerId, producerId);
    // The consumer names its producer's peer: alice, as bob's join listed her.
    assert.equal(b.consumers[0].peerId, b.joined.peers[0].id);
    const consumerId = b.consumers[0].id;
    // This consumer's own sending stream, by its ssrc (no RTP flows here, so the producer side has none yet).
    const stats = await b.client.request('getConsumerStats', { consumerId });
    assert.deepEqual(
      stats.filter((s: any) => s.type === 'outbound-rtp').map((s: any) => s.ssrc),
      [b.consumers[0].rtpParameters.encodings[0].ssrc],
    );

    await a.client.request('pauseProducer', { producerId });
    assert.equal((await b.client.waitNotification('consumerPaused')).consumerId, consumerId);
    await a.client.request('resumeProducer', { producerId });
    assert.equal((await b.client.waitNotification('consumerResumed')).consumerId, consumerId);
    await b.client.request('setConsumerPriority', { consumerId, priority: 2 });
    await b.client.request('requestConsumerKeyFrame', { consumerId });
    await b.client.request('pauseConsumer', { consumerId });
    await b.client.request('resumeConsumer', { consumerId });

    await a.client.request('changeDisplayName', { displayName: 'Alice' });
    const renamed = await b.client.waitNotification('peerDisplayNameChanged');
    assert.deepEqual([renamed.displayName, renamed.oldDisplayName], ['Alice', 'alice']);

    // Users are visible through Nuve (which asks the gateway over the bus).
    const su = platform.nuve!.superServiceRecord;
    const res = await fetch(`${platform.nuveUrl}/rooms/${roomId}/users`, {
      headers: { authorization: buildMAuthHeader({ serviceId: su.id, key: su.key }) },
    });
    assert.deepEqual(((await res.json()) as any[]).map((u) => u.name).sort(), ['alice', 'bob']);

    await a.client.request('closeProducer', { producerId });
    assert.equal((await b.client.waitNotification('consumerClosed')).consumerId, consumerId);

    await a.client.request('leave');
    assert.equal((await b.client.waitNotification('peerClosed')).peerId, b.joined.peers[0].id);
    b.client.ws.terminate(); // a dropped socket is a leave too
    a.client.close();
    await zeroOnAgent();
    assert.equal(platform.gateway!.roomCount(), 0);
  });

  test('every request refuses bad input with a protocol error and the connection survives', async () => {
    const roomId = await platform.createRoom('errors');
    const early = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'early'));
    const t = await early.request('createWebRtcTransport', { producing: true });
    await rejectsWith(early.request('produce', { transportId: t.id, kind: 'audio', rtpParameters: audioRtpParameters }), 409, 'NOT_JOINED');
    early.close();

    const p = await joinedPeer(roomId, 'p');
    const v = await joinedPeer(roomId, 'v', 'viewer');
    const c = p.client;
    await rejectsWith(c.request('noSuchMethod'), 400, 'UNKNOWN_METHOD');
    await rejectsWith(c.request('join', {}), 409, 'ALREADY_JOINED');
    await rejectsWith(c.request('produce', { transportId: p.send.id, kind: 'audio', rtpParameters: { codecs: 'x' } }), 400, 'INVALID_REQUEST');
    // Well formed, but nothing the router can take: mediasoup's own refusal.
    const unsupported = { codecs: [{ mimeType: 'audio/nope', payloadType: 100, clockRate: 48000 }], encodings: [{ ssrc: 1 }] };
    await rejectsWith(c.request('produce', { transportId: p.send.id, kind: 'audio', rtpParameters: unsupported }), 400, 'INVALID_PARAMETERS');
    await rejectsWith(c.request('produce', { transportId: p.send.id, kind: 'smell', rtpParameters: {} }), 400, 'INVALID_REQUEST');
    await rejectsWith(c.request('produce', { transportId: 'nope', kind: 'audio', rtpParameters: audioRtpParameters }), 404, 'TRANSPORT_NOT_FOUND');
    await rejectsWith(
      v.client.request('produce', { transportId: v.send.id, kind: 'audio', rtpParameters: audioRtpParameters }),
      403,
      'PRODUCE_NOT_ALLOWED',
    );
    await rejectsWith(v.client.request('produceData', { transportId: v.send.id }), 403, 'PRODUCE_NOT_ALLOWED');
    // Another peer's objects are not yours.
    await rejectsWith(c.request('connectWebRtcTransport', { transportId: v.recv.id, dtlsParameters: { fingerprints: [{ algorithm: 'sha-256', value: 'AB' }] } }), 404, 'TRANSPORT_NOT_FOUND');
    await rejectsWith(c.request('connectWebRtcTransport', { transportId: p.send.id, dtlsParameters: { role: 'x' } }), 400, 'INVALID_REQUEST');
    for (const [method, data] of [
      ['closeProducer', { producerId: 'x' }],
      ['pauseProducer', { producerId: 'x' }],
      ['resumeProducer', { producerId: 'x' }],
      ['getProducerStats', { producerId: 'x' }],
      ['pauseConsumer', { consumerId: 'x' }],
      ['resumeConsumer', { consumerId: 'x' }],
      ['setConsumerPreferredLayers', { consumerId: 'x', spatialLayer: 1 }],
      ['setConsumerPriority', { consumerId: 'x', priority: 1 }],
      ['requestConsumerKeyFrame', { consumerId: 'x' }],
      ['getConsumerStats', { consumerId: 'x' }],
      ['getTransportStats', { transportId: 'x' }],
      ['getDataProducerStats', { dataProducerId: 'x' }],
      ['getDataConsumerStats', { dataConsumerId: 'x' }],
      ['restartIce', { transportId: 'x' }],
    ] as const) {
      await assert.rejects(c.request(method, data), (e: ProtooError) => e.errorCode === 404, method);
      await assert.rejects(c.request(method, { ...data, extra: 1, [Object.keys(data)[0]!]: 42 }), (e: ProtooError) => e.errorCode === 400, method);
    }
    await rejectsWith(c.request('changeDisplayName', { displayName: '' }), 400, 'INVALID_REQUEST');
    await rejectsWith(c.request('setConsumerPriority', { consumerId: 'x', priority: 1000 }), 400, 'INVALID_REQUEST');

    // Malformed frames get an error response; the socket stays usable.
    const errors: any[] = [];
    c.ws.on('message', (raw) => {
      const msg = JSON.parse(raw.toString());
      if (msg.response && !msg.ok && msg.errorName === 'MALFORMED_MESSAGE') errors.push(msg);
    });
    c.sendRaw('{not json');
    c.sendRaw(JSON.stringify({ request: true, id: 'x', method: 1 }));
    c.sendRaw(JSON.stringify([1, 2, 3]));
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await waitFor(() => errors.length === 4);
    const restart = await c.request('restartIce', { transportId: p.send.id });
    assert.ok(restart.usernameFragment);
    const tstats = await c.request('getTransportStats', { transportId: p.send.id });
    assert.equal(tstats[0].type, 'webrtc-transport');

    c.close();
    v.client.close();
    await zeroOnAgent();
  });

  test('data channels: produceData reaches other peers as newDataConsumer', async () => {
    const roomId = await platform.createRoom('data');
    const sctpCapabilities = { numStreams: { OS: 1024, MIS: 1024 } };
    const mk = async (name: string) => {
      const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name));
      const dataConsumers: any[] = [];
      client.handleRequests((method, data) => {
        if (method === 'newDataConsumer') dataConsumers.push(data);
        return {};
      });
      const send = await client.request('createWebRtcTransport', { producing: true, sctpCapabilities });
      await client.request('createWebRtcTransport', { consuming: true, sctpCapabilities });
      await client.request('join', { displayName: name, sctpCapabilities });
      return { client, send, dataConsumers };
    };
    const a = await mk('a');
    const b = await mk('b');
    assert.ok(a.send.sctpParameters);
    const { id } = await a.client.request('produceData', {
      transportId: a.send.id,
      sctpStreamParameters: { streamId: 0, ordered: true },
      label: 'chat',
    });
    await waitFor(() => b.dataConsumers.length === 1);
    assert.equal(b.dataConsumers[0].dataProducerId, id);
    assert.equal(b.dataConsumers[0].label, 'chat');
    const stats = await a.client.request('getDataProducerStats', { dataProducerId: id });
    assert.equal(stats[0].type, 'data-producer');
    a.client.close();
    assert.equal((await b.client.waitNotification('dataConsumerClosed')).dataConsumerId, b.dataConsumers[0].id);
    b.client.close();
    await zeroOnAgent();
  });

  test('Nuve can kick a user and delete a live room', async () => {
    const roomId = await platform.createRoom('kick');
    const a = await joinedPeer(roomId, 'alice');
    const b = await joinedPeer(roomId, 'bob');
    const su = platform.nuve!.superServiceRecord;
    const auth = () => ({ authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: String(Math.random()) }) });
    let res = await fetch(`${platform.nuveUrl}/rooms/${roomId}/users/bob`, { method: 'DELETE', headers: auth() });
    assert.equal(res.status, 200);
    assert.equal(await b.client.closed, 4000);
    assert.deepEqual(await b.client.waitNotification('closing'), { code: 4100, errorName: 'KICKED', reason: 'removed by the service', rejoin: false });
    assert.equal(b.client.closeReason, 'KICKED: removed by the service');
    res = await fetch(`${platform.nuveUrl}/rooms/${roomId}`, { method: 'DELETE', headers: auth() });
    assert.equal(res.status, 200);
    assert.equal(await a.client.closed, 4000);
    assert.deepEqual(await a.client.waitNotification('closing'), { code: 4101, errorName: 'ROOM_CLOSED', reason: 'room deleted', rejoin: false });
    await zeroOnAgent();
  });

  test('a dead mediasoup worker is replaced and its peers are told, then can rejoin', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('crash');
    const a = await joinedPeer(roomId, 'alice');
    const pid = platform.agent!.pool.all()[0]!.worker.pid;
    process.kill(pid, 'SIGKILL');
    const notice = await a.client.waitNotification('mediaAgentLost', 5000);
    assert.equal(notice.reason, 'worker-died');
    await a.client.closed;
    await waitFor(() => {
      const w = platform.agent!.pool.all()[0]!.worker;
      return w.pid !== pid && !w.closed;
    }, 10_000);
    const again = await joinedPeer(roomId, 'alice');
    const { id } = await again.client.request('produce', {
      transportId: again.send.id,
      kind: 'audio',
      rtpParameters: { ...audioRtpParameters, mid: '0' },
    });
    assert.ok(id);
    again.client.close();
    await zeroOnAgent();
  });

  test('50 join/produce/consume/leave cycles leave nothing behind on the agent', { timeout: 120_000 }, async () => {
    const roomId = await platform.createRoom('leak');
    for (let i = 0; i < 50; i++) {
      const a = await joinedPeer(roomId, `a${i}`);
      const b = await joinedPeer(roomId, `b${i}`);
      await a.client.request('produce', { transportId: a.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
      await waitFor(() => b.consumers.length === 1);
      // Alternate the ways out: an explicit leave (the server then closes the socket), a dropped socket, a clean close.
      if (i % 2 === 0) {
        await a.client.request('leave');
        b.client.ws.terminate();
      } else {
        a.client.close();
        await b.client.request('leave');
      }
      // The one who left is closed by the gateway, finally for protoo-client (4000, LEFT); the other closed its own socket.
      const leaver = i % 2 === 0 ? a.client : b.client;
      assert.deepEqual(await Promise.all([a.client.closed, b.client.closed]), i % 2 === 0 ? [4000, 1006] : [1005, 4000]);
      assert.match(leaver.closeReason!, /^LEFT: /);
    }
    await zeroOnAgent();
    const dump = await platform.agent!.dump();
    assert.deepEqual(
      [dump.routers, dump.transports, dump.producers, dump.consumers, dump.dataProducers, dump.dataConsumers],
      [0, 0, 0, 0, 0, 0],
    );
    assert.equal(platform.gateway!.roomCount(), 0);
    assert.equal(platform.gateway!.peerCount(), 0);
  });
});
