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
    ...(options.pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l' } } }
      : {}),
  });
}
