import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../src/core/errors.js';
import { subjects } from '../src/core/subjects.js';
import { type IssuedClaims, encodeToken } from '../src/nuve/access-token.js';
import { newTokenId } from '../src/nuve/token-issuer.js';
import {
  type NuveHarness,
  type TestService,
  decodeTokenText,
  encodeTokenText,
  startNuve,
  waitFor,
} from './helpers/nuve-harness.js';

/** Rejects with an AppError carrying `code`, as the gateway sees it over the bus. */
async function refusedWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AppError, `AppError expected, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

const gatewayOf = (token: string) => decodeTokenText(token).gatewayId as string;

/** Rooms created (with a token each) until `count` of them land on `gatewayId`. */
async function roomsLandingOn(h: NuveHarness, gatewayId: string, count = 1): Promise<string[]> {
  const found: string[] = [];
  for (let i = 0; i < 200 && found.length < count; i++) {
    const room = await h.createRoom(undefined, `probe-${i}`);
    if (gatewayOf(await h.createToken(room)) === gatewayId) found.push(room);
  }
  assert.equal(found.length, count, `no room landed on ${gatewayId}`);
  return found;
}

describe('one-time tokens', () => {
  let h: NuveHarness;
  let tenant: TestService;
  let other: TestService;
  let roomId: string;

  before(async () => {
    h = await startNuve({ gateways: [{ id: 'gw-1' }] });
    tenant = await h.createService('tenant');
    other = await h.createService('other');
    roomId = await h.createRoom(tenant, 'meeting', { eapolicy: 'ROOM-BEST' });
  });
  after(async () => h.close());

  test('a token is consumed once by its gateway and tells it who joins where', async () => {
    const token = await h.createToken(roomId, tenant, 'alice', 'viewer');
    const claims = decodeTokenText(token);
    const grant = await h.consume(token, 'gw-1');
    assert.deepEqual(grant, {
      tokenId: claims.tokenId,
      serviceId: tenant.id,
      roomId,
      roomName: 'meeting',
      userName: 'alice',
      role: 'viewer',
      permissions: { publish: false, subscribe: true, publishData: false, record: false },
      eapolicy: 'ROOM-BEST',
    });
    assert.deepEqual(claims.permissions, grant.permissions, 'the token carries them too, signed');
    await refusedWith(h.consume(token, 'gw-1'), 'TOKEN_ALREADY_USED');
  });

  test('a token signed before permissions existed (during a rolling upgrade) gets its role’s permissions', async () => {
    const { signature: _, permissions: _p, ...claims } = decodeTokenText(await h.createToken(roomId, tenant, 'alice', 'presenter'));
    // Signed as Nuves before permissions did: over the other claims alone, in their order.
    const order = ['tokenId', 'serviceId', 'roomId', 'userName', 'role', 'gatewayId', 'gatewayUrl', 'host', 'secure', 'eapolicy', 'expiresAt'];
    const signature = createHmac('sha256', tenant.key).update(JSON.stringify(order.map((k) => claims[k]))).digest('base64url');
    const grant = await h.consume(encodeTokenText({ ...claims, signature }), 'gw-1');
    assert.deepEqual(grant.permissions, { publish: true, subscribe: true, publishData: true, record: true });
  });

  test('racing consumers of one token: exactly one wins', async () => {
    const token = await h.createToken(roomId, tenant);
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, () => h.consume(token, 'gw-1')));
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
    for (const o of outcomes) {
      if (o.status === 'rejected') assert.equal((o.reason as AppError).code, 'TOKEN_ALREADY_USED');
    }
  });

  test('another gateway cannot use it, and trying does not spend it', async () => {
    const token = await h.createToken(roomId, tenant);
    await refusedWith(h.consume(token, 'gw-elsewhere'), 'TOKEN_WRONG_GATEWAY');
    assert.equal((await h.consume(token, 'gw-1')).userName, 'alice');
  });

  test('any altered field breaks the signature; the untouched token still works', async () => {
    const token = await h.createToken(roomId, tenant, 'alice', 'viewer');
    const claims = decodeTokenText(token);
    const tampered: Record<string, unknown>[] = [
      { ...claims, eapolicy: 'TTL-BEST' },
      { ...claims, role: 'presenter' },
      { ...claims, role: 'admin' },
      { ...claims, permissions: { ...(claims.permissions as object), publish: true } },
      (({ permissions: _p, ...rest }) => rest)(claims),
      { ...claims, userName: 'mallory' },
      { ...claims, expiresAt: (claims.expiresAt as number) + 3_600_000 },
      { ...claims, host: 'evil.example:443', secure: true },
      { ...claims, roomId: await h.createRoom(tenant, 'other room') },
      { ...claims, signature: (claims.signature as string).replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) },
    ];
    for (const fields of tampered) await refusedWith(h.consume(encodeTokenText(fields), 'gw-1'), 'TOKEN_BAD_SIGNATURE');
    // Moving it to another gateway needs a signature too.
    await refusedWith(h.consume(encodeTokenText({ ...claims, gatewayId: 'gw-2' }), 'gw-2'), 'TOKEN_BAD_SIGNATURE');
    assert.equal((await h.consume(token, 'gw-1')).role, 'viewer');
  });

  test('malformed tokens and requests are refused as malformed', async () => {
    const claims = decodeTokenText(await h.createToken(roomId, tenant));
    const { signature: _signature, ...unsigned } = claims;
    await refusedWith(h.consume(encodeTokenText(unsigned), 'gw-1'), 'TOKEN_MALFORMED');
    await refusedWith(h.consume(encodeTokenText({ ...claims, role: 'ad,min' }), 'gw-1'), 'TOKEN_MALFORMED');
    await refusedWith(h.consume(encodeTokenText({ ...claims, permissions: { publish: true } }), 'gw-1'), 'TOKEN_MALFORMED');
    await refusedWith(h.consume(encodeTokenText({ ...claims, extra: 1 }), 'gw-1'), 'TOKEN_MALFORMED');
    await refusedWith(h.consume('%%% not base64 %%%', 'gw-1'), 'TOKEN_MALFORMED');
    await refusedWith(h.consume(Buffer.from('[1,2]').toString('base64'), 'gw-1'), 'TOKEN_MALFORMED');
    await refusedWith(h.bus.request(subjects.tokenConsume, { token: 'x' }), 'TOKEN_MALFORMED');
    await refusedWith(h.bus.request(subjects.tokenConsume, 'just a string'), 'TOKEN_MALFORMED');
  });

  test("the superService's key cannot sign for another tenant's room", async () => {
    const real = decodeTokenText(await h.createToken(roomId, tenant, 'alice', 'presenter'));
    const { signature: _s, ...claims } = real;
    const forged = encodeToken(claims as unknown as IssuedClaims, h.superService.key);
    await refusedWith(h.consume(forged, 'gw-1'), 'TOKEN_BAD_SIGNATURE');
    // Nor another tenant's key.
    await refusedWith(h.consume(encodeToken(claims as unknown as IssuedClaims, other.key), 'gw-1'), 'TOKEN_BAD_SIGNATURE');
    // A token the super service signs for itself, naming this room, was never issued: nothing to consume.
    const minted = encodeToken(
      { ...(claims as unknown as IssuedClaims), serviceId: h.superService.id, tokenId: newTokenId() },
      h.superService.key,
    );
    await refusedWith(h.consume(minted, 'gw-1'), 'TOKEN_ALREADY_USED');
  });

  test('deleting the room or the service voids its tokens', async () => {
    const svc = await h.createService('temporary');
    const room = await h.createRoom(svc);
    const byRoom = await h.createToken(room, svc);
    const byService = await h.createToken(room, svc);
    assert.equal((await h.call('DELETE', `/rooms/${room}`, { service: svc.id })).status, 200);
    await refusedWith(h.consume(byRoom, 'gw-1'), 'TOKEN_ALREADY_USED');
    assert.equal((await h.call('DELETE', `/services/${svc.id}`)).status, 200);
    await refusedWith(h.consume(byService, 'gw-1'), 'TOKEN_BAD_SIGNATURE');
  });

  test('500 parallel token requests: all succeed, no duplicate ids, each usable once', async () => {
    const rooms = [roomId, await h.createRoom(tenant, 'second')];
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        h.call('POST', `/rooms/${rooms[i % 2]}/tokens`, { service: tenant.id, username: `u${i}`, role: 'presenter' }),
      ),
    );
    assert.deepEqual(
      [...new Set(results.map((r) => r.status))],
      [200],
      results.find((r) => r.status !== 200)?.text,
    );
    const ids = results.map((r) => decodeTokenText(r.text).tokenId);
    assert.equal(new Set(ids).size, 500);
    const grants = await Promise.all(results.map((r) => h.consume(r.text, 'gw-1')));
    assert.equal(new Set(grants.map((g) => g.userName)).size, 500);
  });
});

describe('token expiry', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve({ nuve: { tokenTtlSec: 1 } });
  });
  after(async () => h.close());

  test('a token past its lifetime is refused as expired', async () => {
    const room = await h.createRoom();
    const stale = await h.createToken(room);
    const fresh = await h.createToken(room);
    assert.ok((decodeTokenText(stale).expiresAt as number) <= Date.now() + 1000);
    assert.equal((await h.consume(fresh, 'gw-1')).userName, 'alice');
    await sleep(1100);
    await refusedWith(h.consume(stale, 'gw-1'), 'TOKEN_EXPIRED');
  });
});

describe('tokens on PostgreSQL', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve({ store: 'postgres' });
  });
  after(async () => h.close());

  test('500 parallel token requests: unique ids, one gateway, one use each', async () => {
    const room = await h.createRoom();
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => h.call('POST', `/rooms/${room}/tokens`, { username: `u${i}`, role: 'viewer' })),
    );
    assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
    assert.equal(new Set(results.map((r) => decodeTokenText(r.text).tokenId)).size, 500);
    const first = results[0]!.text;
    assert.equal((await h.consume(first, 'gw-1')).role, 'viewer');
    await refusedWith(h.consume(first, 'gw-1'), 'TOKEN_ALREADY_USED');
  });
});

describe('gateway choice', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve({
      gateways: [
        { id: 'gw-a', weight: 1 },
        { id: 'gw-b', weight: 1 },
        { id: 'gw-c', weight: 2 },
      ],
    });
  });
  after(async () => h.close());

  const roomsOn = (gatewayId: string, count = 1) => roomsLandingOn(h, gatewayId, count);

  test('a room keeps its gateway across many tokens', async () => {
    for (let r = 0; r < 5; r++) {
      const room = await h.createRoom(undefined, `sticky-${r}`);
      const tokens = await Promise.all(Array.from({ length: 30 }, (_, i) => h.createToken(room, undefined, `u${i}`)));
      const gateways = new Set(tokens.map(gatewayOf));
      assert.equal(gateways.size, 1, `room ${r} spread over ${[...gateways].join(',')}`);
      const stored = await h.store.getRoom(h.superService.id, room);
      assert.equal(stored?.gatewayId, [...gateways][0]);
    }
  });

  test('new rooms spread over the gateways by weight', async () => {
    const counts: Record<string, number> = { 'gw-a': 0, 'gw-b': 0, 'gw-c': 0 };
    const n = 300;
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const room = await h.createRoom(undefined, `spread-${i}`);
        counts[gatewayOf(await h.createToken(room))]!++;
      }),
    );
    const share = (id: string) => counts[id]! / n;
    assert.ok(share('gw-c') > 0.35 && share('gw-c') < 0.65, `weight 2 share ${JSON.stringify(counts)}`);
    for (const id of ['gw-a', 'gw-b']) assert.ok(share(id) > 0.12 && share(id) < 0.4, `weight 1 share ${JSON.stringify(counts)}`);
  });

  test('a draining gateway gets no new rooms but keeps its own', async () => {
    const [kept] = await roomsOn('gw-b');
    const gwB = h.gateways.find((g) => g.id === 'gw-b')!;
    await gwB.setState('draining');
    try {
      for (let i = 0; i < 5; i++) assert.equal(gatewayOf(await h.createToken(kept!, undefined, `late${i}`)), 'gw-b');
      for (let i = 0; i < 60; i++) {
        const room = await h.createRoom(undefined, `while-draining-${i}`);
        assert.notEqual(gatewayOf(await h.createToken(room)), 'gw-b');
      }
    } finally {
      await gwB.setState('available');
    }
  });

  test('a room whose gateway was released while a token was being issued still gets one', async () => {
    const room = await h.createRoom(undefined, 'race');
    await h.createToken(room);
    const stale = (await h.store.getRoom(h.superService.id, room))!;
    // The gateway vanished and its rooms were released after this record was read.
    const vanished = { ...stale, gatewayId: 'gw-vanished' };
    await h.store.releaseGateway(stale.gatewayId!);
    const chosen = await h.nuve.tokens.gatewayFor(vanished);
    assert.ok(h.nuve.registry.get(chosen.id));
    assert.equal((await h.store.getRoom(h.superService.id, room))?.gatewayId, chosen.id);
  });

  test('a gateway saying goodbye is removed at once', async () => {
    const extra = await h.addGateway('gw-bye');
    extra.stop();
    await waitFor(() => h.nuve.registry.get('gw-bye') === undefined, 1000, 'gw-bye removed');
  });
});

describe('gateway keepalive timeout', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve({
      nuve: { gatewayTimeoutMs: 500 },
      keepaliveMs: 50,
      gateways: [{ id: 'gw-a' }, { id: 'gw-b' }, { id: 'gw-c' }],
    });
  });
  after(async () => h.close());

  const roomsOn = (gatewayId: string, count = 1) => roomsLandingOn(h, gatewayId, count);

  test('a gateway that misses its keepalives is removed and its rooms move', async () => {
    const [moving] = await roomsOn('gw-a');
    const gwA = h.gateways.find((g) => g.id === 'gw-a')!;
    const before = await h.createToken(moving!);
    gwA.cut();
    await waitFor(() => h.nuve.registry.get('gw-a') === undefined, 3000, 'gw-a timed out');
    await waitFor(async () => (await h.store.getRoom(h.superService.id, moving!))?.gatewayId === null, 2000, 'room released');
    const after = await h.createToken(moving!);
    const target = gatewayOf(after);
    assert.ok(['gw-b', 'gw-c'].includes(target), target);
    assert.equal((await h.consume(after, target)).roomId, moving);
    await refusedWith(h.consume(before, target), 'TOKEN_WRONG_GATEWAY');
    // And it stays on its new gateway.
    for (let i = 0; i < 5; i++) assert.equal(gatewayOf(await h.createToken(moving!)), target);
    // No new room lands on the missing gateway.
    for (let i = 0; i < 30; i++) {
      const room = await h.createRoom(undefined, `after-timeout-${i}`);
      assert.notEqual(gatewayOf(await h.createToken(room)), 'gw-a');
    }
  });

});

describe('no gateway', () => {
  let h: NuveHarness;
  before(async () => {
    h = await startNuve({ gateways: [] });
  });
  after(async () => h.close());

  test('without an available gateway a token cannot be issued', async () => {
    const room = await h.createRoom();
    const res = await h.call('POST', `/rooms/${room}/tokens`, { username: 'alice', role: 'presenter' });
    assert.equal(res.status, 404, res.text);
    assert.equal(res.json.code, 'NO_GATEWAY_AVAILABLE');
    const only = await h.addGateway('gw-only');
    await only.setState('draining');
    const again = await h.call('POST', `/rooms/${room}/tokens`, { username: 'alice', role: 'presenter' });
    assert.equal(again.json.code, 'NO_GATEWAY_AVAILABLE', 'a draining gateway takes no new room');
    await only.setState('available');
    assert.equal(gatewayOf(await h.createToken(room)), 'gw-only');
  });
});
