import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Message, connect } from 'amqplib';
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

/** Topic exchange of publications; requests have their own so a plain subscriber never counts as a responder. */
export const PUBLISH_EXCHANGE = 'mss.publish';
export const REQUEST_EXCHANGE = 'mss.request';
/** RabbitMQ's direct reply-to pseudo-queue: replies without a queue per requester. */
const REPLY_TO = 'amq.rabbitmq.reply-to';
/** AMQP short strings (routing keys, queue names) are at most 255 bytes; a longer one is a channel error. */
const MAX_SHORTSTR = 255;
/** Publications kept while off the broker (nats.js buffers about as much), oldest dropped first. */
const OUTBOX_LIMIT = 10_000;
const RECONNECT_WAIT_MS = 250;
/** Bounds one dial, so a broker back up is found soon (like NatsBus's connect timeout). */
const DIAL_TIMEOUT_MS = 5000;
/** AMQP heartbeat: a silent partition is noticed after two missed (like NatsBus's pings). */
const HEARTBEAT_SEC = 5;

/**
 * NATS subject pattern → AMQP topic binding key. Both split on `.`; `*` is one word in both.
 * NATS `>` is one or more trailing tokens, AMQP `#` zero or more, so `a.>` becomes `a.*.#`
 * (`a.#` would also match `a` itself). `#` has no NATS meaning and would widen the binding,
 * so a pattern with a `#` token is refused.
 */
export function bindingKey(pattern: string): string {
  return pattern
    .split('.')
    .map((token) => (token === '>' ? '*.#' : token))
    .join('.');
}

/** Why a subject (or, with `pattern`, a subscription pattern) cannot travel on AMQP; undefined when it can. */
export function invalidSubject(subject: string, pattern: boolean): string | undefined {
  if (Buffer.byteLength(bindingKey(subject)) > MAX_SHORTSTR) return 'longer than 255 bytes';
  const tokens = subject.split('.');
  for (const [i, token] of tokens.entries()) {
    if (token === '' || /\s/.test(token)) return 'empty token or whitespace';
    if (token === '#') return '`#` is not a NATS wildcard';
    if (!pattern && (token === '*' || token === '>')) return 'wildcards only in subscriptions';
    if (token === '>' && i !== tokens.length - 1) return '`>` only as the last token';
  }
  return undefined;
}

interface Sub {
  pattern: string;
  queue?: string;
  exchange: string;
  onMessage: (msg: ConsumeMessage) => void;
  active: boolean;
  channel?: Channel;
}

interface PendingRequest {
  subject: string;
  /** A request's single answer, or every answer of a gather. */
  onReply(reply: BusReply): void;
  onNoResponders(): void;
}

/** Everything that belongs to one broker connection, and goes with it. */
interface Link {
  connection: ChannelModel;
  /** Publications and replies, with publisher confirms. */
  publishing: ConfirmChannel;
  /** Requests go out on the channel that consumes their direct replies (RabbitMQ requires the same channel). */
  requesting: Channel;
}

type Outgoing = { kind: 'publish'; subject: string; body: Buffer } | { kind: 'request'; id: string; subject: string; body: Buffer; expiresAt: number };

/**
 * The cluster bus over RabbitMQ (AMQP 0-9-1): same interface and semantics as
 * MemoryBus and NatsBus.
 *
 * - Publications go to a topic exchange with the subject as routing key; each
 *   subscription is a queue bound with the subject pattern (`bindingKey`): its own
 *   exclusive queue, or for a queue group one shared queue per (group, pattern)
 *   that RabbitMQ round-robins among the members.
 * - Requests go to a second topic exchange, `mandatory`, with direct reply-to:
 *   a request nobody's queue is bound for comes back (basic.return) at once, which
 *   is BUS_NO_RESPONDERS; otherwise the reply or BUS_TIMEOUT. A gather collects
 *   every reply carrying its correlation id until its timeout, as NATS does.
 * - Each subscription has its own channel, so a broker refusal (e.g. a shared queue
 *   vanishing under a declaration) costs only it, and it is set up again.
 * - Publications use publisher confirms: one the broker did not confirm before the
 *   connection went is sent again after reconnecting, as are publications made while
 *   away (bounded). Replies are not resent: their requester's reply address died with
 *   its channel, and it times out as on NATS.
 * - Off the broker, it reports `connected = false` and dials again every 250 ms
 *   forever; once back, every subscription is declared and bound anew (the broker
 *   forgot them), and only then does it report `connected = true`.
 *
 * A publication or request is sent only after the subscriptions and responders asked for
 * before it are in place, so "subscribe, then publish" reaches the subscriber as on NATS.
 */
export class RabbitMqBus implements Bus {
  private link?: Link;
  private readonly subs = new Set<Sub>();
  private readonly pending = new Map<string, PendingRequest>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly outbox: Outgoing[] = [];
  /** Subscriptions being set up on the current link: outgoing messages wait for them. */
  private settingUp = 0;
  private nextId = 0;
  private closed = false;

  private readonly connectivity: Connectivity;

  private constructor(
    private readonly url: string,
    private readonly logger: Logger,
    private readonly defaultTimeoutMs: number,
    private readonly name?: string,
  ) {
    this.connectivity = new Connectivity(false, logger);
  }

  /** Resolves once connected; until then it dials again every 250 ms (like NatsBus, which waits for its first connection). */
  static async connect(url: string, logger: Logger, defaultTimeoutMs = 3000, name?: string): Promise<RabbitMqBus> {
    const bus = new RabbitMqBus(url, logger, defaultTimeoutMs, name);
    await bus.dialUntilConnected();
    return bus;
  }

  get connected(): boolean {
    return this.connectivity.connected;
  }

  onConnectivity(listener: ConnectivityListener): () => void {
    return this.connectivity.on(listener);
  }

  publish(subject: string, payload: unknown): void {
    if (this.closed) return;
    const invalid = invalidSubject(subject, false);
    if (invalid) {
      this.logger.warn({ subject, reason: invalid }, 'publish dropped: subject cannot be a routing key');
      return;
    }
    this.send({ kind: 'publish', subject, body: encode(payload) });
  }

  subscribe(subject: string, handler: MessageHandler, options: SubscribeOptions = {}): Subscription {
    return this.add(subject, PUBLISH_EXCHANGE, options.queue, (msg) => {
      const payload = this.decode(msg);
      if (payload === undefined) return;
      Promise.resolve()
        .then(() => handler(payload.value, msg.fields.routingKey))
        .catch((err: unknown) => this.logger.error({ err, subject: msg.fields.routingKey }, 'bus subscriber failed'));
    });
  }

  respond(subject: string, handler: RequestHandler, options: SubscribeOptions = {}): Subscription {
    return this.add(subject, REQUEST_EXCHANGE, options.queue, (msg) => {
      const { replyTo, correlationId } = msg.properties as { replyTo?: string; correlationId?: string };
      const requested = msg.fields.routingKey;
      if (!replyTo?.startsWith(`${REPLY_TO}.`) || !correlationId) {
        this.logger.warn({ subject: requested }, 'dropping bus request without a direct reply-to address');
        return;
      }
      const payload = this.decode(msg);
      const work = (
        payload === undefined
          ? Promise.resolve(errorReply(new AppError('MALFORMED_MESSAGE', 'payload is not JSON')))
          : runRequestHandler(handler, payload.value, requested, (err) => this.logger.error({ err, subject: requested }, 'bus responder failed'))
      ).then((reply) => this.reply(replyTo, correlationId, reply, requested));
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
    });
  }

  async request<T>(subject: string, payload: unknown, options: RequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (this.closed) throw busNoResponders(subject);
    const invalid = invalidSubject(subject, false);
    if (invalid) {
      this.logger.warn({ subject, reason: invalid }, 'request refused: subject cannot be a routing key');
      throw busNoResponders(subject);
    }
    const id = this.newId();
    const reply = await new Promise<BusReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(busTimeout(subject, timeoutMs));
      }, timeoutMs);
      const settle = () => {
        clearTimeout(timer);
        this.pending.delete(id);
      };
      this.pending.set(id, {
        subject,
        onReply: (r) => (settle(), resolve(r)),
        onNoResponders: () => (settle(), reject(busNoResponders(subject))),
      });
      this.send({ kind: 'request', id, subject, body: encode(payload), expiresAt: Date.now() + timeoutMs });
    });
    return replyToResult<T>(reply);
  }

  async gather<T>(subject: string, payload: unknown, options: RequestOptions = {}): Promise<T[]> {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (this.closed) return [];
    const invalid = invalidSubject(subject, false);
    if (invalid) {
      this.logger.warn({ subject, reason: invalid }, 'gather refused: subject cannot be a routing key');
      return [];
    }
    const id = this.newId();
    const out: T[] = [];
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve();
      };
      // Nobody knows how many responders a topic exchange reached, so every gather waits its whole time (NatsBus too).
      const timer = setTimeout(done, timeoutMs);
      this.pending.set(id, {
        subject,
        onReply: (r) => void (r.ok && out.push(r.data as T)),
        onNoResponders: done,
      });
      this.send({ kind: 'request', id, subject, body: encode(payload), expiresAt: Date.now() + timeoutMs });
    });
    return out;
  }

  /**
   * Lets this process's own requests in flight get their answers (its responders still
   * serve them), stops receiving, lets handlers in flight finish, waits for the broker to
   * confirm what was published (all within `graceMs`), then closes. Off the broker it
   * closes at once: nothing could be answered or confirmed.
   */
  async close(graceMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const link = this.link;
    if (!link || !this.connectivity.connected) {
      this.link = undefined;
      await link?.connection.close().catch(() => undefined);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise((r) => {
      timer = setTimeout(r, graceMs);
    });
    await Promise.race([until(() => this.settingUp === 0 && this.pending.size === 0), grace]);
    for (const sub of this.subs) sub.active = false;
    await Promise.race([Promise.allSettled([...this.subs].map((sub) => sub.channel?.close())), grace]);
    this.subs.clear();
    await Promise.race([Promise.allSettled([...this.inFlight]), grace]);
    await Promise.race([link.publishing.waitForConfirms().catch(() => undefined), grace]);
    clearTimeout(timer);
    this.link = undefined;
    await link.connection.close().catch(() => undefined);
  }

  private newId(): string {
    return (this.nextId++).toString(36);
  }

  private add(pattern: string, exchange: string, queue: string | undefined, onMessage: Sub['onMessage']): Subscription {
    if (this.closed) return { unsubscribe: () => undefined };
    const invalid = invalidSubject(pattern, true);
    if (invalid) throw new Error(`bus subject "${pattern}" cannot be bound on RabbitMQ: ${invalid}`);
    if (queue !== undefined && (queue === '' || /\s/.test(queue))) throw new Error(`bus queue group "${queue}" is empty or has whitespace`);
    const sub: Sub = { pattern, queue, exchange, onMessage, active: true };
    this.subs.add(sub);
    if (this.link) void this.setUp(sub, this.link, true);
    return {
      unsubscribe: () => {
        // Inactive at once: a message already on its way is not handled after unsubscribe returns.
        sub.active = false;
        this.subs.delete(sub);
        void sub.channel?.close().catch(() => undefined);
      },
    };
  }

  /**
   * Declares and binds the subscription's queue on its own channel and consumes it.
   * `gate`: outgoing messages wait for this setup (the first attempt on a link only;
   * a retry after a refusal must not hold everything else).
   */
  private async setUp(sub: Sub, link: Link, gate: boolean): Promise<void> {
    if (gate) this.settingUp++;
    try {
      const channel = await link.connection.createChannel();
      sub.channel = channel;
      channel.on('error', (err: Error) => this.logger.warn({ err, subject: sub.pattern }, 'bus subscription channel failed'));
      channel.on('close', () => {
        // Refused by the broker while the link lives: only this subscription is set up again.
        if (sub.active && this.link === link && !this.closed) setTimeout(() => sub.active && this.link === link && void this.setUp(sub, link, false), RECONNECT_WAIT_MS);
      });
      let queueName = '';
      if (sub.queue === undefined) {
        queueName = (await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false })).queue;
      } else {
        queueName = groupQueueName(sub.exchange, sub.queue, sub.pattern);
        await channel.assertQueue(queueName, { autoDelete: true, durable: false });
      }
      await channel.bindQueue(queueName, sub.exchange, bindingKey(sub.pattern));
      await channel.consume(
        queueName,
        (msg) => {
          // null: the broker cancelled the consumer (its queue deleted under it); closing the channel sets it up again.
          if (!msg) void channel.close().catch(() => undefined);
          else if (sub.active) sub.onMessage(msg);
        },
        { noAck: true },
      );
      if (!sub.active) await channel.close();
    } catch (err) {
      if (this.link === link && !this.closed) this.logger.warn({ err, subject: sub.pattern }, 'bus subscription setup failed; retrying');
    } finally {
      if (gate) {
        this.settingUp--;
        this.flush();
      }
    }
  }

  /** Sends now when the link is up and no subscription is being set up; else keeps it for then. */
  private send(out: Outgoing): void {
    if (this.link && this.settingUp === 0 && this.outbox.length === 0) {
      this.transmit(out, this.link);
      return;
    }
    if (this.outbox.length >= OUTBOX_LIMIT) {
      const dropped = this.outbox.shift()!;
      this.logger.warn({ subject: dropped.subject }, 'bus outbox full while off the broker: oldest message dropped');
    }
    this.outbox.push(out);
  }

  private flush(): void {
    const link = this.link;
    if (!link || this.settingUp > 0) return;
    for (const out of this.outbox.splice(0)) this.transmit(out, link);
  }

  private transmit(out: Outgoing, link: Link): void {
    try {
      if (out.kind === 'publish') {
        link.publishing.publish(PUBLISH_EXCHANGE, out.subject, out.body, { contentType: 'application/json' }, (err: unknown) => {
          if (!err) return;
          // A nack is the broker's own loss, told; anything else means the channel went before confirming: send it again.
          if ((err as Error).message === 'message nacked') this.logger.warn({ subject: out.subject }, 'publication refused by the broker');
          else if (!this.closed) this.send(out);
        });
        return;
      }
      const ttl = out.expiresAt - Date.now();
      // Asked before the link went and still unanswered: its time is up or its requester will time out.
      if (ttl <= 0 || !this.pending.has(out.id)) return;
      link.requesting.publish(REQUEST_EXCHANGE, out.subject, out.body, {
        mandatory: true,
        replyTo: REPLY_TO,
        correlationId: out.id,
        contentType: 'application/json',
        // A request still queued when its requester has given up is not worth serving.
        expiration: String(Math.ceil(ttl)),
      });
    } catch (err) {
      // The channel closed under us (the link is going): a publication waits for the next link.
      this.logger.debug({ err, subject: out.subject }, 'bus send failed; kept for the next connection');
      if (out.kind === 'publish' && !this.closed) this.outbox.push(out);
    }
  }

  private reply(replyTo: string, correlationId: string, reply: BusReply, subject: string): void {
    const link = this.link;
    if (!link) {
      // The requester's reply-to address belongs to its channel; with the link gone the reply has nowhere to go.
      this.logger.debug({ subject }, 'reply dropped: off the broker');
      return;
    }
    try {
      link.publishing.publish('', replyTo, encode(reply), { correlationId, contentType: 'application/json' });
    } catch (err) {
      this.logger.debug({ err, subject }, 'reply dropped');
    }
  }

  private onReply(msg: ConsumeMessage | null): void {
    if (!msg) return;
    const id = (msg.properties as { correlationId?: string }).correlationId;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending) {
      // A reply after its request timed out, or to no request of ours.
      this.logger.debug({ correlationId: id }, 'dropping bus reply to no pending request');
      return;
    }
    const payload = this.decode(msg);
    const reply = payload?.value as BusReply | undefined;
    if (!reply || typeof reply !== 'object' || typeof reply.ok !== 'boolean') {
      this.logger.warn({ subject: pending.subject }, 'dropping malformed bus reply');
      pending.onReply(errorReply(new AppError('MALFORMED_MESSAGE', `malformed reply on ${pending.subject}`, { status: 502 })));
      return;
    }
    pending.onReply(reply);
  }

  /** A mandatory request no queue was bound for: nobody answers on its subject. */
  private onReturn(msg: Message): void {
    const id = (msg.properties as { correlationId?: string }).correlationId;
    if (id !== undefined) this.pending.get(id)?.onNoResponders();
  }

  /** The message's JSON body, or undefined (logged) when it has none. */
  private decode(msg: Message): { value: unknown } | undefined {
    try {
      return { value: JSON.parse(msg.content.toString('utf8')) };
    } catch {
      this.logger.warn({ subject: msg.fields.routingKey }, 'dropping non-JSON bus message');
      return undefined;
    }
  }

  private async dialUntilConnected(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.open();
        return;
      } catch (err) {
        // Every attempt while the broker is away would be a line a quarter second; the first and then one in forty.
        if (attempt % 40 === 0) this.logger.warn({ err: (err as Error).message }, 'RabbitMQ unreachable; dialling again');
        await sleep(RECONNECT_WAIT_MS);
      }
    }
  }

  /** One connection with its channels and exchanges, every subscription set up again on it, then connected. */
  private async open(): Promise<void> {
    const connection = await connect(withHeartbeat(this.url), {
      timeout: DIAL_TIMEOUT_MS,
      // amqplib leaves Nagle on: a small request behind an unacknowledged one then waits for the peer's delayed ACK (~40 ms a hop).
      noDelay: true,
      clientProperties: { connection_name: this.name ?? `mediasoup-signal-${process.pid}` },
    });
    // Watched from the start: a close while still opening would otherwise pass unseen and leave a dead link in place.
    let link: Link | undefined;
    let lost = false;
    const onClose = () => {
      lost = true;
      if (link) this.lose(link);
    };
    connection.on('close', onClose);
    connection.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'RabbitMQ connection error'));
    try {
      const publishing = await connection.createConfirmChannel();
      const requesting = await connection.createChannel();
      for (const channel of [publishing, requesting]) {
        channel.on('error', (err: Error) => this.logger.warn({ err: err.message }, 'RabbitMQ channel error'));
        // Losing either shared channel loses requests or publications: start over on a new connection.
        channel.on('close', onClose);
      }
      await publishing.assertExchange(PUBLISH_EXCHANGE, 'topic', { durable: true });
      await publishing.assertExchange(REQUEST_EXCHANGE, 'topic', { durable: true });
      requesting.on('return', (msg: Message) => this.onReturn(msg));
      await requesting.consume(REPLY_TO, (msg) => this.onReply(msg), { noAck: true });
      if (lost) throw new Error('connection lost while opening');
      if (this.closed) throw new Error('closed while connecting');
      link = { connection, publishing, requesting };
      this.link = link;
      await Promise.all([...this.subs].map((sub) => this.setUp(sub, link!, true)));
      if (this.link !== link) return;
      this.flush();
      this.connectivity.set(true);
    } catch (err) {
      await connection.close().catch(() => undefined);
      throw err;
    }
  }

  private lose(link: Link): void {
    if (this.link !== link) return;
    this.link = undefined;
    void link.connection.close().catch(() => undefined);
    if (this.closed) return;
    this.logger.warn('RabbitMQ connection lost; reconnecting');
    this.connectivity.set(false);
    void sleep(RECONNECT_WAIT_MS).then(() => this.dialUntilConnected());
  }

}

/** Resolves once `condition` holds (checked every 10 ms). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(10);
}

const encode = (value: unknown) => Buffer.from(JSON.stringify(value ?? null));

/** The amqp URL with a heartbeat, unless it names its own. */
function withHeartbeat(url: string): string {
  const u = new URL(url);
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(HEARTBEAT_SEC));
  return u.toString();
}

/**
 * The shared queue of one queue group on one pattern (NATS groups are per subject too),
 * readable in the management UI; hashed when too long for a queue name.
 */
function groupQueueName(exchange: string, queue: string, pattern: string): string {
  const name = `${exchange}.${queue}.${pattern}`;
  return Buffer.byteLength(name) <= MAX_SHORTSTR ? name : `${exchange}.${createHash('sha256').update(`${queue}\0${pattern}`).digest('hex')}`;
}
