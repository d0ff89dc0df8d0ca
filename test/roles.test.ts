import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gatewayCall } from './helpers/broadcaster.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type Callback, type ErrorCallback, LicodeNuveClient } from './helpers/licode-client.js';
import { decodeTokenText, waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { type StockClient, joinedAfter, settleStockClients, stockClient } from './helpers/stock-client.js';

/**
 * Roles as a Licode deployment defines them (Licode's own tests ask for a
 * role named `role`): configured in Nuve, asked for by the unmodified Licode
 * Nuve client, carried as permissions in the token, enforced by the gateway
 * on a stock protoo-client.
 */
const ROLES = {
  /** Publishes only: receives nothing. */
  role: { publish: true },
  /** Listens and chats: no audio or video of its own. */
  chatter: { subscribe: true, publishData: true },
  /** Streams the room out (a recorder's broadcaster), nothing else. */
  recorder: { record: true },
};

let platform: EmbeddedPlatform;
const app = new LicodeNuveClient();
let roomId: string;

/** One N.API call as a promise; failures reject with Licode's "<status> Error<body>" text. */
function licode<T = any>(invoke: (ok: Callback, fail: ErrorCallback) => void): Promise<T> {
  return new Promise((resolve, reject) => invoke(resolve, (message, status) => reject(Object.assign(new Error(message), { status }))));
}

const token = (user: string, role: string) => licode<string>((ok, fail) => app.createToken(roomId, user, role, ok, fail));

/** A stock client (mediasoup-demo's protoo-client) joined with a token of `role`. */
async function member(user: string, role: string): Promise<{ client: StockClient; send: { id: string } }> {
  const client = stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(await token(user, role))}`, user);
  const { send } = await joinedAfter(client);
  return { client, send };
}

const produceAudio = (m: { client: StockClient; send: { id: string } }) =>
  m.client.peer.request('produce', { transportId: m.send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } });
const produceData = (m: { client: StockClient; send: { id: string } }) =>
  m.client.peer.request('produceData', { transportId: m.send.id, sctpStreamParameters: { streamId: 0, ordered: true }, label: 'chat' });

const refused = (name: string) => (err: Error & { code?: number }) => {
  assert.equal(err.code, 403);
  assert.match(err.message, new RegExp(`^${name}: `));
  return true;
};

before(async () => {
  platform = await startEmbedded({ nuve: { port: 0, roles: ROLES } });
  const su = platform.nuve!.superServiceRecord;
  app.init(su.id, su.key, `${platform.nuveUrl}/`);
  roomId = (await licode<{ _id: string }>((ok, fail) => app.createRoom('roles', ok, fail)))._id;
});
after(async () => {
  settleStockClients();
  await platform.close();
});

describe('roles configured in Nuve', () => {
  test('tokens carry the signed permissions of their role; an unknown role is refused with INVALID_ROLE', async () => {
    assert.deepEqual(decodeTokenText(await token('ann', 'role')).permissions, { publish: true, subscribe: false, publishData: false, record: false });
    assert.deepEqual(decodeTokenText(await token('bob', 'chatter')).permissions, { publish: false, subscribe: true, publishData: true, record: false });
    // The defaults stay.
    assert.deepEqual(decodeTokenText(await token('cid', 'presenter')).permissions, { publish: true, subscribe: true, publishData: true, record: true });
    assert.deepEqual(decodeTokenText(await token('dee', 'viewer')).permissions, { publish: false, subscribe: true, publishData: false, record: false });
    for (const unknown of ['admin', 'toString', '__proto__']) {
      await assert.rejects(token('eve', unknown), (err: Error & { status: number }) => {
        assert.equal(err.status, 400);
        assert.equal(JSON.parse(err.message.slice('400 Error'.length)).code, 'INVALID_ROLE');
        return true;
      });
    }
  });

  test('the gateway enforces permissions: publish only, subscribe with data, and listUsers reports them', async () => {
    const publisher = await member('pia', 'role');
    const chatter = await member('quinn', 'chatter');
    try {
      // `role` publishes; `chatter` receives it.
      const { id: producerId } = await produceAudio(publisher);
      await waitFor(() => chatter.client.requests.some((r) => r.method === 'newConsumer' && r.data.producerId === producerId), 3000, 'the chatter to consume');
      // `chatter` may not publish audio or video, but may chat; `role` may not chat.
      await assert.rejects(produceAudio(chatter), refused('PRODUCE_NOT_ALLOWED'));
      const { id: dataProducerId } = await produceData(chatter);
      assert.ok(dataProducerId);
      await assert.rejects(produceData(publisher), refused('PRODUCE_NOT_ALLOWED'));
      // Without `subscribe`, nothing is offered to the publisher: not the chat, not a newcomer's audio.
      const presenter = await member('rex', 'presenter');
      const { id: presenterProducer } = await produceAudio(presenter);
      await waitFor(() => chatter.client.requests.some((r) => r.data.producerId === presenterProducer), 3000, 'the chatter to consume the newcomer');
      await sleep(300);
      assert.deepEqual(publisher.client.requests, [], 'nothing offered to a role without subscribe');
      assert.ok(presenter.client.requests.some((r) => r.method === 'newDataConsumer' && r.data.dataProducerId === dataProducerId));

      const users = JSON.parse(await licode<string>((ok, fail) => app.getUsers(roomId, ok, fail))) as { name: string; role: string; permissions: unknown }[];
      assert.deepEqual(
        users.sort((a, b) => a.name.localeCompare(b.name)),
        [
          { name: 'pia', role: 'role', permissions: { publish: true, subscribe: false, publishData: false, record: false } },
          { name: 'quinn', role: 'chatter', permissions: { publish: false, subscribe: true, publishData: true, record: false } },
          { name: 'rex', role: 'presenter', permissions: { publish: true, subscribe: true, publishData: true, record: true } },
        ],
      );
      presenter.client.peer.close();
    } finally {
      publisher.client.peer.close();
      chatter.client.peer.close();
    }
  });

  test('broadcasters: ingest needs publish, streaming out needs record', async () => {
    const base = platform.gatewayUrl.replace(/^ws/, 'http');
    const presenter = await member('sam', 'presenter');
    try {
      const { id: producerId } = await produceAudio(presenter);
      // `role` ingests but may not stream out.
      const ingest = await gatewayCall(base, 'POST', '/broadcasters', { token: await token('ingest', 'role') });
      const tIn = await gatewayCall(base, 'POST', `/broadcasters/${ingest.id}/transports`, { comedia: true }, ingest.secret);
      assert.ok((await gatewayCall(base, 'POST', `/broadcasters/${ingest.id}/transports/${tIn.id}/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, ingest.secret)).id);
      const tOut = await gatewayCall(base, 'POST', `/broadcasters/${ingest.id}/transports`, { comedia: false }, ingest.secret);
      await assert.rejects(gatewayCall(base, 'POST', `/broadcasters/${ingest.id}/transports/${tOut.id}/consume`, { producerId }, ingest.secret), (err: { status: number; body: { code: string } }) => {
        assert.deepEqual([err.status, err.body.code], [403, 'RECORD_NOT_ALLOWED']);
        return true;
      });
      // `recorder` streams out but may not ingest.
      const recorder = await gatewayCall(base, 'POST', '/broadcasters', { token: await token('rec', 'recorder') });
      const rOut = await gatewayCall(base, 'POST', `/broadcasters/${recorder.id}/transports`, { comedia: false }, recorder.secret);
      assert.equal((await gatewayCall(base, 'POST', `/broadcasters/${recorder.id}/transports/${rOut.id}/consume`, { producerId }, recorder.secret)).kind, 'audio');
      const rIn = await gatewayCall(base, 'POST', `/broadcasters/${recorder.id}/transports`, { comedia: true }, recorder.secret);
      await assert.rejects(gatewayCall(base, 'POST', `/broadcasters/${recorder.id}/transports/${rIn.id}/producers`, { kind: 'audio', rtpParameters: audioRtpParameters }, recorder.secret), (err: { status: number; body: { code: string } }) => {
        assert.deepEqual([err.status, err.body.code], [403, 'PRODUCE_NOT_ALLOWED']);
        return true;
      });
      // `chatter` does neither: no broadcaster at all.
      await assert.rejects(gatewayCall(base, 'POST', '/broadcasters', { token: await token('chat', 'chatter') }), (err: { status: number; body: { code: string } }) => {
        assert.deepEqual([err.status, err.body.code], [403, 'PRODUCE_NOT_ALLOWED']);
        return true;
      });
      for (const bc of [ingest, recorder]) await gatewayCall(base, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret);
    } finally {
      presenter.client.peer.close();
    }
  });
});
