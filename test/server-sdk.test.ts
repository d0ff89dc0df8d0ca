import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { signWebhook } from '../src/core/webhook-signature.js';
import { NUVE_CLIENT_ROUTES, NuveClient, type NuveError, verifyWebhook } from '../src/server/index.js';
import { type NuveHarness, startNuve } from './helpers/nuve-harness.js';

const key = 'tenant-key-0123456789abcdef';
const body = JSON.stringify({ id: 'e1', event: 'room_started', createdAt: 1, serviceId: 's', room: { id: 'r' } });
const now = 1_800_000_000_000;
const signed = (ts = now / 1000, b = body, k = key) => ({
  'mss-webhook-id': 'e1',
  'mss-webhook-timestamp': String(ts),
  'mss-webhook-signature': signWebhook(k, ts, b),
});
const refused = (code: string) => (err: NuveError) => {
  assert.equal(err.code, code);
  return true;
};

describe('verifyWebhook', () => {
  test('a delivery signed with the key verifies, with plain or fetch headers, string or bytes', () => {
    assert.equal(verifyWebhook(body, signed(), key, { now }).event, 'room_started');
    assert.equal(verifyWebhook(Buffer.from(body), new Headers(signed()), key, { now }).id, 'e1');
    // Header names are case-insensitive, as HTTP's.
    const upper = Object.fromEntries(Object.entries(signed()).map(([k, v]) => [k.toUpperCase(), v]));
    assert.equal(verifyWebhook(body, upper, key, { now }).id, 'e1');
  });

  test('a bad signature is refused: other body, other key, other timestamp, truncated, missing headers', () => {
    assert.throws(() => verifyWebhook(body.replace('r"', 'x"'), signed(), key, { now }), refused('WEBHOOK_SIGNATURE_INVALID'));
    assert.throws(() => verifyWebhook(body, signed(now / 1000, body, 'another-key-0123456789'), key, { now }), refused('WEBHOOK_SIGNATURE_INVALID'));
    // The timestamp is signed: a captured signature does not go with a fresh timestamp.
    assert.throws(
      () => verifyWebhook(body, { ...signed(now / 1000 - 600), 'mss-webhook-timestamp': String(now / 1000) }, key, { now }),
      refused('WEBHOOK_SIGNATURE_INVALID'),
    );
    const h = signed();
    assert.throws(() => verifyWebhook(body, { ...h, 'mss-webhook-signature': h['mss-webhook-signature'].slice(0, -1) }, key, { now }), refused('WEBHOOK_SIGNATURE_INVALID'));
    for (const drop of ['mss-webhook-timestamp', 'mss-webhook-signature'] as const) {
      const { [drop]: _, ...rest } = h;
      assert.throws(() => verifyWebhook(body, rest, key, { now }), refused('WEBHOOK_SIGNATURE_INVALID'), drop);
    }
    assert.throws(() => verifyWebhook(body, { ...h, 'mss-webhook-timestamp': '1e9' }, key, { now }), refused('WEBHOOK_SIGNATURE_INVALID'));
  });

  test('a replayed or old delivery is refused past the tolerance, either way in time', () => {
    const old = signed(now / 1000 - 301);
    assert.throws(() => verifyWebhook(body, old, key, { now }), refused('WEBHOOK_TIMESTAMP_STALE'));
    assert.equal(verifyWebhook(body, old, key, { now, toleranceSec: 400 }).id, 'e1');
    assert.throws(() => verifyWebhook(body, signed(now / 1000 + 301), key, { now }), refused('WEBHOOK_TIMESTAMP_STALE'));
    // The same delivery replayed ten minutes later.
    const captured = signed();
    assert.equal(verifyWebhook(body, captured, key, { now }).id, 'e1');
    assert.throws(() => verifyWebhook(body, captured, key, { now: now + 600_000 }), refused('WEBHOOK_TIMESTAMP_STALE'));
  });
});

describe('NuveClient', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve();
  });
  after(async () => h.close());

  test('every route the client calls is in /openapi.json with that method', async () => {
    const openapi = (await (await fetch(`${h.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    for (const route of NUVE_CLIENT_ROUTES) {
      const [method, path] = route.split(' ') as [string, string];
      assert.ok(openapi.paths[path]?.[method.toLowerCase()], `${route} is not in /openapi.json`);
    }
    // And the whole API: a route added to Nuve needs its method here.
    const documented = Object.entries(openapi.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`));
    assert.deepEqual(documented.sort(), [...NUVE_CLIENT_ROUTES].sort());
  });

  test('signs with MAuth, answers typed results, and refuses with Nuve’s codes; tenants stay apart', async () => {
    const admin = new NuveClient({ url: h.url, serviceId: h.superService.id, key: h.superService.key });
    const tenantKey = 'a-tenant-key-0123456789';
    const tenantId = await admin.createService('acme', tenantKey);
    assert.equal((await admin.getService(tenantId)).name, 'acme');
    const acme = new NuveClient({ url: `${h.url}/`, serviceId: tenantId, key: tenantKey });
    const room = await acme.createRoom('lobby', { data: { a: 1 } });
    assert.equal(room.name, 'lobby');
    await acme.patchRoom(room._id, { options: { data: { b: 2 } } });
    assert.deepEqual((await acme.getRoom(room._id)).data, { a: 1, b: 2 });
    await acme.updateRoom(room._id, 'hall');
    assert.deepEqual((await acme.listRooms()).map((r) => r.name), ['hall']);
    // No gateway hosts the room yet: nobody is connected.
    assert.deepEqual(await acme.listUsers(room._id), []);
    assert.deepEqual(await acme.listParticipants(room._id), []);
    assert.deepEqual(await acme.liveRooms(), []);
    await assert.rejects(acme.getParticipant(room._id, 'bob'), refused('PARTICIPANT_NOT_FOUND'));
    await assert.rejects(acme.updateParticipant(room._id, 'bob', { name: 'B' }), refused('PARTICIPANT_NOT_FOUND'));
    await assert.rejects(acme.setTrackMuted(room._id, 'bob', 't', false), refused('REMOTE_UNMUTE_NOT_ALLOWED'));
    assert.equal(await acme.sendData(room._id, { topic: 'x', payload: null }), 0);
    await acme.closeRoom(room._id);
    assert.match(await acme.createToken(room._id, 'alice', 'presenter'), /^[A-Za-z0-9+/=]+$/);
    assert.ok((await acme.createSession({ user: 'alice', scopes: ['room'], room: { id: room._id, role: 'viewer' } })).length > 20);

    assert.deepEqual(await acme.setWebhook({ url: 'https://example.com/hook', exclude: ['participant_joined'] }), {
      url: 'https://example.com/hook',
      exclude: ['participant_joined'],
    });
    assert.equal((await acme.getWebhook()).url, 'https://example.com/hook');
    assert.equal((await acme.setWebhook({ url: 'http://example.com/room' }, room._id)).room, room._id);
    assert.deepEqual(await acme.failedWebhooks(), []);
    await acme.deleteWebhook(room._id);
    await assert.rejects(acme.getWebhook(room._id), refused('WEBHOOK_NOT_FOUND'));
    await assert.rejects(acme.setWebhook({ url: 'ftp://example.com' }), (err: NuveError) => err.code === 'VALIDATION_FAILED' && err.status === 400);

    // Another tenant's room does not exist for it; a tenant is no superService.
    const otherId = await admin.createService('other', 'other-key-0123456789ab');
    const other = new NuveClient({ url: h.url, serviceId: otherId, key: 'other-key-0123456789ab' });
    await assert.rejects(other.getRoom(room._id), (err: NuveError) => err.code === 'ROOM_NOT_FOUND' && err.status === 404);
    await assert.rejects(other.setWebhook({ url: 'https://x.example' }, room._id), refused('ROOM_NOT_FOUND'));
    await assert.rejects(other.listServices(), refused('SERVICE_NOT_AUTHORIZED'));
    // A wrong key is refused by MAuth.
    await assert.rejects(new NuveClient({ url: h.url, serviceId: tenantId, key: 'wrong-key-0123456789' }).listRooms(), refused('AUTH_BAD_SIGNATURE'));

    await acme.deleteRoom(room._id);
    await assert.rejects(acme.getRoom(room._id), refused('ROOM_NOT_FOUND'));
    await admin.deleteService(otherId);
    assert.ok('gateways' in (await admin.status()));
    await assert.rejects(acme.status(), refused('FORBIDDEN'));
  });

  test('is importable as mediasoup-signal/server and depends on no role', async () => {
    const viaPackage = (await import('mediasoup-signal/server')) as typeof import('../src/server/index.js');
    assert.equal(viaPackage.verifyWebhook, verifyWebhook);
    for (const file of readdirSync(new URL('../src/server/', import.meta.url))) {
      const source = readFileSync(new URL(`../src/server/${file}`, import.meta.url), 'utf8');
      assert.doesNotMatch(source, /from '\.\.\/(nuve|gateway|agent|push)\//, `${file} imports a role`);
    }
  });
});
