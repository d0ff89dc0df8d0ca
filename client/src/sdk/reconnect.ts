import { SignalError, type SignalErrorCode, toSignalError } from './errors.js';

export type ReconnectOptions = false | { maxAttempts?: number; initialDelayMs?: number; maxDelayMs?: number };

export interface RejoinHooks {
  /** Once, as rejoining starts: the old session goes. */
  begin(reason: string): void;
  /** One attempt with a fresh token: resolves once the session is back, else rejects after cleaning up after itself. */
  attempt(token: string): Promise<void>;
  succeeded(): void;
  /** Every attempt failed (or none was allowed): `error` is RECONNECT_FAILED, its cause the last attempt's error, whose message is `reason`. */
  failed(error: SignalError, reason: string): void;
}

/** Refusals a new token from the same source will not mend: stop trying at once. */
const FINAL: ReadonlySet<SignalErrorCode> = new Set(['KICKED', 'ROOM_CLOSED', 'TOKEN_BAD_SIGNATURE', 'TOKEN_MALFORMED']);

/**
 * The rejoin loop: fresh tokens from `getToken` (tokens work once), tried
 * with exponential backoff until one attempt succeeds, the attempts run out,
 * or close(). One loop at a time: asking again while it runs joins it.
 */
export class Reconnector {
  private running?: Promise<void>;
  private closed = false;
  /** Ends the backoff wait early, when closed. */
  private wake?: () => void;

  constructor(
    private readonly options: { reconnect?: ReconnectOptions; getToken?: () => Promise<string> },
    private readonly hooks: RejoinHooks,
  ) {}

  rejoin(reason: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.loop(reason).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** No more attempts: a running loop stops at its next step, without calling succeeded or failed. */
  close(): void {
    this.closed = true;
    this.wake?.();
  }

  private async loop(reason: string): Promise<void> {
    this.hooks.begin(reason);
    const cfg = this.options.reconnect === false ? { maxAttempts: 0 } : (this.options.reconnect ?? {});
    const maxAttempts = cfg.maxAttempts ?? 8;
    let delay = cfg.initialDelayMs ?? 250;
    let lastError: SignalError | undefined;
    for (let attempt = 1; attempt <= maxAttempts && !this.closed; attempt++) {
      const { getToken } = this.options;
      if (!getToken) {
        lastError = new SignalError('TOKEN_REFRESH_FAILED', 'no getToken() callback: cannot rejoin (tokens work once)');
        break;
      }
      try {
        const token = await getToken().catch((err: unknown) => {
          throw new SignalError('TOKEN_REFRESH_FAILED', `getToken() failed: ${(err as Error)?.message ?? String(err)}`, undefined, err);
        });
        if (this.closed) return;
        await this.hooks.attempt(token);
        if (this.closed) return;
        this.hooks.succeeded();
        return;
      } catch (err) {
        lastError = toSignalError(err, 'CONNECTION_FAILED');
        if (FINAL.has(lastError.code)) break;
      }
      await this.sleep(delay);
      delay = Math.min(delay * 2, cfg.maxDelayMs ?? 5000);
    }
    if (this.closed) return;
    this.hooks.failed(
      new SignalError('RECONNECT_FAILED', `could not rejoin: ${lastError?.toString() ?? 'no attempt allowed'}`, undefined, lastError),
      lastError?.message ?? 'could not rejoin',
    );
  }

  private sleep(ms: number): Promise<void> {
    // Closed while the failed attempt was unwinding: wake() came too early to cut this wait short.
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
