/**
 * The initial memory copy's progress, while `xl-ha remus|kemari|colo` waits for the daemon to
 * answer its `protect` request (it answers after the first checkpoint, minutes away for a large
 * guest). The daemon's `status` shows the copy as a starting protection's `precopy` field; this
 * polls it on a connection of its own and shows it: a cli-progress bar on a terminal, and on
 * anything else (a log, a pipe) a plain line each 10 % of the way, or after 10 s without one.
 *
 * Nothing is shown until the field appears; a poll that fails, or an answer without the field,
 * shows nothing new. `stop()` ends the polling, and the bar; nothing is written after it.
 */
import cliProgress from 'cli-progress';
import type { DaemonStatusJson, PrecopyProgressJson, ProtectionStatusJson } from '../daemon/status-types.js';

/** Where progress goes (stderr): a terminal gets a bar, anything else plain lines. */
export interface ProgressOutput {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface WatchPrecopyOptions {
  /** Between two polls (default PRECOPY_POLL_MS). */
  pollMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

export const PRECOPY_POLL_MS = 500;
/** Without a terminal: a line each this many percent of the copy... */
export const PLAIN_STEP_PERCENT = 10;
/** ...or when this long passed since the last line. */
export const PLAIN_EVERY_MS = 10_000;

const MIB = 1048576;

/** MiB, whole ones from 10 up. */
function mib(b: number): string {
  const m = b / MIB;
  return m >= 10 ? m.toFixed(0) : m.toFixed(1);
}

function eta(sec: number | null): string {
  if (sec === null || !Number.isFinite(sec)) return '-';
  const s = Math.max(0, Math.round(sec));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function percent(c: PrecopyProgressJson): number {
  return c.totalBytes > 0 ? Math.min(100, Math.floor((100 * c.sentBytes) / c.totalBytes)) : 0;
}

/** The figures after the bar, e.g. `58/128 MiB 12.3 MiB/s ETA 6s`. */
function figures(c: PrecopyProgressJson): { amount: string; rate: string; etaText: string } {
  return { amount: `${mib(c.sentBytes)}/${mib(c.totalBytes)}`, rate: (c.bytesPerSec / MIB).toFixed(1), etaText: eta(c.etaSec) };
}

/** One plain line, e.g. `precopy 45% 58/128 MiB 12.3 MiB/s ETA 6s`. */
export function precopyLine(c: PrecopyProgressJson): string {
  const f = figures(c);
  return `precopy ${percent(c)}% ${f.amount} MiB ${f.rate} MiB/s ETA ${f.etaText}`;
}

/** How the copy is shown: a bar or plain lines. */
interface View {
  show(c: PrecopyProgressJson): void;
  /** The protection is protected: the copy is done. */
  done(): void;
  stop(): void;
}

function barView(out: ProgressOutput): View {
  let bar: cliProgress.SingleBar | null = null;
  let last: PrecopyProgressJson | null = null;
  return {
    show(c) {
      last = c;
      const payload = figures(c);
      if (!bar) {
        bar = new cliProgress.SingleBar({
          stream: out as NodeJS.WritableStream,
          format: 'precopy |{bar}| {percentage}% {amount} MiB {rate} MiB/s ETA {etaText}', // {eta} is cli-progress's own
          barCompleteChar: '█',
          barIncompleteChar: '░',
          barsize: 30,
          // the cursor stays: a hidden one would stay hidden after a Ctrl-C
          fps: 5,
        });
        bar.start(c.totalBytes, c.sentBytes, payload);
        return;
      }
      if (bar.getTotal() !== c.totalBytes) bar.setTotal(c.totalBytes);
      bar.update(c.sentBytes, payload);
    },
    done() {
      if (bar && last) bar.update(last.totalBytes, { ...figures({ ...last, sentBytes: last.totalBytes }), etaText: '0s' });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

function plainView(out: ProgressOutput, now: () => number): View {
  let lastStep = -1;
  let lastAt = 0;
  return {
    show(c) {
      const step = Math.floor(percent(c) / PLAIN_STEP_PERCENT);
      if (step > lastStep || now() - lastAt >= PLAIN_EVERY_MS) {
        lastStep = Math.max(lastStep, step);
        lastAt = now();
        out.write(precopyLine(c) + '\n');
      }
    },
    done() {},
    stop() {},
  };
}

/**
 * Polls `poll` every PRECOPY_POLL_MS and shows the `precopy` of the protection `match` picks,
 * on `out`. The first poll is one interval after the call.
 */
export function watchPrecopy(poll: () => Promise<DaemonStatusJson>, match: (p: ProtectionStatusJson) => boolean, out: ProgressOutput, opts: WatchPrecopyOptions = {}): { stop(): void } {
  const pollMs = opts.pollMs ?? PRECOPY_POLL_MS;
  const view = out.isTTY ? barView(out) : plainView(out, opts.now ?? Date.now);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const tick = async (): Promise<void> => {
    let p: ProtectionStatusJson | undefined;
    try {
      p = (await poll()).protections?.find(match);
    } catch {
      // the daemon is busy or restarting: the protect request's own answer tells what went wrong
    }
    if (stopped) return;
    if (p?.precopy && p.state === 'starting') view.show(p.precopy);
    else if (p?.state === 'protected') view.done();
    schedule();
  };
  const schedule = () => {
    timer = setTimeout(() => void tick(), pollMs);
    timer.unref(); // the protect request keeps the process alive, not this
  };
  schedule();

  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      view.stop();
    },
  };
}
