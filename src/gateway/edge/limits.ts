import { isIPv6 } from 'node:net';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../../core/config.js';

export type ConnectionVerdict = 'ok' | 'address-limited' | 'limited';

/**
 * The gateway's local limits (each gateway counts for itself, as its clients
 * are already bound to it by Nuve): new WebSocket connections per second per
 * client address, then across all addresses, and requests per second per
 * client. A client refused again and again within ten seconds is flooding and
 * gets disconnected.
 */
export class GatewayLimits {
  readonly rejected = { connections: 0, connectionsFromOneAddress: 0, requests: 0, disconnects: 0 };
  private readonly connectionsPerAddress?: RateLimiterMemory;
  private readonly connections?: RateLimiterMemory;
  private readonly requests?: RateLimiterMemory;
  private readonly strikes?: RateLimiterMemory;

  constructor(config: Config['gateway']['rateLimit']) {
    if (!config.enabled) return;
    this.connectionsPerAddress = new RateLimiterMemory({ points: config.connectionsPerSecPerIp, duration: 1 });
    this.connections = new RateLimiterMemory({ points: config.connectionsPerSec, duration: 1 });
    this.requests = new RateLimiterMemory({ points: config.requestsPerSecPerClient, duration: 1 });
    this.strikes = new RateLimiterMemory({ points: config.disconnectAfterRejections, duration: 10 });
  }

  /**
   * A new connection from `address`. Its address's budget comes first, so a
   * flood from one address is stopped before it touches anyone else's share.
   * Only connections that will cost a Nuve round trip (`needsNuve`: their
   * token is not refused locally) draw on the budget shared by all addresses:
   * tokenless or spent-token floods cannot starve real clients. `needsNuve`
   * is asked only within the address's budget, so a flood past it costs no
   * token inspection.
   */
  async acceptConnection(address: string, needsNuve: () => boolean): Promise<ConnectionVerdict> {
    if (!this.connectionsPerAddress || !this.connections) return 'ok';
    if (!(await consumed(this.connectionsPerAddress, addressKey(address)))) {
      this.rejected.connectionsFromOneAddress++;
      return 'address-limited';
    }
    if (!needsNuve() || (await consumed(this.connections, 'all'))) return 'ok';
    this.rejected.connections++;
    return 'limited';
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

/**
 * What one client's budget is counted under: its IPv4 address, or the /64
 * of its IPv6 address (one host usually holds a whole /64, so counting
 * single IPv6 addresses would give it billions of budgets).
 */
export function addressKey(address: string): string {
  const ip = address.split('%')[0]!;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail] = ip.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::ffff:1.2.3.4) stands for two groups.
  const tailWidth = tailGroups.length + (tailGroups.at(-1)?.includes('.') ? 1 : 0);
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailWidth).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
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
