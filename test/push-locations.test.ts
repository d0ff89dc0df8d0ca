import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { connectRedis, redisReady } from '../src/core/redis.js';
import { type Locations, MemoryLocations, RedisLocations } from '../src/push/locations.js';
import { testLogger } from './helpers/nuve-harness.js';
import { serviceUrl } from './helpers/services.js';

// The push role's location registry, both kinds against the same expectations.

const TTL_MS = 300;
let redis: Redis;

before(async () => {
  redis = connectRedis(serviceUrl('redis'), testLogger());
  await redisReady(redis);
});
after(() => redis.disconnect());

const kinds: [string, () => Locations][] = [
  ['memory', () => new MemoryLocations(TTL_MS)],
  ['redis', () => new RedisLocations(redis, TTL_MS)],
];

const locationsOf = async (registry: Locations, serviceId: string, user: string) =>
  ((await registry.lookup(serviceId, [user])).get(user) ?? []).map((l) => `${l.gatewayId}/${l.connectionId}`).sort();

for (const [kind, create] of kinds) {
  describe(`${kind} locations`, () => {
    // Unique per run: the test Redis is shared with other files.
    const tenant = `t${Math.random().toString(36).slice(2, 10)}`;
    const other = `${tenant}x`;

    test('every connection of a user, scoped by tenant; removal is of that exact connection only', async () => {
      const registry = create();
      await registry.add({ serviceId: tenant, userName: 'ann', gatewayId: 'gw-1', connectionId: 'c1' });
      await registry.add({ serviceId: tenant, userName: 'ann', gatewayId: 'gw-2', connectionId: 'c2' });
      await registry.add({ serviceId: other, userName: 'ann', gatewayId: 'gw-1', connectionId: 'c3' });
      assert.deepEqual(await locationsOf(registry, tenant, 'ann'), ['gw-1/c1', 'gw-2/c2']);
      assert.deepEqual(await locationsOf(registry, other, 'ann'), ['gw-1/c3']);
      // A stale report: same connection id on another gateway, or another connection of the same gateway.
      await registry.remove({ serviceId: tenant, userName: 'ann', gatewayId: 'gw-2', connectionId: 'c1' });
      await registry.remove({ serviceId: tenant, userName: 'ann', gatewayId: 'gw-1', connectionId: 'c9' });
      await registry.remove({ serviceId: other, userName: 'ann', gatewayId: 'gw-2', connectionId: 'c2' });
      assert.deepEqual(await locationsOf(registry, tenant, 'ann'), ['gw-1/c1', 'gw-2/c2']);
      await registry.remove({ serviceId: tenant, userName: 'ann', gatewayId: 'gw-1', connectionId: 'c1' });
      assert.deepEqual(await locationsOf(registry, tenant, 'ann'), ['gw-2/c2']);
      assert.deepEqual(await locationsOf(registry, other, 'ann'), ['gw-1/c3']);
      registry.close();
    });

    test("entries expire unless their gateway refreshes them: a crashed gateway's vanish", async () => {
      const registry = create();
      await registry.add({ serviceId: tenant, userName: 'bo', gatewayId: 'alive', connectionId: 'a' });
      await registry.add({ serviceId: tenant, userName: 'bo', gatewayId: 'crashed', connectionId: 'b' });
      for (let i = 0; i < 4; i++) {
        await sleep(TTL_MS / 3);
        await registry.refresh('alive', [{ serviceId: tenant, userName: 'bo', connectionId: 'a' }]);
      }
      assert.deepEqual(await locationsOf(registry, tenant, 'bo'), ['alive/a']);
      // A refresh also puts back what the registry lost (Redis restarted empty).
      await registry.refresh('alive', [{ serviceId: tenant, userName: 'cy', connectionId: 'z' }]);
      assert.deepEqual(await locationsOf(registry, tenant, 'cy'), ['alive/z']);
      registry.close();
    });
  });
}
