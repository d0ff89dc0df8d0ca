import type { Logger } from '../logger.js';
import {
  type Bus,
  type BusReply,
  type MessageHandler,
  type RequestHandler,
  type RequestOptions,
  type SubscribeOptions,
  type Subscription,
  busNoResponders,
  busTimeout,
  replyToResult,
  runRequestHandler,
  subjectMatches,
} from './bus.js';

interface Entry {
  pattern: string;
  queue?: string;
  kind: 'message' | 'request';
  handler: MessageHandler | RequestHandler;
}

/**
 * The embedded bus: same semantics as NATS (wildcards, queue groups, request
 * timeouts, JSON payloads) inside one process. Payloads are serialised on the
 * way in so a caller cannot rely on sharing objects with a handler, which
 * would break the moment NATS carries the message.
 */
export class MemoryBus implements Bus {
  private readonly entries = new Set<Entry>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly queueCursor = new Map<string, number>();
  /**
   * Who matches a subject, by kind and subject, until the next (un)subscription: a hot subject (a
   * gateway's deliveries, push acknowledgements: one request per client per turn) is matched against
   * every subscription's pattern once, not per message.
   */
  private readonly matches = new Map<string, { plain: Entry[]; groups: [string, Entry[]][] }>();
  private closed = false;
  /** Nothing stands between a process and its own memory: never disconnected. */
  readonly connected = true;

  constructor(
    private readonly logger: Logger,
    private readonly defaultTimeoutMs = 3000,
  ) {}

  publish(subject: string, payload: unknown): void {
    if (this.closed) return;
    const wire = JSON.stringify(payload ?? null);
    for (const entry of this.pick(subject, 'message')) {
      this.track(
        Promise.resolve()
          .then(() => (entry.handler as MessageHandler)(JSON.parse(wire), subject))
          .catch((err: unknown) => this.logger.error({ err, subject }, 'bus subscriber failed')),
      );
    }
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): Subscription {
    return this.add({ pattern: subject, queue: options.queue, kind: 'message', handler });
  }

  respond(subject: string, handler: RequestHandler, options: SubscribeOptions = {}): Subscription {
    return this.add({ pattern: subject, queue: options.queue, kind: 'request', handler });
  }

  request<T>(subject: string, payload: unknown, options: RequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const [entry] = this.pick(subject, 'request');
    if (!entry || this.closed) return Promise.reject(busNoResponders(subject));
    const wire = JSON.stringify(payload ?? null);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(busTimeout(subject, timeoutMs)), timeoutMs);
      const work = runRequestHandler(entry.handler as RequestHandler, JSON.parse(wire), subject, (err) =>
        this.logger.error({ err, subject }, 'bus responder failed'),
      ).then((reply: BusReply) => {
        clearTimeout(timer);
        try {
          resolve(replyToResult<T>(JSON.parse(JSON.stringify(reply)) as BusReply));
        } catch (err) {
          reject(err);
        }
      });
      this.track(work);
    });
  }

  async gather<T>(subject: string, payload: unknown, options: RequestOptions = {}): Promise<T[]> {
    if (this.closed) return [];
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const wire = JSON.stringify(payload ?? null);
    const responders = [...this.entries].filter((e) => e.kind === 'request' && subjectMatches(e.pattern, subject));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    const replies = await Promise.all(
      responders.map((entry) =>
        Promise.race([runRequestHandler(entry.handler as RequestHandler, JSON.parse(wire), subject, () => undefined), deadline]),
      ),
    );
    clearTimeout(timer);
    return replies.filter((r): r is BusReply & { ok: true } => r?.ok === true).map((r) => JSON.parse(JSON.stringify(r.data)) as T);
  }

  async close(): Promise<void> {
    this.closed = true;
    // A handler that never settles must not hold shutdown forever: wait at most one request timeout.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, this.defaultTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.entries.clear();
    this.matches.clear();
  }

  onConnectivity(): () => void {
    return () => undefined;
  }

  private add(entry: Entry): Subscription {
    this.entries.add(entry);
    this.matches.clear();
    return {
      unsubscribe: () => {
        if (this.entries.delete(entry)) this.matches.clear();
      },
    };
  }

  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  /** Every plain subscriber, plus one member of each queue group (round-robin). */
  private pick(subject: string, kind: Entry['kind']): Entry[] {
    const key = `${kind}\u0000${subject}`;
    let match = this.matches.get(key);
    if (!match) {
      match = this.match(subject, kind);
      // Subjects are a handful of shapes per role, but some carry ids: bounded.
      if (this.matches.size >= 4096) this.matches.clear();
      this.matches.set(key, match);
    }
    const picked = [...match.plain];
    for (const [group, members] of match.groups) {
      const cursor = (this.queueCursor.get(group) ?? -1) + 1;
      this.queueCursor.set(group, cursor);
      picked.push(members[cursor % members.length]!);
    }
    return picked;
  }

  private match(subject: string, kind: Entry['kind']): { plain: Entry[]; groups: [string, Entry[]][] } {
    const plain: Entry[] = [];
    const groups = new Map<string, Entry[]>();
    for (const entry of this.entries) {
      if (entry.kind !== kind || !subjectMatches(entry.pattern, subject)) continue;
      if (entry.queue === undefined) plain.push(entry);
      else {
        const key = `${entry.pattern}\u0000${entry.queue}`;
        const members = groups.get(key) ?? [];
        members.push(entry);
        groups.set(key, members);
      }
    }
    return { plain, groups: [...groups] };
  }
}
