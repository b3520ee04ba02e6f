/**
 * `colo`: both copies run, their outputs are compared (COLO: Xen summit 2012, SoCC'13). The
 * primary (PVM) runs the domain for its clients; the secondary (SVM) on the backup runs from
 * the last checkpoint and is fed every client input the PVM gets. An output both produced
 * leaves at once, with no buffering delay (colo-compare). A checkpoint is taken when their
 * outputs first diverge, and at the latest `maxIntervalMs` after the previous one (drift is
 * bounded even when outputs agree). The guest waits for the ack before it runs on: the SVM must
 * hold the PVM's state before both are compared again. On failover the SVM goes on from where
 * it is; nothing is restored.
 */
import { DiskReplicationDevice } from '../../devices/disk.js';
import { ColoCompareDevice } from '../../devices/colo-compare.js';
import type { Disposable } from '../events.js';
import { ModeSetupError, type CheckpointDevice, type LoopState, type Mode, type ModePlan, type ModeSetupContext } from '../types.js';
import { Wakeup } from '../../util/wakeup.js';

export interface ColoOptions {
  maxIntervalMs: number;
}

export class ColoMode implements Mode {
  readonly id = 'colo' as const;
  private divergedAt: number[] = [];
  private readonly wakeup = new Wakeup();
  private sub: Disposable | null = null;
  private compare: ColoCompareDevice | null = null;
  private onDivergence = 0;
  private periodic = 0;

  constructor(readonly opts: ColoOptions) {}

  setup(ctx: ModeSetupContext): ModePlan {
    const { features, backendKind } = ctx;
    if (!(this.opts.maxIntervalMs >= 1)) throw new ModeSetupError(`colo: maximum interval ${this.opts.maxIntervalMs} ms must be at least 1`);
    const missing = [
      !features.ingressTap && 'an ingress tap (client input mirrored to the secondary)',
      !features.runnableReplica && 'a replica that runs as the secondary',
      !features.outputBuffering && 'output buffering',
    ].filter(Boolean);
    if (missing.length) throw new ModeSetupError(`mode colo needs ${missing.join(', ')}, which the ${backendKind} backend does not provide yet; use remus`);
    if (!ctx.netbuf) throw new ModeSetupError('colo: -n leaves no output to compare; colo always holds and compares network output');
    if (ctx.disk && !features.diskReplication) {
      throw new ModeSetupError(`colo: disk replication is not available on the ${backendKind} backend; use -d to protect without it`);
    }
    this.compare = new ColoCompareDevice();
    const devices: CheckpointDevice[] = [this.compare];
    if (ctx.disk) devices.push(new DiskReplicationDevice());
    this.sub = ctx.events.on('outputs-diverged', () => {
      this.divergedAt.push(performance.now());
      this.wakeup.wake();
    });
    return { devices, maxInFlight: 1, phaseOrder: 'ack-then-resume', outputRule: 'when-secondary-agrees' };
  }

  async nextCheckpoint(state: LoopState, signal: AbortSignal): Promise<void> {
    if (state.lastCheckpointAt === 0) return; // the first checkpoint follows the precopy at once
    this.divergedAt = this.divergedAt.filter((at) => at > state.lastEpochClosedAt);
    if (this.divergedAt.length) {
      this.onDivergence++;
      return;
    }
    const due = state.lastCheckpointAt + this.opts.maxIntervalMs - performance.now();
    if (due <= 0) {
      this.periodic++;
      return;
    }
    const woken = await this.wakeup.wait(signal, due); // a divergence, or the fallback
    if (woken) this.onDivergence++;
    else this.periodic++;
  }

  stats(): Record<string, number> {
    return {
      outputsCompared: this.compare?.outputsCompared ?? 0,
      divergences: this.compare?.divergences ?? 0,
      inputsMirrored: this.compare?.inputsMirrored ?? 0,
      releasedOnMatch: this.compare?.releasedOnMatch ?? 0,
      releasedAtCommit: this.compare?.releasedAtCommit ?? 0,
      checkpointsOnDivergence: this.onDivergence,
      checkpointsPeriodic: this.periodic,
    };
  }

  dispose(): void {
    this.sub?.dispose();
    this.sub = null;
  }
}
