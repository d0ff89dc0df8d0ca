import { trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level: string;
  pretty: boolean;
}

/** Root logger of a process; roles derive children with `logger.child({ role })`. */
export function createLogger(options: LogOptions): Logger {
  return pino({
    level: options.level,
    base: { pid: process.pid },
    // Lines written inside a traced operation carry its ids, so logs and traces join up.
    mixin() {
      const span = trace.getActiveSpan();
      if (!span) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
    ...(options.pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l' } } }
      : {}),
  });
}
