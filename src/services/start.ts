import type { Registry } from 'prom-client';
import type { Bus } from '../core/bus/bus.js';
import { NatsBus } from '../core/bus/nats-bus.js';
import { RabbitMqBus } from '../core/bus/rabbitmq-bus.js';
import { type Config, type ConfigInput, loadConfig, parseConfig } from '../core/config.js';
import { type Logger, createLogger } from '../core/logger.js';
import { ServiceCaller } from '../core/service-caller.js';
import { createServiceDiscovery } from '../core/service-discovery-factory.js';
import type { ServiceDiscovery } from '../core/service-discovery.js';
import type { ServiceDefinition } from './define.js';
import { ServiceInstanceHost } from './instance.js';
import { ServiceMetrics } from './metrics.js';

export interface StartServiceOptions {
  /** The cluster's configuration (its `bus` and `services` sections count); default: the config file and MSS_* variables. */
  config?: ConfigInput;
  /** A bus to share (the embedded platform's); else one is opened from `url` or `config.bus` and closed with the service. */
  bus?: Bus;
  /** The cluster's bus: `nats://…` (comma-separated servers) or `amqp(s)://…`; shorthand for `config.bus`. */
  url?: string;
  /** A discovery to share (several services in one process); else one of `config.services.discovery`. */
  discovery?: ServiceDiscovery;
  logger?: Logger;
  /** Where the service's flow counters go (the process's `/metrics`). */
  metrics?: Registry;
  /** Default: the service's name and a random suffix. */
  instanceId?: string;
  /** Relative capacity for weighted strategies (hash). */
  weight?: number;
}

/** A service running as one instance: stop() leaves discovery, lets calls in flight answer, and closes what it opened. */
export interface RunningService {
  readonly id: string;
  readonly host: ServiceInstanceHost;
  stop(): Promise<void>;
}

/**
 * Runs a service in this process against the cluster's bus: on the given bus
 * (embedded), or on one it opens from the configuration (the app's own
 * process), announced by the configured discovery.
 */
export async function startService(definition: ServiceDefinition, options: StartServiceOptions = {}): Promise<RunningService> {
  const config: Config = options.config ? parseConfig(options.config) : loadConfig();
  if (options.url) config.bus = { ...config.bus, ...busOfUrl(options.url) };
  const logger = (options.logger ?? createLogger(config.log)).child({ service: definition.name });
  const ownBus = options.bus ? undefined : await openBus(config, logger, definition.name);
  const bus = options.bus ?? ownBus!;
  const ownDiscovery = options.discovery ? undefined : createServiceDiscovery(config.services, bus, logger);
  const discovery = options.discovery ?? ownDiscovery!;
  try {
    await discovery.start();
    const caller = new ServiceCaller(bus, discovery, logger, config.services);
    caller.start();
    const host = new ServiceInstanceHost(definition, bus, discovery, caller, logger, {
      id: options.instanceId,
      weight: options.weight,
      maxReplyBytes: config.services.maxReplyBytes,
    });
    if (options.metrics) new ServiceMetrics(options.metrics).watch(host);
    host.start();
    logger.info({ id: host.id, version: definition.version }, 'service instance started');
    return {
      id: host.id,
      host,
      stop: async () => {
        await host.stop();
        caller.close();
        await ownDiscovery?.close();
        await ownBus?.close();
      },
    };
  } catch (err) {
    await ownDiscovery?.close();
    await ownBus?.close();
    throw err;
  }
}

function busOfUrl(url: string): Pick<Config['bus'], 'driver'> & Partial<Config['bus']> {
  if (/^nats:\/\//i.test(url)) return { driver: 'nats', natsUrl: url };
  if (/^amqps?:\/\//i.test(url)) return { driver: 'rabbitmq', amqpUrl: url };
  throw new Error(`startService: "${url}" is neither a nats:// nor an amqp(s):// URL`);
}

async function openBus(config: Config, logger: Logger, name: string): Promise<Bus> {
  const { bus } = config;
  const client = `mss-service-${name}-${process.pid}`;
  if (bus.driver === 'nats') return NatsBus.connect(bus.natsUrl, logger, bus.requestTimeoutMs, client);
  if (bus.driver === 'rabbitmq') return RabbitMqBus.connect(bus.amqpUrl, logger, bus.requestTimeoutMs, client);
  throw new Error('startService: the in-process bus reaches only this process; pass the platform\'s `bus`, or configure bus.driver nats or rabbitmq');
}
