import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ServerNotifications } from '../protocol/notifications.js';
import { boundedJson } from './bounded-json.js';

/**
 * The push role's bus API: Nuve's REST routes, gateways and (later) the
 * service SDK reach it only through these subjects, never by import. Every
 * payload names its tenant (`serviceId`): user names are the tenant's own.
 */
export const pushSubjects = {
  /** caller → one push role (request, queue "push"): push to users (safe: stored first). */
  send: 'push.send',
  /** caller → one push role (request, queue "push"): a user's unarrived safe messages, oldest first. */
  pending: 'push.pending',
  /** caller → one push role (request, queue "push"): drop one unarrived safe message. */
  cancel: 'push.cancel',
  /** gateway → one push role (request, queue "push"): a push session is online; its unarrived messages are the reply. */
  online: 'push.online',
  /** gateway → one push role (request, queue "push"): the next page of a restore too large for one reply. */
  restore: 'push.restore',
  /** gateway → one push role (publish, queue "push"): a push session went away. */
  offline: 'push.offline',
  /** gateway → one push role (publish, queue "push"): the gateway still has these sessions (keeps their locations alive). */
  refresh: 'push.refresh',
  /** gateway → one push role (request, queue "push"): the client acknowledged messages (they arrived). */
  ack: 'push.ack',
  /** push role → one gateway (request): notifications for some of its connections; the reply names those it no longer has. */
  deliver: (gatewayId: string) => `gateway.${gatewayId}.push`,
} as const;

export const PUSH_QUEUE = 'push';

/** At most this many users per push call. */
export const MAX_PUSH_USERS = 1000;
/** At most this many ids per acknowledgement. */
export const MAX_ACK_IDS = 500;
/** At most this many sessions per refresh message (a gateway splits its list). */
export const MAX_REFRESH_SESSIONS = 1000;

/** A safe message's id: `pm_` and 22 base64url characters (128 random bits). */
export const pushIdSchema = z.string().regex(/^pm_[A-Za-z0-9_-]{22}$/, 'must be a push message id (pm_ and 22 base64url characters)');

/**
 * A user's copy of a message the caller named: `pm_` and 22 base64url characters of a digest of
 * tenant, user and the caller's id. Per tenant and user, so no tenant can name (and so block or
 * overwrite) another's message ids, and the same for every copy sent again.
 */
export function messageIdFor(serviceId: string, userName: string, messageId: string): string {
  return `pm_${createHash('sha256').update(`${serviceId}\n${userName}\n${messageId}`).digest('base64url').slice(0, 22)}`;
}

const serviceId = z.string().min(1).max(64);
/** As Nuve stores user names: printable, at most 256 long. */
export const pushUserSchema = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters');
/** Gateway ids are bus subject tokens, so without whitespace (the registry joins them to connection ids with a newline). */
const gatewayId = z.string().min(1).max(200).regex(/^\S+$/, 'must not contain whitespace');
const connectionId = z.string().min(1).max(64);

/** The payload of a push: free-form JSON, bounded in shape here; its byte size is bounded by `push.maxPayloadBytes`. */
export const pushDataSchema = boundedJson().refine((value) => value !== undefined, 'is required');

export const pushSendSchema = z.object({
  serviceId,
  users: z.array(pushUserSchema).min(1).max(MAX_PUSH_USERS),
  data: pushDataSchema,
  /** Safe: stored until acknowledged, restored on connect. Unsafe: to the sessions online now, nothing stored. */
  safe: z.boolean(),
  /** Safe only: dropped undelivered after this long. */
  ttlSec: z.number().int().positive().max(30 * 86_400).optional(),
  /**
   * The caller's id of this message (idempotency key), e.g. the event that caused it: each user's
   * copy then has an id derived from it (`messageIdFor`), the same however often it is sent. A safe
   * message so named is stored once while unarrived; an unsafe one is delivered carrying that id
   * (flagged `unsafe`), so clients drop a second copy of either.
   */
  messageId: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, - and _, at most 64')
    .optional(),
});
export type PushSend = z.infer<typeof pushSendSchema>;

export interface PushSendResult {
  /** Safe pushes: each user's message id, in the order of `users`. */
  messages: { user: string; id: string }[];
  /** Connections the notification reached (the gateways confirmed they still had them). */
  reached: number;
  /** Users with no connection reached (for safe pushes, their messages wait for them). */
  offline: string[];
}

export const pushPendingSchema = z.object({ serviceId, userName: pushUserSchema, limit: z.number().int().positive().max(1000) });

/**
 * A reply carrying messages holds at most about this many bytes of them (NATS refuses messages over
 * 1 MB by default): a restore continues in pages (`push.restore`), a pending list is cut short.
 */
export const MAX_REPLY_MESSAGE_BYTES = 512 * 1024;

/** Where a restore continues: after this send-order position. */
export const pushRestoreSchema = z.object({ serviceId, userName: pushUserSchema, afterSeq: z.number().int().nonnegative() });

export const pushCancelSchema = z.object({ serviceId, userName: pushUserSchema, id: pushIdSchema });

export const pushSessionSchema = z.object({ gatewayId, connectionId, serviceId, userName: pushUserSchema });
export type PushSession = z.infer<typeof pushSessionSchema>;

export const pushRefreshSchema = z.object({
  gatewayId,
  sessions: z.array(pushSessionSchema.omit({ gatewayId: true })).max(MAX_REFRESH_SESSIONS),
});

export const pushAckSchema = z.object({ serviceId, userName: pushUserSchema, ids: z.array(pushIdSchema).min(1).max(MAX_ACK_IDS) });

export interface PushAckResult {
  /** Messages this acknowledgement marked arrived. */
  acked: number;
}

/** A message as the client receives it (the `push` notification) and as Nuve lists pending ones. */
export type PushMessage = ServerNotifications['push'];

export const pushMessageSchema = z.object({
  id: pushIdSchema.optional(),
  /** An unsafe message with an id (its sender named it): not acknowledged, but a copy is dropped by id. */
  unsafe: z.literal(true).optional(),
  data: z.unknown(),
  sentAt: z.number(),
  expiresAt: z.number().optional(),
});

/** A page of a restore, oldest first; `nextAfterSeq` when more follow (ask `push.restore` with it). */
export interface PushRestorePage {
  messages: PushMessage[];
  nextAfterSeq?: number;
}

/** `push.online`'s reply: the first page of what the session missed, and how many the per-user cap dropped since. */
export interface PushOnlineResult extends PushRestorePage {
  dropped: number;
}

/** One notification for one connection: a message, or the notice that the cap dropped some. */
export const pushDeliverySchema = z.object({
  connectionId,
  message: pushMessageSchema.optional(),
  dropped: z.number().int().positive().optional(),
});
export type PushDelivery = z.infer<typeof pushDeliverySchema>;

export const pushDeliverSchema = z.object({ deliveries: z.array(pushDeliverySchema).min(1).max(10_000) });

export interface PushDeliverResult {
  /** Connections of the request the gateway does not have (any more): their locations are stale. */
  missing: string[];
}
