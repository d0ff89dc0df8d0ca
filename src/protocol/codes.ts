/**
 * Numeric codes of the signaling protocol, in a module without zod so the
 * browser SDK can import the values themselves (one source for both sides).
 */
/** errorCode values of failed responses (HTTP-like) — errorName carries the stable string code. */
export const signalingErrorCodes = {
  BAD_REQUEST: 400,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  TOO_MANY_REQUESTS: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

/** WebSocket close codes the gateway uses. */
export const closeCodes = {
  /** 4000 + the token error code's last digits: 4000..4006 (see tokenErrorCodes). */
  tokenErrorBase: 4000,
  kicked: 4100,
  roomClosed: 4101,
  replaced: 4102,
  gatewayShutdown: 4103,
  protocolAbuse: 4104,
  /** The requested peerId belongs to another user or to a broadcaster of the room (errorName PEER_ID_TAKEN). */
  peerIdTaken: 4105,
} as const;
