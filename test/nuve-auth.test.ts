import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { buildMAuthHeader, mauthSignature, parseMAuthHeader } from '../src/core/mauth.js';
import { type CallResult, type NuveHarness, type TestService, startNuve } from './helpers/nuve-harness.js';

let h: NuveHarness;
let tenant: TestService;
let other: TestService;

before(async () => {
  h = await startNuve({ nuve: { authWindowSec: 60 } });
  tenant = await h.createService('tenant-a');
  other = await h.createService('tenant-b');
});
after(async () => h.close());

const cnonce = () => randomBytes(8).toString('hex');

function refused(res: CallResult, code: string): void {
  assert.equal(res.status, 401, res.text);
  assert.equal(res.json?.code, code, res.text);
  assert.equal(typeof res.json?.message, 'string');
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  assert.match(res.headers.get('www-authenticate') ?? '', /^MAuth realm=/);
}

describe('MAuth', () => {
  test('a correctly signed request is accepted', async () => {
    const res = await h.call('GET', '/rooms', { service: tenant.id });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, []);
  });

  test('the header parser reads Licode headers, base64 padding included', () => {
    const header = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, username: 'bob', role: 'viewer', cnonce: '42' });
    const params = parseMAuthHeader(header);
    assert.ok(params);
    assert.equal(params.serviceId, tenant.id);
    assert.equal(params.cnonce, '42');
    assert.equal(params.username, 'bob');
    assert.equal(params.role, 'viewer');
    assert.equal(params.signatureMethod, 'HMAC_SHA1');
    assert.match(params.signature, /==$/);
    assert.equal(parseMAuthHeader('Basic abc'), undefined);
    assert.equal(parseMAuthHeader('MAuth realm=x,mauth_serviceid=1'), undefined);
  });

  test('a missing or malformed header is refused', async () => {
    refused(await h.call('GET', '/rooms', { authorization: false }), 'AUTH_MISSING');
    refused(await h.call('GET', '/rooms', { authorization: 'Bearer abc' }), 'AUTH_MISSING');
    refused(
      await h.call('GET', '/rooms', { authorization: `MAuth realm=x,mauth_serviceid=${tenant.id},mauth_cnonce=1` }),
      'AUTH_MISSING',
    );
  });

  test('a bad signature is refused', async () => {
    refused(await h.call('GET', '/rooms', { service: tenant.id, key: 'not-the-key-of-this-service' }), 'AUTH_BAD_SIGNATURE');
    const good = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: cnonce() });
    const flipped = good.replace(/mauth_signature=(.)/, (_, c: string) => `mauth_signature=${c === 'A' ? 'B' : 'A'}`);
    refused(await h.call('GET', '/rooms', { authorization: flipped }), 'AUTH_BAD_SIGNATURE');
  });

  test('only HMAC_SHA1 is accepted as signature method', async () => {
    const header = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: cnonce() }).replace(
      'HMAC_SHA1',
      'HMAC_SHA256',
    );
    refused(await h.call('GET', '/rooms', { authorization: header }), 'AUTH_UNSUPPORTED_METHOD');
  });

  test('a stale, future or non-numeric timestamp is refused', async () => {
    refused(await h.call('GET', '/rooms', { service: tenant.id, timestamp: Date.now() - 61_000 }), 'AUTH_STALE_TIMESTAMP');
    refused(await h.call('GET', '/rooms', { service: tenant.id, timestamp: Date.now() + 61_000 }), 'AUTH_STALE_TIMESTAMP');
    const ts = Date.now();
    const header = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: '1', timestamp: ts }).replace(
      `mauth_timestamp=${ts}`,
      `mauth_timestamp=${ts}x`,
    );
    refused(await h.call('GET', '/rooms', { authorization: header }), 'AUTH_STALE_TIMESTAMP');
    // Inside the window, seconds off, is fine (clock skew between app server and Nuve)...
    assert.equal((await h.call('GET', '/rooms', { service: tenant.id, timestamp: Date.now() + 30_000 })).status, 200);
    // ...except a timestamp from before this Nuve started: its replay guard cannot know whether it saw it.
    refused(await h.call('GET', '/rooms', { service: tenant.id, timestamp: Date.now() - 30_000 }), 'AUTH_STALE_TIMESTAMP');
  });

  test('replaying the same timestamp and cnonce is refused; another cnonce at the same time is not', async () => {
    const timestamp = Date.now();
    const header = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: '777', timestamp });
    assert.equal((await h.call('GET', '/rooms', { authorization: header })).status, 200);
    refused(await h.call('GET', '/rooms', { authorization: header }), 'AUTH_REPLAYED');
    refused(await h.call('POST', '/rooms', { authorization: header, body: { name: 'replayed' } }), 'AUTH_REPLAYED');
    const sibling = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, cnonce: '778', timestamp });
    assert.equal((await h.call('GET', '/rooms', { authorization: sibling })).status, 200);
    // Another service may use the same timestamp and cnonce.
    const otherHeader = buildMAuthHeader({ serviceId: other.id, key: other.key, cnonce: '777', timestamp });
    assert.equal((await h.call('GET', '/rooms', { authorization: otherHeader })).status, 200);
  });

  test('concurrent requests of one service with Licode-style cnonces all pass (no ordering requirement)', async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => h.call('GET', '/rooms', { service: tenant.id, cnonce: String(i) })),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      results.map(() => 200),
    );
  });

  test('a refused signature does not burn its cnonce', async () => {
    const timestamp = Date.now();
    refused(
      await h.call('GET', '/rooms', { service: tenant.id, key: other.key, cnonce: 'burn', timestamp }),
      'AUTH_BAD_SIGNATURE',
    );
    assert.equal((await h.call('GET', '/rooms', { service: tenant.id, cnonce: 'burn', timestamp })).status, 200);
  });

  test('an unknown service is refused', async () => {
    refused(await h.call('GET', '/rooms', { service: 'f'.repeat(24), key: tenant.key }), 'AUTH_BAD_SIGNATURE');
    refused(await h.call('GET', '/rooms', { service: 'not-an-id', key: tenant.key }), 'AUTH_BAD_SIGNATURE');
  });

  test("another tenant's key does not sign for this tenant", async () => {
    refused(await h.call('GET', '/rooms', { service: tenant.id, key: other.key }), 'AUTH_BAD_SIGNATURE');
    refused(await h.call('GET', '/rooms', { service: other.id, key: tenant.key }), 'AUTH_BAD_SIGNATURE');
    refused(await h.call('GET', '/rooms', { service: tenant.id, key: h.superService.key }), 'AUTH_BAD_SIGNATURE');
  });

  test('username and role are covered by the signature', async () => {
    const roomId = await h.createRoom(tenant);
    const header = buildMAuthHeader({ serviceId: tenant.id, key: tenant.key, username: 'alice', role: 'viewer', cnonce: cnonce() });
    refused(
      await h.call('POST', `/rooms/${roomId}/tokens`, { authorization: header.replace('mauth_role=viewer', 'mauth_role=presenter') }),
      'AUTH_BAD_SIGNATURE',
    );
    refused(
      await h.call('POST', `/rooms/${roomId}/tokens`, { authorization: header.replace('mauth_username=alice', 'mauth_username=mallory') }),
      'AUTH_BAD_SIGNATURE',
    );
    assert.equal((await h.call('POST', `/rooms/${roomId}/tokens`, { authorization: header })).status, 200);
  });

  test('an over-long cnonce is refused', async () => {
    refused(await h.call('GET', '/rooms', { service: tenant.id, cnonce: 'x'.repeat(65) }), 'AUTH_MISSING');
  });

  test('the signature is base64 of the hex HMAC-SHA1, as Licode computes it', () => {
    assert.equal(mauthSignature('1', ['1', '1']), 'NDg2YTMzNjQ4OThhOTA1ZmY5MWM3OTcwZjY2MWVmZDdhN2RhZTI1Mw==');
    assert.equal(mauthSignature('1', ['2', '1']), 'OGM3NDQ1MTliNDI1OTUyMmQyY2YwYjQ1ZjJhNzdhYzBiNjBkNDM4Mg==');
  });

  test('a deleted service can no longer authenticate', async () => {
    const doomed = await h.createService('doomed');
    assert.equal((await h.call('GET', '/rooms', { service: doomed.id })).status, 200);
    assert.equal((await h.call('DELETE', `/services/${doomed.id}`)).status, 200);
    refused(await h.call('GET', '/rooms', { service: doomed.id }), 'AUTH_BAD_SIGNATURE');
  });

  test('/openapi.json and /health need no authentication', async () => {
    assert.equal((await h.call('GET', '/openapi.json', { authorization: false })).status, 200);
    const health = await h.call('GET', '/health', { authorization: false });
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');
  });
});
