import type { Bus, Subscription } from './bus/bus.js';
import { busTimeout, replyToResult } from './bus/bus.js';
import type { Logger } from './logger.js';
import { type BatchEntry, type CallInBatch, type CallerIdentity, MAX_BATCH_CALLS, type ServiceCall, type ServiceCallBatch, serviceSubjects } from './service-protocol.js';

/** A call waiting for its answer in a batch. */
interface BatchedCall {
  call: ServiceCall;
  resolve(value: unknown): void;
  reject(reason: unknown): void;
  settled: boolean;
}

/** Calls to one instance with one deadline, gathered during one turn of the event loop, then sent as one request (its timeout theirs). */
interface Batch {
  subject: string;
  timeoutMs: number;
  calls: BatchedCall[];
  /** Estimated bytes of the calls' arguments and envelopes: a batch stays within the caller's payload bound. */
  bytes: number;
  /** Calls not answered yet. */
  open: number;
  /** Whether any answer (or the batch's failure) came back yet: until then the instance may still be busy with it. */
  heard: boolean;
  timer?: NodeJS.Timeout;
}

/** What a call's envelope adds to its arguments, in bytes, at most: its strings (3 bytes a character at worst), keys and numbers. */
function envelopeBytes(call: ServiceCall): number {
  const c = call.c;
  return (call.m.length + c.tenant.length + c.user.length + c.connection.length + (c.service?.length ?? 0) + (call.s?.length ?? 0)) * 3 + 160;
}

/**
 * Coalesces a caller's calls to each instance into one bus request per turn of the event loop (a run of calls with
 * another deadline starts another batch, so that the request's own timeout is every call's), and hands each call its
 * own answer. Answers come on the batch request's reply, or earlier on this caller's reply subject for calls that
 * finished before the rest of their batch.
 * A batch fails as a whole only for what a single request would have failed: nobody answering the instance's subject
 * (each call then retries elsewhere, as it would have), no reply in time, or a refused envelope.
 */
export class CallBatcher {
  /** Batches of this turn, in the order they were started: sent in that order, so an instance gets a stream's ordered calls in order. */
  private readonly queued: Batch[] = [];
  /** The batch each instance's next call may join, by its batch subject. */
  private readonly filling = new Map<string, Batch>();
  /** Batches sent and not fully answered, by key. */
  private readonly sent = new Map<number, Batch>();
  private nextKey = 0;
  /** Batches sent to each instance (by batch subject) that it has not answered any call of yet. */
  private readonly unheard = new Map<string, number>();
  private flushScheduled = false;
  private holdTimer?: NodeJS.Timeout;
  private subscription?: Subscription;
  readonly replySubject: string;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    callerId: string,
    /** A batch's calls' estimated bytes stay within this (one call alone may reach it). */
    private readonly maxBytes: number,
    /**
     * How long a batch may wait to grow while its instance has answered nothing of the previous one: a bound on the
     * latency this adds (the wait usually ends sooner, with the first answer); 0 never waits.
     */
    private readonly holdMs: number,
  ) {
    this.replySubject = serviceSubjects.callerReplies(callerId);
  }

  start(): void {
    this.subscription = this.bus.subscribe(this.replySubject, (payload) => this.onEarlyAnswers(payload));
  }

  /** Calls still waiting are failed by their caller (its instances' pending sets); here nothing more is sent or awaited. */
  close(): void {
    this.subscription?.unsubscribe();
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.unheard.clear();
    this.filling.clear();
    this.queued.length = 0;
    for (const batch of this.sent.values()) clearTimeout(batch.timer);
    this.sent.clear();
  }

  /**
   * Sends `call` to the instance behind `subject` (its batch subject) with the next batch; settles as a single bus request
   * would: the answer, the instance's AppError, BUS_NO_RESPONDERS or BUS_TIMEOUT after `timeoutMs`.
   */
  request(subject: string, call: ServiceCall, argBytes: number, timeoutMs: number): Promise<unknown> {
    const bytes = argBytes + envelopeBytes(call);
    let batch = this.filling.get(subject);
    // A call with another deadline, or one past the bounds, starts the instance's next batch (sent after this one).
    if (!batch || batch.timeoutMs !== timeoutMs || batch.calls.length >= MAX_BATCH_CALLS || batch.bytes + bytes > this.maxBytes) {
      batch = { subject, timeoutMs, calls: [], bytes: 0, open: 0, heard: false };
      this.filling.set(subject, batch);
      this.queued.push(batch);
      this.scheduleFlush();
    }
    batch.bytes += bytes;
    batch.open++;
    return new Promise((resolve, reject) => {
      batch.calls.push({ call, resolve, reject, settled: false });
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // After this turn's I/O callbacks: every call they made joins the batch (a microtask would cut it per callback).
    setImmediate(() => this.flush(false));
  }

  /**
   * Sends this turn's batches, in the order they were started, except those to an instance that has not answered
   * anything of its previous batch yet: such a batch keeps filling until the first answer from there, or `holdMs`
   * (`expired`), whichever comes first. Under load the batches then grow with the calls in flight instead of staying at
   * one turn's worth: each bus message costs a socket write at both ends and routing in NATS, which dominated the
   * gateway's CPU. With nothing in flight there, a call leaves after its own turn, as before. A batch past its bounds
   * (full) has a successor filling and goes at once.
   */
  private flush(expired: boolean): void {
    this.flushScheduled = false;
    if (expired) this.holdTimer = undefined;
    const held: Batch[] = [];
    for (const batch of this.queued) {
      const full = this.filling.get(batch.subject) !== batch;
      if (!expired && !full && this.holdMs > 0 && (this.unheard.get(batch.subject) ?? 0) > 0) {
        held.push(batch);
        continue;
      }
      if (!full) this.filling.delete(batch.subject);
      this.send(batch);
    }
    this.queued.length = 0;
    this.queued.push(...held);
    if (held.length > 0) this.holdTimer ??= setTimeout(() => this.flush(true), this.holdMs);
    else if (this.holdTimer) {
      clearTimeout(this.holdTimer);
      this.holdTimer = undefined;
    }
  }

  private send(batch: Batch): void {
    const k = this.nextKey++;
    this.sent.set(k, batch);
    this.unheard.set(batch.subject, (this.unheard.get(batch.subject) ?? 0) + 1);
    const payload: ServiceCallBatch = { k, r: this.replySubject, ...byIdentityIndex(batch.calls) };
    this.bus.request<BatchEntry[]>(batch.subject, payload, { timeoutMs: batch.timeoutMs }).then(
      (entries) => {
        this.settleEntries(entries);
        // Over a bus that does not keep order across subjects, early answers may still be on their way: wait for them until the deadline.
        if (this.sent.get(k) === batch) batch.timer = setTimeout(() => this.fail(k, busTimeout(batch.subject, batch.timeoutMs)), batch.timeoutMs);
      },
      (err: unknown) => this.fail(k, err),
    );
  }

  private onEarlyAnswers(payload: unknown): void {
    if (!Array.isArray(payload)) return this.logger.warn({ subject: this.replySubject }, 'dropping a malformed batch answer');
    this.settleEntries(payload as BatchEntry[]);
  }

  private settleEntries(entries: BatchEntry[]): void {
    if (!Array.isArray(entries)) return this.logger.warn({ subject: this.replySubject }, 'dropping a malformed batch answer');
    for (const entry of entries) {
      if (!Array.isArray(entry)) continue;
      const [k, i, reply] = entry;
      const batch = this.sent.get(k);
      const waiting = typeof i === 'number' ? batch?.calls[i] : undefined;
      if (!waiting || waiting.settled || typeof reply !== 'object' || reply === null) continue;
      this.heard(batch!);
      waiting.settled = true;
      try {
        waiting.resolve(replyToResult(reply));
      } catch (err) {
        waiting.reject(err);
      }
      if (--batch!.open === 0) this.done(k, batch!);
    }
  }

  /** Every call of batch `k` still waiting fails with `err` (as each single request would have). */
  private fail(k: number, err: unknown): void {
    const batch = this.sent.get(k);
    if (!batch) return;
    for (const waiting of batch.calls) {
      if (waiting.settled) continue;
      waiting.settled = true;
      waiting.reject(err);
    }
    this.done(k, batch);
  }

  private done(k: number, batch: Batch): void {
    clearTimeout(batch.timer);
    this.sent.delete(k);
    this.heard(batch);
  }

  /** The first answer (or the failure) of `batch`: its instance is answering, so a batch held for it may go. */
  private heard(batch: Batch): void {
    if (batch.heard) return;
    batch.heard = true;
    const unheard = this.unheard.get(batch.subject)! - 1;
    if (unheard > 0) this.unheard.set(batch.subject, unheard);
    else this.unheard.delete(batch.subject);
    // After this turn: answers arriving in it all count, and the calls their callers make in it join the held batch.
    if (this.queued.length > 0) this.scheduleFlush();
  }
}

/** The calls with each caller identity sent once (callers reuse one identity object per connection or caller). */
function byIdentityIndex(calls: { call: ServiceCall }[]): { ids: CallerIdentity[]; b: CallInBatch[] } {
  const ids: CallerIdentity[] = [];
  const index = new Map<CallerIdentity, number>();
  const b = calls.map(({ call }): CallInBatch => {
    let i = index.get(call.c);
    if (i === undefined) {
      i = ids.push(call.c) - 1;
      index.set(call.c, i);
    }
    return { ...call, c: i };
  });
  return { ids, b };
}
