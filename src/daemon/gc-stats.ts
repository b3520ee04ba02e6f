/**
 * The main thread's garbage collections since the daemon started, by kind: how many and how
 * long they stopped the event loop (`xl-ha status` under `daemon.gc`). A scavenge or a full
 * collection that lands inside a checkpoint lengthens the guest's pause; the bench reads these
 * per measured window to say whether that is where a pause's time goes.
 */
import { PerformanceObserver, constants } from 'node:perf_hooks';

export interface GcStats {
  /** Scavenges (the young generation). */
  minor: number;
  minorMs: number;
  /** Mark-sweep-compact (the whole heap). */
  major: number;
  majorMs: number;
  /** The longest single collection, ms. */
  maxMs: number;
}

let stats: GcStats | null = null;

/** Starts counting (once per process; the observer does not keep the process alive). */
export function watchGc(): void {
  if (stats) return;
  const s: GcStats = { minor: 0, minorMs: 0, major: 0, majorMs: 0, maxMs: 0 };
  stats = s;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        s.minor++;
        s.minorMs += e.duration;
      } else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        s.major++;
        s.majorMs += e.duration;
      }
      if (e.duration > s.maxMs) s.maxMs = e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
}

/** The counts so far, ms rounded to 0.1; null before {@link watchGc}. */
export function gcStats(): GcStats | null {
  if (!stats) return null;
  const r = (x: number) => Math.round(x * 10) / 10;
  return { minor: stats.minor, minorMs: r(stats.minorMs), major: stats.major, majorMs: r(stats.majorMs), maxMs: r(stats.maxMs) };
}

/** Every collection's time so far (minor and major), ms; 0 before {@link watchGc}. */
export function gcTotalMs(): number {
  return stats ? stats.minorMs + stats.majorMs : 0;
}
