import { createHash } from 'node:crypto';
import { decodeAnyToken } from '../../core/access-token.js';
import type { Bus } from '../../core/bus/bus.js';
import { AppError, isAppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { consumedGrantSchema, subjects } from '../../core/subjects.js';
import { tokenErrorCodes } from '../../protocol/codes.js';
import { type Session, sessionOf } from './session.js';

/** Clocks of gateways and Nuve may differ this much before a token the gateway thinks expired is refused without asking Nuve. */
const CLOCK_SKEW_MS = 60_000;
/** No token lives longer than this (the ceiling of nuve.tokenTtlSec), whatever its claims say. */
const MAX_TOKEN_LIFETIME_MS = 86_400_000;
/**
 * How long a session ended for MEDIA_AGENT_LOST may be resumed with its token: protoo-client
 * reconnects at once, then (if that attempt cannot connect) after 1, 2, 4 … s.
 */
const RESUME_WINDOW_MS = 15_000;

interface Refusal {
  code: keyof typeof tokenErrorCodes;
  message: string;
  /** Past this, the token is refused as expired anyway, so the entry is no longer needed. */
  until: number;
}

/** A session the gateway ended so that its client reconnects (MEDIA_AGENT_LOST): its token readmits it once. */
interface Resumption {
  session: Session;
  peerId: string;
  until: number;
}

/** A token admitted: the session it opens, the digest it is known by, and the peer id to resume as, if it resumes a session. */
export interface Admission {
  session: Session;
  key: string;
  resumedPeerId?: string;
}

/**
 * A client's token, read once per connection (its digest at once, its claims when first needed):
 * the upgrade's rate limit and the admission both inspect it, and digesting and decoding are what an
 * inspection costs. The refusals and resumptions it is checked against change meanwhile, so they are
 * looked up at each inspection.
 */
export class TokenReading {
  readonly key: string | null;
  private decoded?: { expiresAt: number } | { malformed: AppError };

  constructor(readonly token: string | null) {
    this.key = token ? digest(token) : null;
  }

  /** The token's expiry, or why it is malformed. */
  expiry(): { expiresAt: number } | { malformed: AppError } {
    if (!this.decoded) {
      try {
        this.decoded = { expiresAt: decodeAnyToken(this.token ?? '').claims.expiresAt };
      } catch (err) {
        this.decoded = { malformed: err as AppError };
      }
    }
    return this.decoded;
  }
}

/** A token this gateway refuses by itself, one that resumes a session, or the digest and expiry it is known by. */
type Inspection =
  | { refusal: AppError }
  | { resume: Resumption; key: string }
  | { token: string; key: string; expiresAt: number };

/**
 * Where clients' tokens are consumed, and refused as cheaply as possible: a
 * missing, malformed or expired token never leaves the gateway, and a token
 * Nuve refused once (or this gateway already admitted: tokens work once) is
 * remembered by a 128-bit digest until it would expire, so a reconnect storm
 * with a spent token costs one Nuve round trip in all. Concurrent uses of one
 * token share one round trip. Memory is bounded: the oldest refusals go first.
 *
 * A spent token works once more where the gateway itself ended its session so
 * that the client reconnects (its media agent was lost): protoo-client does
 * that at once with the same URL, and mediasoup-demo's app then joins again.
 */
export class TokenGate {
  private readonly refused = new Map<string, Refusal>();
  private readonly inFlight = new Map<string, Promise<Session>>();
  /** By token digest, oldest first (every entry lives RESUME_WINDOW_MS). */
  private readonly resumable = new Map<string, Resumption>();

  constructor(
    private readonly bus: Bus,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    private readonly maxRefusals: number,
  ) {}

  /** Whether admitting this token takes a Nuve round trip (the gateway can neither refuse nor resume it by itself). */
  needsNuve(reading: TokenReading): boolean {
    return 'token' in this.inspect(reading);
  }

  /** Verifies and consumes a token at Nuve, or resumes its session; failures carry the stable token error codes. */
  async consume(token: string | null | undefined | TokenReading): Promise<Admission> {
    const inspection = this.inspect(token instanceof TokenReading ? token : new TokenReading(token ?? null));
    if ('refusal' in inspection) throw inspection.refusal;
    if ('resume' in inspection) {
      this.resumable.delete(inspection.key);
      return { session: inspection.resume.session, key: inspection.key, resumedPeerId: inspection.resume.peerId };
    }
    const { token: wellFormed, key, expiresAt } = inspection;
    const pending = this.inFlight.get(key);
    if (pending) {
      // Another connection is using this very token: whatever Nuve answers it, this one cannot have it too.
      await pending;
      throw new AppError('TOKEN_ALREADY_USED');
    }
    const consumption = this.askNuve(wellFormed);
    this.inFlight.set(key, consumption);
    try {
      const session = await consumption;
      this.remember(key, 'TOKEN_ALREADY_USED', 'token was already used or revoked', expiresAt);
      return { session, key };
    } catch (err) {
      if (isAppError(err) && err.code in tokenErrorCodes && err.code !== 'TOKEN_SERVICE_UNAVAILABLE') {
        this.remember(key, err.code as Refusal['code'], err.message, expiresAt);
      }
      throw err;
    } finally {
      this.inFlight.delete(key);
    }
  }

  /**
   * The session admitted with the token known by `key` was ended so that its client reconnects:
   * the token's next use within RESUME_WINDOW_MS is admitted once more, without Nuve (whatever
   * the token's own expiry: sessions outlive their tokens), as the same user and peer id.
   */
  allowResume(key: string, session: Session, peerId: string): void {
    const now = Date.now();
    // Every entry lives as long, so the oldest are first: drop the expired ones.
    for (const [k, r] of this.resumable) {
      if (r.until > now) break;
      this.resumable.delete(k);
    }
    this.resumable.delete(key);
    this.resumable.set(key, { session, peerId, until: now + RESUME_WINDOW_MS });
  }

  /** A kicked user, or every user of a deleted room, does not come back by resuming; answers how many were about to. */
  forgetResumptions(roomId: string, userName?: string): number {
    let forgotten = 0;
    for (const [key, { session }] of this.resumable) {
      if (session.room?.roomId === roomId && (userName === undefined || session.userName === userName)) {
        this.resumable.delete(key);
        forgotten++;
      }
    }
    return forgotten;
  }

  private inspect(reading: TokenReading): Inspection {
    const { token, key } = reading;
    if (token === null || key === null) return { refusal: new AppError('TOKEN_MISSING') };
    const now = Date.now();
    const resume = this.resumable.get(key);
    if (resume && resume.until > now) return { resume, key };
    const known = this.refused.get(key);
    if (known && known.until > now) return { refusal: new AppError(known.code, known.message) };
    if (known) this.refused.delete(key);
    const expiry = reading.expiry();
    if ('malformed' in expiry) return { refusal: expiry.malformed };
    if (expiry.expiresAt + CLOCK_SKEW_MS < now) return { refusal: new AppError('TOKEN_EXPIRED') };
    return { token, key, expiresAt: expiry.expiresAt };
  }

  private async askNuve(token: string): Promise<Session> {
    try {
      const grant = await this.bus.request(subjects.tokenConsume, { token, gatewayId: this.gatewayId }, { timeoutMs: 3000 });
      return sessionOf(consumedGrantSchema.parse(grant));
    } catch (err) {
      if (isAppError(err) && err.code in tokenErrorCodes) throw err;
      this.logger.warn({ err }, 'token consumption failed');
      throw new AppError('TOKEN_SERVICE_UNAVAILABLE');
    }
  }

  /** Kept until the token's own expiry (then `inspect` says expired), never longer than a token can live. */
  private remember(key: string, code: Refusal['code'], message: string, expiresAt: number): void {
    const until = Math.min(expiresAt + CLOCK_SKEW_MS, Date.now() + MAX_TOKEN_LIFETIME_MS);
    this.refused.delete(key);
    this.refused.set(key, { code, message, until });
    // Oldest first (insertion order): a flood of distinct bad tokens evicts itself, and memory stays bounded.
    for (const oldest of this.refused.keys()) {
      if (this.refused.size <= this.maxRefusals) break;
      this.refused.delete(oldest);
    }
  }
}

/** A fixed 16 bytes per token, whatever its length: enough to tell tokens apart, small to keep. */
function digest(token: string): string {
  return createHash('sha256').update(token).digest().toString('base64', 0, 16);
}
