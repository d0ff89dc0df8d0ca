// Types only: the gateway's schemas are the one source of truth, and a type
// import keeps zod (and the schemas' code) out of the browser bundle.
import type { AgentProbes, ClientMethod, ClientRequest, ProtooMessage } from '../../../src/protocol/signaling.js';
import { closeCodes, closeReasonOf, closeReasons } from '../../../src/protocol/codes.js';
import {
  type PeerInfo,
  type ServerNotification,
  type ServerNotifications,
  type ServerRequest,
  isServerNotificationMethod,
  isServerRequestMethod,
} from '../../../src/protocol/notifications.js';
import type { types as ms } from 'mediasoup-client';
import { SignalError } from './errors.js';

/** The gateway's WebSocket close codes and the reasons it closes for (from the zod-free codes module, so the bundle stays small). */
export const CLOSE_CODES = closeCodes;
export const CLOSE_REASONS = closeReasons;

/** How a session ended: the gateway's `closing` notification, or what the close itself says. */
export type Ending = Pick<ServerNotifications['closing'], 'errorName' | 'reason' | 'rejoin'>;

/** Closes a network or server failure causes (going away, abnormal, internal error, restart, try later): rejoin. */
const LOST = new Set([1001, 1006, 1011, 1012, 1013]);

/**
 * A close that came without a `closing` notification: the gateway's close reason (`"NAME: text"`)
 * when it gave one; otherwise a lost connection, to rejoin, or a plain close, to stop at.
 */
export function endingOf(code: number, reason: string): Ending {
  const named = /^([A-Z][A-Z0-9_]*): ([^]*)$/.exec(reason);
  if (named) return { errorName: named[1]!, reason: named[2]!, rejoin: closeReasonOf(named[1]!).rejoin };
  const text = `connection closed (${code}${reason ? ` ${reason}` : ''})`;
  return { errorName: 'CONNECTION_CLOSED', reason: text, rejoin: LOST.has(code) };
}

/** What the gateway answers to each client request (the schemas type the requests; these type the answers). */
export interface ClientResponses {
  getAgentProbes: AgentProbes;
  getRouterRtpCapabilities: ms.RtpCapabilities;
  join: { peers: PeerInfo[] };
  createWebRtcTransport: {
    id: string;
    iceParameters: ms.IceParameters;
    iceCandidates: ms.IceCandidate[];
    dtlsParameters: ms.DtlsParameters;
    sctpParameters?: ms.SctpParameters;
  };
  restartIce: ms.IceParameters;
  produce: { id: string };
  produceData: { id: string };
  getTransportStats: unknown[];
  getProducerStats: unknown[];
  getConsumerStats: unknown[];
}
export type ClientResponse<M extends ClientMethod> = M extends keyof ClientResponses ? ClientResponses[M] : unknown;

/** A failed response as the gateway sends it: the protoo fields plus the stable `errorName`. */
type ErrorResponse = Extract<ProtooMessage, { ok: false }> & { errorName?: string };

export type ServerRequestHandler = (request: ServerRequest) => Promise<unknown>;
export type NotificationHandler = (notification: ServerNotification) => void;

interface Pending {
  method: string;
  resolve(data: unknown): void;
  reject(err: SignalError): void;
  timer: ReturnType<typeof setTimeout>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** The shape checks of protooMessageSchema, without zod. */
function asProtooMessage(value: unknown): (ProtooMessage & { errorName?: string }) | undefined {
  if (!isObject(value)) return undefined;
  if (value.request === true && typeof value.id === 'number' && typeof value.method === 'string') return value as ProtooMessage;
  if (value.response === true && typeof value.id === 'number' && typeof value.ok === 'boolean') return value as ProtooMessage;
  if (value.notification === true && typeof value.method === 'string') return value as ProtooMessage;
  return undefined;
}

/**
 * One protoo session over a browser WebSocket: requests both ways and
 * notifications, typed by the gateway's protocol module.
 */
export class ProtooSocket {
  onNotification: NotificationHandler = () => undefined;
  onRequest: ServerRequestHandler = async () => ({});
  /** Called once, when the socket is gone (by either side). */
  onClose: (code: number, reason: string) => void = () => undefined;
  closed = false;
  private nextId = Math.floor(Math.random() * 1_000_000);
  private readonly pending = new Map<number, Pending>();

  private constructor(
    private readonly ws: WebSocket,
    private readonly requestTimeoutMs: number,
  ) {
    ws.addEventListener('message', (event) => this.onMessage(event.data));
    ws.addEventListener('close', (event) => this.finish(event.code, event.reason));
  }

  /**
   * `onNotification`, when given, is in place before the first message: a gateway may notify right
   * after admission (a push session's restore), in the same read as the handshake, before the caller
   * could set it on the resolved socket.
   */
  static open(url: string, opts: { timeoutMs: number; requestTimeoutMs: number; onNotification?: NotificationHandler }): Promise<ProtooSocket> {
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(url);
      } catch (err) {
        reject(new SignalError('CONNECTION_FAILED', `cannot open ${url.split('?')[0]}: ${String(err)}`));
        return;
      }
      const socket = new ProtooSocket(ws, opts.requestTimeoutMs);
      if (opts.onNotification) socket.onNotification = opts.onNotification;
      const timer = setTimeout(() => {
        ws.close();
        reject(new SignalError('CONNECTION_FAILED', `no answer from the gateway at ${url.split('?')[0]}`));
      }, opts.timeoutMs);
      ws.addEventListener('open', () => {
        clearTimeout(timer);
        resolve(socket);
      });
      ws.addEventListener('close', (event) => {
        clearTimeout(timer);
        reject(new SignalError('CONNECTION_FAILED', `the gateway closed the connection (${event.code} ${event.reason})`));
      });
    });
  }

  request<M extends ClientMethod>(method: M, data?: ClientRequest<M>, timeoutMs = this.requestTimeoutMs): Promise<ClientResponse<M>> {
    if (this.closed) return Promise.reject(new SignalError('CONNECTION_CLOSED', `cannot send ${method}: connection closed`));
    const id = this.nextId++;
    return new Promise<ClientResponse<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalError('REQUEST_TIMEOUT', `the gateway did not answer ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, resolve: resolve as (d: unknown) => void, reject, timer });
      this.send({ request: true, id, method, data: data ?? {} });
    });
  }

  close(code = 1000, reason = 'bye'): void {
    if (this.closed) return;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.close();
    }
    this.finish(code, reason);
  }

  private send(message: ProtooMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  private onMessage(raw: unknown): void {
    if (typeof raw !== 'string') return;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      return;
    }
    const message = asProtooMessage(json);
    if (!message) return;
    if ('response' in message) {
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.ok) pending.resolve(message.data);
      else {
        const err = message as ErrorResponse;
        const name = err.errorName ?? `ERROR_${err.errorCode}`;
        // The gateway leads the reason with the name (for protoo-client); the code already says it.
        const text = err.errorReason.startsWith(`${name}: `) ? err.errorReason.slice(name.length + 2) : err.errorReason;
        pending.reject(SignalError.fromServer(name, text, err.errorCode));
      }
    } else if ('request' in message) {
      const { id, method } = message;
      const fail = (err: unknown) =>
        this.send({ response: true, id, ok: false, errorCode: 500, errorReason: err instanceof Error ? err.message : String(err) });
      if (!isServerRequestMethod(method)) {
        fail(new Error(`${method} is not supported by this client`));
        return;
      }
      // The one unchecked step: the payload is taken to match the gateway's map (validating it would ship zod).
      const request = { method, data: message.data ?? {} } as ServerRequest;
      this.onRequest(request).then((result) => this.send({ response: true, id, ok: true, data: result ?? {} }), fail);
    } else if (isServerNotificationMethod(message.method)) {
      // Unchecked as above; methods a newer gateway may add are dropped before this.
      this.onNotification({ method: message.method, data: message.data ?? {} } as ServerNotification);
    }
  }

  private finish(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new SignalError('CONNECTION_CLOSED', `connection closed (${code}) before ${p.method} was answered`));
      this.pending.delete(id);
    }
    this.onClose(code, reason);
  }
}
