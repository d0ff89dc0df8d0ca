import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from './config.js';

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/**
 * The one check of every operational endpoint (metrics, drain): the request
 * carries `Authorization: Bearer <ops.token>`. Compared as SHA-256 digests in
 * constant time, so neither the length nor a prefix of the secret leaks.
 * Where no token is configured, nothing matches and the endpoints stay closed:
 * being on the same host (a reverse proxy) proves nothing.
 */
export class OpsAuth {
  private readonly expected?: Buffer;

  constructor(config: Config['ops']) {
    if (config.token !== undefined) this.expected = digest(config.token);
  }

  get enabled(): boolean {
    return this.expected !== undefined;
  }

  allows(authorization: string | undefined): boolean {
    if (!this.expected || !authorization || authorization.length > 512) return false;
    const match = /^Bearer ([^\s]+)$/i.exec(authorization);
    return match !== null && timingSafeEqual(digest(match[1]!), this.expected);
  }
}
