import type { Bus, Subscription } from '../core/bus/bus.js';
import type { Logger } from '../core/logger.js';
import { type GatewayHeartbeat, type GatewayState, subjects } from '../core/subjects.js';

/**
 * Keeps this gateway registered at every Nuve: a heartbeat every
 * `intervalMs`, an immediate one when a Nuve says hello (so a restarted Nuve
 * learns the gateways at once) or the state changes, and a goodbye on stop.
 */
export class GatewayPresence {
  private timer?: NodeJS.Timeout;
  private helloSubscription?: Subscription;
  private state: GatewayState = 'available';

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly identity: { id: string; url: string; weight: number },
    private readonly intervalMs: number,
    private readonly load: () => { rooms: number; peers: number },
  ) {}

  start(): void {
    this.helloSubscription = this.bus.subscribe(subjects.nuveHello, () => this.beat());
    this.timer = setInterval(() => this.beat(), this.intervalMs);
    this.timer.unref();
    this.beat();
  }

  setState(state: GatewayState): void {
    if (state === this.state) return;
    this.state = state;
    this.logger.info({ state }, 'gateway state changed');
    this.beat();
  }

  stop(): void {
    clearInterval(this.timer);
    this.helloSubscription?.unsubscribe();
    this.bus.publish(subjects.gatewayDown, { id: this.identity.id });
  }

  private beat(): void {
    const beat: GatewayHeartbeat = { ...this.identity, state: this.state, ...this.load() };
    this.bus.publish(subjects.gatewayHeartbeat, beat);
  }
}
