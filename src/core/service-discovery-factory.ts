import type { Bus } from './bus/bus.js';
import type { Config } from './config.js';
import { EtcdServiceDiscovery } from './etcd-service-discovery.js';
import type { Logger } from './logger.js';
import { BusServiceDiscovery } from './service-bus-discovery.js';
import type { ServiceDiscovery } from './service-discovery.js';

/** The discovery `services.discovery` names, on this process's bus. */
export function createServiceDiscovery(config: Config['services'], bus: Bus, logger: Logger): ServiceDiscovery {
  if (config.discovery === 'etcd') {
    const { hosts, prefix, leaseTtlSec } = config.etcd;
    return new EtcdServiceDiscovery({ hosts, prefix, leaseTtlSec }, logger.child({ component: 'etcd-discovery' }));
  }
  return new BusServiceDiscovery(bus, logger, { heartbeatMs: config.heartbeatMs, timeoutMs: config.timeoutMs });
}
