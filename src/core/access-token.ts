import { z } from 'zod';
import { AppError } from './errors.js';
import { permissionsSchema, roleNameSchema, sessionScopesSchema } from './grant-schemas.js';
import { eaPolicySchema } from './subjects.js';

/**
 * The formats of the one-time access tokens: base64 of a JSON object with
 * every claim and Nuve's signature over them. Only Nuve can verify the
 * signature (it holds the tenants' keys); the formats are shared so that a
 * gateway can refuse a token that is not even well formed without asking Nuve.
 *
 * Two kinds: the room token (Licode's, unchanged: one user in one room with a
 * role) and the session token (`kind: "session"`: one user of a tenant with
 * scopes, and optionally a room with a role).
 */
const tokenId = z.string().regex(/^[0-9a-f]{32}$/);
const serviceId = z.string().regex(/^[0-9a-f]{24}$/);
const roomId = z.string().regex(/^[0-9a-f]{24}$/);
const userName = z.string().min(1).max(256);
/** Where the token is to be used, and Licode's `host`/`secure` for clients that find the gateway with them. */
const gatewayClaims = {
  gatewayId: z.string().min(1).max(200),
  gatewayUrl: z.string().url(),
  host: z.string().min(1),
  secure: z.boolean(),
};

const tokenClaimsSchema = z
  .object({
    tokenId,
    serviceId,
    roomId,
    userName,
    role: roleNameSchema,
    /** What the role may do, signed with the rest. Absent from tokens of Nuves older than it (their role then decides). */
    permissions: permissionsSchema.optional(),
    ...gatewayClaims,
    eapolicy: eaPolicySchema,
    expiresAt: z.number().int().positive(),
  })
  .strict();
export type TokenClaims = z.infer<typeof tokenClaimsSchema>;

/** The room a session token grants, with the role the user has there (as a room token would carry them). */
export const sessionRoomClaimsSchema = z
  .object({ roomId, role: roleNameSchema, permissions: permissionsSchema, eapolicy: eaPolicySchema })
  .strict();

const sessionClaimsSchema = z
  .object({
    kind: z.literal('session'),
    tokenId,
    serviceId,
    userName,
    scopes: sessionScopesSchema,
    room: sessionRoomClaimsSchema.optional(),
    ...gatewayClaims,
    expiresAt: z.number().int().positive(),
  })
  .strict();
export type SessionClaims = z.infer<typeof sessionClaimsSchema>;

const signature = z.string().min(1).max(128);
const signedTokenSchema = tokenClaimsSchema.extend({ signature }).strict();
const signedSessionSchema = sessionClaimsSchema.extend({ signature }).strict();

/** Longest token accepted anywhere (the bus request to Nuve refuses longer ones). */
export const MAX_TOKEN_LENGTH = 4096;

export interface DecodedToken {
  claims: TokenClaims;
  signature: string;
}

export interface DecodedSessionToken {
  claims: SessionClaims;
  signature: string;
}

function parseTokenText(token: string): unknown {
  if (token.length > MAX_TOKEN_LENGTH) throw new AppError('TOKEN_MALFORMED', 'token is too long');
  try {
    return JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
  } catch {
    throw new AppError('TOKEN_MALFORMED', 'token is not base64-encoded JSON');
  }
}

const malformed = () => new AppError('TOKEN_MALFORMED');

/** Reads a room token's claims and signature; TOKEN_MALFORMED when it is not a room token at all. Verifies nothing. */
export function decodeToken(token: string): DecodedToken {
  const result = signedTokenSchema.safeParse(parseTokenText(token));
  if (!result.success) throw malformed();
  const { signature: sig, ...claims } = result.data;
  return { claims, signature: sig };
}

/** Reads a room or session token; TOKEN_MALFORMED when it is neither. Verifies nothing. */
export function decodeAnyToken(token: string): DecodedToken | DecodedSessionToken {
  const parsed = parseTokenText(token);
  const isSession = typeof parsed === 'object' && parsed !== null && (parsed as { kind?: unknown }).kind === 'session';
  if (!isSession) {
    const room = signedTokenSchema.safeParse(parsed);
    if (!room.success) throw malformed();
    const { signature: sig, ...claims } = room.data;
    return { claims, signature: sig };
  }
  const session = signedSessionSchema.safeParse(parsed);
  if (!session.success) throw malformed();
  const { signature: sig, ...claims } = session.data;
  // Room methods need a room: a token with one of them only is not a token Nuve issues.
  if (claims.scopes.includes('room') !== (claims.room !== undefined)) throw malformed();
  return { claims, signature: sig };
}

/** Whether decoded claims are a session token's. */
export function isSessionClaims(claims: TokenClaims | SessionClaims): claims is SessionClaims {
  return 'kind' in claims && claims.kind === 'session';
}
