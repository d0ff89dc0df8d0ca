import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../core/config.js';

/**
 * The gateway's local limits (each gateway counts for itself, as its clients
 * are already bound to it by Nuve): new WebSocket connections per second, and
 * requests per second per client. A client refused again and again within
 * ten seconds is flooding and gets disconnected.
 */
export class GatewayLimits {
  readonly rejected = { connections: 0, requests: 0, disconnects: 0 };
  private readonly connections?: RateLimiterMemory;
  private readonly requests?: RateLimiterMemory;
  private readonly strikes?: RateLimiterMemory;

  constructor(config: Config['gateway']['rateLimit']) {
    if (!config.enabled) return;
    this.connections = new RateLimiterMemory({ points: config.connectionsPerSec, duration: 1 });
    this.requests = new RateLimiterMemory({ points: config.requestsPerSecPerClient, duration: 1 });
    this.strikes = new RateLimiterMemory({ points: config.disconnectAfterRejections, duration: 10 });
  }

  async acceptConnection(): Promise<boolean> {
    if (!this.connections) return true;
    if (await consumed(this.connections, 'all')) return true;
    this.rejected.connections++;
    return false;
  }

  async admitRequest(connectionKey: string): Promise<'ok' | 'reject' | 'disconnect'> {
    if (!this.requests || !this.strikes) return 'ok';
    if (await consumed(this.requests, connectionKey)) return 'ok';
    this.rejected.requests++;
    if (await consumed(this.strikes, connectionKey)) return 'reject';
    this.rejected.disconnects++;
    return 'disconnect';
  }

  forget(connectionKey: string): void {
    void this.requests?.delete(connectionKey);
    void this.strikes?.delete(connectionKey);
  }
}

async function consumed(limiter: RateLimiterMemory, key: string): Promise<boolean> {
  try {
    await limiter.consume(key);
    return true;
  } catch (res) {
    if (res instanceof RateLimiterRes) return false;
    throw res;
  }
}
