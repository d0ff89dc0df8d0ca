import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { AppError } from '../core/errors.js';
import { eaPolicySchema, roleSchema } from '../core/subjects.js';

/**
 * The one-time room access token. Every field is covered by the signature,
 * which is made with the *tenant's* key (not the superService's), so a token
 * can vouch only for its own tenant and no field (eapolicy included) can be
 * altered. `host`/`secure` keep Licode clients able to find the gateway.
 */
export const tokenClaimsSchema = z
  .object({
    tokenId: z.string().regex(/^[0-9a-f]{32}$/),
    serviceId: z.string().regex(/^[0-9a-f]{24}$/),
    roomId: z.string().regex(/^[0-9a-f]{24}$/),
    userName: z.string().min(1).max(256),
    role: roleSchema,
    gatewayId: z.string().min(1).max(200),
    gatewayUrl: z.string().url(),
    host: z.string().min(1),
    secure: z.boolean(),
    eapolicy: eaPolicySchema,
    expiresAt: z.number().int().positive(),
  })
  .strict();
export type TokenClaims = z.infer<typeof tokenClaimsSchema>;

const signedTokenSchema = tokenClaimsSchema.extend({ signature: z.string().min(1).max(128) }).strict();

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

/** Canonical text signed: every claim in a fixed order, JSON-escaped so no field can bleed into another. */
function signingInput(claims: TokenClaims): string {
  return JSON.stringify(CLAIM_ORDER.map((k) => claims[k]));
}

function sign(claims: TokenClaims, key: string): string {
  return createHmac('sha256', key).update(signingInput(claims)).digest('base64url');
}

export function encodeToken(claims: TokenClaims, key: string): string {
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
    signature: sign(claims, key),
  } satisfies Record<(typeof CLAIM_ORDER)[number] | 'signature', unknown>;
  return Buffer.from(JSON.stringify(body)).toString('base64');
}

export interface DecodedToken {
  claims: TokenClaims;
  signature: string;
}

export function decodeToken(token: string): DecodedToken {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
  } catch {
    throw new AppError('TOKEN_MALFORMED', 'token is not base64-encoded JSON', 401);
  }
  const result = signedTokenSchema.safeParse(parsed);
  if (!result.success) throw new AppError('TOKEN_MALFORMED', 'token fields are missing or invalid', 401);
  const { signature, ...claims } = result.data;
  return { claims, signature };
}

export function verifyTokenSignature(decoded: DecodedToken, key: string): boolean {
  const expected = Buffer.from(sign(decoded.claims, key));
  const given = Buffer.from(decoded.signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
