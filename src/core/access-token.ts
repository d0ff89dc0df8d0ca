import { z } from 'zod';
import { AppError } from './errors.js';
import { permissionsSchema, roleNameSchema } from './roles.js';
import { eaPolicySchema } from './subjects.js';

/**
 * The format of the one-time room access token: base64 of a JSON object with
 * every claim and Nuve's signature over them. Only Nuve can verify the
 * signature (it holds the tenants' keys); the format is shared so that a
 * gateway can refuse a token that is not even well formed without asking Nuve.
 */
const tokenClaimsSchema = z
  .object({
    tokenId: z.string().regex(/^[0-9a-f]{32}$/),
    serviceId: z.string().regex(/^[0-9a-f]{24}$/),
    roomId: z.string().regex(/^[0-9a-f]{24}$/),
    userName: z.string().min(1).max(256),
    role: roleNameSchema,
    /** What the role may do, signed with the rest. Absent from tokens of Nuves older than it (their role then decides). */
    permissions: permissionsSchema.optional(),
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

/** Longest token accepted anywhere (the bus request to Nuve refuses longer ones). */
export const MAX_TOKEN_LENGTH = 4096;

export interface DecodedToken {
  claims: TokenClaims;
  signature: string;
}

/** Reads a token's claims and signature; TOKEN_MALFORMED when it is not a token at all. Verifies nothing. */
export function decodeToken(token: string): DecodedToken {
  if (token.length > MAX_TOKEN_LENGTH) throw new AppError('TOKEN_MALFORMED', 'token is too long');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
  } catch {
    throw new AppError('TOKEN_MALFORMED', 'token is not base64-encoded JSON');
  }
  const result = signedTokenSchema.safeParse(parsed);
  if (!result.success) throw new AppError('TOKEN_MALFORMED');
  const { signature, ...claims } = result.data;
  return { claims, signature };
}
