import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeAnyToken, verifyTokenSignature } from '../src/nuve/access-token.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { type Channel, requireScope } from '../src/gateway/edge/channel.js';
import type { Session } from '../src/gateway/edge/session.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { type StockClient, opened, settleStockClients, stockClient, waitForNotification } from './helpers/stock-client.js';

/** protoo-client keeps requests pending after a final close; settle them so the process can exit. */
after(settleStockClients);

let platform: EmbeddedPlatform;
/** Sessions the test channels were opened with, by the user name of their session. */
const seen = new Map<string, Session>();

/** A channel as push acks or service calls will be: its own methods, its own scope, the session it was opened with. */
function testChannel(name: string, method: string, refusal: Channel['refusal']): Channel {
  return {
    name,
    claims: (m) => m === method,
    refusal,
    open: async ({ session }) => {
      seen.set(session.userName, session);
      return {
        handle: async (_method, data) => ({
          channel: name,
          echo: data,
          serviceId: session.serviceId,
          user: session.userName,
          scopes: [...session.scopes].sort(),
          roomId: session.room?.roomId ?? null,
        }),
      };
    },
  };
}

interface Tenant {
  id: string;
  key: string;
}

let tenantA: Tenant;
let tenantB: Tenant;

const mauth = (t: Tenant, extra: { username?: string; role?: string } = {}) =>
  buildMAuthHeader({ serviceId: t.id, key: t.key, cnonce: Math.random().toString(36).slice(2), ...extra });

const createTenant = (name: string): Promise<Tenant> => platform.createTenant(name);

async function createRoom(t: Tenant, name: string): Promise<string> {
  const res = await fetch(`${platform.nuveUrl}/rooms`, {
    method: 'POST',
    headers: { authorization: mauth(t), 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { _id: string })._id;
}

/** POST /sessions as tenant `t`: the raw answer. */
function postSession(t: Tenant, body: unknown): Promise<Response> {
  return fetch(`${platform.nuveUrl}/sessions`, {
    method: 'POST',
    headers: { authorization: mauth(t), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function sessionToken(t: Tenant, body: unknown): Promise<string> {
  const res = await postSession(t, body);
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { token: string }).token;
}

async function roomToken(t: Tenant, roomId: string, user: string): Promise<string> {
  const res = await fetch(`${platform.nuveUrl}/rooms/${roomId}/tokens`, {
    method: 'POST',
    headers: { authorization: mauth(t, { username: user, role: 'presenter' }) },
  });
  assert.equal(res.status, 200);
  return res.text();
}

function connect(token: string): StockClient {
  return stockClient(`${platform.gatewayUrl}/?token=${encodeURIComponent(token)}`);
}

/** The request fails with `errorName` and `status`, as protoo-client reports it (errorReason `"NAME: text"`, errorCode). */
async function refused(promise: Promise<unknown>, errorName: string, status: number): Promise<void> {
  await assert.rejects(promise, (err: Error & { code?: number }) => {
    assert.match(err.message, new RegExp(`^${errorName}: `));
    assert.equal(err.code, status);
    return true;
  });
}

/** The gateway refused the connection: `closing` names why, and protoo-client gives up. */
async function closedWith(client: StockClient, errorName: string): Promise<void> {
  const closing = await waitForNotification(client, 'closing');
  assert.equal(closing.errorName, errorName, closing.reason);
  await client.closed;
}

/** A token's fields, changed, under its original signature. */
function tampered(token: string, change: (fields: Record<string, any>) => void): string {
  const fields = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as Record<string, any>;
  change(fields);
  return Buffer.from(JSON.stringify(fields)).toString('base64');
}

before(async () => {
  platform = await startEmbedded();
  // Next to room signaling: one channel any session may use, one only sessions with the scope `rpc`.
  platform.gateway!.edge.register(testChannel('open', 'test.open', () => undefined));
  platform.gateway!.edge.register(testChannel('rpc', 'test.rpc', requireScope('rpc', 'the rpc test channel')));
  tenantA = await createTenant('tenant-a');
  tenantB = await createTenant('tenant-b');
});
after(async () => platform.close());

describe('one client edge, several channels', () => {
  test('room signaling and another channel over one stock protoo-client connection; an unknown method as before', async () => {
    const roomId = await createRoom(tenantA, 'edge');
    const client = connect(await roomToken(tenantA, roomId, 'rita'));
    await opened(client);
    const caps = await client.peer.request('getRouterRtpCapabilities');
    assert.ok(Array.isArray(caps.codecs), 'room signaling answers');
    const answer = await client.peer.request('test.open', { n: 1 });
    assert.deepEqual(answer, { channel: 'open', echo: { n: 1 }, serviceId: tenantA.id, user: 'rita', scopes: ['room'], roomId });
    // Both again, interleaved, on the same connection.
    const [again, joined] = await Promise.all([client.peer.request('test.open', { n: 2 }), client.peer.request('join', { displayName: 'rita' })]);
    assert.deepEqual(again.echo, { n: 2 });
    assert.deepEqual(joined.peers, []);
    // A room token's session has the scope `room` only.
    await refused(client.peer.request('test.rpc'), 'SCOPE_NOT_GRANTED', 403);
    await refused(client.peer.request('noSuchMethod'), 'UNKNOWN_METHOD', 400);
    await assert.rejects(client.peer.request('noSuchMethod'), { message: 'UNKNOWN_METHOD: unknown method "noSuchMethod"' });
    client.peer.close();
  });
});

describe('session tokens', () => {
  test('a session without a room connects; its channels see it; room methods are refused', async () => {
    const client = connect(await sessionToken(tenantA, { user: 'sam', scopes: ['rpc', 'push'] }));
    await opened(client);
    assert.deepEqual(await client.peer.request('test.rpc', { q: 'x' }), {
      channel: 'rpc',
      echo: { q: 'x' },
      serviceId: tenantA.id,
      user: 'sam',
      scopes: ['push', 'rpc'],
      roomId: null,
    });
    await refused(client.peer.request('getRouterRtpCapabilities'), 'ROOM_NOT_GRANTED', 403);
    await refused(client.peer.request('join', { displayName: 'sam' }), 'ROOM_NOT_GRANTED', 403);
    client.peer.close();
  });

  test('scopes are enforced: a session without `rpc` cannot use the rpc channel', async () => {
    const client = connect(await sessionToken(tenantA, { user: 'pia', scopes: ['push'] }));
    await opened(client);
    await refused(client.peer.request('test.rpc'), 'SCOPE_NOT_GRANTED', 403);
    assert.equal((await client.peer.request('test.open')).user, 'pia');
    client.peer.close();
  });

  test('a session naming a room joins it with its role, next to its other channels', async () => {
    const roomId = await createRoom(tenantA, 'session-room');
    const client = connect(await sessionToken(tenantA, { user: 'vic', scopes: ['room', 'rpc'], room: { id: roomId, role: 'viewer' } }));
    await opened(client);
    const rtpCapabilities = await client.peer.request('getRouterRtpCapabilities');
    await client.peer.request('join', { displayName: 'vic', rtpCapabilities });
    assert.equal((await client.peer.request('test.rpc')).roomId, roomId);
    const send = await client.peer.request('createWebRtcTransport', { producing: true, consuming: false });
    // The role came signed in the session token: a viewer may not publish.
    await refused(
      client.peer.request('produce', { transportId: send.id, kind: 'audio', rtpParameters: { ...audioRtpParameters, mid: '0' } }),
      'PRODUCE_NOT_ALLOWED',
      403,
    );
    const users = await (await fetch(`${platform.nuveUrl}/rooms/${roomId}/users`, { headers: { authorization: mauth(tenantA) } })).json();
    assert.deepEqual(users, [{ name: 'vic', role: 'viewer', permissions: { publish: false, subscribe: true, publishData: false, record: false } }]);
    client.peer.close();
  });

  test('a session token works once', async () => {
    const token = await sessionToken(tenantA, { user: 'once', scopes: ['push'] });
    const first = connect(token);
    await opened(first);
    await first.peer.request('test.open');
    const second = connect(token);
    await closedWith(second, 'TOKEN_ALREADY_USED');
    first.peer.close();
  });

  test('every field is signed: a tampered scope, user, room or tenant is refused', async () => {
    const roomId = await createRoom(tenantA, 'tamper');
    const changes: [string, (f: Record<string, any>) => void][] = [
      ['a scope added', (f) => f.scopes.push('rpc')],
      ['the user', (f) => (f.userName = 'mallory')],
      ['the role', (f) => (f.room.role = 'presenter')],
      ['a permission', (f) => (f.room.permissions.publish = true)],
      ['the expiry', (f) => (f.expiresAt += 60_000)],
    ];
    const more: [string, (f: Record<string, any>) => void][] = [
      ['a scope replaced', (f) => (f.scopes = ['room', 'rpc'])],
      ['the room', (f) => (f.room.roomId = 'f'.repeat(24))],
      ['the eapolicy', (f) => (f.room.eapolicy = 'TTL-BEST')],
      ['the gateway URL', (f) => (f.gatewayUrl = 'ws://evil.example:1')],
      ['the token id', (f) => (f.tokenId = 'a'.repeat(32))],
    ];
    // The signature alone refuses each (Nuve also compares the stored record, which would catch some).
    const signed = await sessionToken(tenantA, { user: 'tess', scopes: ['room', 'push'], room: { id: roomId, role: 'viewer' } });
    assert.ok(verifyTokenSignature(decodeAnyToken(signed), tenantA.key), 'the token as issued verifies');
    for (const [what, change] of [...changes, ...more]) {
      assert.equal(verifyTokenSignature(decodeAnyToken(tampered(signed, change)), tenantA.key), false, what);
    }
    for (const [what, change] of changes) {
      const token = await sessionToken(tenantA, { user: 'tess', scopes: ['room', 'push'], room: { id: roomId, role: 'viewer' } });
      await closedWith(connect(tampered(token, change)), 'TOKEN_BAD_SIGNATURE').catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
    }
    // The untampered kind of token does work.
    const good = connect(await sessionToken(tenantA, { user: 'tess', scopes: ['push'] }));
    await opened(good);
    good.peer.close();
  });

  test("tenant A's session cannot act as tenant B: not in B's rooms, not under B's id", async () => {
    const roomOfB = await createRoom(tenantB, 'b-room');
    const res = await postSession(tenantA, { user: 'eve', scopes: ['room'], room: { id: roomOfB, role: 'presenter' } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, 'ROOM_NOT_FOUND');
    // A's token claiming to be B's (still signed with A's key) is refused.
    const token = await sessionToken(tenantA, { user: 'eve', scopes: ['rpc'] });
    await closedWith(connect(tampered(token, (f) => (f.serviceId = tenantB.id))), 'TOKEN_BAD_SIGNATURE');
    // The session the gateway keeps is A's: channels decide on that.
    const client = connect(await sessionToken(tenantA, { user: 'eve2', scopes: ['rpc'] }));
    await opened(client);
    assert.equal((await client.peer.request('test.rpc')).serviceId, tenantA.id);
    assert.equal(seen.get('eve2')?.serviceId, tenantA.id);
    client.peer.close();
  });

  test('bad requests are 4xx with stable codes', async () => {
    const roomId = await createRoom(tenantA, 'bad-input');
    const cases: [string, unknown, number, string][] = [
      ['no user', { scopes: ['push'] }, 400, 'VALIDATION_FAILED'],
      ['an empty user', { user: '', scopes: ['push'] }, 400, 'VALIDATION_FAILED'],
      ['a user too long', { user: 'u'.repeat(257), scopes: ['push'] }, 400, 'VALIDATION_FAILED'],
      ['a control character', { user: 'a\u0000b', scopes: ['push'] }, 400, 'VALIDATION_FAILED'],
      ['no scopes', { user: 'u', scopes: [] }, 400, 'VALIDATION_FAILED'],
      ['an unknown scope', { user: 'u', scopes: ['admin'] }, 400, 'VALIDATION_FAILED'],
      ['a scope twice', { user: 'u', scopes: ['push', 'push'] }, 400, 'VALIDATION_FAILED'],
      ['an unknown field', { user: 'u', scopes: ['push'], tenant: tenantB.id }, 400, 'VALIDATION_FAILED'],
      ['scope room without a room', { user: 'u', scopes: ['room'] }, 400, 'VALIDATION_FAILED'],
      ['a room without scope room', { user: 'u', scopes: ['push'], room: { id: roomId, role: 'viewer' } }, 400, 'VALIDATION_FAILED'],
      ['an unknown role', { user: 'u', scopes: ['room'], room: { id: roomId, role: 'admin' } }, 400, 'INVALID_ROLE'],
      ['an unknown room', { user: 'u', scopes: ['room'], room: { id: 'f'.repeat(24), role: 'viewer' } }, 404, 'ROOM_NOT_FOUND'],
    ];
    for (const [what, body, status, code] of cases) {
      const res = await postSession(tenantA, body);
      assert.equal(res.status, status, what);
      assert.equal(((await res.json()) as { code: string }).code, code, what);
    }
    const unsigned = await fetch(`${platform.nuveUrl}/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'u', scopes: ['push'] }),
    });
    assert.equal(unsigned.status, 401);
  });

  test('the route is in the OpenAPI document', async () => {
    const spec = (await (await fetch(`${platform.nuveUrl}/openapi.json`)).json()) as { paths: Record<string, any> };
    const body = spec.paths['/sessions']?.post?.requestBody?.content?.['application/json']?.schema;
    assert.deepEqual(body?.properties?.scopes?.items?.enum, ['room', 'push', 'rpc']);
  });
});
