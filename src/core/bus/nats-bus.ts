import { type Msg, type NatsConnection, RequestStrategy, type Subscription as NatsSubscription, connect, createInbox } from 'nats';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  type Bus,
  Connectivity,
  type BusReply,
  type ConnectivityListener,
  type MessageHandler,
  type RequestHandler,
  type RequestOptions,
  type SubscribeOptions,
  type Subscription,
  busNoResponders,
  busTimeout,
  errorReply,
  replyToResult,
  runRequestHandler,
} from './bus.js';

interface PendingRequest {
  subject: string;
  timer: NodeJS.Timeout;
  resolve(value: unknown): void;
  reject(reason: unknown): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const encode = (value: unknown) => encoder.encode(JSON.stringify(value ?? null));

/**
 * The cluster bus over NATS: same interface and semantics as MemoryBus.
 * The client reconnects forever on its own (each attempt bounded), and
 * nats.js sends every subscription again once reconnected, so a NATS restart
 * needs no process restart; requests made while disconnected time out as
 * usual. It reports its connectivity so that a process that lost the bus does
 * not take the silence of the others for their death.
 */
export class NatsBus implements Bus {
  private readonly subscriptions = new Set<NatsSubscription>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly connectivity: Connectivity;
  /**
   * Requests waiting for their reply, by the token ending their reply subject. Our own mux on one
   * wildcard inbox instead of nats.js's `request()`, which builds an error object (a stack trace)
   * for every request it completes: a fifth of a service call's bus cost.
   */
  private readonly pending = new Map<string, PendingRequest>();
  private readonly inbox = createInbox();
  private nextToken = 0;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    private readonly defaultTimeoutMs: number,
  ) {
    const connectivity = new Connectivity(true, logger);
    this.connectivity = connectivity;
    // Not tracked with the subscriptions: replies must keep arriving while close() drains the others.
    nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => err || this.onReply(msg) });
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect' || status.type === 'reconnect') {
          logger.warn({ status: status.type, server: status.data }, `NATS ${status.type}`);
          connectivity.set(status.type === 'reconnect');
        }
      }
    })().catch(() => undefined);
  }

  static async connect(url: string, logger: Logger, defaultTimeoutMs = 3000, name?: string): Promise<NatsBus> {
    const nc = await connect({
      servers: url.split(','),
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      // One attempt to an unreachable (not refusing) server gives up after this, so a server back up is found soon.
      timeout: 5000,
      pingInterval: 5000,
      waitOnFirstConnect: true,
      // Each request would otherwise capture a stack trace (a quarter of a service call's CPU); our errors name the subject.
      noAsyncTraces: true,
    });
    return new NatsBus(nc, logger, defaultTimeoutMs);
  }

  get connected(): boolean {
    return this.connectivity.connected;
  }

  onConnectivity(listener: ConnectivityListener): () => void {
    return this.connectivity.on(listener);
  }

  publish(subject: string, payload: unknown): void {
    try {
      this.nc.publish(subject, encode(payload));
    } catch (err) {
      // Publishing on a closed connection is a shutdown race, not a failure worth crashing for.
      this.logger.debug({ err, subject }, 'publish dropped');
    }
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): Subscription {
    if (this.nc.isClosed() || this.nc.isDraining()) return { unsubscribe: () => undefined };
    return this.track(
      this.nc.subscribe(subject, {
        queue: options.queue,
        callback: (err, msg) => {
          if (err) return;
          let payload: unknown;
          try {
            payload = JSON.parse(decoder.decode(msg.data));
          } catch {
            this.logger.warn({ subject: msg.subject }, 'dropping non-JSON bus message');
            return;
          }
          Promise.resolve()
            .then(() => handler(payload, msg.subject))
            .catch((e: unknown) => this.logger.error({ err: e, subject: msg.subject }, 'bus subscriber failed'));
        },
      }),
    );
  }

  respond(subject: string, handler: RequestHandler, options: SubscribeOptions = {}): Subscription {
    if (this.nc.isClosed() || this.nc.isDraining()) return { unsubscribe: () => undefined };
    return this.track(
      this.nc.subscribe(subject, {
        queue: options.queue,
        callback: (err, msg) => {
          if (err || !msg.reply) return;
          let payload: unknown;
          try {
            payload = JSON.parse(decoder.decode(msg.data));
          } catch {
            msg.respond(encode(errorReply(new AppError('MALFORMED_MESSAGE', 'payload is not JSON'))));
            return;
          }
          const work = runRequestHandler(handler, payload, msg.subject, (e) =>
            this.logger.error({ err: e, subject: msg.subject }, 'bus responder failed'),
          ).then((reply) => {
            try {
              msg.respond(encode(reply));
            } catch (e) {
              this.logger.debug({ err: e, subject: msg.subject }, 'reply dropped');
            }
          });
          this.inFlight.add(work);
          void work.finally(() => this.inFlight.delete(work));
        },
      }),
    );
  }

  request<T>(subject: string, payload: unknown, options: RequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    // A closed bus has nobody to ask, as MemoryBus answers.
    if (this.nc.isClosed() || this.nc.isDraining()) return Promise.reject(busNoResponders(subject));
    const token = (this.nextToken++).toString(36);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(busTimeout(subject, timeoutMs));
      }, timeoutMs);
      this.pending.set(token, { subject, timer, resolve: resolve as (value: unknown) => void, reject });
      try {
        this.nc.publish(subject, encode(payload), { reply: `${this.inbox}.${token}` });
      } catch (err) {
        this.settle(token)?.reject(new AppError('BUS_UNAVAILABLE', `bus request on ${subject} failed: ${(err as Error).message}`));
      }
    });
  }

  /** A reply to one of our requests: its answer, its error, or the server's "no responders" (status 503). */
  private onReply(msg: Msg): void {
    const request = this.settle(msg.subject.slice(this.inbox.length + 1));
    if (!request) return; // timed out already
    if (msg.headers?.code === 503) return request.reject(busNoResponders(request.subject));
    let reply: BusReply;
    try {
      reply = JSON.parse(decoder.decode(msg.data)) as BusReply;
    } catch {
      return request.reject(new AppError('MALFORMED_MESSAGE', `non-JSON reply on ${request.subject}`, { status: 502 }));
    }
    try {
      request.resolve(replyToResult(reply));
    } catch (err) {
      request.reject(err);
    }
  }

  private settle(token: string): PendingRequest | undefined {
    const request = this.pending.get(token);
    if (!request) return undefined;
    this.pending.delete(token);
    clearTimeout(request.timer);
    return request;
  }

  async gather<T>(subject: string, payload: unknown, options: RequestOptions = {}): Promise<T[]> {
    const out: T[] = [];
    try {
      const replies = await this.nc.requestMany(subject, encode(payload), {
        strategy: RequestStrategy.Timer,
        maxWait: options.timeoutMs ?? this.defaultTimeoutMs,
      });
      for await (const msg of replies) {
        try {
          const reply = JSON.parse(decoder.decode(msg.data)) as BusReply;
          if (reply.ok) out.push(reply.data as T);
        } catch {
          // a malformed reply is skipped; the others still count
        }
      }
    } catch (err) {
      if ((err as { code?: string }).code !== '503') throw err;
    }
    return out;
  }

  /** Stops receiving, lets handlers in flight answer (at most `graceMs`), flushes, then closes. */
  async close(graceMs = 5000): Promise<void> {
    if (this.nc.isClosed() || this.nc.isDraining()) return;
    // Off the bus nothing can be flushed or answered, and a drain would wait for the server forever.
    if (!this.connectivity.connected) return this.nc.close();
    await Promise.allSettled([...this.subscriptions].map((sub) => sub.drain()));
    this.subscriptions.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((r) => {
        timer = setTimeout(r, graceMs);
      }),
    ]);
    clearTimeout(timer);
    await this.nc.drain().catch(() => this.nc.close());
    for (const token of [...this.pending.keys()]) {
      const request = this.settle(token)!;
      request.reject(new AppError('BUS_UNAVAILABLE', `bus closed before ${request.subject} answered`));
    }
  }

  private track(sub: NatsSubscription): Subscription {
    this.subscriptions.add(sub);
    return {
      unsubscribe: () => {
        this.subscriptions.delete(sub);
        sub.unsubscribe();
      },
    };
  }
}
