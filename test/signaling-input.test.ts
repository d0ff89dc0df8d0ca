import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gatewayCall } from './helpers/broadcaster.js';
import { audioRtpParameters, videoRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient, type ProtooError } from './helpers/protoo-client.js';

// Issue 12, items 2 and 9: what clients and broadcasters send is shaped and bounded, and each peer's media objects are capped.
const caps = { maxTransportsPerPeer: 4, maxProducersPerPeer: 2, maxConsumersPerPeer: 1, maxDataProducersPerPeer: 1, maxDataConsumersPerPeer: 1 };
let platform: EmbeddedPlatform;
let http: string;

before(async () => {
  platform = await startEmbedded({ gateway: { limits: caps } });
  http = platform.gatewayUrl.replace(/^ws/, 'http');
});
after(async () => platform.close());

const sctpCapabilities = { numStreams: { OS: 1024, MIS: 1024 } };

/** JSON text of an object nested `depth` levels deep, which JSON.stringify itself could not write. */
const deep = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

async function connect(roomId: string, name: string, role: 'presenter' | 'viewer' = 'presenter') {
  return ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, name, role));
}

/** A peer that joins like mediasoup-demo's client, collecting the consumers the gateway offers it. */
async function joinedPeer(roomId: string, name: string, role: 'presenter' | 'viewer' = 'presenter') {
  const client = await connect(roomId, name, role);
  const offered = { consumers: [] as any[], dataConsumers: [] as any[] };
  client.handleRequests((method, data) => {
    if (method === 'newConsumer') offered.consumers.push(data);
    if (method === 'newDataConsumer') offered.dataConsumers.push(data);
    return {};
  });
  const rtpCapabilities = await client.request('getRouterRtpCapabilities');
  const send = await client.request('createWebRtcTransport', { producing: true, sctpCapabilities });
  const recv = await client.request('createWebRtcTransport', { consuming: true, sctpCapabilities });
  const joined = await client.request('join', { displayName: name, device: { name: 'test' }, rtpCapabilities, sctpCapabilities });
  return { client, send, recv, joined, offered, rtpCapabilities };
}

const rejectsWith = (p: Promise<unknown>, errorCode: number, errorName: string, what = '') =>
  assert.rejects(p, (e: ProtooError) => {
    assert.equal(e.errorCode, errorCode, `${what}: ${e.message}`);
    assert.equal(e.errorName, errorName, what);
    return true;
  });

const httpRejectsWith = (p: Promise<unknown>, status: number, code: string, what = '') =>
  assert.rejects(p, (e: any) => {
    assert.equal(e.status, status, `${what}: ${JSON.stringify(e.body)}`);
    assert.equal(e.body?.code, code, what);
    return true;
  });

async function closeAll(...clients: ProtooClient[]): Promise<void> {
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
}

describe('client values that are stored or echoed are shaped and bounded (item 2)', () => {
  test('a device nested 10,000 levels deep is refused, and the room stays joinable', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('deep-device');
    const alice = await joinedPeer(roomId, 'alice');
    const mallory = await connect(roomId, 'mallory', 'viewer');
    await rejectsWith(mallory.requestText('join', `{"displayName":"m","device":${deep(10_000)}}`), 400, 'INVALID_REQUEST', 'deep device');
    // The device's shape is known: nothing else rides along to every newcomer.
    await rejectsWith(mallory.request('join', { device: { name: 'x', payload: 'y'.repeat(1000) } }), 400, 'INVALID_REQUEST', 'unknown device key');

    const bob = await joinedPeer(roomId, 'bob');
    assert.deepEqual(bob.joined.peers.map((p: any) => p.displayName), ['alice']);
    assert.equal((await alice.client.waitNotification('newPeer')).displayName, 'bob');
    // The refused peer's connection still works: it may join properly.
    const late = await mallory.request('join', { displayName: 'mallory', device: { flag: 'f', name: 'n', version: '1' } });
    assert.deepEqual(late.peers.map((p: any) => p.displayName).sort(), ['alice', 'bob']);
    const carol = await joinedPeer(roomId, 'carol', 'viewer');
    assert.deepEqual(carol.joined.peers.map((p: any) => p.displayName).sort(), ['alice', 'bob', 'mallory']);
    assert.deepEqual(carol.joined.peers.find((p: any) => p.displayName === 'mallory').device, { flag: 'f', name: 'n', version: '1' });
    await closeAll(alice.client, bob.client, carol.client, mallory);
  });

  test('deep, oversized or NUL-carrying values in any stored or echoed field are refused with 400', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('deep-fields');
    const p = await joinedPeer(roomId, 'p');
    const fresh = await connect(roomId, 'fresh');
    const manyKeys = `{${Array.from({ length: 5000 }, (_, i) => `"k${i}":${i}`).join(',')}}`;
    const refused: [ProtooClient, string, string][] = [
      [p.client, 'createWebRtcTransport', `{"producing":true,"sctpCapabilities":${deep(10_000)}}`],
      [p.client, 'createWebRtcTransport', `{"sctpCapabilities":{"numStreams":{"OS":1024,"MIS":1024},"extra":1}}`],
      [p.client, 'createWebRtcTransport', `{"sctpCapabilities":{"numStreams":{"OS":-1,"MIS":1e309}}}`],
      [p.client, 'connectWebRtcTransport', `{"transportId":"${p.send.id}","dtlsParameters":${deep(10_000)}}`],
      [p.client, 'connectWebRtcTransport', `{"transportId":"${p.send.id}","dtlsParameters":{"role":"client","fingerprints":[{"algorithm":"sha-256","value":"AB","x":${deep(50)}}]}}`],
      [p.client, 'produce', `{"transportId":"${p.send.id}","kind":"audio","rtpParameters":${deep(10_000)}}`],
      [p.client, 'produce', `{"transportId":"${p.send.id}","kind":"audio","rtpParameters":${JSON.stringify(audioRtpParameters)},"appData":${deep(10_000)}}`],
      [p.client, 'produce', `{"transportId":"${p.send.id}","kind":"audio","rtpParameters":${JSON.stringify(audioRtpParameters)},"appData":${manyKeys}}`],
      [p.client, 'produce', `{"transportId":"${p.send.id}","kind":"audio","rtpParameters":${JSON.stringify(audioRtpParameters)},"appData":{"a":"${'x'.repeat(100_000)}"}}`],
      [p.client, 'produceData', `{"transportId":"${p.send.id}","sctpStreamParameters":${deep(10_000)}}`],
      [p.client, 'produceData', `{"transportId":"${p.send.id}","sctpStreamParameters":{"streamId":1},"appData":${deep(10_000)}}`],
      [p.client, 'produceData', `{"transportId":"${p.send.id}","sctpStreamParameters":{"streamId":1},"label":"a\\u0000b"}`],
      [p.client, 'changeDisplayName', `{"displayName":"a\\u0000b"}`],
      [fresh, 'join', `{"rtpCapabilities":${deep(10_000)}}`],
      [fresh, 'join', `{"sctpCapabilities":${deep(10_000)}}`],
      [fresh, 'join', `{"displayName":"x\\u0000"}`],
      [fresh, 'join', `{"device":{"name":"${'n'.repeat(10_000)}"}}`],
    ];
    for (const [client, method, data] of refused) {
      await rejectsWith(client.requestText(method, data), 400, 'INVALID_REQUEST', `${method} ${data.slice(0, 120)}`);
    }
    // Nothing was created or stored, and both connections still work.
    const dump = await platform.agent!.dump();
    assert.equal(dump.producers + dump.dataProducers, 0);
    assert.equal((await p.client.request('getTransportStats', { transportId: p.send.id }))[0].type, 'webrtc-transport');
    await fresh.request('join', { displayName: 'fresh' });
    await closeAll(p.client, fresh);
  });
});

describe('broadcaster and RTP input ranges (item 9)', () => {
  test('a second connect of one transport is refused with 409 ALREADY_CONNECTED', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('reconnect');
    const bc = await gatewayCall(http, 'POST', '/broadcasters', { token: await platform.token(roomId, 'bc') });
    const t = await gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports`, { comedia: false, rtcpMux: true }, bc.secret);
    const connect = () => gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports/${t.id}/connect`, { ip: '127.0.0.1', port: 5004 }, bc.secret);
    await connect();
    await httpRejectsWith(connect(), 409, 'ALREADY_CONNECTED', 'second plain connect');
    await httpRejectsWith(
      gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports/${t.id}/connect`, { ip: 'not-an-ip', port: 5004 }, bc.secret),
      400,
      'INVALID_REQUEST',
      'connect to a name',
    );
    await gatewayCall(http, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);

    // The same over WebSocket, also when both arrive at once.
    const p = await joinedPeer(roomId, 'p');
    const dtlsParameters = { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: Array(32).fill('AB').join(':') }] };
    const both = await Promise.allSettled([
      p.client.request('connectWebRtcTransport', { transportId: p.send.id, dtlsParameters }),
      p.client.request('connectWebRtcTransport', { transportId: p.send.id, dtlsParameters }),
    ]);
    assert.equal(both.filter((r) => r.status === 'fulfilled').length, 1);
    await rejectsWith(
      p.client.request('connectWebRtcTransport', { transportId: p.send.id, dtlsParameters }),
      409,
      'ALREADY_CONNECTED',
      'third WebRTC connect',
    );
    await closeAll(p.client);
  });

  test('RTP parameters out of range are refused with 400 before reaching mediasoup', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('ranges');
    const bc = await gatewayCall(http, 'POST', '/broadcasters', { token: await platform.token(roomId, 'bc') });
    const t = await gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports`, {}, bc.secret);
    const codec = audioRtpParameters.codecs[0]!;
    const invalid: [string, unknown][] = [
      ['payloadType 300', { codecs: [{ ...codec, payloadType: 300 }], encodings: [{ ssrc: 1 }] }],
      ['negative payloadType', { codecs: [{ ...codec, payloadType: -1 }], encodings: [{ ssrc: 1 }] }],
      ['ssrc -1', { codecs: [codec], encodings: [{ ssrc: -1 }] }],
      ['ssrc 2^32', { codecs: [codec], encodings: [{ ssrc: 2 ** 32 }] }],
      ['fractional ssrc', { codecs: [codec], encodings: [{ ssrc: 1.5 }] }],
      ['rtx ssrc -5', { codecs: [codec], encodings: [{ ssrc: 1, rtx: { ssrc: -5 } }] }],
      ['clockRate 0', { codecs: [{ ...codec, clockRate: 0 }], encodings: [{ ssrc: 1 }] }],
      ['header extension id 0', { codecs: [codec], encodings: [{ ssrc: 1 }], headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 0 }] }],
      ['object as codec parameter', { codecs: [{ ...codec, parameters: { x: { y: 1 } } }], encodings: [{ ssrc: 1 }] }],
      ['no codecs', { encodings: [{ ssrc: 1 }] }],
    ];
    for (const [what, rtpParameters] of invalid) {
      await httpRejectsWith(
        gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports/${t.id}/producers`, { kind: 'audio', rtpParameters }, bc.secret),
        400,
        'INVALID_REQUEST',
        what,
      );
    }
    assert.equal((await platform.agent!.dump()).producers, 0);
    // In range it is accepted (the largest SSRC and payload type included).
    const ok = { codecs: [{ ...codec, payloadType: 127 }], encodings: [{ ssrc: 2 ** 32 - 1 }] };
    await gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports/${t.id}/producers`, { kind: 'audio', rtpParameters: ok }, bc.secret);

    // The same schema guards WebSocket clients.
    const p = await joinedPeer(roomId, 'p');
    await rejectsWith(
      p.client.request('produce', { transportId: p.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, codecs: [{ ...codec, payloadType: 300 }] } }),
      400,
      'INVALID_REQUEST',
      'WebSocket payloadType 300',
    );
    // In range but clashing with what the transport already has: mediasoup's worker refuses, and that is the client's error too.
    await p.client.request('produce', { transportId: p.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
    await rejectsWith(
      p.client.request('produce', { transportId: p.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '1' } }),
      400,
      'INVALID_PARAMETERS',
      'an SSRC already in use',
    );
    await gatewayCall(http, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);
    await closeAll(p.client);
  });
});

describe('per-peer caps (item 9)', () => {
  test('a peer holds at most maxTransportsPerPeer transports, even when it asks for many at once', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('transports');
    const viewer = await connect(roomId, 'v', 'viewer');
    const before = (await platform.agent!.dump()).transports;
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => viewer.request('createWebRtcTransport', { consuming: true })));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(results.length - refused.length, caps.maxTransportsPerPeer);
    for (const r of refused) {
      assert.equal(r.reason.errorName, 'PEER_LIMIT_REACHED');
      assert.equal(r.reason.errorCode, 403);
    }
    assert.equal((await platform.agent!.dump()).transports - before, caps.maxTransportsPerPeer);
    await rejectsWith(viewer.request('createWebRtcTransport', {}), 403, 'PEER_LIMIT_REACHED', 'one more later');
    await closeAll(viewer);
  });

  test('producers, data producers, consumers and data consumers are capped per peer', { timeout: 30_000 }, async () => {
    const roomId = await platform.createRoom('objects');
    const a = await joinedPeer(roomId, 'a');
    const produce = (kind: 'audio' | 'video', mid: string) =>
      a.client.request('produce', {
        transportId: a.send.id,
        kind,
        rtpParameters: { ...(kind === 'audio' ? audioRtpParameters : videoRtpParameters), mid },
      });
    const audio = await produce('audio', '0');
    const video = await produce('video', '1');
    await rejectsWith(produce('audio', '2'), 403, 'PEER_LIMIT_REACHED', 'third producer');
    // The cap counts what the peer holds now: closing one frees a place.
    await a.client.request('closeProducer', { producerId: audio.id });
    const audio2 = await produce('audio', '3');
    await a.client.request('produceData', { transportId: a.send.id, sctpStreamParameters: { streamId: 0 }, label: 'a' });
    await rejectsWith(
      a.client.request('produceData', { transportId: a.send.id, sctpStreamParameters: { streamId: 1 }, label: 'b' }),
      403,
      'PEER_LIMIT_REACHED',
      'second data producer',
    );
    const c = await joinedPeer(roomId, 'c');
    await c.client.request('produceData', { transportId: c.send.id, sctpStreamParameters: { streamId: 0 }, label: 'c' });

    // b joins a room with two producers and two data producers: it is offered one of each.
    const b = await joinedPeer(roomId, 'b', 'viewer');
    await sleep(1000);
    assert.equal(b.offered.consumers.length, caps.maxConsumersPerPeer);
    assert.ok([audio2.id, video.id].includes(b.offered.consumers[0].producerId));
    assert.equal(b.offered.dataConsumers.length, caps.maxDataConsumersPerPeer);

    // A broadcaster's egress asks for consumers itself: it is told.
    const egress = await gatewayCall(http, 'POST', '/broadcasters', { token: await platform.token(roomId, 'rec') });
    const out = await gatewayCall(http, 'POST', `/broadcasters/${egress.id}/transports`, { comedia: false, rtcpMux: true }, egress.secret);
    await gatewayCall(http, 'POST', `/broadcasters/${egress.id}/transports/${out.id}/connect`, { ip: '127.0.0.1', port: 5006 }, egress.secret);
    await gatewayCall(http, 'POST', `/broadcasters/${egress.id}/transports/${out.id}/consume`, { producerId: video.id }, egress.secret);
    await httpRejectsWith(
      gatewayCall(http, 'POST', `/broadcasters/${egress.id}/transports/${out.id}/consume`, { producerId: audio2.id }, egress.secret),
      403,
      'PEER_LIMIT_REACHED',
      'second egress consumer',
    );
    await gatewayCall(http, 'DELETE', `/broadcasters/${egress.id}`, undefined, egress.secret);
    await closeAll(a.client, b.client, c.client);
  });
});
