import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Config } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
import { WEBHOOK_HEADERS, signWebhook } from '../../core/webhook-signature.js';
import type { Store } from '../store/store.js';
import { type ClaimedEvent, accepts } from './repository.js';

export type WebhookDeliveryOptions = Config['nuve']['webhooks'];

/** Tenants looked at per pass; the rest wait for the next pass (they are taken in random order). */
const SERVICES_PER_PASS = 200;
/** A lease outlives the POST it covers by this much, so it never runs out during one. */
const LEASE_MARGIN_MS = 30_000;
const PRUNE_EVERY_MS = 60_000;

/**
 * Delivers the outbox: POSTs each room's head event to the room's (or tenant's) URL, signed with the
 * tenant's key, and on success lets the room's next event go. A failure (network, timeout, non-2xx,
 * a redirect, which is never followed) is retried with exponential backoff until the event is
 * `retentionSec` old, then given up and kept as failed. Fairness: at most `perTenantConcurrency` of
 * `concurrency` deliveries go to one tenant, tenants are served in random order, and a room waiting
 * for its retry holds up only itself.
 */
export class WebhookDelivery {
  /** This process's name on its leases. */
  readonly owner = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly inFlight = new Map<number, { abort: AbortController; done: Promise<void> }>();
  private readonly perService = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  /** The pass claiming now, if any. */
  private passing?: Promise<void>;
  private again = false;
  private stopped = true;
  private lastPrune = 0;
  /** Counts for metrics and tests. */
  readonly stats = { delivered: 0, failedAttempts: 0, givenUp: 0 };

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly options: WebhookDeliveryOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.poke();
  }

  /** Looks at the outbox now (new events, or a delivery finished so a room's next event may go). */
  poke(): void {
    if (this.stopped) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), 0);
  }

  private async pass(): Promise<void> {
    this.passing = this.claimDue().catch((err: unknown) => this.logger.warn({ err }, 'webhook outbox not readable; retrying'));
    await this.passing;
    this.passing = undefined;
    if (this.stopped) return;
    const delay = this.again ? 0 : this.options.pollMs;
    this.again = false;
    this.timer = setTimeout(() => void this.pass(), delay);
    this.timer.unref();
  }

  private async claimDue(): Promise<void> {
    const now = Date.now();
    if (now - this.lastPrune > PRUNE_EVERY_MS) {
      this.lastPrune = now;
      await this.store.webhooks.pruneFailed(now - this.options.retentionSec * 1000);
    }
    let free = this.options.concurrency - this.inFlight.size;
    if (free <= 0) return;
    const services = shuffle(await this.store.webhooks.dueServices(now, SERVICES_PER_PASS));
    for (const serviceId of services) {
      const room = Math.min(free, this.options.perTenantConcurrency - (this.perService.get(serviceId) ?? 0));
      if (room <= 0) continue;
      const leaseMs = this.options.timeoutMs + LEASE_MARGIN_MS;
      for (const event of await this.store.webhooks.claim(serviceId, this.owner, now, leaseMs, room)) this.launch(event);
      free = this.options.concurrency - this.inFlight.size;
      if (free <= 0 || this.stopped) return;
    }
  }

  private launch(event: ClaimedEvent): void {
    const abort = new AbortController();
    this.perService.set(event.serviceId, (this.perService.get(event.serviceId) ?? 0) + 1);
    const done = this.deliver(event, abort.signal)
      .catch((err: unknown) => this.logger.warn({ err, event: event.eventId }, 'webhook outcome not recorded; the lease will run out'))
      .finally(() => {
        this.inFlight.delete(event.seq);
        const n = (this.perService.get(event.serviceId) ?? 1) - 1;
        if (n === 0) this.perService.delete(event.serviceId);
        else this.perService.set(event.serviceId, n);
        this.poke();
      });
    this.inFlight.set(event.seq, { abort, done });
  }

  private async deliver(event: ClaimedEvent, stop: AbortSignal): Promise<void> {
    const { webhooks } = this.store;
    const [endpoint, service] = await Promise.all([webhooks.endpointFor(event.serviceId, event.roomId), this.store.getService(event.serviceId)]);
    // Removed, filtered out since, or its tenant deleted: nobody wants it any more.
    if (!endpoint || !service || !accepts(endpoint, event.type)) return webhooks.remove(event.seq, this.owner);
    const timestamp = Math.floor(Date.now() / 1000);
    let error: string | undefined;
    try {
      const res = await fetch(endpoint.url, {
        method: 'POST',
        body: event.body,
        redirect: 'manual',
        signal: AbortSignal.any([stop, AbortSignal.timeout(this.options.timeoutMs)]),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'mediasoup-signal-webhooks/1',
          [WEBHOOK_HEADERS.id]: event.eventId,
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: signWebhook(service.key, timestamp, event.body),
        },
      });
      await res.body?.cancel();
      if (res.status < 200 || res.status > 299) {
        error = res.status >= 300 && res.status < 400 ? `HTTP ${res.status}: redirects are not followed` : `HTTP ${res.status}`;
      }
    } catch (err) {
      // Stopping: the lease is handed back by close(), the event goes again from there.
      if (stop.aborted) return;
      error = describe(err);
    }
    if (error === undefined) {
      this.stats.delivered++;
      return webhooks.remove(event.seq, this.owner);
    }
    this.stats.failedAttempts++;
    const now = Date.now();
    const deadline = event.createdAt + this.options.retentionSec * 1000;
    if (now >= deadline) {
      this.stats.givenUp++;
      this.logger.warn({ event: event.eventId, service: event.serviceId, room: event.roomId, attempts: event.attempts, error }, 'webhook given up');
      return webhooks.giveUp(event.seq, this.owner, now, error);
    }
    // The last try is at the deadline itself, so the retention is what a receiver gets, not less.
    await webhooks.retryAt(event.seq, this.owner, Math.min(deadline, now + this.backoff(event.attempts)), error);
  }

  /** base·2^(attempt-1), ±50 %, at most backoffMaxMs. */
  private backoff(attempt: number): number {
    const { backoffBaseMs, backoffMaxMs } = this.options;
    return Math.round(Math.min(backoffMaxMs, backoffBaseMs * 2 ** Math.min(attempt - 1, 30) * (0.5 + Math.random())));
  }

  /** Stops claiming, abandons the POSTs in flight and hands their leases back. */
  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // A pass claiming now would lease rows after the release below.
    await this.passing;
    const pending = [...this.inFlight.values()];
    for (const { abort } of pending) abort.abort();
    await Promise.allSettled(pending.map((p) => p.done));
    await this.store.webhooks.releaseLeases(this.owner).catch((err: unknown) => this.logger.warn({ err }, 'webhook leases not released; they will run out'));
  }
}

function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'timed out';
  return (e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err)).slice(0, 500);
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
