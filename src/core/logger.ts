import { createRequire } from 'node:module';
import { trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';

export type { Logger };

export type LogFormat = 'auto' | 'pretty' | 'json';

export interface LogOptions {
  level: string;
  /** `auto` (default): readable lines (pino-pretty) when stdout is a terminal, JSON otherwise. */
  format?: LogFormat;
  /** Older switch: true is `pretty`, false is `json`; `format` other than `auto` wins. */
  pretty?: boolean;
}

/** What a logger with these options writes: `pretty` or `json`. */
export function resolveLogFormat(options: Pick<LogOptions, 'format' | 'pretty'>, stdoutIsTty = process.stdout.isTTY === true): 'pretty' | 'json' {
  const format = options.format ?? 'auto';
  if (format !== 'auto') return format;
  if (options.pretty !== undefined) return options.pretty ? 'pretty' : 'json';
  return stdoutIsTty ? 'pretty' : 'json';
}

function prettyAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/** Root logger of a process; roles derive children with `logger.child({ role })`. */
export function createLogger(options: LogOptions): Logger {
  let pretty = resolveLogFormat(options) === 'pretty';
  const missingPretty = pretty && !prettyAvailable();
  if (missingPretty) pretty = false;
  const logger = pino({
    level: options.level,
    base: { pid: process.pid },
    // Lines written inside a traced operation carry its ids, so logs and traces join up.
    mixin() {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
    ...(pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { colorize: process.stdout.isTTY === true && !process.env.NO_COLOR, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' },
          },
        }
      : {}),
  });
  if (missingPretty && options.format === 'pretty') logger.warn('log.format is pretty but pino-pretty is not installed: logging JSON');
  return logger;
}
