import { z } from 'zod';

/**
 * How the distributor learns a user's ongoing calls: it asks Nuve, which keeps
 * group membership and which rooms of which group have peers now (from the
 * room events the gateways report). Roles never import each other; this file
 * is their whole contract.
 */
export const groupCallsSubjects = {
  /** distributor → one Nuve (request, queue "nuve"): the ongoing calls in a user's groups. */
  forUser: 'nuve.groups.calls',
} as const;

/** A group's name within its tenant, as apps write it in REST paths and room options. */
export const groupNameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\u0000-\u001f\u007f/]*$/, 'must not contain control characters or /');

export const groupCallsRequestSchema = z
  .object({ serviceId: z.string().min(1).max(64), userName: z.string().min(1).max(256) })
  .strict();
export type GroupCallsRequest = z.infer<typeof groupCallsRequestSchema>;

/** At most this many calls in one answer (the most recently started first), and this many participants listed per call. */
export const MAX_GROUP_CALLS = 100;
export const MAX_CALL_PARTICIPANTS = 50;

export interface GroupCall {
  roomId: string;
  roomName: string;
  group: string;
  /** Epoch ms when the room's current call started (its first peer of this run joined). */
  since: number;
  /** Peers in it now (the first MAX_CALL_PARTICIPANTS by join time) and how many in all. */
  participants: { id: string; name: string; since: number }[];
  participantCount: number;
}

export interface GroupCallsResult {
  /** How many groups the user belongs to (0: no group, nothing to tell). */
  groups: number;
  calls: GroupCall[];
}
