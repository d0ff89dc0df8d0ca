import type { Bus } from './bus/bus.js';
import { type Config, ConfigError } from './config.js';
import type { Logger } from './logger.js';
import { BusServiceDiscovery } from './service-bus-discovery.js';
import type { ServiceDiscovery } from './service-discovery.js';

/** The discovery `services.discovery` names, on this process's bus. */
export function createServiceDiscovery(config: Config['services'], bus: Bus, logger: Logger): ServiceDiscovery {
  if (config.discovery === 'etcd') {
    throw new ConfigError('services.discovery: "etcd" is not available in this build yet; use "bus"');
  }
  return new BusServiceDiscovery(bus, logger, { heartbeatMs: config.heartbeatMs, timeoutMs: config.timeoutMs });
}
