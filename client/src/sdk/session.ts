import type { ServerNotification, ServerNotifications } from '../../../src/protocol/notifications.js';
import { TypedEmitter } from './emitter.js';
import { SignalError } from './errors.js';
import { type Ending, ProtooSocket, endingOf } from './protoo.js';
import { type ReconnectOptions, Reconnector } from './reconnect.js';
import { decodeToken } from './token.js';

/** A push as the app receives it: `id` on safe messages and on unsafe ones their sender named (each seen once), none on other unsafe ones. */
export type PushEvent = ServerNotifications['push'];

export type SessionState = 'new' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface SessionOptions {
  /**
   * A fresh session token for each connection, the first one included (tokens work once): your app
   * server asks Nuve `POST /sessions` with the scope `push` for the signed-in user.
   */
  getToken: () => Promise<string>;
  /** Reconnection after a lost connection (default: 8 attempts, 250 ms doubling to 5 s); false: none. */
  reconnect?: ReconnectOptions;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** How many message ids (safe, and unsafe ones with an id) are remembered to drop second copies (default 10,000). */
  dedupeWindow?: number;
}

/** The gateway's default `services.defaultTimeoutMs`: calls naming no timeout are given up 5 s past it. */
const DEFAULT_CALL_TIMEOUT_MS = 10_000;

/** Per-call options of `session.call` (the gateway's `call` request). */
export interface ServiceCallOptions {
  /** The most the call may take; default the gateway's `services.defaultTimeoutMs`. */
  timeoutMs?: number;
  /** `hash` routing: the same key reaches the same instance while the instances stay. */
  key?: string;
  /** This session's ordered calls to the service run one at a time, in call order, on one instance. */
  ordered?: boolean;
  strategy?: 'random' | 'round-robin' | 'hash' | 'least-load';
}

export type SessionEvents = {
  /** A message from the service, once per id. Safe messages are acknowledged after the listeners ran. */
  push: [message: PushEvent];
  /** The server's cap on unarrived messages dropped this many of this user's oldest. */
  dropped: [count: number];
  state: [state: SessionState, previous: SessionState];
  /** The session ended for good: by close() (no error), a final refusal, or reconnection giving up. */
  closed: [error?: SignalError];
};

/** Acknowledgements go out in requests of at most this many ids (the gateway's bound). */
const MAX_ACK_IDS = 500;

/**
 * A user's session with the platform, for pushes: connects with a session
 * token, emits each pushed message once (delivery is at least once: a second
 * copy, e.g. restored after a reconnection before its acknowledgement got
 * through, is dropped by id and acknowledged again), acknowledges safe
 * messages by itself, and reconnects with a fresh token when the connection
 * is lost, whereupon the gateway restores every unacknowledged message in
 * send order.
 */
export class Session extends TypedEmitter<SessionEvents> {
  private socket?: ProtooSocket;
  private stateValue: SessionState = 'new';
  private readonly seen = new Set<string>();
  private acks: string[] = [];
  private ackTimer?: ReturnType<typeof setTimeout>;
  private readonly reconnector: Reconnector;
  /** The `closing` notification of the current socket, if the gateway sent one before closing. */
  private ending?: Ending;

  constructor(private readonly options: SessionOptions) {
    super();
    this.reconnector = new Reconnector(options, {
      begin: () => this.setState('reconnecting'),
      attempt: (token) => this.open(token),
      succeeded: () => this.setState('connected'),
      failed: (error) => this.finish(error),
    });
  }

  get state(): SessionState {
    return this.stateValue;
  }

  /** Connects with a token from getToken(); rejects when that fails (the session is then closed). */
  async connect(): Promise<void> {
    if (this.stateValue !== 'new') throw new SignalError('CONNECTION_FAILED', `connect() on a ${this.stateValue} session`);
    this.setState('connecting');
    try {
      const token = await this.options.getToken().catch((err: unknown) => {
        throw new SignalError('TOKEN_REFRESH_FAILED', `getToken() failed: ${(err as Error)?.message ?? String(err)}`, undefined, err);
      });
      await this.open(token);
    } catch (err) {
      this.finish(err instanceof SignalError ? err : new SignalError('CONNECTION_FAILED', String(err)));
      throw err;
    }
    this.setState('connected');
  }

  // ── Service calls (c2s): the session's token needs the scope `rpc` ─────────

  /**
   * Calls an `external` method of a business service and resolves with its answer. Failures are
   * SignalErrors with the server's code: SERVICE_NOT_RUNNING, SERVICE_METHOD_NOT_FOUND,
   * SERVICE_ACCESS_DENIED (an internal method), SERVICE_INVALID_ARGS, SERVICE_PAYLOAD_TOO_LARGE,
   * SERVICE_TIMEOUT, SERVICE_INSTANCE_LOST, SERVICE_ORDER_RESET, INTERNAL (the handler failed),
   * SCOPE_NOT_GRANTED; CONNECTION_CLOSED while reconnecting (the call may be retried then).
   */
  call<T = unknown>(service: string, method: string, args?: unknown, options: ServiceCallOptions = {}): Promise<T> {
    const socket = this.socket;
    if (!socket || socket.closed) return Promise.reject(new SignalError('CONNECTION_CLOSED', `cannot call ${service}.${method}: not connected`));
    // `call` is the services channel's method, not one of room signaling's typed ClientMethods.
    const request = socket.request as unknown as (method: 'call', data: unknown, timeoutMs?: number) => Promise<T>;
    // The gateway answers SERVICE_TIMEOUT at the call's timeout; this bound only catches a gateway that never answers.
    const waitMs = (options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS) + 5000;
    return request.call(socket, 'call', { service, method, args, ...options }, waitMs);
  }

  close(): void {
    if (this.stateValue === 'closed') return;
    this.flushAcks();
    this.finish();
  }

  private async open(token: string): Promise<void> {
    const { gatewayUrl } = decodeToken(token);
    this.ending = undefined;
    // The restore may arrive with the handshake: notifications are handled from the first byte (acks wait for `this.socket`: next turn).
    const socket = await ProtooSocket.open(`${gatewayUrl.replace(/\/+$/, '')}/?token=${encodeURIComponent(token)}`, {
      timeoutMs: this.options.connectTimeoutMs ?? 10_000,
      requestTimeoutMs: this.options.requestTimeoutMs ?? 10_000,
      onNotification: (notification) => this.onNotification(notification),
    });
    if (this.stateValue === 'closed') {
      socket.close();
      return;
    }
    // Closed between its opening and this turn, its close went unheard: this attempt failed.
    if (socket.closed) throw new SignalError('CONNECTION_FAILED', 'the gateway closed the connection as it opened');
    this.socket = socket;
    socket.onClose = (code, reason) => this.onClose(socket, code, reason);
  }

  private onNotification(notification: ServerNotification): void {
    switch (notification.method) {
      case 'push': {
        const message = notification.data;
        if (message.id !== undefined) {
          // A safe one is acknowledged in any case: a second copy means the first acknowledgement may have been lost.
          // An unsafe one with an id (its sender named it) has nothing to acknowledge, but may come twice all the same.
          if (!message.unsafe) this.queueAck(message.id);
          if (this.seen.has(message.id)) return;
          this.remember(message.id);
        }
        this.emit('push', message);
        return;
      }
      case 'pushDropped':
        this.emit('dropped', notification.data.count);
        return;
      case 'closing':
        this.ending = notification.data;
        return;
      default:
        // Room notifications belong to RoomClient.
        return;
    }
  }

  private onClose(socket: ProtooSocket, code: number, reason: string): void {
    if (socket !== this.socket || this.stateValue === 'closed') return;
    this.socket = undefined;
    const ending = this.ending ?? endingOf(code, reason);
    if (!ending.rejoin) {
      this.finish(SignalError.fromServer(ending.errorName, ending.reason));
      return;
    }
    void this.reconnector.rejoin(ending.reason);
  }

  private remember(id: string): void {
    this.seen.add(id);
    // Oldest first (insertion order): memory stays bounded; a copy older than the window is long acknowledged.
    if (this.seen.size > (this.options.dedupeWindow ?? 10_000)) this.seen.delete(this.seen.values().next().value!);
  }

  /** Acknowledgements of one turn go as one request; after the listeners ran, so a message is acknowledged once the app had it. */
  private queueAck(id: string): void {
    this.acks.push(id);
    this.ackTimer ??= setTimeout(() => this.flushAcks(), 0);
  }

  private flushAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const socket = this.socket;
    const ids = this.acks.splice(0);
    if (!socket || socket.closed) return; // not acknowledged: restored on reconnection, then dropped as a copy
    for (let i = 0; i < ids.length; i += MAX_ACK_IDS) {
      // pushAck is the push channel's method, not one of room signaling's typed ClientMethods.
      const request = socket.request as unknown as (method: 'pushAck', data: { ids: string[] }) => Promise<{ acked: number }>;
      request.call(socket, 'pushAck', { ids: ids.slice(i, i + MAX_ACK_IDS) }).catch(() => undefined);
    }
  }

  private setState(state: SessionState): void {
    if (state === this.stateValue) return;
    const previous = this.stateValue;
    this.stateValue = state;
    this.emit('state', state, previous);
  }

  private finish(error?: SignalError): void {
    if (this.stateValue === 'closed') return;
    this.reconnector.close();
    clearTimeout(this.ackTimer);
    this.setState('closed');
    this.socket?.close();
    this.socket = undefined;
    this.emit('closed', error);
  }
}
