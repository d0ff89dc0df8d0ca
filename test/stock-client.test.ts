import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { version as mediasoupVersion } from 'mediasoup';
import { Peer, WebSocketTransport } from 'protoo-client';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';

/**
 * The clients people already run: the real `protoo-client` npm package (4.x,
 * mediasoup-demo's), used the way mediasoup-demo's RoomClient uses it. In
 * Node it opens its WebSockets with its own optional dependency `websocket`
 * (WebSocket-Node), with the `protoo` subprotocol.
 */
interface StockClient {
  peer: Peer;
  notifications: { method: string; data: any }[];
  /** Times the socket opened: the first connection and every automatic reconnection. */
  opens: number;
  /** Resolves when protoo-client gives up for good (its `close` event). */
  closed: Promise<void>;
  isClosed(): boolean;
}

function stockClient(url: string): StockClient {
  const peer = new Peer(new WebSocketTransport(url));
  let closedFlag = false;
  const client: StockClient = {
    peer,
    notifications: [],
    opens: 0,
    closed: new Promise((resolve) =>
      peer.on('close', () => {
        closedFlag = true;
        resolve();
      }),
    ),
    isClosed: () => closedFlag,
  };
  peer.on('open', () => client.opens++);
  peer.on('notification', (n) => client.notifications.push({ method: n.method, data: n.data }));
  // mediasoup-demo accepts the consumers it is offered.
  peer.on('request', (_request, accept) => accept());
  return client;
}

/** Resolves once the client's socket is open (protoo-client queues nothing: requests before it fail). */
function opened(client: StockClient): Promise<void> {
  return new Promise((resolve, reject) => {
    if (client.peer.connected) return resolve();
    client.peer.on('open', () => resolve());
    client.peer.on('close', () => reject(new Error('closed before opening')));
  });
}

let platform: EmbeddedPlatform;

before(async () => {
  platform = await startEmbedded();
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
