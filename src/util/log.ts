/** Structured logging: winston to stderr, one line per event, child loggers per module. */
import winston from 'winston';
import { SystemLogTransport, type SystemLogKind } from './log-sink.js';

export type { Logger } from 'winston';

/** `file`: the log goes to that file (xl-ha.conf log_file = /path) instead of stderr. */
/** `system`: to syslog or the journal (src/util/log-sink.ts), instead of stderr. */
export function createLogger(opts: { level?: string; host?: string; json?: boolean; file?: string; system?: SystemLogKind } = {}): winston.Logger {
  const level = opts.level ?? process.env.XLHA_LOG_LEVEL ?? 'info';
  const line = winston.format.printf((info) => {
    const { level, message, timestamp, ...rest } = info as Record<string, unknown>;
    const fields = Object.entries(rest)
      .filter(([k]) => typeof k === 'string')
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    return `${timestamp as string} ${level as string} ${message as string}${fields ? ' ' + fields : ''}`;
  });
  return winston.createLogger({
    level,
    defaultMeta: opts.host ? { host: opts.host } : {},
    format: winston.format.combine(winston.format.timestamp(), opts.json ? winston.format.json() : line),
    transports: [
      opts.system
        ? new SystemLogTransport(opts.system)
        : opts.file
          ? new winston.transports.File({ filename: opts.file })
          : new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'verbose', 'debug', 'silly'] }),
    ],
  });
}

/** A logger that discards everything (tests). */
export function silentLogger(): winston.Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
