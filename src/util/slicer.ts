/**
 * Long synchronous work in slices of time, not of size. One daemon sends and reads every
 * heartbeat of all its domains on its main thread, so each synchronous step is a silence on
 * every link of the host. Slices counted in bytes or pages took 130-360 ms each on the sim with
 * 4 and 8 domains (a 32 MiB apply into memory not yet touched, a 64 MiB parse: measured with
 * daemon.loop and a CPU profile, docs/benchmark.md), and would take 10-50 times longer under the
 * lab's emulation. A slice of time is the same on every machine.
 *
 * `due()` reads the clock: call it every few hundred KiB of work, not per byte.
 */

/** The synchronous work allowed between two turns of the event loop, ms. */
export const SLICE_MS = 10;

export class TimeSlicer {
  private since = performance.now();

  constructor(private readonly budgetMs = SLICE_MS) {}

  /** Whether this slice's budget is spent. */
  due(): boolean {
    return performance.now() - this.since >= this.budgetMs;
  }

  /** Lets the event loop turn (timers, I/O), then starts a new slice. */
  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.since = performance.now();
  }

  /** {@link yield} when the budget is spent. */
  async maybeYield(): Promise<void> {
    if (this.due()) await this.yield();
  }
}
