/**
 * `remus`: a checkpoint every epoch (Remus, NSDI'08). The guest runs speculatively while a
 * checkpoint is in flight; netbuf and disk hold its output until the backup has acknowledged
 * the checkpoint that covers it.
 */
import { ModeSetupError, type LoopState, type Mode, type ModePlan, type ModeSetupContext } from '../types.js';
import { abortableSleep } from '../../util/sleep.js';
import { ackedOutputDevices, inFlightOf } from './output.js';

export interface RemusOptions {
  intervalMs: number;
}

export class RemusMode implements Mode {
  readonly id = 'remus' as const;
  constructor(readonly opts: RemusOptions) {}

  setup(ctx: ModeSetupContext): ModePlan {
    if (!(this.opts.intervalMs >= 1)) throw new ModeSetupError(`remus: interval ${this.opts.intervalMs} ms must be at least 1`);
    return { devices: ackedOutputDevices('remus', ctx), maxInFlight: inFlightOf(ctx), phaseOrder: 'resume-then-ack', outputRule: 'after-checkpoint-ack' };
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
