import type { Bus } from '../core/bus/bus.js';
import { HeartbeatPublisher } from '../core/heartbeat-publisher.js';
import type { Logger } from '../core/logger.js';
import { type GatewayHeartbeat, type GatewayState, subjects } from '../core/subjects.js';

/**
 * Keeps this gateway registered at every Nuve: a heartbeat every
 * `intervalMs`, an immediate one when a Nuve says hello (so a restarted Nuve
 * learns the gateways at once) or the state changes, and a goodbye on stop.
 */
export class GatewayPresence {
  private readonly publisher: HeartbeatPublisher;
  private state: GatewayState = 'available';

  constructor(
    bus: Bus,
    private readonly logger: Logger,
    identity: { id: string; url: string; weight: number },
    intervalMs: number,
    load: () => { rooms: number; peers: number },
  ) {
    this.publisher = new HeartbeatPublisher(bus, {
      heartbeat: subjects.gatewayHeartbeat,
      down: subjects.gatewayDown,
      hello: subjects.nuveHello,
      id: identity.id,
      intervalMs,
      payload: (): GatewayHeartbeat => ({ ...identity, state: this.state, ...load() }),
    });
  }

  start(): void {
    this.publisher.start();
  }

  setState(state: GatewayState): void {
    if (state === this.state) return;
    this.state = state;
    this.logger.info({ state }, 'gateway state changed');
    this.publisher.beat();
  }

  stop(): void {
    this.publisher.stop();
  }
}
