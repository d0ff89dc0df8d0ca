import { type CloseReasonName, closeReasons } from '../../../src/protocol/codes.js';
import { type ErrorCode, isErrorCode } from '../../../src/protocol/error-codes.js';

/**
 * Every failure the SDK reports is a SignalError with a stable `code`:
 * the gateway's `errorName` (PRODUCE_NOT_ALLOWED, NOT_JOINED, TOKEN_EXPIRED, …)
 * when the server refused, or one of the SDK's own codes below.
 */
export const sdkErrorCodes = [
  /** The WebSocket could not be opened or closed before the session was set up. */
  'CONNECTION_FAILED',
  /** The gateway did not answer a request in time. */
  'REQUEST_TIMEOUT',
  /** The socket closed while a request was pending. */
  'CONNECTION_CLOSED',
  /** A method that needs a joined room was called before join() or after leave(). */
  'NOT_JOINED',
  /** The token is not a mediasoup-signal token (base64 JSON with gatewayUrl). */
  'TOKEN_INVALID',
  /** The app's getToken() callback failed or is missing, so the SDK cannot rejoin. */
  'TOKEN_REFRESH_FAILED',
  /** Rejoining failed after every attempt. */
  'RECONNECT_FAILED',
  /** The service removed this user (`closing` KICKED). */
  'KICKED',
  /** The room was deleted (`closing` ROOM_CLOSED). */
  'ROOM_CLOSED',
  /** Another connection with this peer id replaced this one (`closing` REPLACED). */
  'REPLACED',
  /** mute()/unmute() of a source that is not published. */
  'NOT_PUBLISHED',
  /** The browser refused camera/microphone/screen access. */
  'MEDIA_PERMISSION_DENIED',
  /** No such device, or it could not be started. */
  'MEDIA_DEVICE_ERROR',
  /** This browser cannot send or receive this kind of media with the room's codecs. */
  'MEDIA_UNSUPPORTED',
  /** WebRTC transport failure (ICE/DTLS) the SDK could not recover from. */
  'TRANSPORT_FAILED',
  /** The server refused with a code this SDK version does not know (a newer server): `serverCode` has it, `status` its class. */
  'UNKNOWN_SERVER_ERROR',
  /** Anything else. */
  'INTERNAL',
] as const;
export type SdkErrorCode = (typeof sdkErrorCodes)[number];

/** What the server may name: a refusal from its error catalogue, or why it ended the session (`closing`). */
export type ServerErrorCode = ErrorCode | CloseReasonName;
export type SignalErrorCode = ServerErrorCode | SdkErrorCode;

function isSignalErrorCode(code: string): code is SignalErrorCode {
  return isErrorCode(code) || Object.hasOwn(closeReasons, code) || (sdkErrorCodes as readonly string[]).includes(code);
}

export class SignalError extends Error {
  override readonly name = 'SignalError';

  constructor(
    /** Stable, machine-readable: switch on this. */
    readonly code: SignalErrorCode,
    message: string,
    /** HTTP-like status of a server refusal (the protoo errorCode: 400, 403, 404, 409, 503, …). */
    readonly status?: number,
    override readonly cause?: unknown,
    /** With UNKNOWN_SERVER_ERROR: the server's code as it sent it. */
    readonly serverCode?: string,
  ) {
    super(message);
  }

  /**
   * A refusal as the server names it (a response's `errorName`, a `closing`'s, a REST body's `code`).
   * A code this SDK version does not know becomes UNKNOWN_SERVER_ERROR, the name kept in `serverCode`:
   * `code` stays a closed union apps can switch on exhaustively, and nothing the server said is lost.
   */
  static fromServer(name: string, message: string, status?: number): SignalError {
    return isSignalErrorCode(name) ? new SignalError(name, message, status) : new SignalError('UNKNOWN_SERVER_ERROR', message, status, undefined, name);
  }

  /** "PRODUCE_NOT_ALLOWED (403): this token has the viewer role: it may only subscribe" */
  override toString(): string {
    const code = this.serverCode !== undefined ? `${this.code} ${this.serverCode}` : this.code;
    return `${code}${this.status !== undefined ? ` (${this.status})` : ''}: ${this.message}`;
  }
}

export function toSignalError(err: unknown, fallbackCode: SdkErrorCode = 'INTERNAL'): SignalError {
  if (err instanceof SignalError) return err;
  if (err instanceof DOMException || (err instanceof Error && /^(NotAllowed|NotFound|NotReadable|Overconstrained|Abort)Error$/.test(err.name))) {
    const e = err as Error;
    if (e.name === 'NotAllowedError') return new SignalError('MEDIA_PERMISSION_DENIED', e.message || 'permission denied', undefined, err);
    if (/^(NotFound|NotReadable|Overconstrained|Abort)Error$/.test(e.name)) {
      return new SignalError('MEDIA_DEVICE_ERROR', `${e.name}: ${e.message}`, undefined, err);
    }
  }
  if (err instanceof Error && err.name === 'UnsupportedError') return new SignalError('MEDIA_UNSUPPORTED', err.message, undefined, err);
  return new SignalError(fallbackCode, err instanceof Error ? err.message : String(err), undefined, err);
}
