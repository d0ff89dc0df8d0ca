import { EventEmitter } from 'node:events';
import type { Bus, Subscription } from '../core/bus/bus.js';
import { HashRing } from '../core/hash-ring.js';
import type { Logger } from '../core/logger.js';
import {
  type GatewayHeartbeat,
  gatewayDownSchema,
  gatewayHeartbeatSchema,
  subjects,
} from '../core/subjects.js';

export interface GatewayEntry extends GatewayHeartbeat {
  lastSeen: number;
}

interface RegistryEvents {
  added: [GatewayEntry];
  removed: [GatewayEntry, 'timeout' | 'down'];
}

/**
 * Nuve's view of the gateways, built from their keepalives on the bus. Every
 * Nuve instance keeps its own copy; they converge because every gateway
 * publishes to all of them. Only `available` gateways are on the ring, so a
 * draining gateway is never chosen for a new room.
 */
export class GatewayRegistry extends EventEmitter<RegistryEvents> {
  private readonly gateways = new Map<string, GatewayEntry>();
  private readonly subscriptions: Subscription[] = [];
  private ring = new HashRing([]);
  private sweepTimer?: NodeJS.Timeout;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly timeoutMs: number,
  ) {
    super();
  }

  start(): void {
    this.subscriptions.push(
      this.bus.subscribe(subjects.gatewayHeartbeat, (payload) => this.onHeartbeat(payload)),
      this.bus.subscribe(subjects.gatewayDown, (payload) => {
        const parsed = gatewayDownSchema.safeParse(payload);
        if (parsed.success) this.remove(parsed.data.id, 'down');
      }),
    );
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(100, Math.floor(this.timeoutMs / 4)));
    this.sweepTimer.unref();
    this.bus.publish(subjects.nuveHello, {});
  }

  stop(): void {
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    clearInterval(this.sweepTimer);
  }

  get(id: string): GatewayEntry | undefined {
    return this.gateways.get(id);
  }

  list(): GatewayEntry[] {
    return [...this.gateways.values()];
  }

  /** The available gateway that owns `roomId` on the weighted ring. */
  choose(roomId: string): GatewayEntry | undefined {
    const id = this.ring.lookup(roomId);
    return id === undefined ? undefined : this.gateways.get(id);
  }

  private onHeartbeat(payload: unknown): void {
    const parsed = gatewayHeartbeatSchema.safeParse(payload);
    if (!parsed.success) {
      this.logger.warn({ issues: parsed.error.issues }, 'ignoring malformed gateway heartbeat');
      return;
    }
    const beat = parsed.data;
    const previous = this.gateways.get(beat.id);
    const entry: GatewayEntry = { ...beat, lastSeen: Date.now() };
    this.gateways.set(beat.id, entry);
    if (!previous) {
      this.logger.info({ gateway: beat.id, url: beat.url, state: beat.state }, 'gateway registered');
      this.emit('added', entry);
    }
    if (!previous || previous.state !== beat.state || previous.weight !== beat.weight) this.rebuildRing();
  }

  private sweep(): void {
    const deadline = Date.now() - this.timeoutMs;
    for (const entry of this.gateways.values()) {
      if (entry.lastSeen < deadline) this.remove(entry.id, 'timeout');
    }
  }

  private remove(id: string, reason: 'timeout' | 'down'): void {
    const entry = this.gateways.get(id);
    if (!entry) return;
    this.gateways.delete(id);
    this.rebuildRing();
    this.logger.warn({ gateway: id, reason }, 'gateway removed');
    this.emit('removed', entry, reason);
  }

  private rebuildRing(): void {
    this.ring = new HashRing(
      [...this.gateways.values()].filter((g) => g.state === 'available').map((g) => ({ id: g.id, weight: g.weight })),
    );
  }
}
