import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { MemoryBus } from '../src/core/bus/memory-bus.js';
import { loadConfig, type ConfigInput } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { connectRedis, redisReady } from '../src/core/redis.js';
import { openStore } from '../src/nuve/store/store.js';
import { buildMAuthHeader } from '../src/core/mauth.js';
import { Nuve } from '../src/nuve/nuve.js';
import { type ServiceProcess, startRedis } from './helpers/cluster.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { ProtooClient } from './helpers/protoo-client.js';

const logger = createLogger({ level: 'silent', pretty: false });
const superService = { id: randomBytes(12).toString('hex'), key: randomBytes(24).toString('base64url') };
let redis: ServiceProcess | undefined;

before(async () => {
  redis = await startRedis();
});
after(async () => redis?.stop());

/** Two Nuve instances (as two processes would be) sharing one Redis. */
async function twoNuves(rateLimit: ConfigInput['nuve'] extends infer N ? N extends { rateLimit?: infer R } ? R : never : never) {
  const instances = [];
  for (let i = 0; i < 2; i++) {
    const config = loadConfig({
      env: {},
      overrides: {
        log: { level: 'silent' },
        store: { sqlitePath: ':memory:' },
        redis: { url: `redis://127.0.0.1:${redis!.port}` },
        nuve: { port: 0, superService, rateLimit },
      },
    });
    const client = connectRedis(config.redis.url!, logger);
    await redisReady(client);
    // Each test starts from clean counters.
    if (i === 0) await client.flushall();
    const bus = new MemoryBus(logger);
    const store = await openStore(config.store);
    const nuve = new Nuve({ config, bus, store, logger, redis: client });
    await nuve.start();
    instances.push({ nuve, close: async () => (await nuve.close(), await store.close(), client.disconnect(), await bus.close()) });
  }
  return instances;
}

const get = (url: string) =>
  fetch(`${url}/rooms`, { headers: { authorization: buildMAuthHeader({ serviceId: superService.id, key: superService.key, cnonce: randomBytes(6).toString('hex') }) } });

describe('Nuve rate limits', () => {
  test('the global limit holds across two Nuve instances sharing Redis (no queue)', async () => {
    const nuves = await twoNuves({ globalPerSec: 20, perIpPerSec: 1000 });
    try {
      const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => get(nuves[i % 2]!.nuve.url)));
      const ok = responses.filter((r) => r.status === 200).length;
      const limited = responses.filter((r) => r.status === 429);
      assert.equal(ok, 20);
      assert.equal(limited.length, 20);
      assert.ok(limited.every((r) => Number(r.headers.get('retry-after')) >= 1));
      assert.equal(((await limited[0]!.json()) as { code: string }).code, 'RATE_LIMITED');
      assert.ok(nuves[0]!.nuve.rateLimitStats.rejected.global + nuves[1]!.nuve.rateLimitStats.rejected.global === 20);
    } finally {
      for (const n of nuves) await n.close();
    }
  });

  test('with the queue on, requests over the rate wait; over the queue they get 429 at once', async () => {
    const [a, b] = await twoNuves({ globalPerSec: 10, queue: true, queueSize: 10, perIpPerSec: 1000 });
    try {
      const t0 = Date.now();
      const timed = await Promise.all(
        Array.from({ length: 30 }, async () => {
          const r = await get(a!.nuve.url);
          return { status: r.status, ms: Date.now() - t0 };
        }),
      );
      const ok = timed.filter((r) => r.status === 200);
      const rejected = timed.filter((r) => r.status === 429);
      assert.equal(ok.length, 20, '10 at once + 10 from the queue');
      assert.equal(rejected.length, 10);
      assert.ok(Math.max(...rejected.map((r) => r.ms)) < 900, 'rejections are immediate');
      assert.ok(ok.filter((r) => r.ms >= 500).length >= 10, 'queued requests waited for the next second');
    } finally {
      await a!.close();
      await b!.close();
    }
  });

  test('per-IP limit and the hard cap answer 429 with Retry-After', async () => {
    const [a, b] = await twoNuves({ globalPerSec: 1000, perIpPerSec: 5 });
    try {
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await get(i % 2 ? b!.nuve.url : a!.nuve.url)).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], 'the IP is counted across both instances');
      const health = await fetch(`${a!.nuve.url}/health`);
      assert.equal(health.status, 200, 'health checks are never limited');
    } finally {
      await a!.close();
      await b!.close();
    }
    const [e, f] = await twoNuves({ globalPerSec: 1000, perIpPerSec: 2 });
    try {
      // The exemption belongs to the matched route: any spelling of /health is exempt, a URL that merely
      // starts like an exempt one is counted.
      const statuses = [];
      for (const path of ['/rooms', '/rooms', '/rooms', '/health?probe=1', '/%68ealth', '/metricsX', '/metrics-anything'])
        statuses.push((await fetch(e!.nuve.url + path, { headers: { authorization: 'x' } })).status);
      assert.deepEqual(statuses, [401, 401, 429, 200, 200, 429, 429]);
    } finally {
      await e!.close();
      await f!.close();
    }
    const [c, d] = await twoNuves({ globalPerSec: 1000, queue: true, hardCapPerSec: 5, perIpPerSec: 1000 });
    try {
      const responses = await Promise.all(Array.from({ length: 8 }, () => get(c!.nuve.url)));
      assert.equal(responses.filter((r) => r.status === 429).length, 3);
      assert.equal(c!.nuve.rateLimitStats.rejected.hardCap, 3);
    } finally {
      await c!.close();
      await d!.close();
    }
  });
});

describe('gateway rate limits', () => {
  let platform: EmbeddedPlatform;
  before(async () => {
    platform = await startEmbedded({
      gateway: { rateLimit: { connectionsPerSec: 3, requestsPerSecPerClient: 5, disconnectAfterRejections: 5 } },
    });
  });
  after(async () => platform.close());

  test('new connections per second: the excess is refused with 429', async () => {
    const roomId = await platform.createRoom('conn-limit');
    const tokens = await Promise.all(Array.from({ length: 5 }, (_, i) => platform.token(roomId, `u${i}`)));
    await new Promise((r) => setTimeout(r, 1100)); // a fresh one-second window
    const results = await Promise.allSettled(tokens.map((t) => ProtooClient.connect(platform.gatewayUrl, t)));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(refused.length, 2);
    assert.match(String((refused[0] as PromiseRejectedResult).reason), /429/);
    assert.equal(platform.gateway!.limits.rejected.connections, 2);
    for (const r of results) if (r.status === 'fulfilled') r.value.close();
  });

  test('requests per client: excess answered RATE_LIMITED, a client that keeps flooding is disconnected', async () => {
    await new Promise((r) => setTimeout(r, 1100));
    const roomId = await platform.createRoom('req-limit');
    const client = await ProtooClient.connect(platform.gatewayUrl, await platform.token(roomId, 'flood'));
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => client.request('getRouterRtpCapabilities')));
    const limited = outcomes.filter((o) => o.status === 'rejected' && (o.reason as { errorCode: number }).errorCode === 429);
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 5);
    assert.equal(limited.length, 3);
    // Keep flooding: after 5 refusals within 10 s the gateway hangs up.
    void Promise.allSettled(Array.from({ length: 10 }, () => client.request('getRouterRtpCapabilities')));
    assert.equal(await client.closed, 4000);
    assert.equal((await client.waitNotification('closing')).errorName, 'PROTOCOL_ABUSE');
  });
});
