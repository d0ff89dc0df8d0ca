import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { waitFor } from './helpers/browser.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';

// The HTTP side of the playground: dev endpoints, the status API and the SDK bundles (no browser needed).

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', text, json };
}

describe('embedded dev mode (nuve.devEndpoints)', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded({ nuve: { port: 0, devEndpoints: true } });
  });
  after(async () => platform?.close());

  test('POST /dev/rooms creates a room, or returns the one with that name', async () => {
    const a = await call(platform.nuveUrl, 'POST', '/dev/rooms', { name: 'lobby' });
    assert.equal(a.status, 200);
    assert.equal(a.json.created, true);
    assert.match(a.json._id, /^[0-9a-f]{24}$/);
    const b = await call(platform.nuveUrl, 'POST', '/dev/rooms', { name: 'lobby' });
    assert.deepEqual([b.json._id, b.json.created], [a.json._id, false]);
    const unnamed = await call(platform.nuveUrl, 'POST', '/dev/rooms', {});
    assert.equal(unnamed.json.created, true);
    assert.notEqual(unnamed.json._id, a.json._id);
    const list = await call(platform.nuveUrl, 'GET', '/dev/rooms');
    assert.deepEqual(new Set(list.json.map((r: { _id: string }) => r._id)), new Set([a.json._id, unnamed.json._id]));
    // They are the superService's rooms, as the MAuth API shows them.
    const su = platform.nuve!.superServiceRecord;
    const viaApi = await call(platform.nuveUrl, 'GET', `/rooms/${a.json._id}`, undefined, {
      authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce: 'dev-rooms-1' }),
    });
    assert.equal(viaApi.status, 200);
  });

  test('POST /dev/tokens issues a token naming the gateway, user and role', async () => {
    const room = await call(platform.nuveUrl, 'POST', '/dev/rooms', { name: 'tokens' });
    const res = await call(platform.nuveUrl, 'POST', '/dev/tokens', { roomId: room.json._id, user: 'ada', role: 'viewer' });
    assert.equal(res.status, 200);
    const claims = JSON.parse(Buffer.from(res.json.token, 'base64').toString('utf8'));
    assert.equal(claims.gatewayUrl, platform.gateway!.publicUrl);
    assert.deepEqual([claims.roomId, claims.userName, claims.role], [room.json._id, 'ada', 'viewer']);
    assert.equal((await call(platform.nuveUrl, 'POST', '/dev/tokens', { roomId: room.json._id, user: 'ada', role: 'admin' })).status, 400);
    assert.equal((await call(platform.nuveUrl, 'POST', '/dev/tokens', { roomId: 'ffffffffffffffffffffffff', user: 'ada' })).json.code, 'ROOM_NOT_FOUND');
  });

  test('GET /status is open and shows the gateway, the agent with its workers, and totals', async () => {
    const status = await waitFor('the agent in /status', async () => {
      const res = await call(platform.nuveUrl, 'GET', '/status');
      assert.equal(res.status, 200);
      return res.json.agents.length === 1 ? res.json : undefined;
    });
    assert.equal(status.gateways.length, 1);
    assert.equal(status.gateways[0].id, platform.gateway!.id);
    assert.equal(status.gateways[0].url, platform.gateway!.publicUrl);
    const agent = status.agents[0];
    assert.equal(agent.id, platform.agent!.id);
    for (const key of ['workers', 'routers', 'transports', 'producers', 'consumers', 'peers', 'cpu']) assert.equal(typeof agent[key], 'number', key);
    assert.equal(agent.workers, 1);
    assert.deepEqual(
      Object.keys(status.totals).sort(),
      ['agents', 'consumers', 'gateways', 'peers', 'producers', 'rooms', 'routers', 'transports', 'workers'],
    );
    assert.equal(status.totals.workers, 1);
    // No secrets: no service keys, tokens or user names anywhere.
    assert.doesNotMatch(JSON.stringify(status), new RegExp(platform.nuve!.superServiceRecord.key.replace(/[-_]/g, '.')));
  });

  test('the playground page and the SDK bundles (ESM and one script) are served', async () => {
    const page = await call(platform.nuveUrl, 'GET', '/');
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
    assert.match(page.text, /<script type="module" src="\/playground\/app\.js">/);
    const app = await call(platform.nuveUrl, 'GET', '/playground/app.js');
    assert.match(app.type, /^text\/javascript/);
    assert.ok(/from\s*"\/sdk\/mediasoup-signal\.mjs"/.test(app.text), 'the playground imports the SDK module');
    const esm = await call(platform.nuveUrl, 'GET', '/sdk/mediasoup-signal.mjs');
    assert.match(esm.type, /^text\/javascript/);
    // (assert.ok rather than match: a failure must not print 230 kB of bundle)
    assert.ok(/export\s*\{[^}]*\bRoomClient\b/.test(esm.text), 'the ES module exports RoomClient');
    const script = await call(platform.nuveUrl, 'GET', '/sdk/mediasoup-signal.js');
    assert.match(script.type, /^text\/javascript/);
    assert.ok(/^("use strict";)?var MediasoupSignal\s*=/.test(script.text), 'the script defines window.MediasoupSignal');
    // Typed against the gateway's schemas without shipping them: no zod in the bundle.
    assert.ok(!/ZodError/.test(esm.text), 'no zod in the SDK bundle');
    assert.equal((await call(platform.nuveUrl, 'GET', '/sdk/mediasoup-signal.mjs.map')).status, 200);
    assert.equal((await call(platform.nuveUrl, 'GET', '/sdk/nothing.js')).status, 404);
    assert.equal((await call(platform.nuveUrl, 'GET', '/playground/style.css')).type.startsWith('text/css'), true);
  });
});

describe('without dev endpoints (cluster mode)', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded();
  });
  after(async () => platform?.close());

  test('no dev endpoints and no playground; the SDK is still served', async () => {
    assert.equal((await call(platform.nuveUrl, 'POST', '/dev/rooms', { name: 'x' })).status, 404);
    assert.equal((await call(platform.nuveUrl, 'POST', '/dev/tokens', { roomId: 'x', user: 'y' })).status, 404);
    assert.equal((await call(platform.nuveUrl, 'GET', '/')).status, 404);
    assert.equal((await call(platform.nuveUrl, 'GET', '/sdk/mediasoup-signal.mjs')).status, 200);
  });

  test('GET /status needs the superService: 401 without MAuth, 403 for a tenant, 200 for the superService', async () => {
    assert.equal((await call(platform.nuveUrl, 'GET', '/status')).status, 401);
    const su = platform.nuve!.superServiceRecord;
    const suAuth = (cnonce: string) => ({ authorization: buildMAuthHeader({ serviceId: su.id, key: su.key, cnonce }) });
    const tenantKey = 'tenant-key-0123456789abcdef';
    const created = await call(platform.nuveUrl, 'POST', '/services', { name: 'tenant', key: tenantKey }, suAuth('status-1'));
    assert.equal(created.status, 200);
    const tenantId = typeof created.json === 'string' ? created.json : created.json._id;
    const asTenant = await call(platform.nuveUrl, 'GET', '/status', undefined, {
      authorization: buildMAuthHeader({ serviceId: tenantId, key: tenantKey, cnonce: 'status-2' }),
    });
    assert.equal(asTenant.status, 403);
    const asSuper = await call(platform.nuveUrl, 'GET', '/status', undefined, suAuth('status-3'));
    assert.equal(asSuper.status, 200);
    assert.equal(asSuper.json.gateways[0].id, platform.gateway!.id);
  });
});
