import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * The message bus every role talks through. Subjects are dot-separated tokens
 * with NATS wildcards (`*` one token, `>` the rest), so the in-process bus and
 * NATS accept the same subjects and callers never know which one carries them.
 * Payloads must be JSON: both implementations serialise them.
 */
export interface Bus {
  /** Fire-and-forget to every subscriber (one per queue group). */
  publish(subject: string, payload: unknown): void;
  /** Receive publications; with `queue`, subscribers sharing the name split the messages. */
  subscribe(subject: string, handler: MessageHandler, options?: SubscribeOptions): Subscription;
  /** Answer requests; a thrown AppError travels back to the requester with its code. */
  respond(subject: string, handler: RequestHandler, options?: SubscribeOptions): Subscription;
  /** Ask one responder; rejects with BUS_TIMEOUT or BUS_NO_RESPONDERS, or the responder's AppError. */
  request<T = unknown>(subject: string, payload: unknown, options?: RequestOptions): Promise<T>;
  /** Asks every responder on `subject` and collects the replies that arrive within `timeoutMs`. */
  gather<T = unknown>(subject: string, payload: unknown, options?: RequestOptions): Promise<T[]>;
  /** Lets in-flight handlers finish, then stops. */
  close(): Promise<void>;
  /**
   * Whether this process reaches the bus now. While it does not, silence from
   * the rest of the cluster says nothing about them (the in-process bus is
   * always connected).
   */
  readonly connected: boolean;
  /** Calls `listener` each time this process loses (false) or regains (true) the bus; returns the unsubscribe. */
  onConnectivity(listener: ConnectivityListener): () => void;
}

export type ConnectivityListener = (connected: boolean) => void;

/**
 * A network bus's view of its server: whether it is connected now, and who
 * to tell when that changes (each listener once per change; one that throws
 * is logged and does not keep the others from hearing it).
 */
export class Connectivity {
  private readonly listeners = new Set<ConnectivityListener>();

  constructor(
    private isConnected: boolean,
    private readonly logger: Logger,
  ) {}

  get connected(): boolean {
    return this.isConnected;
  }

  on(listener: ConnectivityListener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  set(connected: boolean): void {
    if (connected === this.isConnected) return;
    this.isConnected = connected;
    for (const listener of [...this.listeners]) {
      try {
        listener(connected);
      } catch (err) {
        this.logger.error({ err }, 'bus connectivity listener failed');
      }
    }
  }
}

export type MessageHandler = (payload: unknown, subject: string) => void | Promise<void>;
export type RequestHandler = (payload: unknown, subject: string) => unknown;

export interface SubscribeOptions {
  queue?: string;
}

export interface RequestOptions {
  timeoutMs?: number;
}

export interface Subscription {
  unsubscribe(): void;
}

/** Wire shape of a reply: exactly one of `data` / `error`. */
export type BusReply = { ok: true; data: unknown } | { ok: false; error: { code: string; message: string; status?: number } };

/** The wire form of an error a responder throws: its code, message and status reach the caller unchanged. */
export function errorReply(err: AppError): BusReply {
  return { ok: false, error: { code: err.code, message: err.message, status: err.status } };
}

export function busTimeout(subject: string, timeoutMs: number): AppError {
  return new AppError('BUS_TIMEOUT', `no reply on ${subject} within ${timeoutMs} ms`);
}

export function busNoResponders(subject: string): AppError {
  return new AppError('BUS_NO_RESPONDERS', `nobody answers on ${subject}`);
}

/** Runs a request handler and turns its outcome into a wire reply; unknown errors are not leaked. */
export async function runRequestHandler(
  handler: RequestHandler,
  payload: unknown,
  subject: string,
  onUnexpected: (err: unknown) => void,
): Promise<BusReply> {
  try {
    return { ok: true, data: (await handler(payload, subject)) ?? null };
  } catch (err) {
    if (err instanceof AppError) return errorReply(err);
    onUnexpected(err);
    return errorReply(new AppError('INTERNAL'));
  }
}

export function replyToResult<T>(reply: BusReply): T {
  if (reply.ok) return reply.data as T;
  throw AppError.fromRemote(reply.error.code, reply.error.message, reply.error.status ?? 500);
}

/** NATS subject matching: `*` matches one token, a trailing `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i < s.length;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
