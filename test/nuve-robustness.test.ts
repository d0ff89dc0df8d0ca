/**
 * Nuve's whole REST surface under generated input. The routes are read from the
 * running app, so a new route is fuzzed at once and one missing from ROUTES
 * below fails the suite. Each request is made of a route, an identity (none,
 * each tenant, the superService, with or without a user, forged, replayed,
 * stale, garbage, ops bearer), path parameters (real ids of every tenant,
 * hostile strings), a spelling of the path (percent-encoded, case-varied,
 * duplicate slashes, dot segments, ...) and a body (valid per the route's
 * schema from the OpenAPI document, or hostile: deep, huge, NUL, unpaired
 * surrogates, wrong types, prototype keys, malformed JSON, odd content types).
 *
 * Every answer: below 500, a JSON `code` on 4xx, within a time bound; a 2xx
 * only for an identity the route admits, on a room of its own tenant; no
 * other tenant's key in any answer. Afterwards, in the store: rooms nobody
 * but other tenants touched are unchanged, no tenant appeared or vanished
 * unless the superService did it, every token issued belongs to its
 * requester's room. The process stays healthy, its heap bounded, and
 * Object.prototype unpolluted. On SQLite (with the developer endpoints) and on
 * PostgreSQL (without).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { loadConfig } from '../src/core/config.js';
import { openDatabase } from '../src/core/database.js';
import type { GatewayRpc } from '../src/core/subjects.js';
import { MemoryLocations } from '../src/push/locations.js';
import { Push } from '../src/push/push.js';
import { PushStore } from '../src/push/store.js';
import { AppError } from '../src/core/errors.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { isErrorCode } from '../src/protocol/error-codes.js';
import {
  AS_BUILT,
  HOSTILE_STRINGS,
  type Route,
  SPELLINGS,
  type Spelling,
  deep,
  encodeParam,
  fromSchema,
  heapAfterGc,
  hostileVariants,
  routesOf,
} from './helpers/hostile-http.js';
import { type CallResult, type NuveHarness, type StoreKind, type TestService, rawHttp, startNuve, testLogger } from './helpers/nuve-harness.js';

/** Who may get a 2xx from a route. `status` is open with the developer endpoints, superService-only without. */
type Access = 'public' | 'ops' | 'mauth' | 'superService' | 'status';
interface RouteSpec {
  access: Access;
  /** Its `:room` names a room that must belong to the caller's tenant. */
  roomScoped?: boolean;
}

/** Every route Nuve may have, by `METHOD /path` as fastify declares it (HEAD follows GET). */
const ROUTES: Record<string, RouteSpec> = {
  'GET /': { access: 'public' },
  'GET /openapi.json': { access: 'public' },
  'GET /health': { access: 'public' },
  'GET /metrics': { access: 'ops' },
  'GET /metrics/cluster': { access: 'ops' },
  'GET /status': { access: 'status' },
  'GET /sdk/:file': { access: 'public' },
  'GET /playground/:file': { access: 'public' },
  'POST /services': { access: 'superService' },
  'GET /services': { access: 'superService' },
  'GET /services/:service': { access: 'superService' },
  'DELETE /services/:service': { access: 'superService' },
  'POST /rooms': { access: 'mauth' },
  'GET /rooms': { access: 'mauth' },
  'GET /rooms/:room': { access: 'mauth', roomScoped: true },
  'PUT /rooms/:room': { access: 'mauth', roomScoped: true },
  'PATCH /rooms/:room': { access: 'mauth', roomScoped: true },
  'DELETE /rooms/:room': { access: 'mauth', roomScoped: true },
  'POST /rooms/:room/tokens': { access: 'mauth', roomScoped: true },
  'POST /sessions': { access: 'mauth' },
  'GET /rooms/:room/users': { access: 'mauth', roomScoped: true },
  'GET /rooms/:room/users/:user': { access: 'mauth', roomScoped: true },
  'DELETE /rooms/:room/users/:user': { access: 'mauth', roomScoped: true },
  // Push: users are the caller's own by construction (every call is scoped by its tenant); answered by a push role on the bus.
  'POST /push/messages': { access: 'mauth' },
  'POST /push/users/:user/messages': { access: 'mauth' },
  'GET /push/users/:user/messages': { access: 'mauth' },
  'DELETE /push/users/:user/messages/:id': { access: 'mauth' },
  'PUT /webhook': { access: 'mauth' },
  'GET /webhook': { access: 'mauth' },
  'DELETE /webhook': { access: 'mauth' },
  'GET /webhook/failed': { access: 'mauth' },
  'PUT /rooms/:room/webhook': { access: 'mauth', roomScoped: true },
  'GET /rooms/:room/webhook': { access: 'mauth', roomScoped: true },
  'DELETE /rooms/:room/webhook': { access: 'mauth', roomScoped: true },
  'GET /live/rooms': { access: 'mauth' },
  'GET /settings': { access: 'mauth' },
  'PATCH /settings': { access: 'mauth' },
  'GET /rooms/:room/participants': { access: 'mauth', roomScoped: true },
  'GET /rooms/:room/participants/:participant': { access: 'mauth', roomScoped: true },
  'PATCH /rooms/:room/participants/:participant': { access: 'mauth', roomScoped: true },
  'POST /rooms/:room/participants/:participant/tracks/:track/mute': { access: 'mauth', roomScoped: true },
  'POST /rooms/:room/data': { access: 'mauth', roomScoped: true },
  'POST /rooms/:room/close': { access: 'mauth', roomScoped: true },
  // Groups: rows keyed by the caller's tenant, so another tenant's group of the same name is another group.
  'POST /groups/:group/members': { access: 'mauth' },
  'POST /groups/:group/members/remove': { access: 'mauth' },
  'GET /groups/:group/members': { access: 'mauth' },
  'GET /users/:user/groups': { access: 'mauth' },
  'DELETE /groups/:group': { access: 'mauth' },
  // Online events: the users are the caller's own (each event names its tenant); answered 202 once queued for a distributor.
  'POST /online': { access: 'mauth' },
  // Developer endpoints act as the superService without authentication (loopback only).
  'GET /dev/rooms': { access: 'public' },
  'POST /dev/rooms': { access: 'public' },
  'POST /dev/tokens': { access: 'public' },
  'POST /dev/sessions': { access: 'public' },
};

const specOf = (route: Route): RouteSpec | undefined => ROUTES[`${route.method === 'HEAD' ? 'GET' : route.method} ${route.url}`];

type Tenant = 'A' | 'B' | 'S';
type Identity =
  | { kind: 'none' }
  | { kind: 'mauth'; as: Tenant; user?: { username: string; role: string } }
  /** A's id signed with B's key. */
  | { kind: 'forged' }
  /** A header of A that was already accepted once. */
  | { kind: 'replayed' }
  | { kind: 'stale'; offsetMs: number }
  | { kind: 'garbage'; header: string }
  | { kind: 'ops' }
  | { kind: 'wrong-ops' };

/** The tenant a request acts for when it succeeds: its MAuth tenant, or the superService on developer endpoints. */
function actorOf(identity: Identity, route: Route): Tenant | undefined {
  if (route.url.startsWith('/dev/')) return 'S';
  return identity.kind === 'mauth' ? identity.as : undefined;
}

function admits(access: Access, identity: Identity, devEndpoints: boolean): boolean {
  const mauth = identity.kind === 'mauth';
  switch (access) {
    case 'public':
      return true;
    case 'ops':
      return identity.kind === 'ops';
    case 'mauth':
      return mauth;
    case 'superService':
      return mauth && identity.as === 'S';
    case 'status':
      return devEndpoints || (mauth && identity.as === 'S');
  }
}

/** Bodies as sent: valid for the route, or hostile. */
function bodies(schema: Record<string, any> | undefined, pool: fc.Arbitrary<string>): fc.Arbitrary<{ text?: string; contentType?: string }> {
  const json = (value: fc.Arbitrary<unknown>) => value.map((v) => ({ text: JSON.stringify(v), contentType: 'application/json' }));
  const raw = (value: fc.Arbitrary<string>) => value.map((text) => ({ text, contentType: 'application/json' }));
  const valid = schema ? json(fromSchema(schema, pool)) : fc.constant({});
  return fc.oneof(
    { weight: 6, arbitrary: valid },
    { weight: 2, arbitrary: fc.constant({}) },
    {
      weight: 3,
      arbitrary: raw(
        fc.constantFrom(100, 10_000, 25_000).chain((levels) =>
          fc.constantFrom(
            deep(levels),
            deep(levels, '[', ']'),
            `{"name":"deep","options":{"data":${deep(levels)}}}`,
            `{"name":${deep(levels)}}`,
            `{"roomId":"x","user":"u","extra":${deep(levels, '[', ']')}}`,
          ),
        ),
      ),
    },
    { weight: 2, arbitrary: fc.constantFrom(300, 5_000, 70_000).map((n) => ({ text: JSON.stringify({ name: 'x'.repeat(n), key: 'k'.repeat(n), options: { data: 'd'.repeat(n) } }), contentType: 'application/json' })) },
    {
      weight: 3,
      arbitrary: json(
        fc.constantFrom(...HOSTILE_STRINGS).chain((s) =>
          fc.constantFrom({ name: s }, { name: 'ok', options: { mediaConfiguration: s, data: { [s]: s } } }, { name: 'ok', key: `${s}0123456789abcdef` }, { roomId: s, user: s, role: s }),
        ),
      ),
    },
    { weight: 2, arbitrary: json(fc.jsonValue({ maxDepth: 4, stringUnit: 'binary' })) },
    {
      weight: 2,
      arbitrary: raw(
        fc.constantFrom(
          '{"__proto__":{"isSuper":true,"polluted":1},"name":"proto"}',
          '{"name":"proto","options":{"data":{"__proto__":{"polluted":1}}}}',
          '{"constructor":{"prototype":{"polluted":1}},"name":"ctor"}',
          '{"name":"p","options":{"data":{"constructor":{"prototype":{"polluted":1}}}}}',
        ),
      ),
    },
    { weight: 1, arbitrary: raw(fc.constantFrom('', '{', '{"name":', 'null', '[]', '"text"', '1e400', '\u0000', '{"name":"a","name":"b"}')) },
    {
      weight: 1,
      arbitrary: fc.record({
        text: fc.constantFrom('{"name":"x"}', 'name=x', '<name>x</name>'),
        contentType: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'application/json; charset=utf-16', 'application/jsonx', ''),
      }),
    },
  );
}

const spellings = fc.oneof({ weight: SPELLINGS.length, arbitrary: fc.constant(AS_BUILT) }, { weight: SPELLINGS.length, arbitrary: fc.constantFrom(...SPELLINGS) });

interface World {
  h: NuveHarness;
  /** The push role answering the push routes, on the harness's bus. */
  push: Push;
  devEndpoints: boolean;
  routes: Route[];
  openapi: Record<string, any>;
  services: Record<Tenant, TestService>;
  /** Expendable tenants the superService may delete. */
  victims: TestService[];
  /** Every room id known, with its tenant ('V' for victims'). */
  owners: Map<string, Tenant | 'V'>;
  /** Rooms only other tenants ever target: they must come out unchanged. */
  sentinels: { id: string; tenant: Tenant; snapshot: unknown }[];
  /** Each tenant's room it may do anything with (instead of its sentinel). */
  playRooms: Record<Tenant, string>;
  rpcs: GatewayRpc[];
  /** The last A header accepted, for replays. */
  acceptedA?: string;
  serviceCount: number;
}

const OPS_TOKEN = randomBytes(24).toString('base64url');
const TIME_BOUND_MS = 5000;

async function buildWorld(store: StoreKind, devEndpoints: boolean): Promise<World> {
  const h = await startNuve({ store, nuve: { devEndpoints, authWindowSec: 60 }, metrics: true, opsToken: OPS_TOKEN, gateways: [{ id: 'gw-fuzz' }] });
  const pushDatabase = await openDatabase({ driver: 'sqlite', sqlitePath: ':memory:', postgresUrl: '', poolSize: 1 });
  const push = new Push(loadConfig({ env: {} }).push, h.bus, testLogger(), await PushStore.open(pushDatabase), new MemoryLocations(30_000));
  await push.start();
  const rpcs: GatewayRpc[] = [];
  h.gateways[0]!.respond((rpc) => {
    rpcs.push(rpc);
    if (rpc.method === 'listUsers') return [{ name: 'member', role: 'presenter', permissions: { publish: true, subscribe: true } }];
    if (rpc.method === 'kickUser') return rpc.userName === 'member' ? 1 : 0;
    // The room API, as a gateway answers it for one participant `member` publishing track `t1`.
    const member = {
      id: 'member',
      identity: 'member',
      name: 'member',
      role: 'presenter',
      joined: true,
      permissions: { publish: true, subscribe: true, publishData: true },
      tracks: [{ id: 't1', kind: 'audio', muted: false }],
    };
    if (rpc.method === 'listParticipants') return [member];
    if (rpc.method === 'updateParticipant' || rpc.method === 'setTrackMuted') {
      if (rpc.peerId !== 'member') throw new AppError('PARTICIPANT_NOT_FOUND');
      return member;
    }
    if (rpc.method === 'sendData') return 1;
    return null;
  });
  const services = { A: await h.createService('tenant-a'), B: await h.createService('tenant-b'), S: h.superService };
  const victims = [await h.createService('victim-1'), await h.createService('victim-2'), await h.createService('victim-3')];
  const owners = new Map<string, Tenant | 'V'>();
  const sentinels: World['sentinels'] = [];
  const playRooms = {} as Record<Tenant, string>;
  for (const tenant of ['A', 'B', 'S'] as const) {
    for (const sentinel of [false, true]) {
      const id = await h.createRoom(services[tenant], `${tenant}-${sentinel ? 'sentinel' : 'room'}`, { data: { of: tenant } });
      await h.createToken(id, services[tenant]); // the room gets a gateway: users routes ask it
      owners.set(id, tenant);
      if (sentinel) sentinels.push({ id, tenant, snapshot: await h.store.getRoom(services[tenant].id, id) });
      else playRooms[tenant] = id;
    }
  }
  for (const v of victims) owners.set(await h.createRoom(v, 'victim-room'), 'V');
  // The browser bundles are built once per process on first use: not something to time.
  assert.equal((await h.call('GET', '/sdk/mediasoup-signal.mjs', { authorization: false })).status, 200);
  return {
    h,
    push,
    devEndpoints,
    routes: routesOf(h.nuve.app),
    openapi: h.nuve.app.swagger() as Record<string, any>,
    services,
    victims,
    owners,
    sentinels,
    playRooms,
    rpcs,
    serviceCount: (await h.store.listServices()).length,
  };
}

function authorizationFor(world: World, identity: Identity): string | undefined {
  const { A, B } = world.services;
  const cnonce = randomBytes(8).toString('hex');
  switch (identity.kind) {
    case 'none':
      return undefined;
    case 'mauth': {
      const s = world.services[identity.as];
      return buildMAuthHeader({ serviceId: s.id, key: s.key, cnonce, ...identity.user });
    }
    case 'forged':
      return buildMAuthHeader({ serviceId: A.id, key: B.key, cnonce });
    case 'replayed':
      return world.acceptedA ?? buildMAuthHeader({ serviceId: A.id, key: A.key, cnonce, timestamp: Date.now() - 3_600_000 });
    case 'stale':
      return buildMAuthHeader({ serviceId: A.id, key: A.key, cnonce, timestamp: Date.now() + identity.offsetMs });
    case 'garbage':
      return identity.header;
    case 'ops':
      return `Bearer ${OPS_TOKEN}`;
    case 'wrong-ops':
      return `Bearer ${OPS_TOKEN.slice(1)}x`;
  }
}

const identities: fc.Arbitrary<Identity> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Identity>({ kind: 'none' }) },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('mauth' as const),
      as: fc.constantFrom<Tenant>('A', 'B', 'S'),
      user: fc.option(
        fc.record({
          username: fc.oneof(fc.constantFrom('alice', 'member', 'Zoë', 'x'.repeat(300), 'tab\there'), fc.string({ minLength: 1, maxLength: 40, unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x2c && c !== 0x7f).map((c) => String.fromCharCode(c)) })),
          role: fc.constantFrom('presenter', 'viewer', 'admin', 'superService', ''),
        }),
        { nil: undefined },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant<Identity>({ kind: 'forged' }) },
  { weight: 1, arbitrary: fc.constant<Identity>({ kind: 'replayed' }) },
  { weight: 1, arbitrary: fc.constantFrom(-3_600_000, 3_600_000, -61_000).map((offsetMs): Identity => ({ kind: 'stale', offsetMs })) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('MAuth ', 'MAuth a=b', 'MAuth mauth_serviceid=,mauth_cnonce=,mauth_timestamp=,mauth_signature=,mauth_signature_method=HMAC_SHA1', `MAuth ${'x='.repeat(3000)}`, 'Basic YTpi', 'Bearer ')
      .map((header): Identity => ({ kind: 'garbage', header })),
  },
  { weight: 2, arbitrary: fc.constant<Identity>({ kind: 'ops' }) },
  { weight: 1, arbitrary: fc.constant<Identity>({ kind: 'wrong-ops' }) },
);

interface Sent {
  route: Route;
  identity: Identity;
  path: string;
  spelling: string;
  params: Record<string, string>;
  body: { text?: string; contentType?: string };
}

const schemaOf = (world: World, route: Route): Record<string, any> | undefined =>
  world.openapi.paths?.[route.url.replace(/:(\w+)/g, '{$1}')]?.[route.method.toLowerCase()]?.requestBody?.content?.['application/json']?.schema;

/** The request for `route` with path parameters `values` (in order), spelt one way. */
function buildRequest(world: World, route: Route, identity: Identity, values: string[], spelling: Spelling, at: number, body: Sent['body']): Sent {
  const actor = actorOf(identity, route);
  const params: Record<string, string> = {};
  let i = 0;
  const built = route.url.replace(/:(\w+)/g, (_, name: string) => {
    let value = values[i++] ?? 'x';
    // A tenant never targets its own sentinel room; the superService never deletes the tenants under test.
    if (name === 'room' && world.sentinels.some((s) => s.id === value && s.tenant === actor)) value = world.playRooms[actor!];
    if (name === 'service' && route.method === 'DELETE' && Object.values(world.services).some((s) => s.id === value)) {
      value = world.victims[0]?.id ?? '0'.repeat(24);
    }
    params[name] = value;
    return encodeParam(value);
  });
  const path = spelling[1](built, at);
  // A failure report shows the request, not 150 kB of nesting.
  const summary = () => `${route.method} ${path.slice(0, 200)} as ${JSON.stringify(identity)} with ${body.contentType ?? 'no type'} ${(body.text ?? '').slice(0, 200)}`;
  return Object.assign({ route, identity, params, body, spelling: spelling[0], path } satisfies Sent, { [fc.toStringMethod]: summary });
}

function requests(world: World): fc.Arbitrary<Sent> {
  const ids = [...world.owners.keys(), ...Object.values(world.services).map((s) => s.id), ...world.victims.map((v) => v.id)];
  const pool = fc.oneof(fc.constantFrom(...ids), fc.constantFrom(...HOSTILE_STRINGS), fc.constantFrom('member', 'mediasoup-signal.mjs', 'index.html', 'app.js'));
  const paramValues = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...ids) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_STRINGS.filter((s) => s !== '')) },
    { weight: 1, arbitrary: fc.constantFrom('member', 'mediasoup-signal.mjs', 'mediasoup-signal.js', 'app.js', 'index.html', '../package.json') },
    { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 300, unit: 'binary' }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 24, maxLength: 24 }) },
  );
  return fc
    .record({ route: fc.constantFrom(...world.routes), identity: identities, spelling: spellings, at: fc.nat(), values: fc.array(paramValues, { minLength: 2, maxLength: 2 }) })
    .chain(({ route, identity, spelling, at, values }) =>
      bodies(schemaOf(world, route), pool).map((body) => buildRequest(world, route, identity, values, spelling, at, body)),
    );
}

/** One of each kind of caller, for the exhaustive pass. */
const EVERY_IDENTITY: Identity[] = [
  { kind: 'none' },
  { kind: 'mauth', as: 'A' },
  { kind: 'mauth', as: 'B' },
  { kind: 'mauth', as: 'S' },
  { kind: 'mauth', as: 'A', user: { username: 'alice', role: 'presenter' } },
  { kind: 'mauth', as: 'S', user: { username: 'root', role: 'viewer' } },
  { kind: 'forged' },
  { kind: 'replayed' },
  { kind: 'stale', offsetMs: -3_600_000 },
  { kind: 'garbage', header: 'MAuth ' },
  { kind: 'ops' },
  { kind: 'wrong-ops' },
];

/** The caller each route admits, for the hostile-body pass. */
function admittedCaller(access: Access, devEndpoints: boolean): Identity {
  if (access === 'ops') return { kind: 'ops' };
  if (access === 'mauth') return { kind: 'mauth', as: 'A', user: { username: 'alice', role: 'presenter' } };
  if (access === 'superService' || (access === 'status' && !devEndpoints)) return { kind: 'mauth', as: 'S' };
  return { kind: 'none' };
}

/**
 * Fixed passes, so a hole is found every run rather than by luck: every
 * route × identity × spelling with a valid body, aimed at *another* tenant's
 * room; then every route that takes a body, called by a caller it admits on
 * its own room, with each field of a valid body made hostile in turn.
 */
function grid(world: World): Sent[] {
  const sent: Sent[] = [];
  const sample = (schema: Record<string, any>, every: boolean) =>
    fc.sample(fromSchema(schema, fc.constantFrom(world.playRooms.A), every).filter((v) => JSON.stringify(v).length < 400), { numRuns: 1, seed: 42 })[0];
  for (const route of world.routes) {
    const schema = schemaOf(world, route);
    const body = schema ? { text: JSON.stringify(sample(schema, false)), contentType: 'application/json' } : {};
    for (const identity of EVERY_IDENTITY) {
      const actor = actorOf(identity, route) ?? 'A';
      const otherRoom = world.sentinels.find((s) => s.tenant !== actor)!.id;
      const values = route.url.includes(':service') ? [world.victims.at(-1)?.id ?? '0'.repeat(24)] : route.url.includes(':file') ? ['mediasoup-signal.mjs'] : [otherRoom, 'member'];
      for (const [n, spelling] of [AS_BUILT, ...SPELLINGS].entries()) sent.push(buildRequest(world, route, identity, values, spelling, n, body));
    }
    if (schema) {
      const caller = admittedCaller(specOf(route)!.access, world.devEndpoints);
      const ownRoom = world.playRooms[actorOf(caller, route) ?? 'A'];
      for (const text of hostileVariants(sample(schema, true))) {
        sent.push(buildRequest(world, route, caller, [ownRoom, 'member'], AS_BUILT, 0, { text, contentType: 'application/json' }));
      }
    }
  }
  return sent;
}

/** Sends one request, checks the invariants of its answer and records what it changed; returns its status. */
async function exercise(world: World, sent: Sent, tally: Map<string, number>): Promise<number> {
  const { route, identity } = sent;
  const actor = actorOf(identity, route);
  const headers: Record<string, string> = {};
  const authorization = authorizationFor(world, identity);
  if (authorization !== undefined) headers.authorization = authorization;
  if (sent.body.contentType) headers['content-type'] = sent.body.contentType;
  world.rpcs.length = 0;
  const res = await rawHttp(world.h.url, route.method, sent.path, headers, sent.body.text, TIME_BOUND_MS * 2);
  const what = `${route.method} ${sent.path.slice(0, 160)} (${sent.spelling}) as ${JSON.stringify(identity).slice(0, 120)} body ${(sent.body.text ?? '').slice(0, 120)} → ${res.status} ${res.text.slice(0, 200)}`;
  tally.set(`${route.method} ${route.url}`, (tally.get(`${route.method} ${route.url}`) ?? 0) + 1);

  assert.ok(res.status >= 200 && res.status < 500, `status below 500: ${what}`);
  assert.ok(res.ms < TIME_BOUND_MS, `answered within ${TIME_BOUND_MS} ms (${Math.round(res.ms)}): ${what}`);
  if (res.status >= 400 && route.method !== 'HEAD') {
    assert.match(res.headers.get('content-type') ?? '', /application\/json/, `a JSON error: ${what}`);
    assert.ok(isErrorCode(String(res.json?.code)), `a catalogued error code: ${what} → ${String(res.json?.code)}`);
  }
  const spec = specOf(route)!;
  if (res.status < 300) {
    assert.ok(admits(spec.access, identity, world.devEndpoints), `only admitted identities succeed: ${what}`);
    if (spec.roomScoped) assert.equal(world.owners.get(sent.params.room!), actor, `only the tenant's own rooms: ${what}`);
  }
  for (const rpc of world.rpcs) {
    if (rpc.method !== 'closeRoom') assert.equal(world.owners.get(rpc.roomId), actor, `the gateway is asked only about the caller's rooms: ${what}`);
  }
  // A caller sees at most its own key; only the superService's /services answers show the others'.
  const ownKey = identity.kind === 'mauth' ? world.services[identity.as].key : undefined;
  if (!(ownKey === world.services.S.key && route.url.startsWith('/services'))) {
    for (const s of [...Object.values(world.services), ...world.victims]) {
      if (s.key !== ownKey) assert.ok(!res.text.includes(s.key), `no other tenant's key: ${what}`);
    }
  }
  if (res.status < 300) record(world, sent, actor, res, authorization);
  return res.status;
}

/** What a successful request changed, so the store checks know what to expect. */
function record(world: World, sent: Sent, actor: Tenant | undefined, res: CallResult, authorization: string | undefined): void {
  const { route } = sent;
  // A header the MAuth check accepted (public routes do not look at it), for a later replay.
  if (sent.identity.kind === 'mauth' && sent.identity.as === 'A' && specOf(route)?.access === 'mauth') world.acceptedA = authorization;
  if (route.method === 'POST' && (route.url === '/rooms' || route.url === '/dev/rooms') && actor) world.owners.set(res.json._id, actor);
  if (route.method === 'POST' && route.url === '/services') world.serviceCount++;
  if (route.method === 'DELETE' && route.url === '/services/:service') {
    world.serviceCount--;
    world.victims = world.victims.filter((v) => v.id !== sent.params.service);
  }
  const token =
    route.url === '/dev/tokens' || route.url === '/sessions' || route.url === '/dev/sessions' ? res.json?.token : route.url === '/rooms/:room/tokens' ? res.text : undefined;
  if (typeof token === 'string' && route.method === 'POST') {
    const claims = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { serviceId: string; roomId?: string; room?: { roomId: string } };
    assert.equal(claims.serviceId, world.services[actor!].id, 'a token names its requester');
    // A session token may name no room.
    const roomId = claims.roomId ?? claims.room?.roomId;
    if (roomId !== undefined || (route.url !== '/sessions' && route.url !== '/dev/sessions')) {
      assert.equal(world.owners.get(roomId!), actor, "a token is for one of its requester's rooms");
    }
  }
}

/** The store after the storm: other tenants' rooms untouched, no tenant appeared or vanished but by the superService. */
async function checkStore(world: World): Promise<void> {
  const { store } = world.h;
  for (const s of world.sentinels) assert.deepEqual(await store.getRoom(world.services[s.tenant].id, s.id), s.snapshot, `${s.tenant}'s sentinel room`);
  for (const tenant of ['A', 'B', 'S'] as const) {
    assert.equal((await store.getService(world.services[tenant].id))?.key, world.services[tenant].key, `${tenant} keeps its key`);
  }
  assert.equal((await store.listServices()).length, world.serviceCount, 'services created or deleted only by the superService');
  for (const [id, owner] of world.owners) {
    if (owner === 'V') continue;
    for (const other of (['A', 'B', 'S'] as const).filter((t) => t !== owner)) {
      assert.equal(await store.getRoom(world.services[other].id, id), undefined, `room ${id} of ${owner} is not ${other}'s`);
    }
  }
}

const RUNS = Number(process.env.NUVE_FUZZ_RUNS ?? 2000);

for (const [store, devEndpoints] of [['sqlite', true], ['postgres', false]] as const) {
  describe(`Nuve REST robustness (${store}, developer endpoints ${devEndpoints ? 'on' : 'off'})`, () => {
    let world: World;
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    before(async () => {
      process.on('unhandledRejection', onUnhandled);
      world = await buildWorld(store, devEndpoints);
    });
    after(async () => {
      process.off('unhandledRejection', onUnhandled);
      await world.push.close();
      await world.h.close();
    });

    test('every route of the app is in the suite, and every route of the suite is in some app', () => {
      const names = new Set(world.routes.map((r) => `${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`));
      for (const r of world.routes) assert.ok(specOf(r), `${r.method} ${r.url} is fuzzed (add it to ROUTES with who may call it)`);
      const inThisApp = Object.keys(ROUTES).filter((name) => names.has(name));
      const onlyWithDev = ['GET /', 'GET /playground/:file', 'GET /dev/rooms', 'POST /dev/rooms', 'POST /dev/tokens', 'POST /dev/sessions'];
      const expected = Object.keys(ROUTES).filter((name) => devEndpoints || !onlyWithDev.includes(name));
      assert.deepEqual(inThisApp.sort(), expected.sort(), 'ROUTES names no route the app lacks');
    });

    test('bytes that are not valid HTTP get a JSON refusal with a stable code, and the server goes on', async () => {
      const { port } = new URL(world.h.url);
      const garbage = [
        'GARBAGE\r\n\r\n',
        'GET rooms HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET /rooms HTTP/9.9\r\nHost: x\r\n\r\n',
        'POST /rooms HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
        'POST /rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        'GET /health HTTP/1.1\r\nHost: x\r\n\r\n{"unframed":"body"}',
        `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        'GET /health HTTP/1.1\r\nHo\u0000st: x\r\n\r\n',
      ];
      for (const bytes of garbage) {
        const answer = await new Promise<string>((resolve, reject) => {
          const socket = connect(Number(port), '127.0.0.1', () => socket.end(bytes));
          let data = '';
          socket.on('data', (d: Buffer) => (data += d.toString()));
          socket.on('close', () => resolve(data));
          socket.on('error', reject);
        });
        // The last answer on the connection is the refusal (a valid request before the garbage may be answered first).
        const last = answer.slice(answer.lastIndexOf('HTTP/1.1 '));
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(last)?.[1]);
        assert.ok(status >= 400 && status < 500, `${JSON.stringify(bytes.slice(0, 60))} → ${last.slice(0, 200)}`);
        const body = last.slice(last.indexOf('\r\n\r\n') + 4);
        assert.ok(isErrorCode(String(JSON.parse(body).code)), `${JSON.stringify(bytes.slice(0, 60))} → ${body}`);
      }
      assert.equal((await world.h.call('GET', '/health', { authorization: false })).status, 200);
    });

    test('every route × identity × path spelling aimed at another tenant, and every field of every body made hostile', { timeout: 120_000 }, async () => {
      const tally = new Map<string, number>();
      for (const sent of grid(world)) await exercise(world, sent, tally);
      await checkStore(world);
    });

    test(`${RUNS} generated requests over every route and identity: < 500, stable codes, bounded time, no tenant crossed`, { timeout: 120_000 }, async (t) => {
      const heapBefore = await heapAfterGc();
      const tally = new Map<string, number>();
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(requests(world), async (sent) => {
          const status = await exercise(world, sent, tally);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
      t.diagnostic(`answers by status: ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`);
      // Every route was exercised, and answers a correct request of an admitted identity.
      for (const r of world.routes) assert.ok((tally.get(`${r.method} ${r.url}`) ?? 0) >= 3, `${r.method} ${r.url} exercised (${tally.get(`${r.method} ${r.url}`) ?? 0})`);

      await checkStore(world);

      // The process: healthy, no unhandled rejection, no prototype pollution, heap bounded.
      assert.equal((await world.h.call('GET', '/health', { authorization: false })).status, 200);
      assert.deepEqual(unhandled, []);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      assert.equal(({} as Record<string, unknown>).isSuper, undefined);
      const growth = (await heapAfterGc()) - heapBefore;
      assert.ok(growth < 64 * 1024 * 1024, `heap grew ${(growth / 1048576).toFixed(1)} MiB`);
    });
  });
}
