import { z } from 'zod';
import { MAX_CALL_PARTICIPANTS, MAX_GROUP_CALLS, type GroupCall, type GroupCallsResult } from '../core/group-calls-protocol.js';
import type { OnlineEvent } from '../core/online-events.js';

/** Nuve's answer to `nuve.groups.calls`, checked like any bus input (bounded by the contract's limits). */
export const groupCallsResultSchema: z.ZodType<GroupCallsResult> = z.object({
  groups: z.number().int().nonnegative(),
  calls: z
    .array(
      z.object({
        roomId: z.string().min(1).max(128),
        roomName: z.string().max(1024),
        group: z.string().min(1).max(128),
        since: z.number().nonnegative(),
        participants: z
          .array(z.object({ id: z.string().max(256), name: z.string().max(1024), since: z.number().nonnegative() }))
          .max(MAX_CALL_PARTICIPANTS),
        participantCount: z.number().int().nonnegative(),
      }),
    )
    .max(MAX_GROUP_CALLS),
});

/** What the user's client receives (the push's `data`): the calls going on in its groups when it came online. */
export interface GroupCallsNotification {
  type: 'groupCalls';
  /** The online event's id: the same on every copy. */
  eventId: string;
  /** When the user came online (epoch ms, the event's time). */
  onlineAt: number;
  /** When the calls were looked up (epoch ms). */
  asOf: number;
  calls: GroupCall[];
  /** Calls left out so the push fits (the most recently started are listed). */
  moreCalls?: number;
}

/** Participants listed per call are halved down to this before whole calls are left out. */
const MIN_LISTED_PARTICIPANTS = 3;

/**
 * The notification for `calls`, cut to `maxBytes` of JSON: fewer participants listed per call
 * first (each call still says how many it has), then the oldest calls left out (`moreCalls`).
 */
export function groupCallsNotification(event: OnlineEvent, calls: readonly GroupCall[], asOf: number, maxBytes: number): GroupCallsNotification {
  const listed = [...calls].sort((a, b) => b.since - a.since);
  let perCall = MAX_CALL_PARTICIPANTS;
  let count = listed.length;
  for (;;) {
    const notification: GroupCallsNotification = {
      type: 'groupCalls',
      eventId: event.id,
      onlineAt: event.at,
      asOf,
      calls: listed.slice(0, count).map((call) => ({ ...call, participants: call.participants.slice(0, perCall) })),
      ...(count < listed.length && { moreCalls: listed.length - count }),
    };
    if (Buffer.byteLength(JSON.stringify(notification)) <= maxBytes || count === 0) return notification;
    if (perCall > MIN_LISTED_PARTICIPANTS) perCall = Math.max(MIN_LISTED_PARTICIPANTS, Math.floor(perCall / 2));
    else count--;
  }
}
