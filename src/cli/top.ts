/**
 * `xl-ha top`: the daemon's `status`, redrawn every interval, in the manner of top(1). A frame
 * is a header (host, backend, uptime, watchdog, the time), a table of the protections this
 * host is the primary of, a table of the replicas it keeps, and a note per domain that has
 * something to say (an error, a reconnect, the initial copy's progress).
 *
 * `renderTop` is pure: the frame for one status answer at one time and width. `runTop` is the
 * loop: it fetches, renders and writes, until Ctrl-C, its signal, or `iterations` frames. A
 * daemon that does not answer is shown as the frame's error, and asked again next interval.
 */
import { abortableSleep } from '../util/sleep.js';
import type { DaemonStatusJson, ProtectionStatusJson, ReplicaStatusJson } from '../daemon/status-types.js';

/** Where the frames go: a terminal (cleared between frames) or anything else (appended). */
export interface TopOutput {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface RunTopOptions {
  intervalMs: number;
  /** Stop after this many frames (absent: until SIGINT or `signal`). */
  iterations?: number;
  out: TopOutput;
  /** Stops the loop like Ctrl-C does. */
  signal?: AbortSignal;
}

/** ANSI: cursor home, clear the screen. */
export const CLEAR_SCREEN = '\x1b[H\x1b[2J';

const MISSING = '-';

interface Column<R> {
  head: string;
  /** Numbers are right-aligned. */
  right?: boolean;
  cell: (r: R) => string;
}

/** The first columns are kept whatever the width; the others are dropped from the right. */
const KEEP_COLUMNS = 4;

const PROTECTION_COLUMNS: Column<ProtectionStatusJson>[] = [
  { head: 'DOMAIN', cell: (p) => text(p.domain) },
  { head: 'MODE', cell: (p) => text(p.mode) },
  { head: 'PEER', cell: (p) => text(p.peer) },
  { head: 'STATE', cell: (p) => text(p.state) },
  { head: 'EPOCH', right: true, cell: (p) => num(p.epoch) },
  { head: 'CKPT/S', right: true, cell: (p) => num(p.checkpointsPerSec, 1) },
  { head: 'ACK-AGE', right: true, cell: (p) => ms(p.lastAckAgeMs) },
  { head: 'PAUSE-P99', right: true, cell: (p) => ms(p.pauseMsP99) },
  { head: 'BYTES/S', right: true, cell: (p) => bytes(p.bytesPerSec) },
  { head: 'BUFFERED', right: true, cell: (p) => bytes(p.bufferedBytes) },
];

const REPLICA_COLUMNS: Column<ReplicaStatusJson>[] = [
  { head: 'DOMAIN', cell: (r) => text(r.domain) },
  { head: 'MODE', cell: (r) => text(r.mode) },
  { head: 'PRIMARY', cell: (r) => text(r.primary) },
  { head: 'STATE', cell: (r) => text(r.state) },
  { head: 'EPOCH', right: true, cell: (r) => num(r.epoch) },
  { head: 'APPLIED', right: true, cell: (r) => num(r.checkpointsApplied) },
  { head: 'REJECTED', right: true, cell: (r) => num(r.checkpointsRejected) },
  { head: 'SILENT', right: true, cell: (r) => ms(r.primarySilentMs) },
];

function text(v: string | undefined): string {
  return v === undefined || v === '' ? MISSING : v;
}

function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function num(v: number | undefined, digits = 0): string {
  return isNum(v) ? v.toFixed(digits) : MISSING;
}

/** Milliseconds as `12ms`, `1.5s`, `3m20s`. */
export function ms(v: number | undefined): string {
  if (!isNum(v)) return MISSING;
  if (v < 1000) return `${v < 10 && !Number.isInteger(v) ? v.toFixed(1) : Math.round(v)}ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(1)}s`;
  return duration(v / 1000);
}

/** Seconds as `45s`, `3m20s`, `2h05m`, `3d04h`. */
export function duration(sec: number | undefined): string {
  if (!isNum(sec)) return MISSING;
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** Bytes as `512B`, `4.0KiB`, `1.2MiB`, `3.4GiB`. */
export function bytes(v: number | undefined): string {
  if (!isNum(v)) return MISSING;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let x = v;
  let i = 0;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(x)}B` : `${x.toFixed(1)}${units[i]}`;
}

/** Local wall-clock time, `HH:MM:SS`. */
function clock(now: number): string {
  const d = new Date(now);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

function watchdogText(s: DaemonStatusJson): string {
  const w = s.watchdog;
  if (!w) return MISSING;
  if (w.off) return 'off';
  const t = isNum(w.timeoutSec) ? ` ${w.timeoutSec}s` : '';
  return `${w.armed ? 'armed' : 'disarmed'}${t}${w.error ? ` (${w.error})` : ''}`;
}

/**
 * A table of `rows` in at most `width` columns: trailing columns are dropped until it fits
 * (the first KEEP_COLUMNS stay), then lines still too long are cut.
 */
function table<R>(columns: Column<R>[], rows: R[], width: number): string[] {
  const cells = rows.map((r) => columns.map((c) => c.cell(r)));
  const widths = columns.map((c, i) => Math.max(c.head.length, ...cells.map((row) => row[i]!.length)));
  let n = columns.length;
  const lineWidth = (k: number) => widths.slice(0, k).reduce((a, b) => a + b, 0) + 2 * (k - 1);
  while (n > KEEP_COLUMNS && lineWidth(n) > width) n--;
  const line = (values: string[]) =>
    values
      .slice(0, n)
      .map((v, i) => (columns[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.head)), ...cells.map(line)];
}

/** What a protection has to say besides its figures, if anything. */
function protectionNote(p: ProtectionStatusJson): string | undefined {
  if (p.precopy && p.state === 'starting') {
    const c = p.precopy;
    const pct = c.totalBytes > 0 ? Math.floor((100 * c.sentBytes) / c.totalBytes) : 0;
    return `precopy ${pct}% ${bytes(c.sentBytes)}/${bytes(c.totalBytes)} at ${bytes(c.bytesPerSec)}/s, ETA ${c.etaSec === null ? MISSING : duration(c.etaSec)}`;
  }
  if (p.waiting) return `waiting for the peer: attempt ${p.waiting.attempts}, next in ${ms(p.waiting.nextAttemptInMs)}${p.waiting.lastError ? `: ${p.waiting.lastError}` : ''}`;
  if (p.reconnect) return `reconnecting: attempt ${p.reconnect.attempts}, next in ${ms(p.reconnect.nextAttemptInMs)}, unprotected for ${ms(p.reconnect.unprotectedForMs)}${p.reconnect.lastError ? `: ${p.reconnect.lastError}` : ''}`;
  if (p.error) return p.error;
  return undefined;
}

function replicaNote(r: ReplicaStatusJson): string | undefined {
  if (r.waitingForWitness) return `waiting for the witness: ${r.waitingForWitness}`;
  return r.error;
}

function cut(line: string, width: number): string {
  return line.length > width ? line.slice(0, Math.max(0, width)) : line;
}

/** The header line: what `xl-ha top` says before its tables, or before an error. */
function header(now: number, fields: string): string {
  return `xl-ha top ${clock(now)}${fields ? `  ${fields}` : ''}`;
}

/**
 * One frame for `status` at time `now` (ms since the epoch), no line longer than `width`
 * (Infinity: no limit). Figures the status does not give are shown as `-`. Ends with a newline.
 */
export function renderTop(status: DaemonStatusJson, now: number, width: number): string {
  const d = status.daemon;
  const fields = [
    `host ${text(status.host)}`,
    `backend ${text(status.backend)}`,
    `up ${duration(d?.uptimeSecs)}`,
    `watchdog ${watchdogText(status)}`,
    ...(d && isNum(d.rssMiB) ? [`rss ${d.rssMiB}MiB`] : []),
  ].join('  ');
  const protections = status.protections ?? [];
  const replicas = status.replicas ?? [];
  const lines = [header(now, fields), ''];
  lines.push(`PROTECTIONS (${protections.length})`, ...(protections.length ? table(PROTECTION_COLUMNS, protections, width) : ['  none']));
  lines.push('', `REPLICAS (${replicas.length})`, ...(replicas.length ? table(REPLICA_COLUMNS, replicas, width) : ['  none']));
  const notes = [
    ...protections.map((p) => [p.domain, protectionNote(p)] as const),
    ...replicas.map((r) => [r.domain ?? MISSING, replicaNote(r)] as const),
    ...(status.unprotected ?? []).map((u) => [u.domain, `UNPROTECTED since ${u.at}: ${u.reason}`] as const),
  ].filter((n): n is readonly [string, string] => n[1] !== undefined);
  if (notes.length) lines.push('', ...notes.map(([domain, note]) => `${domain}: ${note}`));
  return lines.map((l) => cut(l, width)).join('\n') + '\n';
}

/** The frame when the daemon did not answer. */
export function renderTopError(message: string, now: number, width: number, intervalMs: number): string {
  return [header(now, ''), '', `error: ${message}`, `(asking again every ${ms(intervalMs)})`].map((l) => cut(l, width)).join('\n') + '\n';
}

/**
 * Fetches and shows a frame every `intervalMs` until SIGINT, `signal`, or `iterations`
 * frames. On a terminal each frame replaces the screen; elsewhere frames follow each other,
 * a blank line between two. A fetch that fails is shown in its frame; the loop goes on.
 */
export async function runTop(fetchStatus: () => Promise<DaemonStatusJson>, opts: RunTopOptions): Promise<void> {
  const { out, intervalMs, iterations } = opts;
  const stop = new AbortController();
  const onSigint = () => stop.abort();
  const onAbort = () => stop.abort();
  process.once('SIGINT', onSigint);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stop.abort();
  try {
    for (let frame = 0; !stop.signal.aborted && (iterations === undefined || frame < iterations); frame++) {
      const started = Date.now();
      let body: string;
      const width = out.columns ?? (out.isTTY ? 80 : Infinity);
      try {
        body = renderTop(await fetchStatus(), Date.now(), width);
      } catch (err) {
        body = renderTopError((err as Error).message, Date.now(), width, intervalMs);
      }
      if (stop.signal.aborted) break; // Ctrl-C while the daemon was being asked
      out.write(out.isTTY ? CLEAR_SCREEN + body : (frame > 0 ? '\n' : '') + body);
      if (iterations !== undefined && frame + 1 >= iterations) break;
      await abortableSleep(Math.max(0, started + intervalMs - Date.now()), stop.signal).catch(() => {}); // aborted: the loop ends
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}
