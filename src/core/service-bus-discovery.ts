import { EventEmitter } from 'node:events';
import type { Bus } from './bus/bus.js';
import { HeartbeatPublisher } from './heartbeat-publisher.js';
import { HeartbeatTable, type Seen } from './heartbeat-table.js';
import type { Logger } from './logger.js';
import {
  type ServiceDiscovery,
  type ServiceDiscoveryEvents,
  type ServiceInstance,
  type ServiceRegistration,
  serviceInstanceSchema,
} from './service-discovery.js';
import { serviceSubjects } from './service-protocol.js';

export interface BusServiceDiscoveryOptions {
  heartbeatMs: number;
  timeoutMs: number;
}

/**
 * Discovery over the bus, the default: each registered instance publishes a
 * heartbeat with its load every `heartbeatMs` (`service.heartbeat`), says
 * `service.down` on a clean stop, and answers `service.hello` at once; every
 * process keeps the same table (HeartbeatTable: silence counted only while
 * this process has the bus), grouped here by service.
 */
export class BusServiceDiscovery extends EventEmitter<ServiceDiscoveryEvents> implements ServiceDiscovery {
  private readonly table: HeartbeatTable<ServiceInstance>;
  private readonly publishers = new Set<HeartbeatPublisher>();
  /** Live instances by service, sorted by id; rebuilt only when membership changes, never per heartbeat. */
  private readonly byService = new Map<string, ServiceInstance[]>();
  private started = false;

  constructor(
    private readonly bus: Bus,
    logger: Logger,
    private readonly options: BusServiceDiscoveryOptions,
  ) {
    super();
    this.table = new HeartbeatTable(bus, logger, {
      heartbeat: serviceSubjects.heartbeat,
      down: serviceSubjects.down,
      hello: serviceSubjects.hello,
      schema: serviceInstanceSchema,
      timeoutMs: options.timeoutMs,
      what: 'service instance',
    });
    this.table.on('added', (entry) => {
      const instance = strip(entry);
      this.rebuild(instance.service);
      this.emit('added', instance);
    });
    this.table.on('updated', (entry, previous) => {
      const instance = strip(entry);
      // A heartbeat only refreshes the load: the sorted list keeps the same members, patched in place.
      const list = this.byService.get(instance.service);
      const index = list?.findIndex((i) => i.id === instance.id) ?? -1;
      if (list && index >= 0 && previous.service === instance.service) list[index] = instance;
      else {
        this.rebuild(previous.service);
        this.rebuild(instance.service);
      }
      // Every heartbeat repeats the instance; only a change (its load, mostly) is news, as with etcd.
      if (!sameInstance(instance, strip(previous))) this.emit('updated', instance);
    });
    this.table.on('removed', (entry, reason) => {
      const instance = strip(entry);
      this.rebuild(instance.service);
      this.emit('removed', instance, reason);
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.table.start();
  }

  register(describe: () => ServiceInstance): ServiceRegistration {
    const first = describe();
    const publisher = new HeartbeatPublisher(this.bus, {
      heartbeat: serviceSubjects.heartbeat,
      down: serviceSubjects.down,
      hello: serviceSubjects.hello,
      id: first.id,
      intervalMs: this.options.heartbeatMs,
      payload: describe,
    });
    this.publishers.add(publisher);
    publisher.start();
    return {
      withdraw: async () => {
        if (!this.publishers.delete(publisher)) return;
        publisher.stop();
      },
    };
  }

  instances(service: string): readonly ServiceInstance[] {
    return this.byService.get(service) ?? [];
  }

  services(): string[] {
    return [...this.byService.keys()].sort();
  }

  async close(): Promise<void> {
    for (const publisher of this.publishers) publisher.stop();
    this.publishers.clear();
    this.table.stop();
    this.started = false;
  }

  private rebuild(service: string): void {
    const list = this.table
      .list()
      .filter((entry) => entry.service === service)
      .map(strip);
    if (list.length === 0) this.byService.delete(service);
    else this.byService.set(service, list);
  }
}

function strip({ lastSeen: _lastSeen, ...instance }: Seen<ServiceInstance>): ServiceInstance {
  return instance;
}

function sameInstance(a: ServiceInstance, b: ServiceInstance): boolean {
  return (
    a.inFlight === b.inFlight &&
    a.weight === b.weight &&
    a.version === b.version &&
    a.subject === b.subject &&
    a.service === b.service &&
    a.incarnation === b.incarnation
  );
}
