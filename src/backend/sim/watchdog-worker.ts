/**
 * The sim watchdog's countdown (src/backend/sim/watchdog.ts), on its own thread so that a hung
 * main thread cannot stop it: each kick bumps a shared counter; a whole timeout without one
 * SIGKILLs the process. A negative counter disarms it.
 */
import fs from 'node:fs';
import { workerData } from 'node:worker_threads';

const { cell, timeoutMs, id } = workerData as { cell: SharedArrayBuffer; timeoutMs: number; id: number };
const kicks = new Int32Array(cell);
let last = Atomics.load(kicks, 0);
for (;;) {
  const r = Atomics.wait(kicks, 0, last, timeoutMs);
  const now = Atomics.load(kicks, 0);
  if (now < 0) break;
  if (r === 'timed-out' && now === last) {
    // straight to fd 2: a worker's process.stderr goes through the main thread, which is hung
    fs.writeSync(2, `xl-ha sim: watchdog ${id} fired: not kicked for ${timeoutMs} ms; resetting the host (SIGKILL)\n`);
    process.kill(process.pid, 'SIGKILL');
  }
  last = now;
}
