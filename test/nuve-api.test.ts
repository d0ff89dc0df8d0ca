import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AppError } from '../src/core/errors.js';
import type { GatewayRpc } from '../src/core/subjects.js';
import {
  type CallOptions,
  type CallResult,
  type HarnessGateway,
  type NuveHarness,
  type TestService,
  decodeTokenText,
  startNuve,
  waitFor,
} from './helpers/nuve-harness.js';

let h: NuveHarness;
let gw: HarnessGateway;
let tenantA: TestService;
let tenantB: TestService;

before(async () => {
  h = await startNuve({ gateways: [{ id: 'gw-api' }] });
  gw = h.gateways[0]!;
  tenantA = await h.createService('tenant-a');
  tenantB = await h.createService('tenant-b');
});
after(async () => h.close());

const as = (service: TestService, extra: CallOptions = {}): CallOptions => ({ service: service.id, key: service.key, ...extra });

/** A JSON error with a stable code. */
function fails(res: CallResult, status: number, code: string): void {
  assert.equal(res.status, status, `${res.status} ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, res.text);
  assert.equal(res.json?.code, code, res.text);
  assert.equal(typeof res.json?.message, 'string');
}

function text(res: CallResult, expected: string): void {
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, expected);
}

/** Users as a gateway keeps them: the responder answers listUsers/kickUser for rooms it hosts. */
function fakeGatewayUsers(gateway: HarnessGateway, users: Map<string, { name: string; role: 'presenter' | 'viewer' }[]>) {
  const calls: GatewayRpc[] = [];
  const subscription = gateway.respond((rpc) => {
    calls.push(rpc);
    const list = users.get(rpc.roomId) ?? [];
    switch (rpc.method) {
      case 'listUsers':
        return list.map((u) => ({
          ...u,
          permissions: u.role === 'presenter' ? { publish: true, subscribe: true } : { subscribe: true },
        }));
      case 'kickUser': {
        const kicked = list.filter((u) => u.name === rpc.userName).length;
        users.set(
          rpc.roomId,
          list.filter((u) => u.name !== rpc.userName),
        );
        return kicked;
      }
      case 'closeRoom':
        users.delete(rpc.roomId);
        return null;
      default:
        throw new AppError('UNKNOWN_METHOD');
    }
  });
  return { calls, subscription };
}

describe('rooms', () => {
  test('POST /rooms creates a room shaped as Licode shows it', async () => {
    const res = await h.call('POST', '/rooms', as(tenantA, { body: { name: 'basic' } }));
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(Object.keys(res.json), ['name', 'eapolicy', '_id']);
    assert.equal(res.json.name, 'basic');
    assert.equal(res.json.eapolicy, 'ROOM-BEST');
    assert.match(res.json._id, /^[0-9a-f]{24}$/);
  });

  test('POST /rooms keeps the options', async () => {
    const options = { p2p: true, data: { topic: 'x', n: [1, 2] }, mediaConfiguration: 'VP8_AND_OPUS', eapolicy: 'TTL-BEST', test: false };
    const res = await h.call('POST', '/rooms', as(tenantA, { body: { name: 'full', options } }));
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, {
      name: 'full',
      p2p: true,
      data: { topic: 'x', n: [1, 2] },
      mediaConfiguration: 'VP8_AND_OPUS',
      eapolicy: 'TTL-BEST',
      _id: res.json._id,
    });
  });

  test('POST /rooms refuses bad input with stable codes', async () => {
    const post = (extra: CallOptions) => h.call('POST', '/rooms', as(tenantA, extra));
    fails(await post({ body: {} }), 400, 'VALIDATION_FAILED');
    fails(await post({ body: { name: 42 } }), 400, 'VALIDATION_FAILED');
    fails(await post({ body: { name: '   ' } }), 400, 'VALIDATION_FAILED');
    fails(await post({ body: { name: 'x', options: { p2p: 'yes' } } }), 400, 'VALIDATION_FAILED');
    fails(await post({ body: { name: 'x', options: { eapolicy: 'FASTEST' } } }), 400, 'VALIDATION_FAILED');
    fails(await post({ body: { name: 'x', options: { mediaConfiguration: 7 } } }), 400, 'VALIDATION_FAILED');
    fails(await post({ body: ['name'] }), 400, 'VALIDATION_FAILED');
    fails(await post({ rawBody: '{"name": "unterminated' }), 400, 'MALFORMED_JSON');
    fails(await post({ rawBody: '' }), 400, 'MALFORMED_JSON');
    fails(await post({ rawBody: '<name>x</name>', contentType: 'application/xml' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    fails(await post({ rawBody: 'name=x', contentType: 'text/plain' }), 400, 'VALIDATION_FAILED');
    const big = JSON.stringify({ name: 'big', options: { data: 'x'.repeat(h.config.nuve.bodyLimitBytes) } });
    fails(await post({ rawBody: big }), 413, 'BODY_TOO_LARGE');
    const validation = await post({ body: { name: 42 } });
    assert.ok(Array.isArray(validation.json.details), 'validation errors say what is wrong');
  });

  test('GET /rooms lists only the own rooms', async () => {
    const fresh = await h.createService('fresh');
    const empty = await h.call('GET', '/rooms', as(fresh));
    assert.equal(empty.status, 200);
    assert.equal(empty.text, '[]');
    const r1 = await h.createRoom(fresh, 'one');
    const r2 = await h.createRoom(fresh, 'two');
    const list = await h.call('GET', '/rooms', as(fresh));
    assert.deepEqual(
      list.json.map((r: { _id: string; name: string }) => [r._id, r.name]),
      [
        [r1, 'one'],
        [r2, 'two'],
      ],
    );
  });

  test('GET /rooms/:room answers the room, 404 for unknown ids, 400 for absurd ones', async () => {
    const id = await h.createRoom(tenantA, 'lookup', { data: { a: 1 } });
    const res = await h.call('GET', `/rooms/${id}`, as(tenantA));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { name: 'lookup', data: { a: 1 }, eapolicy: 'ROOM-BEST', _id: id });
    fails(await h.call('GET', `/rooms/${'0'.repeat(24)}`, as(tenantA)), 404, 'ROOM_NOT_FOUND');
    fails(await h.call('GET', '/rooms/not-even-hex', as(tenantA)), 404, 'ROOM_NOT_FOUND');
    fails(await h.call('GET', `/rooms/${'a'.repeat(65)}`, as(tenantA)), 400, 'VALIDATION_FAILED');
  });

  test('PUT /rooms/:room replaces name and given options', async () => {
    const id = await h.createRoom(tenantA, 'before', { data: { keep: 1 } });
    text(
      await h.call('PUT', `/rooms/${id}`, as(tenantA, { body: { name: 'after', options: { p2p: true, eapolicy: 'TTL-BEST' } } })),
      'Room Updated',
    );
    const res = await h.call('GET', `/rooms/${id}`, as(tenantA));
    assert.deepEqual(res.json, { name: 'after', p2p: true, data: { keep: 1 }, eapolicy: 'TTL-BEST', _id: id });
    text(await h.call('PUT', `/rooms/${id}`, as(tenantA, { body: { name: 'again', options: { data: { fresh: true } } } })), 'Room Updated');
    assert.deepEqual((await h.call('GET', `/rooms/${id}`, as(tenantA))).json.data, { fresh: true });
    fails(await h.call('PUT', `/rooms/${id}`, as(tenantA, { body: { options: {} } })), 400, 'VALIDATION_FAILED');
    fails(await h.call('PUT', `/rooms/${id}`, as(tenantA, { body: { name: ['x'] } })), 400, 'VALIDATION_FAILED');
    fails(await h.call('PUT', `/rooms/${'0'.repeat(24)}`, as(tenantA, { body: { name: 'x' } })), 404, 'ROOM_NOT_FOUND');
  });

  test('PATCH /rooms/:room changes only what is given and merges data', async () => {
    const id = await h.createRoom(tenantA, 'patchme', { data: { a: 1, b: 1 } });
    text(await h.call('PATCH', `/rooms/${id}`, as(tenantA, { body: { options: { data: { b: 2, c: 3 } } } })), 'Room Updated');
    let room = (await h.call('GET', `/rooms/${id}`, as(tenantA))).json;
    assert.deepEqual(room, { name: 'patchme', data: { a: 1, b: 2, c: 3 }, eapolicy: 'ROOM-BEST', _id: id });
    text(await h.call('PATCH', `/rooms/${id}`, as(tenantA, { body: { name: 'patched' } })), 'Room Updated');
    text(await h.call('PATCH', `/rooms/${id}`, as(tenantA)), 'Room Updated');
    room = (await h.call('GET', `/rooms/${id}`, as(tenantA))).json;
    assert.equal(room.name, 'patched');
    assert.deepEqual(room.data, { a: 1, b: 2, c: 3 });
    fails(await h.call('PATCH', `/rooms/${id}`, as(tenantA, { body: { options: { p2p: 1 } } })), 400, 'VALIDATION_FAILED');
    fails(await h.call('PATCH', `/rooms/${'0'.repeat(24)}`, as(tenantA, { body: { name: 'x' } })), 404, 'ROOM_NOT_FOUND');
  });

  test("DELETE /rooms/:room removes it and tells the room's gateway", async () => {
    const id = await h.createRoom(tenantA, 'doomed');
    await h.createToken(id, tenantA); // puts the room on the gateway
    const users = new Map([[id, [{ name: 'alice', role: 'presenter' as const }]]]);
    const fake = fakeGatewayUsers(gw, users);
    try {
      text(await h.call('DELETE', `/rooms/${id}`, as(tenantA)), 'Room deleted');
      await waitFor(() => fake.calls.some((c) => c.method === 'closeRoom' && c.roomId === id), 2000, 'closeRoom sent');
      fails(await h.call('GET', `/rooms/${id}`, as(tenantA)), 404, 'ROOM_NOT_FOUND');
      fails(await h.call('DELETE', `/rooms/${id}`, as(tenantA)), 404, 'ROOM_NOT_FOUND');
      assert.ok(!(await h.call('GET', '/rooms', as(tenantA))).json.some((r: { _id: string }) => r._id === id));
    } finally {
      fake.subscription.unsubscribe();
    }
    // A room never given a gateway is deleted without any gateway call.
    const quiet = await h.createRoom(tenantA, 'quiet');
    text(await h.call('DELETE', `/rooms/${quiet}`, as(tenantA)), 'Room deleted');
  });
});

describe('tokens', () => {
  test('POST /rooms/:room/tokens answers a base64 token naming the gateway', async () => {
    const id = await h.createRoom(tenantA, 'tokens');
    const res = await h.call('POST', `/rooms/${id}/tokens`, as(tenantA, { username: 'alice', role: 'viewer' }));
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(res.text, /^[A-Za-z0-9+/]+=*$/);
    const token = decodeTokenText(res.text);
    assert.equal(token.host, new URL(gw.url).host);
    assert.equal(token.secure, false);
    assert.equal(token.roomId, id);
    assert.equal(token.serviceId, tenantA.id);
    assert.equal(token.userName, 'alice');
    assert.equal(token.role, 'viewer');
    assert.equal(token.gatewayId, gw.id);
    assert.equal(typeof token.tokenId, 'string');
    assert.equal(typeof token.signature, 'string');
  });

  test('POST /rooms/:room/tokens errors', async () => {
    const id = await h.createRoom(tenantA, 'token-errors');
    fails(await h.call('POST', `/rooms/${id}/tokens`, as(tenantA)), 401, 'TOKEN_USER_MISSING');
    fails(await h.call('POST', `/rooms/${id}/tokens`, as(tenantA, { username: 'alice' })), 401, 'TOKEN_USER_MISSING');
    fails(await h.call('POST', `/rooms/${id}/tokens`, as(tenantA, { username: 'alice', role: 'admin' })), 400, 'INVALID_ROLE');
    fails(
      await h.call('POST', `/rooms/${id}/tokens`, as(tenantA, { username: 'x'.repeat(257), role: 'viewer' })),
      400,
      'INVALID_USER',
    );
    // HTTP lets a header value carry a tab; a user name shown to everyone in the room may not.
    fails(await h.call('POST', `/rooms/${id}/tokens`, as(tenantA, { username: 'ali\tce', role: 'viewer' })), 400, 'INVALID_USER');
    fails(
      await h.call('POST', `/rooms/${'0'.repeat(24)}/tokens`, as(tenantA, { username: 'alice', role: 'viewer' })),
      404,
      'ROOM_NOT_FOUND',
    );
  });
});

describe('services', () => {
  test('POST /services answers the new id as a JSON string; the service works at once', async () => {
    const res = await h.call('POST', '/services', { body: { name: 'acme', key: 'acme-key-0123456789' } });
    assert.equal(res.status, 200, res.text);
    assert.match(res.text, /^"[0-9a-f]{24}"$/);
    const id = JSON.parse(res.text) as string;
    assert.equal((await h.call('GET', '/rooms', { service: id, key: 'acme-key-0123456789' })).status, 200);
  });

  test('POST /services generates a key when none is given and validates input', async () => {
    const res = await h.call('POST', '/services', { body: { name: 'keyless' } });
    assert.equal(res.status, 200, res.text);
    const got = await h.call('GET', `/services/${JSON.parse(res.text)}`);
    assert.ok(got.json.key.length >= 16);
    fails(await h.call('POST', '/services', { body: { name: 'short', key: 'short' } }), 400, 'VALIDATION_FAILED');
    fails(await h.call('POST', '/services', { body: { key: 'long-enough-key-123' } }), 400, 'VALIDATION_FAILED');
    fails(await h.call('POST', '/services', { rawBody: '{name' }), 400, 'MALFORMED_JSON');
  });

  test('GET /services and /services/:service show services with their rooms', async () => {
    const svc = await h.createService('listed');
    const roomId = await h.createRoom(svc, 'inside');
    const all = await h.call('GET', '/services/');
    assert.equal(all.status, 200);
    const found = all.json.find((s: { _id: string }) => s._id === svc.id);
    assert.deepEqual(found, {
      name: 'listed',
      key: svc.key,
      rooms: [{ name: 'inside', eapolicy: 'ROOM-BEST', _id: roomId }],
      _id: svc.id,
    });
    assert.ok(all.json.some((s: { _id: string }) => s._id === h.superService.id));
    const one = await h.call('GET', `/services/${svc.id}`);
    assert.deepEqual(one.json, found);
    fails(await h.call('GET', `/services/${'0'.repeat(24)}`), 404, 'SERVICE_NOT_FOUND');
    fails(await h.call('GET', '/services/zzz'), 404, 'SERVICE_NOT_FOUND');
  });

  test('DELETE /services/:service removes the tenant with its rooms', async () => {
    const svc = await h.createService('short-lived');
    const roomId = await h.createRoom(svc);
    text(await h.call('DELETE', `/services/${svc.id}`), 'Service deleted');
    fails(await h.call('GET', `/services/${svc.id}`), 404, 'SERVICE_NOT_FOUND');
    fails(await h.call('DELETE', `/services/${svc.id}`), 404, 'SERVICE_NOT_FOUND');
    assert.equal(await h.store.getRoom(svc.id, roomId), undefined);
    fails(await h.call('DELETE', `/services/${h.superService.id}`), 403, 'SUPER_SERVICE_PROTECTED');
  });

  test('a non-super service is refused on every /services route', async () => {
    const existing = await h.createService('victim');
    for (const [method, path, body] of [
      ['POST', '/services', { name: 'sneaky', key: 'sneaky-key-0123456789' }],
      ['GET', '/services', undefined],
      ['GET', '/services/', undefined],
      ['GET', `/services/${existing.id}`, undefined],
      ['GET', `/services/${tenantA.id}`, undefined],
      ['DELETE', `/services/${existing.id}`, undefined],
    ] as const) {
      fails(await h.call(method, path, as(tenantA, { body })), 401, 'SERVICE_NOT_AUTHORIZED');
    }
    assert.equal((await h.call('GET', `/services/${existing.id}`)).status, 200, 'the victim still exists');
    assert.ok(!(await h.call('GET', '/services')).json.some((s: { name: string }) => s.name === 'sneaky'));
  });

  test('a tenant cannot reach /services by spelling the path another way (encoded, case, slashes, dot segments)', async () => {
    const victim = await h.createService('spelling-victim');
    const before = (await h.store.listServices()).length;
    const spellings = (rest: string) => [
      `/%73ervices${rest}`,
      `/%73%65%72%76%69%63%65%73${rest}`,
      `/%53ervices${rest}`,
      `/SERVICES${rest}`,
      `/Services${rest}`,
      `//services${rest}`,
      `/./services${rest}`,
      `/rooms/../services${rest}`,
      `/rooms/%2e%2e/services${rest}`,
      `/services${rest}/`,
      `/services${rest}?x=/rooms`,
      `/services${rest};x`,
      `/%2fservices${rest}`,
    ];
    const attempts: [string, string, unknown][] = [
      ...spellings('').flatMap((p): [string, string, unknown][] => [
        ['GET', p, undefined],
        ['POST', p, { name: 'usurper', key: 'usurper-key-0123456789' }],
      ]),
      ...spellings(`/${victim.id}`).flatMap((p): [string, string, unknown][] => [
        ['GET', p, undefined],
        ['DELETE', p, undefined],
      ]),
    ];
    const secrets = [h.superService.key, victim.key, tenantB.key];
    for (const [method, path, body] of attempts) {
      const res = await h.call(method, path, as(tenantA, { body }));
      assert.ok([400, 401, 403, 404].includes(res.status), `${method} ${path} answered ${res.status} ${res.text}`);
      assert.match(res.json?.code ?? '', /^[A-Z_]+$/, `${method} ${path}: a stable code (${res.text})`);
      for (const secret of secrets) assert.ok(!res.text.includes(secret), `${method} ${path} leaks a service key`);
    }
    assert.equal((await h.store.listServices()).length, before, 'no tenant was created or deleted');
    assert.ok(await h.store.getService(victim.id), 'the victim still exists');
    // The superService reaches the same routes, spelt normally or percent-encoded (the router decodes both alike).
    assert.equal((await h.call('GET', '/%73ervices')).status, 200);
    assert.equal((await h.call('GET', `/services/${victim.id}`)).json.key, victim.key);
  });
});

describe('users', () => {
  test('a room without a gateway has no users', async () => {
    const id = await h.createRoom(tenantA, 'idle');
    const res = await h.call('GET', `/rooms/${id}/users/`, as(tenantA));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, []);
    fails(await h.call('GET', `/rooms/${id}/users/alice`, as(tenantA)), 404, 'USER_NOT_FOUND');
    fails(await h.call('DELETE', `/rooms/${id}/users/alice`, as(tenantA)), 404, 'USER_NOT_FOUND');
  });

  test("users come from the room's gateway over the bus", async () => {
    const id = await h.createRoom(tenantA, 'busy');
    await h.createToken(id, tenantA);
    const users = new Map([
      [
        id,
        [
          { name: 'alice', role: 'presenter' as const },
          { name: 'bob', role: 'viewer' as const },
          { name: 'bob', role: 'viewer' as const },
        ],
      ],
    ]);
    const fake = fakeGatewayUsers(gw, users);
    try {
      const list = await h.call('GET', `/rooms/${id}/users`, as(tenantA));
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(
        list.json.map((u: { name: string }) => u.name),
        ['alice', 'bob', 'bob'],
      );
      const alice = await h.call('GET', `/rooms/${id}/users/alice`, as(tenantA));
      assert.deepEqual(alice.json, { name: 'alice', role: 'presenter', permissions: { publish: true, subscribe: true } });
      fails(await h.call('GET', `/rooms/${id}/users/carol`, as(tenantA)), 404, 'USER_NOT_FOUND');

      text(await h.call('DELETE', `/rooms/${id}/users/bob`, as(tenantA)), 'Success');
      assert.deepEqual(fake.calls.at(-1), { method: 'kickUser', roomId: id, userName: 'bob' });
      assert.deepEqual(
        (await h.call('GET', `/rooms/${id}/users`, as(tenantA))).json.map((u: { name: string }) => u.name),
        ['alice'],
      );
      fails(await h.call('DELETE', `/rooms/${id}/users/bob`, as(tenantA)), 404, 'USER_NOT_FOUND');
      fails(await h.call('GET', `/rooms/${'0'.repeat(24)}/users`, as(tenantA)), 404, 'ROOM_NOT_FOUND');
      fails(await h.call('GET', `/rooms/${'0'.repeat(24)}/users/alice`, as(tenantA)), 404, 'ROOM_NOT_FOUND');
      fails(await h.call('DELETE', `/rooms/${'0'.repeat(24)}/users/alice`, as(tenantA)), 404, 'ROOM_NOT_FOUND');
      assert.ok(fake.calls.every((c) => c.roomId === id));
    } finally {
      fake.subscription.unsubscribe();
    }
  });

  test('a gateway that does not answer gives 503 GATEWAY_UNAVAILABLE', async () => {
    const id = await h.createRoom(tenantA, 'unanswered');
    await h.createToken(id, tenantA); // assigned to gw-api, which has no rpc responder now
    fails(await h.call('GET', `/rooms/${id}/users`, as(tenantA)), 503, 'GATEWAY_UNAVAILABLE');
    fails(await h.call('GET', `/rooms/${id}/users/alice`, as(tenantA)), 503, 'GATEWAY_UNAVAILABLE');
    fails(await h.call('DELETE', `/rooms/${id}/users/alice`, as(tenantA)), 503, 'GATEWAY_UNAVAILABLE');
  });

  test('a malformed gateway answer is not passed on', async () => {
    const id = await h.createRoom(tenantA, 'garbled');
    await h.createToken(id, tenantA);
    const sub = gw.respond(() => [{ nick: 'not a user' }]);
    try {
      const res = await h.call('GET', `/rooms/${id}/users`, as(tenantA));
      assert.equal(res.status, 502, res.text);
      assert.equal(res.json.code, 'GATEWAY_UNAVAILABLE');
    } finally {
      sub.unsubscribe();
    }
  });
});

describe('tenant isolation', () => {
  test("service B can neither see nor change A's room, issue its tokens or touch its users", async () => {
    const roomA = await h.createRoom(tenantA, 'private', { data: { secret: true } });
    await h.createToken(roomA, tenantA);
    const users = new Map([[roomA, [{ name: 'alice', role: 'presenter' as const }]]]);
    const fake = fakeGatewayUsers(gw, users);
    try {
      const b = (method: string, path: string, extra: CallOptions = {}) => h.call(method, path, as(tenantB, extra));
      fails(await b('GET', `/rooms/${roomA}`), 404, 'ROOM_NOT_FOUND');
      fails(await b('PUT', `/rooms/${roomA}`, { body: { name: 'pwned' } }), 404, 'ROOM_NOT_FOUND');
      fails(await b('PATCH', `/rooms/${roomA}`, { body: { name: 'pwned', options: { data: { x: 1 } } } }), 404, 'ROOM_NOT_FOUND');
      fails(await b('DELETE', `/rooms/${roomA}`), 404, 'ROOM_NOT_FOUND');
      fails(await b('POST', `/rooms/${roomA}/tokens`, { username: 'mallory', role: 'presenter' }), 404, 'ROOM_NOT_FOUND');
      fails(await b('GET', `/rooms/${roomA}/users`), 404, 'ROOM_NOT_FOUND');
      fails(await b('GET', `/rooms/${roomA}/users/alice`), 404, 'ROOM_NOT_FOUND');
      fails(await b('DELETE', `/rooms/${roomA}/users/alice`), 404, 'ROOM_NOT_FOUND');
      assert.ok(!(await b('GET', '/rooms')).json.some((r: { _id: string }) => r._id === roomA));
      // The superService is a tenant like any other for rooms.
      fails(await h.call('GET', `/rooms/${roomA}`), 404, 'ROOM_NOT_FOUND');
      fails(await h.call('POST', `/rooms/${roomA}/tokens`, { username: 'root', role: 'presenter' }), 404, 'ROOM_NOT_FOUND');

      assert.equal(fake.calls.length, 0, 'no gateway call was made on behalf of B');
      const still = await h.call('GET', `/rooms/${roomA}`, as(tenantA));
      assert.deepEqual(still.json, { name: 'private', data: { secret: true }, eapolicy: 'ROOM-BEST', _id: roomA });
      assert.deepEqual(
        (await h.call('GET', `/rooms/${roomA}/users`, as(tenantA))).json.map((u: { name: string }) => u.name),
        ['alice'],
      );
    } finally {
      fake.subscription.unsubscribe();
    }
  });
});

describe('the HTTP surface', () => {
  test('unknown routes answer JSON 404', async () => {
    fails(await h.call('GET', '/nope'), 404, 'NOT_FOUND');
    fails(await h.call('POST', '/rooms/x/y/z'), 404, 'NOT_FOUND');
  });

  test('a flood of /health (open, never rate limited) shares store pings', async () => {
    const store = h.store as { ping(): Promise<void> };
    const ping = store.ping;
    let pings = 0;
    store.ping = async () => {
      pings++;
      await new Promise((resolve) => setTimeout(resolve, 50)); // a busy database
      return ping.call(h.store);
    };
    try {
      await new Promise((resolve) => setTimeout(resolve, 1100)); // past the reuse of earlier checks
      const answers = await Promise.all(Array.from({ length: 200 }, () => h.call('GET', '/health', { authorization: false })));
      assert.ok(answers.every((a) => a.status === 200 && a.json.status === 'ok'));
      assert.ok(pings <= 2, `${pings} store pings for 200 health checks`);
    } finally {
      store.ping = ping;
    }
  });

  test('Licode trailing slashes are accepted', async () => {
    const id = await h.createRoom(tenantA, 'slashes');
    assert.equal((await h.call('GET', '/rooms/', as(tenantA))).status, 200);
    assert.equal((await h.call('GET', `/rooms/${id}/users/`, as(tenantA))).status, 200);
    assert.equal((await h.call('GET', '/services/')).status, 200);
  });

  test('/openapi.json lists every route', async () => {
    const res = await h.call('GET', '/openapi.json', { authorization: false });
    assert.equal(res.status, 200);
    const paths = res.json.paths as Record<string, Record<string, unknown>>;
    const expected: Record<string, string[]> = {
      '/rooms': ['post', 'get'],
      '/rooms/{room}': ['get', 'put', 'patch', 'delete'],
      '/rooms/{room}/tokens': ['post'],
      '/services': ['post', 'get'],
      '/services/{service}': ['get', 'delete'],
      '/rooms/{room}/users': ['get'],
      '/rooms/{room}/users/{user}': ['get', 'delete'],
    };
    for (const [path, methods] of Object.entries(expected)) {
      assert.ok(paths[path], `${path} is documented`);
      for (const m of methods) assert.ok(paths[path]![m], `${m.toUpperCase()} ${path} is documented`);
    }
    assert.ok(res.json.components.securitySchemes.MAuth);
  });
});

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`stored text and free-form data (${engine})`, () => {
    let e: NuveHarness;
    let tenant: TestService;
    let roomId: string;
    before(async () => {
      e = await startNuve({ store: engine });
      tenant = await e.createService('hostile');
      roomId = await e.createRoom(tenant, 'target', { data: { keep: true } });
    });
    after(async () => e.close());

    const refusedAll = async (attempts: [string, string, CallOptions][]) => {
      for (const [method, path, options] of attempts) {
        const res = await e.call(method, path, { service: tenant.id, key: tenant.key, ...options });
        assert.equal(res.status, 400, `${method} ${path} ${options.body === undefined ? '' : JSON.stringify(options.body).slice(0, 80)}: ${res.status} ${res.text}`);
        assert.match(res.json?.code ?? '', /^(VALIDATION_FAILED|BAD_URL)$/, res.text);
      }
    };

    test('NUL, other control characters and unpaired surrogates are refused with 400, in bodies and paths', async () => {
      const bad = ['a\u0000b', '\u0000', 'line\nbreak', 'bell\u0007', 'del\u007f', 'half \ud800 pair', 'other half \udc00'];
      const attempts: [string, string, CallOptions][] = [];
      for (const text of bad) {
        attempts.push(['POST', '/rooms', { body: { name: text } }]);
        attempts.push(['POST', '/rooms', { body: { name: 'ok', options: { mediaConfiguration: text } } }]);
        // Free-form data is stored as JSON text, which escapes control characters; only NUL is refused there.
        if (text.includes('\u0000')) {
          attempts.push(['POST', '/rooms', { body: { name: 'ok', options: { data: { note: text } } } }]);
          attempts.push(['POST', '/rooms', { body: { name: 'ok', options: { data: { [text]: 1 } } } }]);
        }
        attempts.push(['PUT', `/rooms/${roomId}`, { body: { name: text } }]);
        attempts.push(['PATCH', `/rooms/${roomId}`, { body: { name: text } }]);
        attempts.push(['PATCH', `/rooms/${roomId}`, { body: { options: { mediaConfiguration: text } } }]);
        attempts.push(['POST', '/services', { service: e.superService.id, key: e.superService.key, body: { name: text } }]);
        attempts.push(['POST', '/services', { service: e.superService.id, key: e.superService.key, body: { name: 'ok', key: `${text}0123456789abcdef` } }]);
      }
      const encoded = encodeURIComponent('a\u0000b');
      attempts.push(['GET', `/rooms/${encoded}`, {}], ['PUT', `/rooms/${encoded}`, { body: { name: 'x' } }], ['DELETE', `/rooms/${encoded}`, {}]);
      attempts.push(['GET', `/rooms/${roomId}/users/${encoded}`, {}], ['DELETE', `/rooms/${roomId}/users/${encoded}`, {}]);
      attempts.push(['POST', `/rooms/${encoded}/tokens`, { username: 'u', role: 'presenter' }]);
      attempts.push(['GET', `/services/${encoded}`, { service: e.superService.id, key: e.superService.key }]);
      attempts.push(['DELETE', `/services/${encoded}`, { service: e.superService.id, key: e.superService.key }]);
      await refusedAll(attempts);
      const rooms = (await e.call('GET', '/rooms', { service: tenant.id, key: tenant.key })).json;
      assert.deepEqual(rooms, [{ name: 'target', data: { keep: true }, eapolicy: 'ROOM-BEST', _id: roomId }], 'nothing was stored or changed');
      // Printable Unicode (astral characters included) is fine.
      assert.equal((await e.call('PATCH', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key, body: { name: 'Zoë 会議 🎥' } })).status, 200);
      await e.call('PATCH', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key, body: { name: 'target' } });
    });

    test('deep, wide or long room data is refused with 400; the room is untouched', async () => {
      const deep = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
      const raw = (data: string) => `{"name":"deep","options":{"data":${data}}}`;
      const attempts: [string, string, CallOptions][] = [];
      for (const data of [deep(10_000), deep(9), '['.repeat(5000) + ']'.repeat(5000), JSON.stringify(Array.from({ length: 3000 }, (_, i) => i)), JSON.stringify({ s: 'x'.repeat(5000) })]) {
        attempts.push(['POST', '/rooms', { rawBody: raw(data) }], ['PUT', `/rooms/${roomId}`, { rawBody: raw(data) }], ['PATCH', `/rooms/${roomId}`, { rawBody: raw(data) }]);
      }
      await refusedAll(attempts);
      // Merged data is bounded too: two halves within the limits whose union is not.
      const half = (prefix: string) => Object.fromEntries(Array.from({ length: 1200 }, (_, i) => [`${prefix}${i}`, i]));
      assert.equal((await e.call('PATCH', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key, body: { options: { data: half('a') } } })).status, 200);
      await refusedAll([['PATCH', `/rooms/${roomId}`, { body: { options: { data: half('b') } } }]]);
      assert.equal(Object.keys((await e.call('GET', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key })).json.data).length, 1201);
      // Data within the limits is kept as given.
      const fine = { nested: { list: [1, 'two', { three: null }] }, flag: false };
      assert.equal((await e.call('PUT', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key, body: { name: 'target', options: { data: fine } } })).status, 200);
      assert.deepEqual((await e.call('GET', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key })).json.data, fine);
      await e.call('PUT', `/rooms/${roomId}`, { service: tenant.id, key: tenant.key, body: { name: 'target', options: { data: { keep: true } } } });
      assert.equal((await e.call('GET', '/health', { authorization: false })).status, 200);
    });
  });
}
