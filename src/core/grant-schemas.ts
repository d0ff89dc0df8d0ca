import { z } from 'zod';
import { type Permissions, SESSION_SCOPES } from '../protocol/permissions.js';

// What a grant carries, as every edge validates it: participant role names, their permissions,
// session scopes. (Platform roles — nuve, gateway, … — are src/core/role.ts.)

/** Every permission named (protocol/permissions.ts): as tokens and grants carry them. */
export const permissionsSchema = z
  .object({ publish: z.boolean(), subscribe: z.boolean(), publishData: z.boolean(), record: z.boolean() })
  .strict() satisfies z.ZodType<Permissions>;

/** A role's name, as Licode apps send it in `mauth_role` (a comma would end that header field). */
export const roleNameSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"');

/** Scopes as a session token or grant carries them: each once, at least one. */
export const sessionScopesSchema = z
  .enum(SESSION_SCOPES)
  .array()
  .min(1)
  .max(SESSION_SCOPES.length)
  .refine((scopes) => new Set(scopes).size === scopes.length, 'each scope at most once');
