import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBus } from '../../src/core/bus/memory-bus.js';
import { parseConfig } from '../../src/core/config.js';
import { openDatabase } from '../../src/core/database.js';
import { AppError } from '../../src/core/errors.js';
import { pushSubjects } from '../../src/core/push-protocol.js';
import { MemoryLocations } from '../../src/push/locations.js';
import { Push } from '../../src/push/push.js';
import { PushStore } from '../../src/push/store.js';
import { testLogger } from '../helpers/nuve-harness.js';

/** A registry that passes the up-front check and then fails the lookup: Redis closing between the two. */
class LostBetweenCheckAndLookup extends MemoryLocations {
  override async lookup(): Promise<never> {
    throw new AppError('PUSH_UNAVAILABLE', 'the location registry is unreachable: connection closed');
  }
}

test('a safe push refused because the registry went away after the check leaves nothing stored; a named one keeps its copy', async () => {
  const database = await openDatabase({ driver: 'sqlite', sqlitePath: ':memory:', postgresUrl: '', poolSize: 1 });
  const store = await PushStore.open(database);
  const bus = new MemoryBus(testLogger(), 3000);
  const locations = new LostBetweenCheckAndLookup(60_000);
  const push = new Push(parseConfig({}).push, bus, testLogger(), store, locations);
  await push.start();
  try {
    await assert.rejects(bus.request(pushSubjects.send, { serviceId: 'tenant-a', users: ['ann', 'bob'], data: 'x', safe: true }), {
      code: 'PUSH_UNAVAILABLE',
    });
    // The caller retries a refused push: had the copies stayed, each user would get it twice.
    assert.deepEqual(await store.pending('tenant-a', 'ann', Date.now(), 10), []);
    assert.deepEqual(await store.pending('tenant-a', 'bob', Date.now(), 10), []);
    await assert.rejects(
      bus.request(pushSubjects.send, { serviceId: 'tenant-a', users: ['ann'], data: 'named', safe: true, messageId: 'order-1' }),
      { code: 'PUSH_UNAVAILABLE' },
    );
    assert.deepEqual((await store.pending('tenant-a', 'ann', Date.now(), 10)).map((m) => m.data), ['named']);
  } finally {
    await push.close();
    locations.close();
    await bus.close();
    await store.close();
    await database.close();
  }
});
