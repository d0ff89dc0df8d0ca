import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { Session } from '../client/src/sdk/session.js';
import { NatsBus } from '../src/core/bus/nats-bus.js';
import type { ConfigInput } from '../src/core/config.js';
import { EtcdServiceDiscovery } from '../src/core/etcd-service-discovery.js';
import { createLogger } from '../src/core/logger.js';
import { BusServiceDiscovery } from '../src/core/service-bus-discovery.js';
import { NuveClient } from '../src/server/index.js';
import { type RunningService, startService } from '../src/services/index.js';
import { runDiscoveryContract } from './helpers/discovery-contract.js';
import { waitFor } from './helpers/nuve-harness.js';
import { type EmbeddedPlatform, startEmbedded } from './helpers/platform.js';
import { type ServiceProcess, startEtcdProcess } from './helpers/services.js';
import { echoService } from './helpers/services-fixtures.js';

/**
 * The two discoveries behind one interface: the contract test (written for etcd) on the bus's
 * heartbeats over a real NATS, and a gateway routing clients' calls to instances it found in a real
 * etcd (`services.discovery: etcd`), configured the way a deployment sets it.
 */
const NATS_URL = process.env.TEST_NATS_URL!;
const quiet = createLogger({ level: 'silent', pretty: false });

describe('bus discovery keeps the discovery contract (real NATS)', () => {
  const buses: NatsBus[] = [];
  after(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });
  runDiscoveryContract(async () => {
    // Each view on its own connection, as each process has its own.
    const connections = await Promise.all(Array.from({ length: 4 }, () => NatsBus.connect(NATS_URL, quiet)));
    buses.push(...connections);
    let next = 0;
    return {
      create: () => new BusServiceDiscovery(connections[next++ % connections.length]!, quiet, { heartbeatMs: 200, timeoutMs: 1500 }),
      refreshMs: 200,
    };
  });
});

describe('a gateway calling services it found in etcd', () => {
  let etcd: ServiceProcess & { url: string; dispose(): Promise<void> };
  let platform: EmbeddedPlatform;
  let app: NuveClient;
  const instances: RunningService[] = [];
  const sessions: Session[] = [];
  let services: ConfigInput['services'];

  before(async () => {
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    etcd = await startEtcdProcess();
    // As a deployment's environment gives it: one text setting for the hosts.
    services = { discovery: 'etcd', etcd: { hosts: `${etcd.url}`, prefix: `test/${randomBytes(4).toString('hex')}`, leaseTtlSec: 2 }, probeMs: 200 } as ConfigInput['services'];
    platform = await startEmbedded({ bus: { driver: 'nats', natsUrl: NATS_URL }, services });
    const tenant = await platform.createTenant('etcd-calls');
    app = new NuveClient({ url: platform.nuveUrl, serviceId: tenant.id, key: tenant.key });
    for (const id of ['echo-etcd-0', 'echo-etcd-1']) {
      instances.push(await startService(echoService(), { config: { log: { level: 'warn', format: 'json' }, bus: { driver: 'nats', natsUrl: NATS_URL }, services }, instanceId: id }));
    }
  });
  after(async () => {
    for (const s of sessions) s.close();
    for (const i of instances) await i.stop();
    await platform?.close();
    await etcd?.dispose();
  });

  test('the gateway sees the instances registered in etcd, routes to each, and drops one that leaves at once', async () => {
    const discovery = platform.gateway!.services.discovery;
    assert.ok(discovery instanceof EtcdServiceDiscovery, 'the gateway uses etcd');
    await waitFor(() => discovery.instances('echo').length === 2, 5000, 'both instances seen through etcd');
    const session = new Session({ getToken: () => app.createSession({ user: 'eve', scopes: ['rpc'] }), reconnect: false });
    sessions.push(session);
    await session.connect();
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await session.call<{ instance: string }>('echo', 'whoami', {}, { strategy: 'round-robin' })).instance);
    assert.deepEqual([...seen].sort(), ['echo-etcd-0', 'echo-etcd-1']);

    await instances.shift()!.stop();
    // Withdrawn from etcd: gone from the gateway's view well before its lease (2 s) could expire.
    await waitFor(() => discovery.instances('echo').map((i) => i.id).join() === 'echo-etcd-1', 1000, 'the withdrawn instance gone at once');
    for (let i = 0; i < 4; i++) assert.equal((await session.call<{ instance: string }>('echo', 'whoami', {})).instance, 'echo-etcd-1');
  });
});
