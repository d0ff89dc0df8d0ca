import type { Bus, Subscription } from '../core/bus/bus.js';
import { AppError } from '../core/errors.js';
import { type GroupCallsResult, groupCallsRequestSchema, groupCallsSubjects } from '../core/group-calls-protocol.js';
import type { Logger } from '../core/logger.js';
import type { RoomEvent } from '../core/room-events.js';
import { NUVE_QUEUE } from '../core/subjects.js';
import { storableText } from './routes/schemas.js';
import type { Store } from './store/store.js';

/** A late event can only come from a batch still in flight: after this, a leaver's tombstone has done its job. */
const TOMBSTONE_TTL_MS = 3_600_000;
const PRUNE_EVERY_MS = 600_000;

/** A user name that can be in no group (not storable): answered without a query that would fail on it. */
const storableUser = storableText(256);

/**
 * The calls going on in a user's groups, for the distributor (`nuve.groups.calls`, queue "nuve"),
 * and the live presence it reads: applied from every committed room event batch, and cleared for a
 * gateway the registry drops (it died: nobody will report its rooms' end).
 *
 * Nothing is cached. The answer is one indexed query, and both of its halves change under other
 * Nuves' feet: membership through any Nuve's REST, presence on every join and leave, committed by
 * whichever Nuve took the batch. A cache here would need a cross-Nuve invalidation on every
 * join/leave to avoid telling a user of a call that ended, which costs more than the query.
 */
export class GroupCalls {
  private subscription?: Subscription;
  private pruneTimer?: NodeJS.Timeout;

  constructor(
    private readonly bus: Bus,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.subscription = this.bus.respond(groupCallsSubjects.forUser, (payload) => this.answer(payload), { queue: NUVE_QUEUE });
    this.pruneTimer = setInterval(() => {
      this.store.calls.prune(Date.now() - TOMBSTONE_TTL_MS).catch((err: unknown) => this.logger.warn({ err }, 'could not prune call presence'));
    }, PRUNE_EVERY_MS);
    this.pruneTimer.unref();
  }

  stop(): void {
    this.subscription?.unsubscribe();
    clearInterval(this.pruneTimer);
  }

  /** A gateway's batch of room events, as committed: who joined and left which room. */
  recorded(gatewayId: string, events: RoomEvent[]): Promise<void> {
    return this.store.calls.apply(gatewayId, events);
  }

  /** The registry dropped a gateway: its rooms' calls are over. */
  async gatewayGone(gatewayId: string): Promise<void> {
    try {
      const cleared = await this.store.calls.clearGateway(gatewayId);
      if (cleared > 0) this.logger.info({ gateway: gatewayId, participants: cleared }, 'calls of a gone gateway cleared');
    } catch (err) {
      this.logger.warn({ err, gateway: gatewayId }, 'could not clear the calls of a gone gateway');
    }
  }

  private async answer(payload: unknown): Promise<GroupCallsResult> {
    const request = groupCallsRequestSchema.safeParse(payload);
    if (!request.success) throw new AppError('INVALID_REQUEST', 'malformed group calls request');
    const { serviceId, userName } = request.data;
    if (!storableUser.safeParse(userName).success || !storableUser.safeParse(serviceId).success) return { groups: 0, calls: [] };
    return this.store.calls.callsOf(serviceId, userName);
  }
}
