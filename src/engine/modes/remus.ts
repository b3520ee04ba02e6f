/**
 * `remus`: a checkpoint every epoch (Remus, NSDI'08). The guest runs speculatively while a
 * checkpoint is in flight; the engine's netbuf and disk devices hold its output until the
 * backup has acknowledged the checkpoint that covers it.
 */
import { ModeSetupError, type LoopState, type ModePolicy, type PolicySetupContext } from '../types.js';
import { abortableSleep } from '../../util/sleep.js';

export interface RemusOptions {
  intervalMs: number;
}

export class RemusPolicy implements ModePolicy {
  readonly id = 'remus' as const;
  constructor(readonly opts: RemusOptions) {}

  setup(ctx: PolicySetupContext): void {
    if (!ctx.capabilities.modes.includes('remus')) {
      throw new ModeSetupError(`mode remus is not supported by the ${ctx.backendKind} backend`);
    }
    if (!(this.opts.intervalMs >= 1)) throw new ModeSetupError(`remus: interval ${this.opts.intervalMs} ms must be at least 1`);
  }

  /**
   * One checkpoint every interval, start to start, as `-i` says. When a checkpoint takes
   * longer than half the interval (Xen under emulation, a huge dirty set), the guest still
   * runs at least half an interval between two of them instead of being checkpointed back to
   * back.
   */
  async nextCheckpoint(state: LoopState, signal: AbortSignal): Promise<void> {
    if (state.lastCheckpointAt === 0) return; // the first checkpoint follows the precopy at once
    const at = Math.max(state.lastCheckpointAt + this.opts.intervalMs, state.lastResumedAt + this.opts.intervalMs / 2);
    const due = at - performance.now();
    if (due > 0) await abortableSleep(due, signal);
  }
}
