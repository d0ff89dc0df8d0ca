import { z } from 'zod';
import { boundedJson } from './bounded-json.js';

/**
 * What happens in a room, as its gateway reports it to Nuve (`nuve.room.events`) and Nuve delivers
 * it to the tenant's webhook. Each event has a unique id (receivers deduplicate by it) and the
 * gateway's time; a gateway sends a room's events in the order they happened.
 */
export const ROOM_EVENT_TYPES = [
  'room_started',
  'room_finished',
  'participant_joined',
  'participant_left',
  'participant_connection_aborted',
  'track_published',
  'track_unpublished',
  'participant_metadata_changed',
  'room_metadata_changed',
] as const;
export const roomEventTypeSchema = z.enum(ROOM_EVENT_TYPES);
export type RoomEventType = z.infer<typeof roomEventTypeSchema>;

const text = (max: number) => z.string().min(1).max(max);

export const roomEventSchema = z
  .object({
    id: text(64),
    type: roomEventTypeSchema,
    /** Epoch milliseconds on the gateway. */
    at: z.number().int().nonnegative(),
    serviceId: text(64),
    roomId: text(64),
    participant: z
      .object({ id: text(64), identity: text(256), name: text(256), role: text(64) })
      .strict()
      .optional(),
    track: z.object({ id: text(64), kind: z.enum(['audio', 'video']) }).strict().optional(),
    /** Why a participant left or a track went (leave, disconnected, kicked, …). */
    reason: z.string().max(256).optional(),
    metadata: boundedJson().optional(),
  })
  .strict();
export type RoomEvent = z.infer<typeof roomEventSchema>;

/** At most this many events per `nuve.room.events` request. */
export const ROOM_EVENT_BATCH_MAX = 500;

export const roomEventBatchSchema = z
  .object({ gatewayId: text(200), events: z.array(roomEventSchema).min(1).max(ROOM_EVENT_BATCH_MAX) })
  .strict();
export type RoomEventBatch = z.infer<typeof roomEventBatchSchema>;

/** The JSON body a webhook receiver gets for one event. */
export interface WebhookEvent {
  /** The event's unique id (also in the `mss-webhook-id` header): deliveries may repeat, receivers deduplicate by it. */
  id: string;
  event: RoomEventType;
  /** Epoch milliseconds when it happened. */
  createdAt: number;
  serviceId: string;
  room: { id: string; name?: string };
  participant?: RoomEvent['participant'];
  track?: RoomEvent['track'];
  reason?: string;
  metadata?: unknown;
}

export function webhookEvent(e: RoomEvent, roomName?: string): WebhookEvent {
  return {
    id: e.id,
    event: e.type,
    createdAt: e.at,
    serviceId: e.serviceId,
    room: roomName === undefined ? { id: e.roomId } : { id: e.roomId, name: roomName },
    ...(e.participant && { participant: e.participant }),
    ...(e.track && { track: e.track }),
    ...(e.reason !== undefined && { reason: e.reason }),
    ...(e.metadata !== undefined && { metadata: e.metadata }),
  };
}
