import { AppError } from '../../core/errors.js';
import type { SessionScope } from '../../protocol/permissions.js';
import type { ClientConnection } from './connection.js';
import type { Session } from './session.js';

/** A connection as its channels see it once admitted. */
export interface ChannelContext {
  readonly connection: ClientConnection;
  readonly session: Session;
  /** The client's address as agents would see it (IPv4-mapped IPv6 unwrapped). */
  readonly clientAddress: string | undefined;
  /** The WebSocket URL's query but the token (e.g. room signaling's `peerId`). */
  readonly query: URLSearchParams;
  /** Set when the token resumed a session the gateway ended for the client to reconnect. */
  readonly resumedPeerId: string | undefined;
  /** `performance.now()` when the socket opened. */
  readonly openedAt: number;
  /**
   * The gateway is about to end this connection so that its client reconnects (its media agent was
   * lost): the token's next use, within a few seconds, readmits the same session once, without Nuve,
   * handing `peerId` back as `resumedPeerId`.
   */
  readonly allowResume: (peerId: string) => void;
}

/** One channel's part of one connection: it answers the requests of the channel's methods. */
export interface ChannelHandler {
  handle(method: string, data: unknown): Promise<unknown>;
  /** After a request's success was sent: a channel may then end the connection (e.g. after `leave`). */
  answered?(method: string): void;
  /** Tracing attributes of this connection's requests on the channel. */
  readonly spanAttributes?: Record<string, string>;
}

/**
 * A set of client methods served over the client edge (room signaling, push
 * acks, service calls, …). One connection carries every channel its session
 * may use; each request goes to the one channel that claims its method.
 */
export interface Channel {
  readonly name: string;
  /** Whether `method` is one of this channel's (no two channels claim the same method). */
  claims(method: string): boolean;
  /** Why this session may not use the channel (its methods are answered with that error), or undefined. */
  refusal(session: Session): AppError | undefined;
  /**
   * Opens the channel on a newly admitted connection whose session may use it, before any of its
   * requests is answered. A rejection ends the connection with the error's name (`closing`).
   */
  open(context: ChannelContext): Promise<ChannelHandler>;
}

/**
 * A channel's `refusal` for sessions without `scope`: SCOPE_NOT_GRANTED (403). One error for every such
 * session (only its code and message are ever sent): most connections lack some channel's scope (a room
 * token has no push or rpc), and an error's stack trace cost ~1 % of a join's CPU.
 */
export function requireScope(scope: SessionScope, channelName: string): (session: Session) => AppError | undefined {
  const refusal = new AppError('SCOPE_NOT_GRANTED', `this session may not use ${channelName}: its token lacks the scope "${scope}"`);
  return (session) => (session.scopes.has(scope) ? undefined : refusal);
}
