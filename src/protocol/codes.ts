/**
 * Numeric codes of the signaling protocol, in a module without zod so the
 * browser SDK can import the values themselves (one source for both sides).
 */
/** Token failures as the gateway reports them to clients (stable numbers, as in the original). */
export const tokenErrorCodes = {
  TOKEN_MISSING: 1000,
  TOKEN_MALFORMED: 1001,
  TOKEN_BAD_SIGNATURE: 1002,
  TOKEN_EXPIRED: 1003,
  TOKEN_ALREADY_USED: 1004,
  TOKEN_WRONG_GATEWAY: 1005,
  TOKEN_SERVICE_UNAVAILABLE: 1006,
} as const;

/**
 * WebSocket close codes of the gateway. protoo-client (mediasoup-demo's
 * client) takes 4000 as final and, after any other close, reconnects at once
 * with the same URL, whose one-time token is spent by then: every close the
 * gateway makes is final except where it admits that very reconnection.
 */
export const closeCodes = {
  /** Final: the reason is in the `closing` notification sent just before, and in the close reason (`"NAME: text"`). */
  final: 4000,
  /** "Service Restart": reconnect now with the same URL; the gateway admits that one reconnection (MEDIA_AGENT_LOST). */
  resume: 1012,
} as const;

export interface CloseReason {
  /** `closing.code`: a stable number per reason. */
  code: number;
  /** A client should come back: rejoin with a fresh token (the SDK does), or reconnect where `resume`. */
  rejoin: boolean;
  /** The socket closes with closeCodes.resume instead of closeCodes.final. */
  resume?: true;
}

/** Why the gateway ends a session: the `closing` notification's `errorName`, with its code and what a client should do. */
export const closeReasons = {
  TOKEN_MISSING: { code: tokenErrorCodes.TOKEN_MISSING, rejoin: false },
  TOKEN_MALFORMED: { code: tokenErrorCodes.TOKEN_MALFORMED, rejoin: false },
  TOKEN_BAD_SIGNATURE: { code: tokenErrorCodes.TOKEN_BAD_SIGNATURE, rejoin: false },
  TOKEN_EXPIRED: { code: tokenErrorCodes.TOKEN_EXPIRED, rejoin: false },
  TOKEN_ALREADY_USED: { code: tokenErrorCodes.TOKEN_ALREADY_USED, rejoin: false },
  TOKEN_WRONG_GATEWAY: { code: tokenErrorCodes.TOKEN_WRONG_GATEWAY, rejoin: false },
  /** Nuve did not answer: the token was not used and works later. */
  TOKEN_SERVICE_UNAVAILABLE: { code: tokenErrorCodes.TOKEN_SERVICE_UNAVAILABLE, rejoin: true },
  /** The service removed this user (Nuve `DELETE /rooms/:room/users/:user`). */
  KICKED: { code: 4100, rejoin: false },
  /** The room was deleted. */
  ROOM_CLOSED: { code: 4101, rejoin: false },
  /** A new connection with this peer id (same user) took over. */
  REPLACED: { code: 4102, rejoin: false },
  /** The gateway stops (after its drain): rejoin with a fresh token, which names another gateway. */
  GATEWAY_SHUTDOWN: { code: 4103, rejoin: true },
  /** Requests kept coming past the rate limit. */
  PROTOCOL_ABUSE: { code: 4104, rejoin: false },
  /** The requested peerId belongs to another user or to a broadcaster of the room. */
  PEER_ID_TAKEN: { code: 4105, rejoin: false },
  /** The peer's media agent (or its router) is gone: reconnecting with the same URL resumes the session once. */
  MEDIA_AGENT_LOST: { code: 4106, rejoin: true, resume: true },
  /** The client asked to `leave`. */
  LEFT: { code: 4107, rejoin: false },
} as const satisfies Record<string, CloseReason>;
export type CloseReasonName = keyof typeof closeReasons;

/** `closing.code` of an admission refused for any other reason (`errorName` says which, e.g. NO_AGENT_AVAILABLE). */
export const ADMISSION_FAILED_CODE = 1500;

/** What a `closing` errorName means; names outside the table are admission failures, which a rejoin may mend. */
export function closeReasonOf(errorName: string): CloseReason {
  return Object.hasOwn(closeReasons, errorName)
    ? closeReasons[errorName as CloseReasonName]
    : { code: ADMISSION_FAILED_CODE, rejoin: true };
}
