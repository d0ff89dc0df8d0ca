import { z } from 'zod';
import type { Bus, Subscription } from '../../core/bus/bus.js';
import type { Logger } from '../../core/logger.js';
import { ROOM_EVENT_BATCH_MAX, type RoomEvent, roomEventSchema, webhookEvent } from '../../core/room-events.js';
import { AppError } from '../../core/errors.js';
import { NUVE_QUEUE, subjects } from '../../core/subjects.js';
import type { Store } from '../store/store.js';
import { type OutboxEntry, type WebhookEndpoint, accepts } from './repository.js';

/** Something else kept from the same committed batches (live presence): the batch is answered once it is done too. */
export type RoomEventObserver = (gatewayId: string, events: RoomEvent[]) => Promise<void>;

/** The batch's frame; each event is checked on its own so that one malformed event cannot stall its gateway. */
const batchFrame = z.object({ gatewayId: z.string().min(1).max(200), events: z.array(z.unknown()).min(1).max(ROOM_EVENT_BATCH_MAX) }).strict();

/**
 * Takes room events into the outbox (`nuve.room.events`, queue "nuve": one Nuve per batch). A batch is
 * answered only after its rows are committed, so the gateway keeps and resends it until then; the
 * event id is unique in the outbox, so a resent batch adds nothing twice. Events go in only when the
 * room's (or tenant's) endpoint exists and its filters take them: nothing is kept for nobody.
 */
export class WebhookIntake {
  private subscription?: Subscription;

  constructor(
    private readonly bus: Bus,
    private readonly store: Store,
    private readonly logger: Logger,
    /** Told after new rows are committed (the local delivery worker starts at once). */
    private readonly queued: () => void,
    private readonly observe?: RoomEventObserver,
  ) {}

  start(): void {
    this.subscription = this.bus.respond(subjects.roomEvents, (payload) => this.take(payload), { queue: NUVE_QUEUE });
  }

  stop(): void {
    this.subscription?.unsubscribe();
  }

  private async take(payload: unknown): Promise<{ accepted: number }> {
    const frame = batchFrame.safeParse(payload);
    if (!frame.success) throw new AppError('INVALID_REQUEST', 'malformed room event batch');
    const events: RoomEvent[] = [];
    for (const raw of frame.data.events) {
      const parsed = roomEventSchema.safeParse(raw);
      if (parsed.success) events.push(parsed.data);
      else this.logger.warn({ gateway: frame.data.gatewayId, issues: parsed.error.issues.slice(0, 3) }, 'malformed room event dropped');
    }
    // Both idempotent: a batch sent again after a failure of either redoes neither twice.
    await Promise.all([this.record(events), this.observe?.(frame.data.gatewayId, events)]);
    return { accepted: events.length };
  }

  /** Appends events (from gateways, or Nuve's own such as room_metadata_changed) to the outbox in order. */
  async record(events: RoomEvent[]): Promise<void> {
    // At most two reads per batch, whatever its rooms: a batch is answered (and the gateway's next sent) only after this.
    const { webhooks } = this.store;
    const endpoints = new Map<string, WebhookEndpoint>();
    for (const e of await webhooks.endpointsOf([...new Set(events.map((e) => e.serviceId))])) endpoints.set(`${e.serviceId}/${e.roomId}`, e);
    // The room's own endpoint, else its tenant's.
    const kept = events.filter((event) => {
      const endpoint = endpoints.get(`${event.serviceId}/${event.roomId}`) ?? endpoints.get(`${event.serviceId}/`);
      return endpoint !== undefined && accepts(endpoint, event.type);
    });
    // Names only for what goes out: a tenant without webhooks costs one query per batch.
    if (kept.length === 0) return;
    const names = await webhooks.roomNames([...new Set(kept.map((e) => e.roomId))]);
    const entries: OutboxEntry[] = kept.map((event) => ({
      eventId: event.id,
      serviceId: event.serviceId,
      roomId: event.roomId,
      type: event.type,
      body: JSON.stringify(webhookEvent(event, names.get(`${event.serviceId}/${event.roomId}`))),
      createdAt: event.at,
    }));
    await this.store.webhooks.enqueue(entries);
    this.queued();
  }
}
