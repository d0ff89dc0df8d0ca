import { type ErrorCode, errorCatalogue, isErrorCode } from '../protocol/error-codes.js';

export type { ErrorCode } from '../protocol/error-codes.js';

export interface AppErrorOptions {
  /** Only where one code maps to another status on this edge (e.g. a gateway's malformed answer is a 502). */
  status?: number;
  details?: unknown;
}

/**
 * One error type for every edge (REST, WebSocket, bus). `code` is the stable,
 * machine-readable name clients switch on (src/protocol/error-codes.ts);
 * `status` is the HTTP status a REST edge answers with, from the catalogue;
 * `message` is for humans, the catalogue's unless the thrower knows more.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, options: AppErrorOptions = {}) {
    const entry = errorCatalogue[code];
    super(message ?? entry.message);
    this.name = 'AppError';
    this.code = code;
    this.status = options.status ?? entry.status;
    this.details = options.details;
  }

  /**
   * An error another process reported (a bus reply, a peer's refusal). Its code
   * reaches the caller unchanged even where this process's catalogue lacks it
   * (a newer version in a mixed cluster during a rolling upgrade).
   */
  static fromRemote(code: string, message: string, status: number): AppError {
    if (isErrorCode(code)) return new AppError(code, message, { status });
    const err = new AppError('INTERNAL', message, { status });
    (err as { code: string }).code = code; // kept verbatim: see above
    return err;
  }

  toJSON(): { code: string; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/**
 * The first validation issue (zod's shape) as a short, stable reason; bounded,
 * as an issue may list every unknown key of a hostile input.
 */
export function describeIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  const issue = issues[0];
  if (!issue) return 'invalid';
  const text = `${issue.path.map(String).join('.')} ${issue.message}`.trim();
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** The part of a fastify reply an HTTP edge answers an error with (kept structural: core does not import fastify). */
interface ErrorReply {
  status(code: number): { send(body: unknown): unknown };
}

/** Answers an HTTP request with the error's status and `{code, message[, details]}`, the one REST error shape. */
export function sendError(reply: ErrorReply, err: AppError): unknown {
  return reply.status(err.status).send(err.toJSON());
}

const FRAMEWORK_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
};

/**
 * What an HTTP edge answers for an error a request raised: the AppError itself,
 * or the framework's refusal of the body (too large, not JSON, wrong type) as a
 * catalogued code. Undefined for anything else: a bug, answered INTERNAL and logged.
 */
export function httpRefusal(err: unknown): AppError | undefined {
  if (err instanceof AppError) return err;
  const { code, statusCode, message } = err as { code?: string; statusCode?: number; message?: string };
  const mapped = code === undefined ? undefined : FRAMEWORK_CODES[code];
  if (mapped) return new AppError(mapped, message);
  if (statusCode === 400 && err instanceof SyntaxError) return new AppError('MALFORMED_JSON', err.message);
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) return new AppError('BAD_REQUEST', message, { status: statusCode });
  return undefined;
}

/**
 * A request the HTTP framework refuses before any route sees it (a path that is
 * not valid percent-encoding, a parameter past the length limit): answered like
 * every other refusal, with a catalogued code.
 */
export function frameworkRefusal(err: { code?: string; message: string }): AppError {
  return new AppError(err.code === 'FST_ERR_BAD_URL' ? 'BAD_URL' : 'BAD_REQUEST', err.message);
}
