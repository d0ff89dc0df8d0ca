import { randomUUID } from 'node:crypto';
import type { Bus } from '../core/bus/bus.js';
import type { Logger } from '../core/logger.js';
import { ROOM_EVENT_BATCH_MAX, type RoomEvent } from '../core/room-events.js';
import { subjects } from '../core/subjects.js';

/** An event as a room reports it; the publisher gives it its id and time. */
export type RoomEventInput = Omit<RoomEvent, 'id' | 'at'>;

export interface RoomEventPublisherOptions {
  /** Events kept while Nuve does not acknowledge them; past it the oldest are dropped (and logged). */
  maxPending?: number;
  requestTimeoutMs?: number;
  /**
   * Events emitted this long after the first one not sent yet go with it, in one request (0: those of
   * the same event-loop turn). A join's events (room_started at connection, participant_joined a few
   * milliseconds later, participant_left and room_finished when a short visit ends) then cost Nuve one
   * transaction instead of three; webhooks and presence learn of them this much later.
   */
  batchWindowMs?: number;
  /** Retry delays double from the first to the last. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/**
 * Hands this gateway's room events to Nuve's outbox. Events go together, `batchWindowMs` after the
 * first of them: each request costs Nuve a transaction whatever its size. One batch is in flight at
 * a time, and a batch leaves the queue only once a Nuve answered that it is committed to the
 * outbox, so events reach it in the order they happened (per room, and across this gateway's
 * rooms). A batch that timed out or found no Nuve is sent again, with the same ids, until one
 * takes it: a Nuve that committed it but whose answer was lost inserts nothing twice (the id is
 * unique in the outbox). Guarantee: every event this process emitted reaches the outbox exactly once, unless this
 * process dies first or more than `maxPending` wait at once.
 */
export class RoomEventPublisher {
  private readonly queue: RoomEvent[] = [];
  private inFlight = 0;
  private retryTimer?: NodeJS.Timeout;
  /** Cancels the send at the end of the batch window, once an event is queued. */
  private flush?: () => void;
  private failures = 0;
  private closed = false;
  private idle?: () => void;
  dropped = 0;
  private readonly maxPending: number;
  private readonly batchWindowMs: number;
  private readonly requestTimeoutMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;

  constructor(
    private readonly bus: Bus,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    options: RoomEventPublisherOptions = {},
  ) {
    this.maxPending = options.maxPending ?? 100_000;
    this.batchWindowMs = options.batchWindowMs ?? 10;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3000;
    this.retryMinMs = options.retryMinMs ?? 250;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
  }

  private cancelFlush(): void {
    this.flush?.();
    this.flush = undefined;
  }

  /** Events not yet acknowledged by a Nuve. */
  get pending(): number {
    return this.queue.length;
  }

  emit(input: RoomEventInput): void {
    if (this.closed) return;
    this.queue.push({ id: randomUUID(), at: Date.now(), ...input });
    if (this.queue.length > this.maxPending) {
      // Never the batch in flight: it may be committed already.
      this.queue.splice(this.inFlight, 1);
      if (this.dropped++ % 1000 === 0) this.logger.error({ dropped: this.dropped }, 'room events dropped: Nuve has not taken them for too long');
    }
    if (this.flush) return;
    const send = () => {
      this.flush = undefined;
      this.send();
    };
    if (this.batchWindowMs > 0) {
      const timer = setTimeout(send, this.batchWindowMs);
      this.flush = () => clearTimeout(timer);
    } else {
      // setImmediate, not a microtask: what the other callbacks of this I/O phase emit (peers arriving together) goes too.
      const immediate = setImmediate(send);
      this.flush = () => clearImmediate(immediate);
    }
  }

  private send(): void {
    if (this.inFlight > 0 || this.retryTimer || this.queue.length === 0) {
      if (this.queue.length === 0) this.idle?.();
      return;
    }
    const events = this.queue.slice(0, ROOM_EVENT_BATCH_MAX);
    this.inFlight = events.length;
    this.bus.request(subjects.roomEvents, { gatewayId: this.gatewayId, events }, { timeoutMs: this.requestTimeoutMs }).then(
      () => {
        this.queue.splice(0, this.inFlight);
        this.inFlight = 0;
        this.failures = 0;
        this.send();
      },
      (err: unknown) => {
        this.inFlight = 0;
        // Stopping: no Nuve answered this time, so waiting out the grace period would only delay the stop.
        if (this.closed) return this.idle?.();
        const delay = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** this.failures++);
        if (this.failures === 1) this.logger.warn({ err, pending: this.queue.length }, 'room events not acknowledged by Nuve; retrying');
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.send();
        }, delay);
        this.retryTimer.unref();
      },
    );
  }

  /**
   * Stops taking events; waits up to `graceMs` for the queued ones to be acknowledged, unless a send
   * fails meanwhile (the rest are lost, and logged).
   */
  async close(graceMs = 2000): Promise<void> {
    this.closed = true;
    // What waits for its batch window goes now.
    if (this.flush) {
      this.cancelFlush();
      this.send();
    }
    if (this.queue.length > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.cancelFlush();
    if (this.queue.length > 0) this.logger.warn({ lost: this.queue.length }, 'room events not acknowledged before stopping');
  }
}
