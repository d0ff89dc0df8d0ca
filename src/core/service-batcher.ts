import type { Bus, Subscription } from './bus/bus.js';
import { busTimeout, replyToResult } from './bus/bus.js';
import type { Logger } from './logger.js';
import { type BatchEntry, MAX_BATCH_CALLS, type ServiceCall, type ServiceCallBatch, serviceSubjects } from './service-protocol.js';

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
  private flushScheduled = false;
  private subscription?: Subscription;
  readonly replySubject: string;

  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
    callerId: string,
    /** A batch's calls' estimated bytes stay within this (one call alone may reach it). */
    private readonly maxBytes: number,
  ) {
    this.replySubject = serviceSubjects.callerReplies(callerId);
  }

  start(): void {
    this.subscription = this.bus.subscribe(this.replySubject, (payload) => this.onEarlyAnswers(payload));
  }

  /** Calls still waiting are failed by their caller (its instances' pending sets); here nothing more is sent or awaited. */
  close(): void {
    this.subscription?.unsubscribe();
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
      batch = { subject, timeoutMs, calls: [], bytes: 0, open: 0 };
      this.filling.set(subject, batch);
      this.queued.push(batch);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After this turn's I/O callbacks: every call they made joins the batch (a microtask would cut it per callback).
        setImmediate(() => this.flush());
      }
    }
    batch.bytes += bytes;
    batch.open++;
    return new Promise((resolve, reject) => {
      batch.calls.push({ call, resolve, reject, settled: false });
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    this.filling.clear();
    for (const batch of this.queued.splice(0)) this.send(batch);
  }

  private send(batch: Batch): void {
    const k = this.nextKey++;
    this.sent.set(k, batch);
    const payload: ServiceCallBatch = { k, r: this.replySubject, b: batch.calls.map((c) => c.call) };
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
  }
}
