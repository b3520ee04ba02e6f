/**
 * The daemon's log to the system log (xl-ha.conf `log_file = syslog | journal`), through the
 * system's own tools rather than a socket of our own (Node has no unix datagram sockets, which
 * /dev/log and journald's native socket are):
 *
 *   syslog   util-linux `logger --prio-prefix -t xl-ha`: each line `<PRI>text`, facility daemon;
 *   journal  systemd's `systemd-cat -t xl-ha`, which reads a `<N>` level prefix on each line,
 *            so journalctl -p filters by level.
 *
 * One child process stays open for the daemon's life and gets one line per log entry, with the
 * entry's level as the line's priority. If the child dies, entries go to stderr with a warning.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import TransportStream from 'winston-transport';

/** syslog severities (RFC 5424) of winston's npm levels. */
export const SEVERITY: Record<string, number> = { error: 3, warn: 4, info: 6, http: 7, verbose: 7, debug: 7, silly: 7 };
/** The daemon facility (3), as xenstored and other daemons log. */
export const FACILITY_DAEMON = 3;

export type SystemLogKind = 'syslog' | 'journal';

/** The command that carries lines to `kind`, and how a line of `level` is prefixed. */
export function systemLogCommand(kind: SystemLogKind, tag = 'xl-ha'): { cmd: string; args: string[]; prefix: (level: string) => string } {
  const sev = (level: string) => SEVERITY[level] ?? 6;
  if (kind === 'syslog') return { cmd: 'logger', args: ['--prio-prefix', '-t', tag], prefix: (l) => `<${FACILITY_DAEMON * 8 + sev(l)}>` };
  return { cmd: 'systemd-cat', args: ['-t', tag], prefix: (l) => `<${sev(l)}>` };
}

const MESSAGE = Symbol.for('message');

export class SystemLogTransport extends TransportStream {
  private child: ChildProcess | null;
  private readonly prefix: (level: string) => string;

  constructor(
    readonly kind: SystemLogKind,
    opts: { tag?: string; spawnFn?: typeof spawn } = {},
  ) {
    super();
    const c = systemLogCommand(kind, opts.tag);
    this.prefix = c.prefix;
    const child = (opts.spawnFn ?? spawn)(c.cmd, c.args, { stdio: ['pipe', 'ignore', 'inherit'] });
    this.child = child;
    const lost = (why: string) => {
      if (this.child !== child) return;
      this.child = null;
      process.stderr.write(`xl-ha: the ${kind} log (${c.cmd}) ${why}: logging to stderr from now on\n`);
    };
    child.on('error', (err) => lost(`cannot run: ${err.message}`));
    child.on('exit', (code, sig) => lost(`exited (${sig ?? code})`));
    child.stdin?.on('error', () => lost('closed its input'));
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    const text = String(info[MESSAGE] ?? info.message ?? '');
    const level = String(info.level ?? 'info');
    // one entry, one line: a message with newlines would otherwise become several entries
    const line = `${this.prefix(level)}${text.replace(/\r?\n/g, ' | ')}\n`;
    if (this.child?.stdin?.writable) this.child.stdin.write(line);
    else process.stderr.write(text + '\n');
    next();
  }

  override close(): void {
    this.child?.stdin?.end();
  }
}
