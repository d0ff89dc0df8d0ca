import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import {
  type ProtooRequest,
  type ServerNotifications,
  type ServerRequests,
  closeCodes,
  closeReasonOf,
  parseProtooMessage,
} from '../../protocol/signaling.js';

interface ConnectionEvents {
  request: [ProtooRequest];
  close: [];
}

const SERVER_REQUEST_TIMEOUT_MS = 10_000;
const PING_INTERVAL_MS = 10_000;
/** The longest a frame sent `held` waits for another frame to leave with. */
const HELD_FRAME_MS = 1;
/** The most a WebSocket close reason may hold, in UTF-8 bytes. */
const MAX_CLOSE_REASON_BYTES = 123;

/**
 * One client's WebSocket speaking protoo: requests both ways, notifications
 * (typed by the method → payload map every channel's notifications are in),
 * and a ping watchdog so a vanished client (no FIN) is noticed and leaves.
 * Malformed frames get an error response; they never close the socket.
 */
export class ClientConnection extends EventEmitter<ConnectionEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private alive = true;
  private readonly pingTimer: NodeJS.Timeout;
  private corked = false;
  /** Releases the frames held (`notify`'s `held`) if no other frame does first. */
  private heldRelease?: NodeJS.Timeout;
  closed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly logger: Logger,
    /** Pinged this often; a ping unanswered by the next one ends the connection (dropped after twice this). */
    pingIntervalMs = PING_INTERVAL_MS,
    /** The connection's TCP socket (from the upgrade), corked while a burst of frames is written. */
    private readonly socket?: Pick<Duplex, 'cork' | 'uncork'>,
  ) {
    super();
    ws.on('message', (raw, isBinary) => this.onMessage(raw as Buffer, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', (err) => this.logger.debug({ err }, 'peer socket error'));
    ws.on('pong', () => {
      this.alive = true;
    });
    this.pingTimer = setInterval(() => {
      if (!this.alive) {
        this.logger.debug('client did not answer ping; terminating');
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, pingIntervalMs);
    this.pingTimer.unref();
  }

  respond(id: number, data: unknown): void {
    this.send({ response: true, id, ok: true, data: data ?? {} });
  }

  /**
   * protoo-client keeps only `errorCode` and `errorReason` (its Error's `code` and `message`), so the
   * stable name also leads the reason: `errorReason` is `"<errorName>: <text>"`.
   */
  respondError(id: number, err: AppError): void {
    this.send({ response: true, id, ok: false, errorCode: err.status, errorReason: `${err.code}: ${err.message}`, errorName: err.code });
  }

  /**
   * `held`: nobody waits for this notification, so it leaves with the connection's next frame
   * (one write, and one wake-up of the client, instead of two), at the latest HELD_FRAME_MS later.
   * A join's `mediasoup-version` goes with the answer to `getRouterRtpCapabilities` that way.
   */
  notify<M extends keyof ServerNotifications>(method: M, data: ServerNotifications[M], held = false): void {
    this.send({ notification: true, method, data: data ?? {} }, held);
  }

  request<M extends keyof ServerRequests>(method: M, data: ServerRequests[M], timeoutMs = SERVER_REQUEST_TIMEOUT_MS): Promise<unknown> {
    if (this.closed) return Promise.reject(new AppError('PEER_CLOSED'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AppError('PEER_TIMEOUT', `peer did not answer ${method}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.send({ request: true, id, method, data });
    });
  }

  /**
   * Ends the session for a reason of the close table (protocol/codes.ts): the `closing`
   * notification tells what and whether to rejoin, then the socket closes, with the same
   * `"NAME: text"` as its reason and 4000 (final for protoo-client) unless the reason resumes.
   */
  end(errorName: string, reason: string): void {
    const { code, rejoin, resume } = closeReasonOf(errorName);
    this.notify('closing', { code, errorName, reason, rejoin });
    this.close(resume ? closeCodes.resume : closeCodes.final, `${errorName}: ${reason}`);
  }

  private close(code: number, reason: string): void {
    if (this.closed) return;
    let text = reason;
    while (Buffer.byteLength(text) > MAX_CLOSE_REASON_BYTES) text = text.slice(0, -1);
    this.ws.close(code, text);
    // A peer that does not complete the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2000).unref();
    this.onClose();
  }

  private send(message: unknown, held = false): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.coalesce(held);
    this.ws.send(JSON.stringify(message));
  }

  /**
   * Answers come in bursts (one bus read completes many calls): the frames
   * written until the current tick's callbacks and promise reactions are done
   * leave in one write instead of a syscall each, which was a third of the
   * edge's CPU under load. Nothing waits longer than that tick, but held
   * frames, which wait for the next other frame or HELD_FRAME_MS.
   */
  private coalesce(held: boolean): void {
    if (!this.socket) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      if (held) this.heldRelease = setTimeout(() => this.uncork(), HELD_FRAME_MS);
      else process.nextTick(() => this.uncork());
    } else if (!held && this.heldRelease) {
      clearTimeout(this.heldRelease);
      this.heldRelease = undefined;
      process.nextTick(() => this.uncork());
    }
  }

  private uncork(): void {
    if (!this.corked) return;
    clearTimeout(this.heldRelease);
    this.heldRelease = undefined;
    this.corked = false;
    this.socket!.uncork();
  }

  private onMessage(raw: Buffer, isBinary: boolean): void {
    let json: unknown;
    try {
      if (isBinary) throw new Error('binary frame');
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      this.respondError(0, new AppError('MALFORMED_MESSAGE', 'message is not JSON text'));
      return;
    }
    const parsed = parseProtooMessage(json);
    if (!parsed.success) {
      const maybeId = (json as { id?: unknown } | null)?.id;
      this.respondError(
        typeof maybeId === 'number' ? maybeId : 0,
        new AppError('MALFORMED_MESSAGE', 'message is not a protoo request, response or notification'),
      );
      return;
    }
    const message = parsed.data;
    if ('request' in message) this.emit('request', message);
    else if ('response' in message) {
      const pending = this.pending.get(message.id);
      if (!pending) return;
      this.pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.ok) pending.resolve(message.data);
      else pending.reject(new AppError('PEER_REFUSED', message.errorReason, { status: message.errorCode }));
    }
    // Client notifications carry nothing the gateway acts on.
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new AppError('PEER_CLOSED'));
    }
    this.pending.clear();
    this.emit('close');
  }
}
