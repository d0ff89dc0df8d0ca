/**
 * One error type for every edge (REST, WebSocket, bus). `code` is the stable,
 * machine-readable name clients switch on; `status` is the HTTP status a REST
 * edge answers with; `message` is for humans.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details?: unknown;

  constructor(code: string, message: string, status = 400, details?: unknown) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.details = details;
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
