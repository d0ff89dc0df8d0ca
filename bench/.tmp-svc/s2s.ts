import { z } from 'zod';
import { parseConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { NatsBus } from '../../src/core/bus/nats-bus.js';
import { ServiceCaller } from '../../src/core/service-caller.js';
import { BusServiceDiscovery } from '../../src/core/service-bus-discovery.js';
import { defineService, startService } from '../../src/services/index.js';

const url = process.argv[2]!;
const instancesN = Number(process.argv[3] ?? 1);
const config = parseConfig({ log: { level: 'warn', format: 'json' }, bus: { driver: 'nats', natsUrl: url } });
const logger = createLogger(config.log);
const def = defineService({ name: 'bench', version: '1', methods: { empty: { input: z.unknown(), access: 'external', handler: () => ({}) } } });
const running = [];
for (let i = 0; i < instancesN; i++) running.push(await startService(def, { config }));
const bus = await NatsBus.connect(url, logger);
const discovery = new BusServiceDiscovery(bus, logger, config.services);
await discovery.start();
const caller = new ServiceCaller(bus, discovery, logger, config.services);
caller.start();
while (discovery.instances('bench').length < instancesN) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 300));
const identity = { tenant: 't', user: 'u', connection: 'c', kind: 'service' as const };
for (const concurrency of [64, 256]) {
  const lat: number[] = [];
  let done = 0;
  const end = Date.now() + 4000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const t = performance.now();
        await caller.call('bench', 'empty', {}, identity);
        lat.push(performance.now() - t);
        done++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  console.log(`s2s instances=${instancesN} concurrency=${concurrency}: ${Math.round(done / 4)} calls/s, p50 ${lat[Math.floor(lat.length * 0.5)]!.toFixed(2)} ms, p99 ${lat[Math.floor(lat.length * 0.99)]!.toFixed(2)} ms`);
}
caller.close();
await discovery.close();
for (const r of running) await r.stop();
await bus.close();
process.exit(0);
