import { randomBytes } from 'node:crypto';
import type { Bus, Subscription } from '../core/bus/bus.js';
import { AppError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Permissions, SessionScope } from '../protocol/permissions.js';
import type { RoomRecord, ServiceRecord, Store } from './store/store.js';
import { NUVE_QUEUE, type SessionGrant, type TokenGrant, subjects, tokenConsumeRequestSchema } from '../core/subjects.js';
import {
  decodeAnyToken,
  encodeSessionToken,
  encodeToken,
  isSessionClaims,
  type SessionClaims,
  type TokenClaims,
  verifyTokenSignature,
} from './access-token.js';
import type { CacheInvalidation } from './cache-invalidation.js';
import type { RoomCache } from './room-cache.js';
import type { GatewayEntry, GatewayRegistry } from './gateway-registry.js';
import type { ServiceDirectory } from './service-directory.js';

const RANDOM_BYTES = 10;
let randomPool = Buffer.alloc(0);
let randomOffset = 0;

/**
 * 32 hex characters: the time in ms (12), then 80 random bits (20). Ordered
 * by time, new ids land at the end of the store's index instead of all over
 * it, which keeps token inserts cheap; the random part keeps them unguessable.
 * Random bytes come from a pool, one call to the CSPRNG per 256 ids.
 */
export function newTokenId(): string {
  if (randomOffset + RANDOM_BYTES > randomPool.length) {
    randomPool = randomBytes(RANDOM_BYTES * 256);
    randomOffset = 0;
  }
  const random = randomPool.toString('hex', randomOffset, randomOffset + RANDOM_BYTES);
  randomOffset += RANDOM_BYTES;
  return Date.now().toString(16).padStart(12, '0') + random;
}

/**
 * Issues one-time tokens (choosing the room's gateway) and consumes them for
 * gateways over the bus.
 */
export class TokenIssuer {
  private consumeSubscription?: Subscription;
  private purgeTimer?: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly services: ServiceDirectory,
    private readonly registry: GatewayRegistry,
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly ttlSec: number,
    /** Configured roles (nuve.roles) and what each may do. */
    private readonly roles: Readonly<Record<string, Permissions>>,
    /** The room handed in may come from a cache: told when it proves stale. */
    private readonly invalidation: CacheInvalidation,
    /**
     * The room read of a consumption (its name, for the grant): the room cache. A consumed token
     * row proves its room existed when it was consumed (deleting a room deletes its tokens, and the
     * foreign keys cascade), so the store's second read per join only fetched the name.
     */
    private readonly rooms: Pick<RoomCache, 'get'>,
  ) {}

  /** The permissions of a configured role; INVALID_ROLE (400) for any other name. */
  permissionsOf(role: string): Permissions {
    if (!Object.hasOwn(this.roles, role)) {
      throw new AppError('INVALID_ROLE');
    }
    return this.roles[role]!;
  }

  start(): void {
    this.consumeSubscription = this.bus.respond(subjects.tokenConsume, (payload) => this.consume(payload), {
      queue: NUVE_QUEUE,
    });
    this.purgeTimer = setInterval(() => {
      this.store.deleteExpiredTokens(Date.now()).catch((err: unknown) => this.logger.warn({ err }, 'token purge failed'));
    }, 60_000);
    this.purgeTimer.unref();
  }

  stop(): void {
    this.consumeSubscription?.unsubscribe();
    clearInterval(this.purgeTimer);
  }

  /**
   * Same room → same gateway while that gateway is registered (draining
   * included: its calls go on there). Otherwise the ring picks among
   * available gateways and a compare-and-set in the store settles races
   * between Nuve instances.
   */
  async gatewayFor(room: RoomRecord): Promise<GatewayEntry> {
    const current = room.gatewayId === null ? undefined : this.registry.get(room.gatewayId);
    if (current) return current;
    const chosen = this.registry.choose(room.id);
    if (!chosen) throw new AppError('NO_GATEWAY_AVAILABLE');
    let winner = await this.store.assignGateway(room.id, room.gatewayId, chosen.id);
    // The room's gateway went away and was released since the room was read: claim the now free room.
    if (winner === null && room.gatewayId !== null) winner = await this.store.assignGateway(room.id, null, chosen.id);
    if (winner !== room.gatewayId) {
      // A room that moved from one gateway to another: a Nuve whose cache still names the old one (its
      // registry has not yet seen that gateway go) must not send joins there. A room's first gateway
      // needs no word: a Nuve with no gateway cached comes here and meets it in the compare-and-set.
      if (room.gatewayId !== null) void this.invalidation.roomChanged(room.serviceId, room.id);
      else this.invalidation.roomStale(room.serviceId, room.id);
    }
    if (winner === chosen.id) return chosen;
    const other = winner === null ? undefined : this.registry.get(winner);
    if (other) return other;
    throw new AppError('NO_GATEWAY_AVAILABLE');
  }

  async issue(service: ServiceRecord, room: RoomRecord, userName: string, role: string): Promise<string> {
    const permissions = this.permissionsOf(role);
    const gateway = await this.gatewayFor(room);
    const now = Date.now();
    const tokenId = newTokenId();
    const gatewayUrl = new URL(gateway.url);
    const expiresAt = now + this.ttlSec * 1000;
    await this.stored(
      room,
      this.store.createToken({
        id: tokenId,
        serviceId: service.id,
        roomId: room.id,
        userName,
        role,
        gatewayId: gateway.id,
        eapolicy: room.eapolicy,
        expiresAt,
        createdAt: now,
      }),
    );
    return encodeToken(
      {
        tokenId,
        serviceId: service.id,
        roomId: room.id,
        userName,
        role,
        gatewayId: gateway.id,
        gatewayUrl: gateway.url,
        host: gatewayUrl.host,
        secure: gatewayUrl.protocol === 'wss:',
        eapolicy: room.eapolicy,
        expiresAt,
        permissions,
      },
      service.key,
    );
  }

  /**
   * A session token: a user of the tenant with `scopes`, and the room it may enter with `role` when
   * it names one (then on the room's gateway; else on the gateway the ring gives that user).
   */
  async issueSession(
    service: ServiceRecord,
    userName: string,
    scopes: SessionScope[],
    room?: { record: RoomRecord; role: string },
  ): Promise<string> {
    const permissions = room && this.permissionsOf(room.role);
    const gateway = room ? await this.gatewayFor(room.record) : this.registry.choose(`${service.id}/${userName}`);
    if (!gateway) throw new AppError('NO_GATEWAY_AVAILABLE');
    const now = Date.now();
    const tokenId = newTokenId();
    const gatewayUrl = new URL(gateway.url);
    const expiresAt = now + this.ttlSec * 1000;
    const write = this.store.createSessionToken({
      id: tokenId,
      serviceId: service.id,
      userName,
      scopes,
      roomId: room?.record.id ?? null,
      role: room?.role ?? null,
      gatewayId: gateway.id,
      expiresAt,
      createdAt: now,
    });
    await (room ? this.stored(room.record, write) : write);
    const claims: SessionClaims = {
      kind: 'session',
      tokenId,
      serviceId: service.id,
      userName,
      scopes,
      gatewayId: gateway.id,
      gatewayUrl: gateway.url,
      host: gatewayUrl.host,
      secure: gatewayUrl.protocol === 'wss:',
      expiresAt,
    };
    if (room && permissions) {
      claims.room = { roomId: room.record.id, role: room.role, permissions, eapolicy: room.record.eapolicy };
    }
    return encodeSessionToken(claims, service.key);
  }

  /**
   * Waits for a token row of `room`. The room may come from a cache that has not yet heard of its
   * deletion (on another Nuve): the row's foreign key to the room refuses it, and the request gets
   * the ROOM_NOT_FOUND it would have got without the cache, not a 500.
   */
  private async stored(room: RoomRecord, write: Promise<void>): Promise<void> {
    try {
      await write;
    } catch (err) {
      void this.invalidation.roomChanged(room.serviceId, room.id);
      if (!(await this.store.getRoom(room.serviceId, room.id))) throw new AppError('ROOM_NOT_FOUND');
      throw err;
    }
  }

  /** Bus handler: verify signature (tenant key), gateway, expiry; then delete so it works once. */
  async consume(payload: unknown): Promise<TokenGrant | SessionGrant> {
    const request = tokenConsumeRequestSchema.safeParse(payload);
    if (!request.success) throw new AppError('TOKEN_MALFORMED', 'consume request is malformed', { status: 400 });
    const decoded = decodeAnyToken(request.data.token);
    const { claims } = decoded;
    const service = await this.services.get(claims.serviceId);
    if (!service || !verifyTokenSignature(decoded, service.key)) {
      throw new AppError('TOKEN_BAD_SIGNATURE');
    }
    if (claims.gatewayId !== request.data.gatewayId) {
      throw new AppError('TOKEN_WRONG_GATEWAY');
    }
    if (claims.expiresAt <= Date.now()) throw new AppError('TOKEN_EXPIRED');
    if (isSessionClaims(claims)) return this.consumeSession(claims);
    return this.consumeRoomToken(claims);
  }

  private async consumeRoomToken(claims: TokenClaims): Promise<TokenGrant> {
    const stored = await this.store.consumeToken(claims.tokenId);
    if (!stored) throw new AppError('TOKEN_ALREADY_USED');
    if (
      stored.serviceId !== claims.serviceId ||
      stored.roomId !== claims.roomId ||
      stored.userName !== claims.userName ||
      stored.role !== claims.role ||
      stored.gatewayId !== claims.gatewayId
    ) {
      throw new AppError('TOKEN_BAD_SIGNATURE', 'token does not match its record');
    }
    const room = await this.rooms.get(claims.serviceId, claims.roomId);
    if (!room) throw new AppError('TOKEN_ALREADY_USED', 'the room of this token was deleted');
    return {
      tokenId: claims.tokenId,
      serviceId: claims.serviceId,
      roomId: claims.roomId,
      roomName: room.name,
      userName: claims.userName,
      role: claims.role,
      // A token from before permissions: its role's, as this Nuve defines it.
      permissions: claims.permissions ?? this.permissionsOf(claims.role),
      eapolicy: claims.eapolicy,
    };
  }

  private async consumeSession(claims: SessionClaims): Promise<SessionGrant> {
    const stored = await this.store.consumeSessionToken(claims.tokenId);
    if (!stored) throw new AppError('TOKEN_ALREADY_USED');
    const scopesMatch = stored.scopes.length === claims.scopes.length && claims.scopes.every((s) => stored.scopes.includes(s));
    if (
      stored.serviceId !== claims.serviceId ||
      stored.userName !== claims.userName ||
      !scopesMatch ||
      stored.roomId !== (claims.room?.roomId ?? null) ||
      stored.role !== (claims.room?.role ?? null) ||
      stored.gatewayId !== claims.gatewayId
    ) {
      throw new AppError('TOKEN_BAD_SIGNATURE', 'token does not match its record');
    }
    const grant: SessionGrant = {
      kind: 'session',
      tokenId: claims.tokenId,
      serviceId: claims.serviceId,
      userName: claims.userName,
      scopes: claims.scopes,
    };
    if (!claims.room) return grant;
    const room = await this.rooms.get(claims.serviceId, claims.room.roomId);
    if (!room) throw new AppError('TOKEN_ALREADY_USED', 'the room of this token was deleted');
    grant.room = {
      tokenId: claims.tokenId,
      serviceId: claims.serviceId,
      roomId: room.id,
      roomName: room.name,
      userName: claims.userName,
      role: claims.room.role,
      permissions: claims.room.permissions,
      eapolicy: claims.room.eapolicy,
    };
    return grant;
  }
}
