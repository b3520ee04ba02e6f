/**
 * `kemari`: a checkpoint when the guest is about to emit output (Kemari, NTT: Xen 3.3, then
 * KVM). Devices report the first output the guest issues in an epoch (a packet reaching the
 * NIC's plug, a write reaching the disk tap), and the sync that covers it is taken at once,
 * unless the previous sync began less than `minGapMs` ago: then at the end of that gap, and
 * everything the guest emitted meanwhile is covered by that one sync. A burst of packets costs
 * one checkpoint, and a stream of output at most one per gap. An idle guest, or one that
 * computes without emitting anything, takes no checkpoint at all.
 *
 * Output leaves after the ack of the sync that covers it, as in remus, and the guest runs on
 * speculatively while the sync travels: the output is held by netbuf either way, so keeping
 * the guest stopped until the ack (as Kemari's device-emulator hook did) would only cost it
 * the round trip.
 */
import type { Disposable } from '../events.js';
import { ModeSetupError, type LoopState, type Mode, type ModePlan, type ModeSetupContext } from '../types.js';
import { abortableSleep } from '../../util/sleep.js';
import { Wakeup } from '../../util/wakeup.js';
import { ackedOutputDevices, inFlightOf } from './output.js';

export interface KemariOptions {
  minGapMs: number;
}

export class KemariMode implements Mode {
  readonly id = 'kemari' as const;
  /** Times of output events not yet known to be covered by a checkpoint (one per device and epoch). */
  private pending: number[] = [];
  private readonly wakeup = new Wakeup();
  private sub: Disposable | null = null;
  private outputEvents = 0;
  private syncs = 0;

  constructor(readonly opts: KemariOptions) {}

  setup(ctx: ModeSetupContext): ModePlan {
    const gap = this.opts.minGapMs;
    if (!(Number.isFinite(gap) && gap >= 0)) throw new ModeSetupError(`kemari: minimum gap ${gap} ms must be a number of milliseconds, 0 or more`);
    if (!ctx.features.outputEvents) {
      throw new ModeSetupError(
        `mode kemari needs output events (to sync before output leaves), which the ${ctx.backendKind} backend does not report yet; use remus`,
      );
    }
    if (!ctx.netbuf && !ctx.disk) throw new ModeSetupError('kemari: with both -n and -d there is no output to sync on');
    const plan: ModePlan = { devices: ackedOutputDevices('kemari', ctx), maxInFlight: inFlightOf(ctx), phaseOrder: 'resume-then-ack', outputRule: 'after-checkpoint-ack' };
    this.sub = ctx.events.on('output-pending', (ev) => {
      this.outputEvents++;
      this.pending.push(ev.at);
      this.wakeup.wake();
    });
    return plan;
  }

  async nextCheckpoint(state: LoopState, signal: AbortSignal): Promise<void> {
    if (state.lastCheckpointAt === 0) return; // the first checkpoint follows the precopy at once
    for (;;) {
      // Output raised before the last checkpoint closed its epoch is covered by that checkpoint.
      this.pending = this.pending.filter((at) => at > state.lastEpochClosedAt);
      const first = this.pending[0];
      if (first !== undefined) {
        const due = Math.max(first, state.lastCheckpointAt + this.opts.minGapMs) - performance.now();
        if (due > 0) await abortableSleep(due, signal);
        this.syncs++;
        return;
      }
      await this.wakeup.wait(signal); // the next output event
    }
  }

  stats(): Record<string, number> {
    return { outputEvents: this.outputEvents, syncsTriggered: this.syncs };
  }

  dispose(): void {
    this.sub?.dispose();
    this.sub = null;
  }
}
