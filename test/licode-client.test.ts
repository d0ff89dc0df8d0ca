import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseMAuthHeader, verifyMAuthSignature } from '../src/core/mauth.js';
import {
  type Callback,
  type ErrorCallback,
  LicodeNuveClient,
  calculateSignature,
  formatString,
} from './helpers/licode-client.js';
import { type NuveHarness, decodeTokenText, startNuve } from './helpers/nuve-harness.js';

class LicodeError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Turns one N.API call (callback, callbackError) into a promise. */
function licode<T = any>(invoke: (ok: Callback, fail: ErrorCallback) => void): Promise<T> {
  return new Promise((resolve, reject) => invoke(resolve, (message, status) => reject(new LicodeError(message, status))));
}

async function licodeError(invoke: (ok: Callback, fail: ErrorCallback) => void, status: number, code: string): Promise<void> {
  await assert.rejects(licode(invoke), (err: LicodeError) => {
    assert.equal(err.status, status, err.message);
    assert.ok(err.message.startsWith(`${status} Error{`), err.message);
    assert.equal(JSON.parse(err.message.slice(`${status} Error`.length)).code, code);
    return true;
  });
}

describe('Licode N.API compatibility', () => {
  let h: NuveHarness;
  let base: string;

  before(async () => {
    h = await startNuve({ gateways: [{ id: 'gw-licode' }] });
    base = `${h.url}/`;
  });
  after(async () => h.close());

  test('the client signs as Licode does (reference vectors)', () => {
    assert.equal(calculateSignature('1,1', '1'), 'NDg2YTMzNjQ4OThhOTA1ZmY5MWM3OTcwZjY2MWVmZDdhN2RhZTI1Mw==');
    assert.equal(calculateSignature('2,1', '1'), 'OGM3NDQ1MTliNDI1OTUyMmQyY2YwYjQ1ZjJhNzdhYzBiNjBkNDM4Mg==');
    assert.equal(calculateSignature('2,2', '1'), 'ZjgwZDkyMTA4MjhhYWY1NmY5MGU0OTZkYTZhZTJhNWE1MWMwZjk1YQ==');
    assert.equal(calculateSignature('1,undefined', '1'), 'YmI1OTZlYWM1YzNjZjZhZTRmMTIyODQ1YTNiNWVhNWM0MzAxMmM5Yw==');
    assert.equal(formatString('JOSÉ Ñandú Çà'), 'jose nandu ca');

    const header = LicodeNuveClient.authorization('0123456789abcdef01234567', 'k'.repeat(20), 'Zoë', 'viewer');
    assert.match(
      header,
      /^MAuth realm=http:\/\/marte3\.dit\.upm\.es,mauth_signature_method=HMAC_SHA1,mauth_username=zoe,mauth_role=viewer,mauth_serviceid=0123456789abcdef01234567,mauth_cnonce=\d{1,5},mauth_timestamp=\d{13},mauth_signature=[A-Za-z0-9+/]{54}==$/,
    );
    const params = parseMAuthHeader(header);
    assert.ok(params && verifyMAuthSignature(params, 'k'.repeat(20)), 'Nuve verifies what the Licode client signs');
  });

  test('an application does what Licode apps do: service, room, token, users, cleanup', async () => {
    // The platform operator creates the application's service with the superService credentials.
    const admin = new LicodeNuveClient();
    admin.init(h.superService.id, h.superService.key, base);
    const appKey = 'licode-app-key-0123456789';
    const created = await licode<string>((ok, fail) => admin.createService('licode-app', appKey, ok, fail));
    assert.match(created, /^"[0-9a-f]{24}"$/, 'the id comes back as a JSON string, raw');
    const serviceId = JSON.parse(created) as string;
    const listed = JSON.parse(await licode<string>((ok, fail) => admin.getServices(ok, fail)));
    assert.ok(listed.some((s: { _id: string; name: string }) => s._id === serviceId && s.name === 'licode-app'));
    const service = JSON.parse(await licode<string>((ok, fail) => admin.getService(serviceId, ok, fail)));
    assert.deepEqual(service, { name: 'licode-app', key: appKey, rooms: [], _id: serviceId });

    // The application, with its own credentials.
    const app = new LicodeNuveClient();
    app.init(serviceId, appKey, base);
    const room = await licode<{ _id: string; name: string; data?: unknown }>((ok, fail) =>
      app.createRoom('basicExampleRoom', ok, fail, { data: { basicExampleRoom: true } }),
    );
    assert.equal(room.name, 'basicExampleRoom');
    assert.deepEqual(room.data, { basicExampleRoom: true });
    assert.match(room._id, /^[0-9a-f]{24}$/);

    const rooms = await licode<string>((ok, fail) => app.getRooms(ok, fail));
    assert.equal(typeof rooms, 'string', 'getRooms hands back raw text');
    assert.deepEqual(
      JSON.parse(rooms).map((r: { _id: string }) => r._id),
      [room._id],
    );
    assert.equal(JSON.parse(await licode<string>((ok, fail) => app.getRoom(room._id, ok, fail)))._id, room._id);

    const token = await licode<string>((ok, fail) => app.createToken(room._id, 'José Ñandú', 'presenter', ok, fail));
    const decoded = decodeTokenText(token);
    for (const field of ['tokenId', 'host', 'secure', 'signature']) assert.ok(field in decoded, `token has ${field}`);
    assert.equal(decoded.host, new URL(h.gateways[0]!.url).host);
    const grant = await h.consume(token, 'gw-licode');
    assert.equal(grant.userName, 'jose nandu', 'the user name is the one Licode formatted and signed');
    assert.equal(grant.roomId, room._id);
    await sleep(2);
    await licode<string>((ok, fail) => app.createToken(room._id, 'bob', 'viewer', ok, fail));

    // The gateway hosting the room answers who is connected.
    const connected = [
      { name: 'jose nandu', role: 'presenter', permissions: { publish: true, subscribe: true } },
      { name: 'bob', role: 'viewer', permissions: { subscribe: true } },
    ];
    const sub = h.gateways[0]!.respond((rpc) => {
      if (rpc.method === 'listUsers') return connected;
      if (rpc.method === 'kickUser') {
        const before = connected.length;
        connected.splice(
          0,
          connected.length,
          ...connected.filter((u) => u.name !== rpc.userName),
        );
        return before - connected.length;
      }
      return null;
    });
    try {
      const users = await licode<string>((ok, fail) => app.getUsers(room._id, ok, fail));
      assert.deepEqual(
        JSON.parse(users).map((u: { name: string }) => u.name),
        ['jose nandu', 'bob'],
      );
      assert.deepEqual(JSON.parse(await licode<string>((ok, fail) => app.getUser(room._id, 'bob', ok, fail))), connected[1]);
      assert.equal(await licode((ok, fail) => app.deleteUser(room._id, 'bob', ok, fail)), 'Success');
      await licodeError((ok, fail) => app.getUser(room._id, 'bob', ok, fail), 404, 'USER_NOT_FOUND');
    } finally {
      sub.unsubscribe();
    }

    assert.equal(await licode((ok, fail) => app.updateRoom(room._id, 'renamed', ok, fail, { p2p: true })), 'Room Updated');
    assert.equal(await licode((ok, fail) => app.patchRoom(room._id, undefined, ok, fail, { data: { more: 1 } })), 'Room Updated');
    const updated = JSON.parse(await licode<string>((ok, fail) => app.getRoom(room._id, ok, fail)));
    assert.deepEqual(updated, { name: 'renamed', p2p: true, data: { basicExampleRoom: true, more: 1 }, eapolicy: 'ROOM-BEST', _id: room._id });

    assert.equal(await licode((ok, fail) => app.deleteRoom(room._id, ok, fail)), 'Room deleted');
    assert.equal(await licode((ok, fail) => app.getRooms(ok, fail)), '[]');

    // The operator removes the application; its credentials stop working.
    assert.equal(await licode((ok, fail) => admin.deleteService(serviceId, ok, fail)), 'Service deleted');
    await licodeError((ok, fail) => app.getRooms(ok, fail), 401, 'AUTH_BAD_SIGNATURE');
  });

  test('errors reach callbackError as "<status> Error<body>"', async () => {
    const app = new LicodeNuveClient();
    app.init(h.superService.id, h.superService.key, base);
    await licodeError((ok, fail) => app.getRoom('0'.repeat(24), ok, fail), 404, 'ROOM_NOT_FOUND');
    await licodeError((ok, fail) => app.deleteRoom('0'.repeat(24), ok, fail), 404, 'ROOM_NOT_FOUND');
    await licodeError((ok, fail) => app.createToken('0'.repeat(24), 'alice', 'presenter', ok, fail), 404, 'ROOM_NOT_FOUND');
    const room = await licode<{ _id: string }>((ok, fail) => app.createRoom('errors', ok, fail));
    await licodeError((ok, fail) => app.createToken(room._id, '', 'presenter', ok, fail), 401, 'TOKEN_USER_MISSING');
    await licodeError((ok, fail) => app.getService('0'.repeat(24), ok, fail), 404, 'SERVICE_NOT_FOUND');

    const tenant = await h.createService('plain-tenant');
    const plain = new LicodeNuveClient();
    plain.init(tenant.id, tenant.key, base);
    await licodeError((ok, fail) => plain.getServices(ok, fail), 401, 'SERVICE_NOT_AUTHORIZED');
    await licodeError((ok, fail) => plain.createService('x', 'x'.repeat(20), ok, fail), 401, 'SERVICE_NOT_AUTHORIZED');
    await licodeError((ok, fail) => plain.getRoom(room._id, ok, fail), 404, 'ROOM_NOT_FOUND');

    const wrongKey = new LicodeNuveClient();
    wrongKey.init(tenant.id, 'not-the-right-key-at-all', base);
    await licodeError((ok, fail) => wrongKey.getRooms(ok, fail), 401, 'AUTH_BAD_SIGNATURE');
  });

  test('per-call params override init, and missing credentials send nothing', async () => {
    const tenant = await h.createService('per-call');
    const client = new LicodeNuveClient();
    client.init('', '', base);
    let called = false;
    client.getRooms(
      () => (called = true),
      () => (called = true),
    );
    assert.deepEqual(client.log, ['ServiceID and Key are required!!']);
    const rooms = await licode<string>((ok, fail) => client.getRooms(ok, fail, { service: tenant.id, key: tenant.key, url: base }));
    assert.equal(rooms, '[]');
    await sleep(20);
    assert.equal(called, false);
  });
});
