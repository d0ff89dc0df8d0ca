import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { broadcasterApi } from '../src/gateway/broadcasters.js';
import { errorCatalogue, isErrorCode } from '../src/protocol/error-codes.js';
import { type ClientMethod, clientRequestSchemas } from '../src/protocol/signaling.js';
import { type Overrides, hostileJson, jsonTextFor } from './helpers/arbitraries.js';
import { gatewayCall } from './helpers/broadcaster.js';
import { audioRtpParameters } from './helpers/ffmpeg.js';
import { MediaPeer } from './helpers/media-peer.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient, type ProtooError } from './helpers/protoo-client.js';

/**
 * Every client method (iterated from clientRequestSchemas, so a new one is
 * covered without touching this file) and every broadcaster route (from
 * broadcasterApi) gets generated input: values derived from its schema, the
 * same with hostile values slipped in, hostile values alone, and hostile
 * frames. Every answer must come in time and be ok or a 4xx with a stable
 * errorName; afterwards the room must still work, with real media.
 * FUZZ_RUNS=<n> runs more cases (default 60 per method, role and phase).
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
const ANSWER_WITHIN_MS = 10_000;
/** A refusal names a code of the catalogue and carries that code's status. */
function isCataloguedRefusal(status: unknown, name: unknown): boolean {
  return typeof name === 'string' && isErrorCode(name) && status === errorCatalogue[name].status;
}

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const heapUsed = () => (collectGarbage(), process.memoryUsage().heapUsed);

let platform: EmbeddedPlatform;
let http: string;
let roomId: string;
let witness: MediaPeer;
let watcher: ProtooClient;
let heapBefore: number;
/** Every answer any fuzzing socket received that was neither ok nor a stable 4xx. */
const unstable: string[] = [];

before(async () => {
  // Rate limits off: they would answer most of the flood with RATE_LIMITED before the code under test sees it.
  platform = await startEmbedded({ gateway: { rateLimit: { enabled: false } } });
  http = platform.gatewayUrl.replace(/^ws/, 'http');
  roomId = await platform.createRoom('robustness');
  // A presenter sending real audio, and a viewer watching the room's notifications, both there throughout.
  witness = await MediaPeer.join(platform.gatewayUrl, await platform.token(roomId, 'witness'), { name: 'witness', consume: false });
  watcher = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'watcher', 'viewer'));
  await watcher.request('join', { displayName: 'watcher' });
  heapBefore = heapUsed();
});
after(async () => {
  await witness?.close();
  watcher?.close();
  await platform?.close();
});

/**
 * fc.assert, reporting the failing input cut short: hostile inputs are up to
 * 256 KiB each, too long for a test report.
 */
async function check<T extends unknown[]>(property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> {
  const details = await fc.check(property, { numRuns });
  if (!details.failed) return;
  const shown = (details.counterexample ?? []).map((value) => {
    const text = typeof value === 'string' ? value : fc.stringify(value);
    return text.length > 400 ? `${text.slice(0, 400)}… (${text.length} characters)` : text;
  });
  const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  throw new Error(`${cause}\n  input: ${shown.join(', ')}\n  reproduce: { seed: ${details.seed}, path: "${details.counterexamplePath}" }`);
}

type Answer = { ok: true; data: unknown } | { ok: false; errorCode: number; errorName?: string; errorReason: string };

/** Resolves with `promise`, or fails naming `what` if it takes longer than ANSWER_WITHIN_MS. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms: ${what}`)), ANSWER_WITHIN_MS);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function isStableError(errorCode: unknown, errorName: unknown): boolean {
  return Number.isInteger(errorCode) && (errorCode as number) >= 400 && (errorCode as number) < 500 && isCataloguedRefusal(errorCode, errorName);
}

function assertStable(answer: Answer, what: string): void {
  if (answer.ok) return;
  assert.ok(isStableError(answer.errorCode, answer.errorName), `${what}: ${answer.errorCode} ${answer.errorName} ${answer.errorReason}`);
}

/** Checks every response the socket receives, including those to raw frames nobody waits for. */
function watchAnswers(client: ProtooClient, who: string): void {
  client.ws.on('message', (raw) => {
    const message = JSON.parse(raw.toString());
    if (message.response && !message.ok && !isStableError(message.errorCode, message.errorName)) {
      unstable.push(`${who}: ${JSON.stringify(message).slice(0, 300)}`);
    }
  });
}

type IdKind = 'transport' | 'producer' | 'consumer' | 'dataProducer' | 'dataConsumer';
/** Data fields naming an object, and which kind of object. */
const ID_FIELDS: Record<string, IdKind> = {
  transportId: 'transport',
  producerId: 'producer',
  consumerId: 'consumer',
  dataProducerId: 'dataProducer',
  dataConsumerId: 'dataConsumer',
};
/** What each answer creates, so later requests can name it. */
const CREATES: Partial<Record<ClientMethod, IdKind>> = { createWebRtcTransport: 'transport', produce: 'producer', produceData: 'dataProducer' };
const sctpCapabilities = { numStreams: { OS: 1024, MIS: 1024 } };

/**
 * Generated data names real objects most of the time (a placeholder the
 * session fills with an id it knows), and offers parameters mediasoup takes,
 * so requests get past "not found" to the code behind it.
 */
const overrides: Overrides = {
  ...Object.fromEntries(Object.entries(ID_FIELDS).map(([field, kind]) => [field, fc.constant(`@id:${kind}@`)])),
  rtpParameters: fc
    .record({ mid: fc.nat(40).map(String), ssrc: fc.integer({ min: 1, max: 2 ** 32 - 1 }) })
    .map(({ mid, ssrc }) => ({ ...audioRtpParameters, mid, encodings: [{ ssrc }] })),
  sctpStreamParameters: fc.nat(1023).map((streamId) => ({ streamId })),
};

/**
 * One fuzzing peer of a role, kept either before or after `join`: it
 * reconnects with a fresh token (and joins again, after) whenever a request
 * ended its session (`leave`) or moved it past its phase (`join`). It knows
 * the ids of its own objects and of the witness's producer.
 */
class FuzzSession {
  private client?: ProtooClient;
  private stale = false;
  private ids: Record<IdKind, string[]> = { transport: [], producer: [], consumer: [], dataProducer: [], dataConsumer: [] };
  private picks = 0;

  constructor(
    readonly role: 'presenter' | 'viewer',
    readonly phase: 'before join' | 'after join',
  ) {}

  get name(): string {
    return `${this.role} ${this.phase}`;
  }

  async ready(): Promise<ProtooClient> {
    if (this.client && this.client.closeCode === undefined && !this.stale) return this.client;
    this.client?.close();
    const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, `fuzz-${this.role}`, this.role));
    watchAnswers(client, this.name);
    const ids: FuzzSession['ids'] = { transport: [], producer: [witness.producerId!], consumer: [], dataProducer: [], dataConsumer: [] };
    client.handleRequests((method, data) => {
      if (method === 'newConsumer') ids.consumer.push(data.id);
      if (method === 'newDataConsumer') ids.dataConsumer.push(data.id);
      return {};
    });
    if (this.phase === 'after join') {
      // Joined like a real client, so it also receives the witness's audio.
      const rtpCapabilities = await client.request('getRouterRtpCapabilities');
      for (const direction of [{ producing: true }, { consuming: true }]) {
        ids.transport.push((await client.request('createWebRtcTransport', { ...direction, sctpCapabilities })).id);
      }
      await client.request('join', { displayName: `fuzz ${this.name}`, device: { name: 'fuzz' }, rtpCapabilities, sctpCapabilities });
    }
    this.ids = ids;
    this.client = client;
    this.stale = false;
    return client;
  }

  /** One of the known ids of `kind` in turn, or an id nothing has. */
  private idOf(kind: IdKind): string {
    const known = this.ids[kind];
    const pick = this.picks++ % (known.length + 1);
    return known[pick] ?? 'no-such-object';
  }

  async send(method: string, generated: string | undefined): Promise<Answer> {
    const client = await this.ready();
    const dataJson = generated?.replace(/"@id:(\w+)@"/g, (_, kind: IdKind) => JSON.stringify(this.idOf(kind)));
    const what = `${this.name} ${method} ${(dataJson ?? '').slice(0, 200)}`;
    const answer = await within(
      client.requestText(method, dataJson).then(
        (data): Answer => ({ ok: true, data }),
        (err: ProtooError): Answer => {
          if (err.errorCode === undefined) throw new Error(`${what}: ${err.message}`);
          return { ok: false, errorCode: err.errorCode, errorName: err.errorName, errorReason: err.message };
        },
      ),
      what,
    );
    // Past its phase (joined) or ended by the server (left): the next request needs a fresh session.
    if (answer.ok && (method === 'join' || method === 'leave')) this.stale = true;
    if (answer.ok && method === 'join') this.park();
    const created = CREATES[method as ClientMethod];
    if (answer.ok && created) this.ids[created].push((answer.data as { id: string }).id);
    return answer;
  }

  /**
   * A peer that joined with generated data stays in the room for a while, so
   * what it stored is sent to every peer joining after it, as the deep
   * `device` was (issue 12, item 2).
   */
  private park(): void {
    parked.push(this.client!);
    this.client = undefined;
    if (parked.length > 16) parked.shift()!.close();
  }

  close(): void {
    this.client?.close();
  }
}

const parked: ProtooClient[] = [];

const sessions = [
  new FuzzSession('presenter', 'before join'),
  new FuzzSession('presenter', 'after join'),
  new FuzzSession('viewer', 'before join'),
  new FuzzSession('viewer', 'after join'),
];

const methods = Object.keys(clientRequestSchemas) as ClientMethod[];
const requestData = (method: ClientMethod) => jsonTextFor(clientRequestSchemas[method], overrides);

describe('every client method, as presenter and viewer, before and after join', () => {
  for (const method of methods) {
    test(method, { timeout: 60_000 }, async () => {
      for (const session of sessions) {
        await check(
          fc.asyncProperty(requestData(method), async (data) => assertStable(await session.send(method, data), `${session.name} ${method}`)),
          RUNS,
        );
      }
    });
  }

  test('random sequences of all of them (objects created by one request named by the next)', { timeout: 60_000 }, async () => {
    const request = fc.oneof(...methods.map((method) => requestData(method).map((data) => ({ method, data }))));
    for (const session of sessions) {
      await check(
        fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 20 }), async (requests) => {
          for (const { method, data } of requests) assertStable(await session.send(method, data), `${session.name} ${method}`);
        }),
        Math.ceil(RUNS / 2),
      );
    }
  });
});

/** Frames that are not requests of any method: not JSON, wrong envelopes, unknown or hostile method names. */
const hostileFrame: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
  hostileJson.map((h) => h.text),
  fc.constantFrom(
    '',
    'NaN',
    '{"a":NaN}',
    '{"request":true}',
    '{"request":"true","id":1000000001,"method":"join"}',
    '{"request":true,"id":-1,"method":"join"}',
    '{"request":true,"id":1.5,"method":"join"}',
    '{"request":true,"id":"1000000002","method":"join"}',
    '{"request":true,"id":9007199254740993,"method":"getAgentProbes"}',
    '{"request":true,"id":1000000003,"method":""}',
    `{"request":true,"id":1000000004,"method":"${'x'.repeat(65)}"}`,
    '{"request":true,"id":1000000005,"method":1}',
    '{"request":true,"id":1000000006,"method":"join","data":"x"}',
    '{"response":true,"id":1000000007,"ok":true,"data":{}}',
    '{"response":true,"id":1000000008,"ok":false,"errorCode":"x"}',
    '{"notification":true,"method":"leave"}',
    '{"notification":true,"method":"join","data":{}}',
    '{"request":true,"response":true,"notification":true,"id":1000000009,"method":"join"}',
  ),
  fc
    .tuple(
      fc.oneof(fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'then'), fc.string({ minLength: 1, maxLength: 64 })),
      hostileJson,
    )
    .map(([method, data]) => `{"request":true,"id":1000000010,"method":${JSON.stringify(method)},"data":${data.text}}`),
  // A whole envelope nested as deep as a frame allows (11 bytes a level, under 256 KiB).
  fc.integer({ min: 10_000, max: 20_000 }).map((depth) => `${'{"request":'.repeat(depth)}true${'}'.repeat(depth)}`),
);

describe('hostile frames', () => {
  test('non-JSON, binary, wrong envelopes and unknown methods leave the socket serving', { timeout: 60_000 }, async () => {
    for (const session of sessions) {
      await check(
        fc.asyncProperty(hostileFrame, async (frame) => {
          const client = await session.ready();
          if (typeof frame === 'string') client.sendRaw(frame);
          else client.ws.send(frame, { binary: true });
          // A request right behind it is answered: the frame neither closed nor stalled the connection.
          assertStable(await session.send('getAgentProbes', '{}'), `${session.name} after ${String(frame).slice(0, 100)}`);
        }),
        RUNS * 4,
      );
    }
    assert.deepEqual(unstable, []);
  });

  test('a frame over gateway.maxMessageBytes closes only that connection (1009)', async () => {
    const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'big'));
    client.sendRaw(`{"request":true,"id":1,"method":"join","data":{"displayName":"${'x'.repeat(platform.config.gateway.maxMessageBytes)}"}}`);
    assert.equal(await client.closed, 1009);
    assert.equal(watcher.closeCode, undefined);
  });
});

/** One path parameter: the real value, or a hostile segment (encoded, dot segments, NUL, long, unicode). */
function segment(real: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(real) },
    {
      weight: 2,
      arbitrary: fc.constantFrom('..', '.', '%2e%2e', '%2F', '%00', '%', '__proto__', 'constructor', 'x'.repeat(300), encodeURIComponent(real).toUpperCase(), real.toUpperCase()),
    },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).map(encodeURIComponent) },
  );
}

describe('broadcaster HTTP routes', () => {
  test('every route, with generated paths, bodies and credentials, answers ok or a stable 4xx', { timeout: 60_000 }, async () => {
    const created: { id: string; secret: string }[] = [];
    const fresh = async () => {
      const bc = await gatewayCall(http, 'POST', '/broadcasters', { token: await platform.token(roomId, 'fuzz-bc') });
      created.push(bc);
      const transport = await gatewayCall(http, 'POST', `/broadcasters/${bc.id}/transports`, {}, bc.secret);
      const producer = await gatewayCall(
        http,
        'POST',
        `/broadcasters/${bc.id}/transports/${transport.id}/producers`,
        { kind: 'audio', rtpParameters: audioRtpParameters },
        bc.secret,
      );
      return { id: bc.id as string, secret: bc.secret as string, transportId: transport.id as string, producerId: producer.id as string };
    };
    let target = await fresh();
    const realValue: Record<string, () => string> = {
      id: () => target.id,
      transportId: () => target.transportId,
      objectId: () => target.producerId,
      kind: () => 'producers',
    };

    try {
      for (const [name, route] of Object.entries(broadcasterApi)) {
        const names = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
        const path = fc.tuple(...names.map((n) => segment(realValue[n]!()))).map((values) => {
          let url: string = route.url;
          names.forEach((n, i) => (url = url.replace(`:${n}`, values[i]!)));
          return url;
        });
        const body = route.body ? jsonTextFor(route.body) : fc.constant(undefined);
        // A real presenter token now and then, so creation itself is exercised past the token check.
        const withToken = name === 'create' ? fc.boolean() : fc.constant(false);
        const auth = fc.constantFrom('right', 'wrong', 'none', 'huge', 'basic');
        const contentType = fc.constantFrom('application/json', 'text/plain', undefined);
        await check(
          fc.asyncProperty(path, body, withToken, auth, contentType, async (url, bodyText, realToken, credentials, type) => {
            if (!platform.gateway!.broadcasters.has(target.id)) target = await fresh();
            // Derived bodies begin with the token (the first key of the schema) unless a hostile value replaced it.
            const text = realToken
              ? bodyText?.replace(/^\{"token":"(?:[^"\\]|\\.)*"/, `{"token":${JSON.stringify(await platform.token(roomId, 'fuzz-bc'))}`)
              : bodyText;
            const authorization = { right: `Bearer ${target.secret}`, wrong: 'Bearer wrong', none: undefined, huge: `Bearer ${'x'.repeat(8000)}`, basic: 'Basic eDp5' }[credentials];
            const res = await fetch(`${http}${url}`, {
              method: route.method,
              headers: { ...(authorization ? { authorization } : {}), ...(type && text !== undefined ? { 'content-type': type } : {}) },
              body: route.method === 'GET' ? undefined : text,
              signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
            });
            const answer = await res.text();
            assert.ok(res.status < 500, `${route.method} ${url.slice(0, 200)} ${(text ?? '').slice(0, 200)} → ${res.status} ${answer.slice(0, 300)}`);
            if (res.status >= 400 && res.headers.get('content-type')?.includes('json')) {
              assert.ok(isErrorCode(String(JSON.parse(answer).code)), `${route.method} ${url} → ${answer.slice(0, 300)}`);
            }
            const json = res.ok && res.headers.get('content-type')?.includes('json') ? JSON.parse(answer) : undefined;
            if (name === 'create' && json?.secret) created.push(json);
          }),
          RUNS * 4,
        );
      }
    } finally {
      for (const bc of created) await gatewayCall(http, 'DELETE', `/broadcasters/${bc.id}`, undefined, bc.secret).catch(() => undefined);
    }
  });
});

describe('afterwards', () => {
  test('the room still works: a newcomer joins (with the last joined fuzzing peers still in), is announced and receives the witness\'s media; nothing leaked', { timeout: 60_000 }, async () => {
    assert.deepEqual(unstable, []);
    assert.equal((Object.prototype as Record<string, unknown>).polluted, undefined, 'no prototype was polluted');
    assert.equal((await fetch(`${http}/health`)).status, 200);

    const newcomer = await MediaPeer.join(platform.gatewayUrl, await platform.token(roomId, 'newcomer', 'viewer'), { name: 'newcomer', publish: false });
    try {
      await newcomer.assertReceiving(witness.producerId!);
      const until = Date.now() + 5000;
      while (!watcher.notifications.some((n) => n.method === 'newPeer' && n.data.displayName === 'newcomer')) {
        assert.ok(Date.now() < until, 'the watcher was told of the newcomer');
        await sleep(20);
      }
    } finally {
      await newcomer.close();
    }

    for (const session of sessions) session.close();
    for (const client of parked) client.close();
    // Every fuzzing peer is gone again: only the witness and the watcher are left.
    const until = Date.now() + 5000;
    while (platform.gateway!.peerCount() > 2) {
      assert.ok(Date.now() < until, `peers left behind: ${platform.gateway!.peerCount()}`);
      await sleep(20);
    }
    const grown = heapUsed() - heapBefore;
    assert.ok(grown < 64 * 1024 * 1024, `heap grew by ${(grown / 1024 / 1024).toFixed(1)} MiB`);
  });
});
