import type { Bus, BusReply } from '../core/bus/bus.js';
import type { BatchEntry } from '../core/service-protocol.js';

/** One call's answer and its estimated size in bytes. */
export interface SizedReply {
  reply: BusReply;
  bytes: number;
}

/** A batch being run: answers ready and not yet sent, and how many calls still run. */
interface Run {
  k: number;
  r: string;
  ready: BatchEntry[];
  readyBytes: number;
  running: number;
  finish(entries: BatchEntry[]): void;
}

/** What an entry's key, index and reply wrapper add to its answer, at most, in bytes. */
const ENTRY_BYTES = 64;

/**
 * An instance's side of batched calls: runs a batch's calls together and answers the batch request once the last has
 * finished, with the answers not sent yet. Answers ready before that (a slow call in the batch) go to the caller's reply
 * subject after the turn of the event loop they finished in, coalesced per caller; every message stays within
 * `maxBytes` (one answer alone may reach it: it was checked against the same bound).
 */
export class BatchAnswers {
  /** Runs with answers waiting for the next early send. */
  private readonly waiting = new Set<Run>();
  private flushScheduled = false;

  constructor(
    private readonly bus: Bus,
    private readonly maxBytes: number,
  ) {}

  /** Runs `calls` with `answer` each; resolves with the entries the batch request answers. */
  run(k: number, r: string, calls: unknown[], answer: (call: unknown) => Promise<SizedReply>): Promise<BatchEntry[]> {
    return new Promise((finish) => {
      const run: Run = { k, r, ready: [], readyBytes: 0, running: calls.length, finish };
      for (let i = 0; i < calls.length; i++) answer(calls[i]).then(({ reply, bytes }) => this.answered(run, i, reply, bytes));
    });
  }

  private answered(run: Run, i: number, reply: BusReply, bytes: number): void {
    const size = bytes + ENTRY_BYTES;
    if (run.ready.length > 0 && run.readyBytes + size > this.maxBytes) this.sendEarly([run]);
    run.ready.push([run.k, i, reply]);
    run.readyBytes += size;
    if (--run.running === 0) {
      this.waiting.delete(run);
      return run.finish(run.ready);
    }
    this.waiting.add(run);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After this turn: the batch's other calls may finish in it, and then all go in the request's answer.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const byCaller = new Map<string, Run[]>();
    for (const run of this.waiting) {
      const runs = byCaller.get(run.r);
      if (runs) runs.push(run);
      else byCaller.set(run.r, [run]);
    }
    this.waiting.clear();
    for (const runs of byCaller.values()) this.sendEarly(runs);
  }

  /** Publishes the ready answers of `runs` (one caller's) in messages within the bound. */
  private sendEarly(runs: Run[]): void {
    let entries: BatchEntry[] = [];
    let bytes = 0;
    for (const run of runs) {
      if (entries.length > 0 && bytes + run.readyBytes > this.maxBytes) {
        this.bus.publish(run.r, entries);
        entries = [];
        bytes = 0;
      }
      for (const entry of run.ready) entries.push(entry);
      bytes += run.readyBytes;
      run.ready = [];
      run.readyBytes = 0;
    }
    if (entries.length > 0) this.bus.publish(runs[0]!.r, entries);
  }
}
