/**
 * The server SDK (`mediasoup-signal/server`): what an app's own server uses to talk to Nuve and to
 * trust its webhooks. It depends only on the platform's shared code (src/core), never on a role.
 */
import type { WebhookEvent } from '../core/room-events.js';
import { type HeaderBag, type VerifyOptions, verifyWebhookSignature } from '../core/webhook-signature.js';

export type { RoomEventType, WebhookEvent } from '../core/room-events.js';
export { ROOM_EVENT_TYPES } from '../core/room-events.js';
export { WEBHOOK_HEADERS, type HeaderBag, type VerifyOptions } from '../core/webhook-signature.js';
export { AppError as NuveError } from '../core/errors.js';

/**
 * Checks a webhook delivery with the tenant's key and returns its event. `body` must be the raw
 * body as received (parsing and serialising again changes the bytes signed). Throws a NuveError
 * with code WEBHOOK_SIGNATURE_INVALID (missing or wrong signature) or WEBHOOK_TIMESTAMP_STALE
 * (timestamp further than `toleranceSec`, default 300, from now: an old delivery replayed).
 * Deliveries may repeat (retries): deduplicate by the event's `id`.
 */
export function verifyWebhook(body: string | Uint8Array, headers: HeaderBag, key: string, options: VerifyOptions = {}): WebhookEvent {
  return JSON.parse(verifyWebhookSignature(body, headers, key, options)) as WebhookEvent;
}
export * from './nuve-client.js';
