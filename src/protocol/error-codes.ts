/**
 * Every error code the platform reports, on every edge: REST bodies
 * (`{code, message}`), signaling responses (`errorName`, with the status as
 * `errorCode`) and bus replies. One entry per code: the HTTP status it maps to
 * and the message a caller sees when the thrower has nothing more specific to
 * say. No zod here, so the browser SDK imports the same table (its
 * `SignalError.code` is typed by it).
 *
 * A code is a contract: clients switch on it. Add codes; never rename one.
 */
interface ErrorEntry {
  readonly status: number;
  readonly message: string;
}

export const errorCatalogue = {
  // ── Malformed or invalid input (any edge) ────────────────────────────────
  INVALID_REQUEST: { status: 400, message: 'the request is invalid' },
  VALIDATION_FAILED: { status: 400, message: 'the request does not match its schema' },
  BAD_REQUEST: { status: 400, message: 'the request is invalid' },
  BAD_URL: { status: 400, message: 'the URL is malformed' },
  MALFORMED_JSON: { status: 400, message: 'the body is not valid JSON' },
  MALFORMED_HTTP: { status: 400, message: 'the request is not valid HTTP/1.1' },
  MALFORMED_MESSAGE: { status: 400, message: 'the message is malformed' },
  REQUEST_TIMEOUT: { status: 408, message: 'the request did not arrive in time' },
  BODY_TOO_LARGE: { status: 413, message: 'the body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'the content type is not supported' },
  HEADERS_TOO_LARGE: { status: 431, message: 'the request headers are too large' },
  UNKNOWN_METHOD: { status: 400, message: 'unknown method' },
  INVALID_PARAMETERS: { status: 400, message: 'the parameters are invalid' },
  INVALID_STATE: { status: 409, message: 'the object is not in a state that allows this' },
  NOT_FOUND: { status: 404, message: 'Resource not found' },
  RATE_LIMITED: { status: 429, message: 'too many requests; retry later' },
  FORBIDDEN: { status: 403, message: 'not allowed' },
  INTERNAL: { status: 500, message: 'internal error' },

  // ── Operations ───────────────────────────────────────────────────────────
  OPS_UNAUTHORIZED: { status: 401, message: 'operational endpoint: Authorization: Bearer <ops.token> required' },
  DRAINING: { status: 503, message: 'draining: no new rooms' },
  CLIENT_BUILD_FAILED: { status: 503, message: 'the browser SDK could not be built' },

  // ── Nuve: MAuth and tenants ──────────────────────────────────────────────
  AUTH_MISSING: { status: 401, message: 'missing or malformed MAuth Authorization header' },
  AUTH_UNSUPPORTED_METHOD: { status: 401, message: 'mauth_signature_method must be HMAC_SHA1' },
  AUTH_STALE_TIMESTAMP: { status: 401, message: 'mauth_timestamp is outside the accepted window' },
  AUTH_BAD_SIGNATURE: { status: 401, message: 'unknown service or bad signature' },
  AUTH_REPLAYED: { status: 401, message: 'this timestamp and cnonce were already used' },
  AUTH_UNAVAILABLE: { status: 503, message: 'replay protection store unavailable, retry' },
  SERVICE_NOT_AUTHORIZED: { status: 401, message: 'Service not authorized for this action' },
  SERVICE_NOT_FOUND: { status: 404, message: 'Service not found' },
  SUPER_SERVICE_PROTECTED: { status: 403, message: 'the superService cannot be deleted' },
  NO_SUPER_SERVICE: { status: 500, message: 'the superService does not exist' },

  // ── Nuve: store ──────────────────────────────────────────────────────────
  STORE_UNAVAILABLE: { status: 503, message: 'the database is unavailable, retry later' },
  STORE_CONFIG: { status: 500, message: 'the store configuration is unsupported' },

  // ── Nuve: rooms, users, tokens ───────────────────────────────────────────
  ROOM_NOT_FOUND: { status: 404, message: 'Room does not exist' },
  USER_NOT_FOUND: { status: 404, message: 'User does not exist' },
  INVALID_USER: { status: 400, message: 'user name is too long or has control characters' },
  INVALID_ROLE: { status: 400, message: 'role is not one of the configured roles (nuve.roles)' },
  TOKEN_USER_MISSING: { status: 401, message: 'Name and role?' },
  NO_GATEWAY_AVAILABLE: { status: 404, message: 'No Erizo Controller found' },
  GATEWAY_UNAVAILABLE: { status: 503, message: 'Erizo Controller managing this room does not respond' },

  // ── Tokens, as the gateway and Nuve report them ──────────────────────────
  TOKEN_MISSING: { status: 401, message: 'connect with ?token=' },
  TOKEN_MALFORMED: { status: 401, message: 'token fields are missing or invalid' },
  TOKEN_BAD_SIGNATURE: { status: 401, message: 'token signature is invalid' },
  TOKEN_EXPIRED: { status: 401, message: 'token has expired' },
  TOKEN_ALREADY_USED: { status: 401, message: 'token was already used or revoked' },
  TOKEN_WRONG_GATEWAY: { status: 401, message: 'token was issued for another gateway' },
  TOKEN_SERVICE_UNAVAILABLE: { status: 503, message: 'token service unavailable, retry' },

  // ── Bus ──────────────────────────────────────────────────────────────────
  BUS_TIMEOUT: { status: 504, message: 'no reply in time' },
  BUS_NO_RESPONDERS: { status: 503, message: 'nobody answers' },
  BUS_UNAVAILABLE: { status: 503, message: 'the bus is unavailable' },

  // ── Gateway: signaling ───────────────────────────────────────────────────
  PEER_CLOSED: { status: 410, message: 'the peer has left' },
  PEER_TIMEOUT: { status: 504, message: 'the peer did not answer' },
  PEER_REFUSED: { status: 400, message: 'the peer refused the request' },
  PEER_ID_TAKEN: { status: 409, message: 'another participant of the room has this peer id' },
  PEER_LIMIT_REACHED: { status: 403, message: 'this peer holds as many objects of that kind as it may' },
  NOT_JOINED: { status: 409, message: 'join first' },
  SCOPE_NOT_GRANTED: { status: 403, message: 'this session was not granted that scope' },
  ROOM_NOT_GRANTED: { status: 403, message: 'this session was granted no room' },
  ALREADY_JOINED: { status: 409, message: 'peer already joined' },
  ALREADY_CONNECTED: { status: 409, message: 'the transport is already connected' },
  PRODUCE_NOT_ALLOWED: { status: 403, message: "this token's role may not publish" },
  RECORD_NOT_ALLOWED: { status: 403, message: "this token's role may not stream out (record)" },
  CANNOT_CONSUME: { status: 400, message: 'these RTP capabilities cannot receive that producer' },
  BROADCASTER_NOT_FOUND: { status: 404, message: 'unknown broadcaster' },
  AGENT_UNAVAILABLE: { status: 503, message: 'the media agent does not answer' },
  NO_AGENT_AVAILABLE: { status: 503, message: 'no media agent is available' },

  // ── Media objects (agent and gateway) ────────────────────────────────────
  TRANSPORT_NOT_FOUND: { status: 404, message: 'transport not found' },
  PRODUCER_NOT_FOUND: { status: 404, message: 'producer not found' },
  CONSUMER_NOT_FOUND: { status: 404, message: 'consumer not found' },
  DATAPRODUCER_NOT_FOUND: { status: 404, message: 'dataProducer not found' },
  DATACONSUMER_NOT_FOUND: { status: 404, message: 'dataConsumer not found' },
  LINK_NOT_FOUND: { status: 404, message: 'no link to that agent in this room' },

  // ── Push ─────────────────────────────────────────────────────────────────
  PUSH_PAYLOAD_TOO_LARGE: { status: 413, message: 'the push payload is larger than push.maxPayloadBytes' },
  PUSH_MESSAGE_NOT_FOUND: { status: 404, message: 'no such unarrived push message for this user' },
  PUSH_NOT_YOURS: { status: 403, message: 'this push message is addressed to another user' },
  PUSH_UNAVAILABLE: { status: 503, message: 'the push service cannot reach its location registry; retry' },

  // ── Webhooks (Nuve's webhook API, the server SDK's verifyWebhook) ────────
  WEBHOOK_NOT_FOUND: { status: 404, message: 'no webhook is configured here' },
  WEBHOOK_SIGNATURE_INVALID: { status: 401, message: 'the webhook signature does not match' },
  WEBHOOK_TIMESTAMP_STALE: { status: 401, message: 'the webhook timestamp is outside the accepted window' },

  // ── Room API (Nuve's participants routes) ────────────────────────────────
  PARTICIPANT_NOT_FOUND: { status: 404, message: 'no such participant is connected to the room' },
  TRACK_NOT_FOUND: { status: 404, message: 'the participant publishes no such track' },
  REMOTE_UNMUTE_NOT_ALLOWED: { status: 403, message: 'this tenant does not allow unmuting a participant remotely (PATCH /settings)' },

  // ── Groups (Nuve's group membership routes) ──────────────────────────────
  GROUP_NOT_FOUND: { status: 404, message: 'this tenant has no such group (no member and no room)' },

  // ── Online events (Nuve's POST /online, on their way to the distributors) ─
  ONLINE_BACKLOG_FULL: { status: 503, message: 'too many online events wait for a distributor; retry later' },

  // ── Service gateway (calls to business services: src/core/service-*.ts, src/services/) ──
  SERVICE_NOT_RUNNING: { status: 404, message: 'no instance of this service is running' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'every instance of this service stopped answering; retry' },
  SERVICE_METHOD_NOT_FOUND: { status: 404, message: 'this service has no such method' },
  SERVICE_ACCESS_DENIED: { status: 403, message: 'this method is internal: only services and trusted servers may call it' },
  SERVICE_INVALID_ARGS: { status: 400, message: "the arguments do not match the method's schema" },
  SERVICE_PAYLOAD_TOO_LARGE: { status: 413, message: 'the call is larger than services.maxPayloadBytes' },
  SERVICE_TIMEOUT: { status: 504, message: 'the service did not answer within the call timeout' },
  SERVICE_INSTANCE_LOST: { status: 503, message: 'the instance running this call stopped answering; the call may or may not have run' },
  SERVICE_CALL_MUST_BE_ORDERED: { status: 409, message: 'this method runs ordered: its callers send it as an ordered call (callers retry by themselves)' },
  SERVICE_ORDER_RESET: { status: 409, message: 'the ordered calls of this client were cut (instance lost or a gap); ordering restarts with the next call' },
  TRUSTED_CREDENTIAL_INVALID: { status: 401, message: 'unknown trusted-server credential' },
  TRUSTED_TENANT_NOT_ALLOWED: { status: 403, message: 'this trusted server may not act for that tenant' },

  SERVICE_REPLY_TOO_LARGE: { status: 502, message: "the handler's answer is larger than services.maxReplyBytes: the instance refused to send it" },

  // ── Data cascade: data producers piped between a room's agents ──
  DATAPRODUCER_ALREADY_PIPED: { status: 409, message: 'this data producer is already piped over that link' },
} as const satisfies Record<string, ErrorEntry>;

export type ErrorCode = keyof typeof errorCatalogue;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(errorCatalogue, code);
}
