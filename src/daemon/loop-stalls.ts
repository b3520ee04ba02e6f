/**
 * The main thread's stalls: spans in which the event loop ran no timer for far longer than it
 * should have. One daemon process sends every heartbeat of every domain it protects or backs up
 * from this loop, so a stall of S ms is a silence of S ms on every link, and a backup whose
 * timeout in force is below S declares a live primary dead (docs/benchmark.md, the domains
 * series). `xl-ha status` shows them under `daemon.loop`, the bench per run, and each one
 * past LOG_STALL_MS is logged with the garbage collection inside it, so that a false failover
 * can be matched with the stall on the other host that caused it.
 *
 * How: a timer every TICK_MS (unref'd) measures how late it ran. Lateness is the stall; the
 * garbage collections that ended meanwhile (src/daemon/gc-stats.ts) are its GC share. The main
 * thread's own scheduler counters (/proc/thread-self/schedstat: time on a core, time runnable
 * but waiting for one) say what the rest was: `runMs` near `ms` is synchronous work on this
 * thread, `waitMs` is a machine with more runnable threads than cores, and what neither covers
 * is the thread blocked in the kernel (a synchronous read, write or page fault).
 */
import fs from 'node:fs';
import { gcTotalMs } from './gc-stats.js';

/** How often the timer runs. */
export const TICK_MS = 20;
/** Lateness counted as a stall. */
export const STALL_MS = 100;
/** Stalls logged one by one (shorter ones are only counted). */
export const LOG_STALL_MS = 250;
/** Ticks the p99 is taken over. */
export const LAG_WINDOW = 4096;
/** How many recent stalls are kept for status. */
export const RECENT = 16;

export interface LoopStall {
  /** When the stall ended (ISO time). */
  at: string;
  /** How late the timer ran, ms. */
  ms: number;
  /** Of it, garbage collection, ms. */
  gcMs: number;
  /** The main thread's time on a core during it, ms (null where /proc has no schedstat). */
  runMs: number | null;
  /** The main thread's time runnable but waiting for a core during it, ms (null likewise). */
  waitMs: number | null;
}

export interface LoopStats {
  /** Lateness of the timer: p99 over the last LAG_WINDOW ticks (about 80 s), and the maximum since start, ms. */
  lagP99Ms: number;
  maxMs: number;
  /** Stalls of at least STALL_MS, and their total, ms. */
  stalls: number;
  stallMs: number;
  /** The last RECENT stalls, oldest first. */
  recent: LoopStall[];
}

type OnStall = (s: LoopStall) => void;

let state: {
  lags: Float64Array;
  n: number;
  max: number;
  stalls: number;
  stallMs: number;
  recent: LoopStall[];
  listeners: Set<OnStall>;
} | null = null;

const r1 = (x: number) => Math.round(x * 10) / 10;

/** Starts watching (once per process; the timer does not keep the process alive). */
export function watchLoop(): void {
  if (state) return;
  const s = { lags: new Float64Array(LAG_WINDOW), n: 0, max: 0, stalls: 0, stallMs: 0, recent: [] as LoopStall[], listeners: new Set<OnStall>() };
  state = s;
  let last = performance.now();
  let gcAt = gcTotalMs();
  const sched = schedstatReader();
  let schedAt = sched?.() ?? null;
  const timer = setInterval(() => {
    const now = performance.now();
    const lag = Math.max(0, now - last - TICK_MS);
    last = now;
    s.lags[s.n++ % LAG_WINDOW] = lag;
    if (lag > s.max) s.max = lag;
    const gc = gcTotalMs();
    const sc = sched?.() ?? null;
    if (lag >= STALL_MS) {
      const stall: LoopStall = {
        at: new Date().toISOString(),
        ms: r1(lag),
        gcMs: r1(gc - gcAt),
        runMs: sc && schedAt ? r1(sc.runMs - schedAt.runMs) : null,
        waitMs: sc && schedAt ? r1(sc.waitMs - schedAt.waitMs) : null,
      };
      s.stalls++;
      s.stallMs += lag;
      s.recent.push(stall);
      if (s.recent.length > RECENT) s.recent.shift();
      for (const l of s.listeners) l(stall);
    }
    gcAt = gc;
    schedAt = sc;
  }, TICK_MS);
  timer.unref();
}

/** Calls `fn` at each stall; returns the unsubscribe. */
export function onLoopStall(fn: OnStall): () => void {
  state?.listeners.add(fn);
  return () => void state?.listeners.delete(fn);
}

/** The figures so far; null before {@link watchLoop}. */
export function loopStats(): LoopStats | null {
  if (!state) return null;
  const n = Math.min(state.n, LAG_WINDOW);
  const sorted = Array.from(state.lags.subarray(0, n)).sort((a, b) => a - b);
  const p99 = n ? sorted[Math.min(n - 1, Math.floor(n * 0.99))]! : 0;
  return { lagP99Ms: r1(p99), maxMs: r1(state.max), stalls: state.stalls, stallMs: r1(state.stallMs), recent: state.recent.map((x) => ({ ...x })) };
}

/**
 * A reader of the calling thread's /proc schedstat (time on a core and time waiting for one,
 * ns, as ms), kept open and read with pread at 0 (about 11 µs a read here); null where the
 * kernel has no schedstat.
 */
function schedstatReader(): (() => { runMs: number; waitMs: number } | null) | null {
  let fd: number;
  try {
    fd = fs.openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return null;
  }
  const buf = Buffer.alloc(128);
  return () => {
    try {
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      const [run, wait] = buf.toString('latin1', 0, n).trim().split(' ').map(Number);
      return Number.isFinite(run) && Number.isFinite(wait) ? { runMs: run! / 1e6, waitMs: wait! / 1e6 } : null;
    } catch {
      return null;
    }
  };
}
