import { z } from 'zod';
import type { Permissions } from '../protocol/permissions.js';

/** Every permission named (protocol/permissions.ts): as tokens and grants carry them. */
export const permissionsSchema = z
  .object({ publish: z.boolean(), subscribe: z.boolean(), publishData: z.boolean(), record: z.boolean() })
  .strict() satisfies z.ZodType<Permissions>;

/** A role's name, as Licode apps send it in `mauth_role` (a comma would end that header field). */
export const roleNameSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"');
