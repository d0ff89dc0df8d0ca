import type { Bus } from '../core/bus/bus.js';
import { HashRing } from '../core/hash-ring.js';
import { HeartbeatTable, type Seen } from '../core/heartbeat-table.js';
import type { Logger } from '../core/logger.js';
import { type GatewayHeartbeat, gatewayHeartbeatSchema, subjects } from '../core/subjects.js';

export type GatewayEntry = Seen<GatewayHeartbeat>;

/**
 * Nuve's view of the gateways, built from their keepalives on the bus. Every
 * Nuve instance keeps its own copy; they converge because every gateway
 * publishes to all of them. Only `available` gateways are on the ring, so a
 * draining gateway is never chosen for a new room.
 */
export class GatewayRegistry extends HeartbeatTable<GatewayHeartbeat> {
  private ring = new HashRing([]);

  constructor(bus: Bus, logger: Logger, timeoutMs: number) {
    super(bus, logger, {
      heartbeat: subjects.gatewayHeartbeat,
      down: subjects.gatewayDown,
      hello: subjects.nuveHello,
      schema: gatewayHeartbeatSchema,
      timeoutMs,
      what: 'gateway',
    });
    this.on('added', () => this.rebuildRing());
    this.on('removed', () => this.rebuildRing());
    this.on('updated', (now, before) => {
      if (now.state !== before.state || now.weight !== before.weight) this.rebuildRing();
    });
  }

  /** The available gateway that owns `roomId` on the weighted ring. */
  choose(roomId: string): GatewayEntry | undefined {
    const id = this.ring.lookup(roomId);
    return id === undefined ? undefined : this.get(id);
  }

  private rebuildRing(): void {
    this.ring = new HashRing(this.list().filter((g) => g.state === 'available').map((g) => ({ id: g.id, weight: g.weight })));
  }
}
