/** A logger that keeps what it is told, for tests that check a log line. */
import { Writable } from 'node:stream';
import winston from 'winston';

export interface LogLine {
  level: string;
  message: string;
  [k: string]: unknown;
}

export function recordingLogger(): { log: winston.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    objectMode: true,
    write(info: LogLine, _enc, cb) {
      lines.push({ ...info });
      cb();
    },
  });
  const log = winston.createLogger({ level: 'debug', transports: [new winston.transports.Stream({ stream })] });
  return { log, lines };
}
