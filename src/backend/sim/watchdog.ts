/**
 * The sim's stand-in for Xen's watchdog (SCHEDOP_watchdog on dom0): a worker thread, outside
 * the main thread's event loop, counts down; a kick restarts the countdown. If the main thread
 * stops kicking (its loop hangs), the worker resets the "host": it SIGKILLs this process, and
 * with it every domain the sim host runs, as Xen reboots a machine whose dom0 stopped kicking.
 * A SIGSTOP stops the worker too, as it would stop a real dom0 daemon but not Xen: the sim
 * cannot model that case.
 */
import { Worker } from 'node:worker_threads';
import type { HostWatchdog } from '../types.js';

/** Sim watchdogs per process, as Xen's per domain (NR_DOMAIN_WATCHDOG_TIMERS). */
const MAX_WATCHDOGS = 2;
let inUse = 0;
let nextId = 1;


export function armSimWatchdog(timeoutSec: number): HostWatchdog {
  if (!(Number.isInteger(timeoutSec) && timeoutSec > 0)) throw new Error(`watchdog timeout ${timeoutSec} s is not valid: expected a positive integer`);
  if (inUse >= MAX_WATCHDOGS) throw new Error(`arming the sim watchdog failed: both of this host's ${MAX_WATCHDOGS} watchdogs are taken`);
  inUse++;
  const id = nextId++;
  const cell = new SharedArrayBuffer(4);
  const kicks = new Int32Array(cell);
  const worker = new Worker(new URL('./watchdog-worker.js', import.meta.url), { workerData: { cell, timeoutMs: timeoutSec * 1000, id } });
  worker.unref();
  let armed = true;
  return {
    id,
    timeoutSec,
    kick: () => {
      if (!armed) return;
      Atomics.add(kicks, 0, 1);
      Atomics.notify(kicks, 0);
    },
    disarm: () => {
      if (!armed) return;
      armed = false;
      inUse--;
      Atomics.store(kicks, 0, -1);
      Atomics.notify(kicks, 0);
    },
  };
}
