import { createHmac, timingSafeEqual } from 'node:crypto';
import type { DecodedSessionToken, DecodedToken, SessionClaims, TokenClaims } from '../core/access-token.js';
import { PERMISSION_NAMES, type Permissions, SESSION_SCOPES } from '../protocol/permissions.js';

export { type SessionClaims, type TokenClaims, decodeAnyToken, decodeToken, isSessionClaims } from '../core/access-token.js';

/*
 * The one-time room access token (its format is in core/access-token.ts).
 * Every field is covered by the signature, which is made with the *tenant's*
 * key (not the superService's), so a token can vouch only for its own tenant
 * and no field (eapolicy and permissions included) can be altered. `host`/`secure` keep
 * Licode clients able to find the gateway.
 */

const CLAIM_ORDER = [
  'tokenId',
  'serviceId',
  'roomId',
  'userName',
  'role',
  'gatewayId',
  'gatewayUrl',
  'host',
  'secure',
  'eapolicy',
  'expiresAt',
] as const satisfies readonly (keyof TokenClaims)[];

/**
 * Canonical text signed: every claim in a fixed order, JSON-escaped so no field can bleed into another;
 * then the permissions, each in PERMISSION_NAMES order. A token without them (from a Nuve older than
 * permissions) was signed over the rest alone, and removing them from a token breaks its signature.
 */
function signingInput(claims: TokenClaims): string {
  const values: unknown[] = CLAIM_ORDER.map((k) => claims[k]);
  const { permissions } = claims;
  if (permissions) values.push(PERMISSION_NAMES.map((name) => permissions[name]));
  return JSON.stringify(values);
}

function sign(claims: TokenClaims, key: string): string {
  return createHmac('sha256', key).update(signingInput(claims)).digest('base64url');
}

/** The claims of a token this Nuve issues: permissions always included. */
export type IssuedClaims = TokenClaims & { permissions: Permissions };

export function encodeToken(claims: IssuedClaims, key: string): string {
  // Spelled out (claims in CLAIM_ORDER, then the signature): a literal serialises several times faster than
  // an object assembled key by key, and one of these is made per join.
  const c = claims;
  const body = {
    tokenId: c.tokenId,
    serviceId: c.serviceId,
    roomId: c.roomId,
    userName: c.userName,
    role: c.role,
    gatewayId: c.gatewayId,
    gatewayUrl: c.gatewayUrl,
    host: c.host,
    secure: c.secure,
    eapolicy: c.eapolicy,
    expiresAt: c.expiresAt,
    permissions: {
      publish: c.permissions.publish,
      subscribe: c.permissions.subscribe,
      publishData: c.permissions.publishData,
      record: c.permissions.record,
    },
    signature: sign(claims, key),
  } satisfies Record<(typeof CLAIM_ORDER)[number] | 'permissions' | 'signature', unknown>;
  return Buffer.from(JSON.stringify(body)).toString('base64');
}

/**
 * A session token's canonical text: its kind first (a room token's text starts with its hex id, so neither
 * kind's signature can pass for the other's), then every claim in a fixed order, the scopes as one flag per
 * SESSION_SCOPES entry, and the room with its role, eapolicy and permissions, or null.
 */
function sessionSigningInput(c: SessionClaims): string {
  const room = c.room && [c.room.roomId, c.room.role, c.room.eapolicy, PERMISSION_NAMES.map((name) => c.room!.permissions[name])];
  return JSON.stringify([
    'session',
    c.tokenId,
    c.serviceId,
    c.userName,
    SESSION_SCOPES.map((scope) => c.scopes.includes(scope)),
    c.gatewayId,
    c.gatewayUrl,
    c.host,
    c.secure,
    c.expiresAt,
    room ?? null,
  ]);
}

function signSession(claims: SessionClaims, key: string): string {
  return createHmac('sha256', key).update(sessionSigningInput(claims)).digest('base64url');
}

export function encodeSessionToken(claims: SessionClaims, key: string): string {
  return Buffer.from(JSON.stringify({ ...claims, signature: signSession(claims, key) })).toString('base64');
}

export function verifyTokenSignature(decoded: DecodedToken | DecodedSessionToken, key: string): boolean {
  const expected = Buffer.from('kind' in decoded.claims ? signSession(decoded.claims, key) : sign(decoded.claims, key));
  const given = Buffer.from(decoded.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
