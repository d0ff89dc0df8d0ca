import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type types, version as mediasoupVersion } from 'mediasoup';
import { decodeToken } from '../src/core/access-token.js';
import { AppError } from '../src/core/errors.js';
import { type IssuedClaims, encodeToken } from '../src/nuve/access-token.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type CountingProxy, startCountingProxy } from './helpers/counting-proxy.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded, watchRouters } from './helpers/platform.js';
import { type StockClient, joinedAfter, opened, settleStockClients, stockClient, waitForNotification } from './helpers/stock-client.js';

/** protoo-client keeps requests pending after a final close; settle them so the process can exit. */
after(settleStockClients);

let platform: EmbeddedPlatform;
/** Every router of the agent's worker (its spare included), seen through mediasoup's own observer. */
const routers: types.Router[] = [];

before(async () => {
  platform = await startEmbedded();
  watchRouters(platform, (router) => routers.push(router));
});
after(async () => platform.close());

describe('tokens in the URL', () => {
  /**
   * A token with `+`, `/` and `=` in it. Base64 of ASCII gives `+` and `/`
   * only for `~`, `>` (→ `+`) and `?` (→ `/`) in the third byte of a group,
   * so the user name carries three of each (one lands there whatever the
   * offset); its length decides the padding.
   */
  async function awkwardToken(roomId: string): Promise<string> {
    for (let pad = 0; pad < 6; pad++) {
      const token = await platform.token(roomId, `~~~???${'x'.repeat(pad)}`);
      if (token.includes('+') && token.includes('/') && token.endsWith('=')) return token;
    }
    throw new Error('no token with +, / and =');
  }

  for (const [how, encode] of [
    ['raw', (t: string) => t],
    ['percent-encoded', encodeURIComponent],
  ] as const) {
    test(`a token with +, / and = sent ${how} is accepted`, async () => {
      const roomId = await platform.createRoom(`url-${how}`);
      const token = await awkwardToken(roomId);
      const client = stockClient(`${platform.gatewayUrl}/?token=${encode(token)}`);
      await opened(client);
      const caps = await client.peer.request('getRouterRtpCapabilities');
      assert.ok(Array.isArray(caps.codecs), 'admitted: the router answers');
      client.peer.close();
    });
  }
});

describe('errors', () => {
  test('a refusal names its stable errorName in the reason protoo-client keeps: a viewer cannot produce', async () => {
    const roomId = await platform.createRoom('viewer');
    const viewer = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(await platform.token(roomId, 'vic', 'viewer'))}`);
    await opened(viewer);
    const rtpCapabilities = await viewer.peer.request('getRouterRtpCapabilities');
    const send = await viewer.peer.request('createWebRtcTransport', { producing: true, consuming: false });
    await viewer.peer.request('join', { displayName: 'vic', rtpCapabilities });
    await assert.rejects(
      viewer.peer.request('produce', { transportId: send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } }),
      (err: Error & { code?: number }) => {
        // protoo-client's Error: message = errorReason, code = errorCode; errorName itself is dropped.
        assert.match(err.message, /^PRODUCE_NOT_ALLOWED: /);
        assert.equal(err.code, 403);
        return true;
      },
    );
    viewer.peer.close();
  });
});

describe('mediasoup-demo notifications', () => {
  test('mediasoup-version arrives first, with the version of the agent carrying the peer', async () => {
    const roomId = await platform.createRoom('version');
    const client = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(await platform.token(roomId, 'ada'))}`);
    await opened(client);
    await client.peer.request('getRouterRtpCapabilities');
    assert.deepEqual(client.notifications[0], { method: 'mediasoup-version', data: { version: mediasoupVersion } });
    client.peer.close();
  });
});

describe('every way the gateway ends a session: a stock client stops or comes back, never storms', () => {
  let proxy: CountingProxy;
  let serial = 0;
  before(async () => {
    proxy = await startCountingProxy(platform.gatewayUrl);
  });
  after(async () => proxy.close());

  /** A stock client through the counting proxy; `marker` (ignored by the gateway) tells its attempts apart. */
  function connect(token: string | undefined, extra = '', joinAs?: string): { client: StockClient; marker: string } {
    const marker = `case-${++serial}`;
    const query = `t=${marker}${token === undefined ? '' : `&token=${encodeURIComponent(token)}`}${extra}`;
    return { client: stockClient(`${proxy.url}/?${query}`, joinAs), marker };
  }

  function within<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
    const text = () => (typeof what === 'string' ? what : what());
    return Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`${text()} within ${ms} ms`)))]);
  }

  /**
   * The client got the reason in `closing` and protoo-client gave up for good (its `close`);
   * a second later it still has made `attempts` connections in all (a storm makes thousands).
   */
  async function assertEnds(
    { client, marker }: { client: StockClient; marker: string },
    expected: { errorName: string; code: number; rejoin: boolean },
    attempts = 1,
  ): Promise<void> {
    try {
      await within(client.closed, 3000, () => `protoo-client to give up (${client.opens} opens, ${proxy.count(marker)} connections, ${JSON.stringify(client.notifications.at(-1))})`);
      const closing = client.notifications.filter((n) => n.method === 'closing').at(-1)?.data;
      assert.deepEqual({ errorName: closing?.errorName, code: closing?.code, rejoin: closing?.rejoin }, expected);
      assert.equal(typeof closing.reason, 'string');
      await sleep(1000);
      assert.equal(proxy.count(marker), attempts, 'connections made with that URL');
    } finally {
      client.peer.close();
    }
  }

  const su = () => platform.nuve!.superServiceRecord;
  const nuve = (method: string, path: string) =>
    fetch(`${platform.nuveUrl}${path}`, {
      method,
      headers: { authorization: buildMAuthHeader({ serviceId: su().id, key: su().key, cnonce: String(Math.random()) }) },
    });
  const claimsOf = (token: string) => JSON.parse(Buffer.from(token, 'base64').toString());
  const forged = (token: string, change: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...claimsOf(token), ...change })).toString('base64');

  test('token missing, malformed, badly signed, expired, for another gateway', async () => {
    const roomId = await platform.createRoom('stock-tokens');
    const token = () => platform.token(roomId, 'ann');
    const claims = decodeToken(await token()).claims as IssuedClaims;
    const cases: [string | undefined, string, number][] = [
      [undefined, 'TOKEN_MISSING', 1000],
      ['bm90IGpzb24=', 'TOKEN_MALFORMED', 1001],
      [forged(await token(), { role: 'viewer' }), 'TOKEN_BAD_SIGNATURE', 1002],
      [forged(await token(), { expiresAt: Date.now() - 5 * 60_000 }), 'TOKEN_EXPIRED', 1003],
      // Signed with the right key (so only the gateway id is wrong).
      [encodeToken({ ...claims, gatewayId: 'gw-another' }, su().key), 'TOKEN_WRONG_GATEWAY', 1005],
    ];
    for (const [t, errorName, code] of cases) await assertEnds(connect(t), { errorName, code, rejoin: false });
  });

  test('token already used', async () => {
    const roomId = await platform.createRoom('stock-used');
    const token = await platform.token(roomId, 'bea');
    const first = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`, 'bea');
    await joinedAfter(first);
    await assertEnds(connect(token), { errorName: 'TOKEN_ALREADY_USED', code: 1004, rejoin: false });
    first.peer.close();
  });

  test('token service unavailable: final for the socket, and the token still works later', async () => {
    const roomId = await platform.createRoom('stock-nuve-down');
    const token = await platform.token(roomId, 'cid');
    const request = platform.bus.request.bind(platform.bus);
    platform.bus.request = (subject, payload, options) =>
      subject === 'nuve.token.consume' ? Promise.reject(new AppError('BUS_NO_RESPONDERS', 'no Nuve')) : request(subject, payload, options);
    try {
      await assertEnds(connect(token), { errorName: 'TOKEN_SERVICE_UNAVAILABLE', code: 1006, rejoin: true });
    } finally {
      platform.bus.request = request;
    }
    const later = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`, 'cid');
    await joinedAfter(later);
    later.peer.close();
  });

  test('kicked by the service, then the room deleted', async () => {
    const roomId = await platform.createRoom('stock-kick');
    const dee = connect(await platform.token(roomId, 'dee'), '', 'dee');
    const eve = connect(await platform.token(roomId, 'eve'), '', 'eve');
    await joinedAfter(dee.client);
    await joinedAfter(eve.client);
    assert.equal((await nuve('DELETE', `/rooms/${roomId}/users/dee`)).status, 200);
    await assertEnds(dee, { errorName: 'KICKED', code: 4100, rejoin: false });
    assert.equal((await nuve('DELETE', `/rooms/${roomId}`)).status, 200);
    await assertEnds(eve, { errorName: 'ROOM_CLOSED', code: 4101, rejoin: false });
  });

  test('replaced by a new session of the same user and peer id; a peer id of another user refused', async () => {
    const roomId = await platform.createRoom('stock-ids');
    const old = connect(await platform.token(roomId, 'fay'), '&peerId=fay-peer', 'fay');
    await joinedAfter(old.client);
    // The same user alone in its room comes back with a fresh token: the room stays open for the new session.
    const again = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(await platform.token(roomId, 'fay'))}&peerId=fay-peer`, 'fay');
    try {
      const { send } = await joinedAfter(again);
      await assertEnds(old, { errorName: 'REPLACED', code: 4102, rejoin: false });
      await assertEnds(connect(await platform.token(roomId, 'mallory'), '&peerId=fay-peer'), { errorName: 'PEER_ID_TAKEN', code: 4105, rejoin: false });
      assert.ok((await again.peer.request('produce', { transportId: send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } })).id);
    } finally {
      again.peer.close();
    }
  });

  test('a request flood, a leave', async () => {
    const roomId = await platform.createRoom('stock-flood');
    const flooder = connect(await platform.token(roomId, 'gus'), '', 'gus');
    await joinedAfter(flooder.client);
    // 50 requests a second are answered, then 100 refusals within 10 s hang up.
    for (let id = 1; id <= 200; id++) void flooder.client.transport.send({ request: true, id, method: 'getRouterRtpCapabilities', data: {} });
    await assertEnds(flooder, { errorName: 'PROTOCOL_ABUSE', code: 4104, rejoin: false });

    const leaver = connect(await platform.token(roomId, 'hal'), '', 'hal');
    await joinedAfter(leaver.client);
    await leaver.client.peer.request('leave');
    await assertEnds(leaver, { errorName: 'LEFT', code: 4107, rejoin: false });
  });

  test('admission failing after the token was used (no media agent answers): final for the socket, rejoin with a new token', async () => {
    const roomId = await platform.createRoom('stock-no-agent');
    const token = await platform.token(roomId, 'ida');
    const request = platform.bus.request.bind(platform.bus);
    platform.bus.request = (subject, payload, options) =>
      subject.startsWith('agent.') ? Promise.reject(new AppError('BUS_TIMEOUT', 'no answer')) : request(subject, payload, options);
    try {
      await assertEnds(connect(token), { errorName: 'AGENT_UNAVAILABLE', code: 1500, rejoin: true });
    } finally {
      platform.bus.request = request;
    }
  });

  test('a message over the size limit: the WebSocket library closes (1009), one reconnection is refused for good', async () => {
    const roomId = await platform.createRoom('stock-big');
    const big = connect(await platform.token(roomId, 'jon'), '', 'jon');
    await joinedAfter(big.client);
    void big.client.transport.send({ request: true, id: 1, method: 'changeDisplayName', data: { displayName: 'x'.repeat(300_000) } });
    await assertEnds(big, { errorName: 'TOKEN_ALREADY_USED', code: 1004, rejoin: false }, 2);
  });

  const closeRouterOf = (roomId: string) => routers.find((r) => !r.closed && (r.appData as { roomId?: string }).roomId === roomId)!.close();

  test('media agent lost: protoo-client reconnects at once, the session resumes as the same peer and joins again', async () => {
    const roomId = await platform.createRoom('stock-agent-lost');
    const watcher = connect(await platform.token(roomId, 'kim'), '', 'kim');
    await joinedAfter(watcher.client);
    const lou = connect(await platform.token(roomId, 'lou'), '', 'lou');
    const { client } = lou;
    try {
      const disconnected = new Promise<void>((resolve) => client.peer.on('disconnected', () => resolve()));
      const first = await joinedAfter(client);
      await client.peer.request('produce', { transportId: first.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
      const peerId = (await waitForNotification(watcher.client, 'newPeer')).id;
      // The room's router closes behind the gateway's back (as a dead worker or mediasoup would).
      closeRouterOf(roomId);
      await within(disconnected, 3000, 'the session to end');
      const closing = client.notifications.find((n) => n.method === 'closing')!.data;
      assert.deepEqual({ errorName: closing.errorName, code: closing.code, rejoin: closing.rejoin }, { errorName: 'MEDIA_AGENT_LOST', code: 4106, rejoin: true });
      assert.ok(client.notifications.some((n) => n.method === 'mediaAgentLost'));
      // Both were on that router; both come back and join again (a fresh router), as themselves.
      const seen = await joinedAfter(watcher.client, 2);
      const again = await joinedAfter(client, 2);
      assert.ok((await client.peer.request('produce', { transportId: again.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } })).id);
      // Whichever joined first, the watcher sees the same peer id back: in its join answer or as a newPeer.
      const back = () => seen.peers.some((p) => p.id === peerId) || watcher.client.notifications.some((n) => n.method === 'newPeer' && n.data.id === peerId);
      await waitFor(back, 3000, 'the watcher to see the same peer back');
      await sleep(1000);
      assert.deepEqual([proxy.count(lou.marker), proxy.count(watcher.marker)], [2, 2], 'one reconnection each, resumed; no more');
      assert.equal(client.isClosed(), false);
    } finally {
      client.peer.close();
      watcher.client.peer.close();
    }
  });

  test('a resumption works once and not for a user kicked while away', async () => {
    const roomId = await platform.createRoom('stock-resume-once');
    const token = await platform.token(roomId, 'max');
    const max = connect(token, '', 'max');
    try {
      await joinedAfter(max.client);
      closeRouterOf(roomId);
      await joinedAfter(max.client, 2);
      // The resumption was used: the same token is refused again, without asking Nuve.
      await assertEnds(connect(token), { errorName: 'TOKEN_ALREADY_USED', code: 1004, rejoin: false });
      assert.equal(proxy.count(max.marker), 2);
    } finally {
      max.client.peer.close();
    }

    const ned = connect(await platform.token(roomId, 'ned'), '', 'ned');
    await joinedAfter(ned.client);
    // Nuve kicks the user after its session ended and before its reconnection arrives (held back here).
    const release = proxy.hold();
    const disconnected = new Promise<void>((resolve) => ned.client.peer.on('disconnected', () => resolve()));
    closeRouterOf(roomId);
    await disconnected;
    assert.equal((await nuve('DELETE', `/rooms/${roomId}/users/ned`)).status, 200, 'a user about to resume is kicked');
    release();
    await assertEnds(ned, { errorName: 'TOKEN_ALREADY_USED', code: 1004, rejoin: false }, 2);
  });
});

describe('a gateway shutting down', () => {
  test('its clients are told to rejoin with a new token and stop reconnecting to it', async () => {
    const own = await startEmbedded();
    const proxy = await startCountingProxy(own.gatewayUrl);
    try {
      const roomId = await own.createRoom('stock-shutdown');
      const client = stockClient(`${proxy.url}/?t=shutdown&token=${encodeURIComponent(await own.token(roomId, 'oda'))}`);
      await opened(client);
      await client.peer.request('getRouterRtpCapabilities');
      await own.gateway!.close();
      await Promise.race([client.closed, sleep(3000).then(() => Promise.reject(new Error('protoo-client did not give up')))]).finally(() =>
        client.peer.close(),
      );
      const closing = client.notifications.find((n) => n.method === 'closing')!.data;
      assert.deepEqual({ errorName: closing.errorName, code: closing.code, rejoin: closing.rejoin }, { errorName: 'GATEWAY_SHUTDOWN', code: 4103, rejoin: true });
      await sleep(2500);
      assert.equal(proxy.count('t=shutdown'), 1, 'no reconnection to a gateway that is gone');
    } finally {
      await proxy.close();
      await own.close();
    }
  });
});
