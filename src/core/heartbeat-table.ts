import { EventEmitter } from 'node:events';
import { z } from 'zod';
import type { Bus, Subscription } from './bus/bus.js';
import type { Logger } from './logger.js';

export type Seen<T> = T & { lastSeen: number };

interface TableEvents<T> {
  added: [Seen<T>];
  /** A heartbeat of a known member; `previous` is what it said before. */
  updated: [Seen<T>, Seen<T>];
  removed: [Seen<T>, RemovalReason];
}

/** Silent too long, said goodbye, or came back as a new process under the same id. */
export type RemovalReason = 'timeout' | 'down' | 'restarted';

export interface HeartbeatTableOptions<T> {
  /** Subjects: periodic heartbeats, a clean goodbye, and the hello that makes members announce themselves. */
  heartbeat: string;
  down: string;
  hello: string;
  schema: z.ZodType<T>;
  /** A member silent this long is removed. */
  timeoutMs: number;
  /** For logs: "gateway", "media agent". */
  what: string;
}

const downSchema = z.object({ id: z.string().min(1).max(200) });

/**
 * The rule for declaring a silent member dead: only time during which this
 * process itself had the bus counts. While the bus is down nobody is expired
 * (they may be fine: it is this process that hears nothing), and when it comes
 * back every member's clock restarts, so only those still silent a full
 * timeout after that are expired.
 */
export class BusSilence {
  private backAt = 0;
  private readonly stopListening: () => void;

  constructor(
    private readonly bus: Bus,
    /** Called when the bus is back, e.g. to ask every member for a fresh heartbeat. */
    onBack?: () => void,
  ) {
    this.stopListening = bus.onConnectivity((connected) => {
      if (!connected) return;
      this.backAt = Date.now();
      onBack?.();
    });
  }

  /** Whether a member last heard at `lastSeen` has been silent for `timeoutMs` of this process's time on the bus. */
  expired(lastSeen: number, timeoutMs: number): boolean {
    return this.bus.connected && Math.max(lastSeen, this.backAt) < Date.now() - timeoutMs;
  }

  stop(): void {
    this.stopListening();
  }
}

/**
 * Members of the cluster known from their heartbeats on the bus (gateways at
 * Nuve, agents at gateways and Nuve): validated, timestamped, removed after
 * silence (by the BusSilence rule) or a goodbye. Asking for a hello at start,
 * and again whenever the bus comes back, makes the view complete at once
 * instead of after one heartbeat period.
 */
export class HeartbeatTable<T extends { id: string; incarnation?: string }> extends EventEmitter<TableEvents<T>> {
  private readonly members = new Map<string, Seen<T>>();
  private readonly subscriptions: Subscription[] = [];
  private sweepTimer?: NodeJS.Timeout;
  private silence?: BusSilence;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly options: HeartbeatTableOptions<T>,
  ) {
    super();
  }

  start(): void {
    const o = this.options;
    this.subscriptions.push(
      this.bus.subscribe(o.heartbeat, (payload) => this.onHeartbeat(payload)),
      this.bus.subscribe(o.down, (payload) => {
        const parsed = downSchema.safeParse(payload);
        if (parsed.success) this.remove(parsed.data.id, 'down');
      }),
    );
    const silence = new BusSilence(this.bus, () => this.bus.publish(o.hello, {}));
    this.silence = silence;
    // Checked often, so a member goes within ~1 % of timeoutMs after its deadline (peers of a dead agent are told in time).
    this.sweepTimer = setInterval(() => {
      for (const member of this.members.values()) if (silence.expired(member.lastSeen, o.timeoutMs)) this.remove(member.id, 'timeout');
    }, Math.max(20, Math.floor(o.timeoutMs / 100)));
    this.sweepTimer.unref();
    this.bus.publish(o.hello, {});
  }

  stop(): void {
    for (const sub of this.subscriptions.splice(0)) sub.unsubscribe();
    clearInterval(this.sweepTimer);
    this.silence?.stop();
  }

  get(id: string): Seen<T> | undefined {
    return this.members.get(id);
  }

  /** Members sorted by id, so listings are stable. */
  list(): Seen<T>[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get size(): number {
    return this.members.size;
  }

  private onHeartbeat(payload: unknown): void {
    const parsed = this.options.schema.safeParse(payload);
    if (!parsed.success) {
      this.logger.warn({ issues: parsed.error.issues.slice(0, 3) }, `ignoring malformed ${this.options.what} heartbeat`);
      return;
    }
    const entry: Seen<T> = { ...parsed.data, lastSeen: Date.now() };
    let previous = this.members.get(entry.id);
    // A new process under a known id: whatever the old one held is gone, so it is removed before the new one is added.
    if (previous?.incarnation !== undefined && entry.incarnation !== undefined && previous.incarnation !== entry.incarnation) {
      this.remove(entry.id, 'restarted');
      previous = undefined;
    }
    this.members.set(entry.id, entry);
    if (previous) this.emit('updated', entry, previous);
    else {
      this.logger.info({ id: entry.id }, `${this.options.what} registered`);
      this.emit('added', entry);
    }
  }

  private remove(id: string, reason: RemovalReason): void {
    const entry = this.members.get(id);
    if (!entry) return;
    this.members.delete(id);
    this.logger.warn({ id, reason }, `${this.options.what} removed`);
    this.emit('removed', entry, reason);
  }
}
