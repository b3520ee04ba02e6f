/**
 * The checkpoint engine, primary side. One loop, the same for every mode:
 *
 *   nextCheckpoint (policy) → suspend → postsuspend (devices) → send (capture the dirty pages
 *   and vCPU context into the stream) → preresume (devices) → resume → transmit + seal →
 *   ack → commit (devices release the epoch's output)
 *
 * The guest runs again as soon as its state is captured (speculative execution); the
 * transmission and the wait for the ack overlap the next epoch, up to `maxInFlight`
 * checkpoints. Read top to bottom: `run` → `checkpoint` → `settle`.
 */
import type { Logger } from 'winston';
import type { BackendCapabilities, SaveSession } from '../backend/types.js';
import { XLHA_REC } from '../transport/records.js';
import type { CheckpointDevice, LoopState, ModePolicy, Phase } from './types.js';
import { NackError, SEAL_FLAG_FULL, type ReplicationLink } from './link.js';
import { Samples } from './stats.js';

export interface EngineOptions {
  session: SaveSession;
  link: ReplicationLink;
  policy: ModePolicy;
  devices: CheckpointDevice[];
  capabilities: BackendCapabilities;
  backendKind: string;
  domainName: string;
  log: Logger;
  /** Checkpoints sent but not yet acknowledged, at most. */
  maxInFlight?: number;
  /** Called after each committed checkpoint (tests, diagnostics). */
  onCommit?: (epoch: number) => void;
  /** Called while the guest is suspended, after capture (tests: snapshot of memory). */
  onCaptured?: (epoch: number) => void;
  /** Full resyncs in a row the backup may reject before protection is given up. */
  maxResyncs?: number;
}

export interface EngineStats {
  epoch: number;
  committed: number;
  startedAt: number;
  firstCheckpointAt: number;
  /** Guest pause of checkpoints after the first. */
  pauseMs: Samples;
  /** Guest pause of the first checkpoint, which ends the live precopy (migration downtime). */
  firstPauseMs: number;
  transmitMs: Samples;
  ackMs: Samples;
  bytesPerCheckpoint: Samples;
  pagesPerCheckpoint: Samples;
  precopyPages: number;
  resyncs: number;
  phaseMs: Record<Phase, number>;
  /** Per-checkpoint time in the two phases that dominate the pause. */
  suspendMs: Samples;
  captureMs: Samples;
}

export type EngineState = 'starting' | 'protected' | 'stopping' | 'stopped' | 'lost' | 'failed';

export class CheckpointEngine {
  private epochNo = 0;
  private lastCheckpointAt = 0;
  private lastResumedAt = 0;
  private readonly inFlight = new Map<number, Promise<void>>();
  private needFull = false;
  private fullEpoch = 0;
  private resyncsInRow = 0;
  private failure: Error | null = null;
  state: EngineState = 'starting';
  readonly stats: EngineStats = {
    epoch: 0,
    committed: 0,
    startedAt: performance.now(),
    firstCheckpointAt: 0,
    pauseMs: new Samples(),
    firstPauseMs: 0,
    transmitMs: new Samples(),
    ackMs: new Samples(),
    bytesPerCheckpoint: new Samples(),
    pagesPerCheckpoint: new Samples(),
    precopyPages: 0,
    resyncs: 0,
    phaseMs: { suspend: 0, postsuspend: 0, send: 0, preresume: 0, resume: 0, commit: 0 },
    suspendMs: new Samples(),
    captureMs: new Samples(),
  };

  constructor(private readonly o: EngineOptions) {}

  get epoch(): number {
    return this.epochNo;
  }

  get error(): Error | null {
    return this.failure;
  }

  /** Checkpoints that may be in flight at once. */
  get maxInFlight(): number {
    return this.o.maxInFlight ?? 1;
  }

  /** The backend's own step timings (median ms), when it keeps them. */
  backendTimings(): Record<string, number> | undefined {
    return this.o.session.timings?.();
  }

  /**
   * Runs protection until `signal` aborts (a clean stop: in-flight checkpoints are committed,
   * then the backup is told GOODBYE) or replication is lost (held output is released and the
   * domain keeps running unprotected). Never leaves the guest suspended.
   */
  async run(signal: AbortSignal, onProtected?: () => void): Promise<EngineState> {
    const { session, link, policy, devices, log } = this.o;
    const ready: CheckpointDevice[] = [];
    try {
      policy.setup({ capabilities: this.o.capabilities, backendKind: this.o.backendKind, devices });
      for (const d of devices) {
        ready.push(d); // teardown is called even if setup fails
        await d.setup?.({ session, domainName: this.o.domainName });
      }
      link.slowPhase(true);
      const pre = await session.begin((chunk, written) => link.sendContent(XLHA_REC.XEN_STREAM, chunk, written));
      this.stats.precopyPages = pre.pages;
      for (const d of devices) await d.begin?.((f) => link.sendContent(f.type, f.body));
      log.info('precopy done', { pages: pre.pages, rounds: pre.rounds });
      this.fullEpoch = 1;
      const firstAt = performance.now();
      await this.checkpoint(true);
      await this.drainInFlight(1);
      log.info('first checkpoint committed', {
        pauseMs: Math.round(this.stats.firstPauseMs),
        pages: this.stats.pagesPerCheckpoint.percentile(100), // the only sample yet
        bytes: this.stats.bytesPerCheckpoint.percentile(100),
        ms: Math.round(performance.now() - firstAt),
      });
      link.slowPhase(false);
      this.state = 'protected';
      this.stats.firstCheckpointAt = performance.now();
      onProtected?.();
      const state: LoopState = this.loopState();
      while (!signal.aborted) {
        await Promise.race([policy.nextCheckpoint(state, signal), link.lost]);
        const full = this.needFull;
        if (full) await this.resync();
        await this.checkpoint(full);
        await this.drainInFlight(this.o.maxInFlight ?? 1);
      }
    } catch (err) {
      if (!signal.aborted || link.isLost) {
        this.failure = err as Error;
      }
    } finally {
      await this.finish(signal, ready);
    }
    return this.state;
  }

  private loopState(): LoopState {
    const self = this;
    return {
      get epoch() {
        return self.epochNo;
      },
      get lastCheckpointAt() {
        return self.lastCheckpointAt;
      },
      get lastResumedAt() {
        return self.lastResumedAt;
      },
      get inFlight() {
        return self.inFlight.size;
      },
    };
  }

  /** One checkpoint: the guest is suspended only between `suspend` and `resume`. */
  private async checkpoint(full: boolean): Promise<void> {
    const { session, link, devices } = this.o;
    const epoch = ++this.epochNo;
    this.stats.epoch = epoch;
    const t0 = performance.now();
    this.lastCheckpointAt = t0;
    let suspended = false;
    let capture;
    let extra;
    try {
      await session.suspend();
      suspended = true;
      const t1 = performance.now();
      for (const d of devices) d.postsuspend?.(epoch);
      const t2 = performance.now();
      capture = await session.capture();
      extra = devices.flatMap((d) => d.contribute?.(epoch) ?? []);
      this.o.onCaptured?.(epoch);
      const t3 = performance.now();
      for (const d of devices) d.preresume?.(epoch);
      const t4 = performance.now();
      await session.resume();
      suspended = false;
      const t5 = performance.now();
      this.lastResumedAt = t5;
      const ph = this.stats.phaseMs;
      ph.suspend += t1 - t0;
      ph.postsuspend += t2 - t1;
      ph.send += t3 - t2;
      ph.preresume += t4 - t3;
      ph.resume += t5 - t4;
      this.stats.suspendMs.add(t1 - t0);
      this.stats.captureMs.add(t3 - t2);
      if (epoch === 1) this.stats.firstPauseMs = t5 - t0;
      else this.stats.pauseMs.add(t5 - t0);
    } finally {
      if (suspended) await session.resume();
    }
    // The guest runs again; the checkpoint travels meanwhile. Its frames are queued in order
    // now (one XEN_STREAM frame per checkpoint, its buffers written vectored), and the next
    // epoch does not wait for them to leave: the queue holds at most maxInFlight checkpoints,
    // since the loop waits for acks beyond that.
    const t6 = performance.now();
    const sending = [link.sendContent(XLHA_REC.XEN_STREAM, capture.chunks), ...extra.map((f) => link.sendContent(f.type, f.body))];
    link.seal(epoch, full ? SEAL_FLAG_FULL : 0);
    const sealedAt = performance.now();
    const transmitted = Promise.all(sending).then(() => void this.stats.transmitMs.add(performance.now() - t6));
    this.stats.bytesPerCheckpoint.add(capture.bytes + extra.reduce((s, f) => s + f.body.length, 0));
    this.stats.pagesPerCheckpoint.add(capture.pages);
    const release = capture.release;
    const settled = transmitted.then(() => link.waitAck(epoch)).then(
      () => {
        release?.(); // acknowledged: the backup has every byte, the buffers are free
        this.settle(epoch, sealedAt);
      },
      (err: Error) => {
        if (!(err instanceof NackError) || epoch === 1) throw err;
        this.o.log.warn('checkpoint rejected by backup', { epoch, reason: err.message });
        if (epoch >= this.fullEpoch) {
          if (++this.resyncsInRow > (this.o.maxResyncs ?? 3)) {
            throw new Error(`backup rejected ${this.resyncsInRow} full resyncs in a row; last: ${err.message}`);
          }
          this.needFull = true;
        }
      },
    );
    // Only the oldest in-flight checkpoint is awaited (drainInFlight); the others may be
    // rejected (link lost) before anyone awaits them, which must not count as unhandled.
    settled.catch(() => {});
    this.inFlight.set(epoch, settled);
  }

  /** Checkpoint `epoch` is on the backup: its output may leave. */
  private settle(epoch: number, sealedAt: number): void {
    const t = performance.now();
    this.stats.ackMs.add(t - sealedAt);
    for (const d of this.o.devices) d.commit?.(epoch);
    this.stats.phaseMs.commit += performance.now() - t;
    this.stats.committed = epoch;
    if (epoch >= this.fullEpoch) {
      this.resyncsInRow = 0;
      this.o.link.slowPhase(false);
    }
    this.o.onCommit?.(epoch);
  }

  /** Waits until fewer than `limit` checkpoints are in flight. */
  private async drainInFlight(limit: number): Promise<void> {
    while (this.inFlight.size >= limit) {
      const [epoch, p] = this.inFlight.entries().next().value as [number, Promise<void>];
      try {
        await Promise.race([p, this.o.link.lost]);
      } finally {
        this.inFlight.delete(epoch);
      }
    }
  }

  /**
   * After the backup rejected a checkpoint it waits for one that stands alone: every page
   * and the whole disk again, sent live, then a checkpoint flagged FULL.
   */
  private async resync(): Promise<void> {
    const { session, link, devices, log } = this.o;
    this.needFull = false;
    this.stats.resyncs++;
    this.fullEpoch = this.epochNo + 1;
    log.warn('resending a full checkpoint', { epoch: this.fullEpoch });
    link.slowPhase(true);
    await session.resync((chunk, written) => link.sendContent(XLHA_REC.XEN_STREAM, chunk, written));
    for (const d of devices) await d.begin?.((f) => link.sendContent(f.type, f.body));
  }

  private async finish(signal: AbortSignal, ready: CheckpointDevice[]): Promise<void> {
    const { link, log, session } = this.o;
    const clean = signal.aborted && !this.failure && !link.isLost;
    if (clean) {
      this.state = 'stopping';
      try {
        await this.drainInFlight(1); // everything sent is committed before output flows freely
        await link.goodbye('protection stopped');
      } catch (err) {
        this.failure = err as Error;
      }
    }
    for (const d of ready) {
      try {
        d.release?.();
        await d.teardown?.();
      } catch (err) {
        log.error('device teardown failed', { device: d.kind, error: (err as Error).message });
      }
    }
    await session.close().catch(() => {});
    link.close();
    if (this.failure) {
      this.state = link.isLost && !clean ? 'lost' : 'failed';
      log.error('protection ended: domain keeps running unprotected', { error: this.failure.message, epoch: this.epochNo });
    } else {
      this.state = 'stopped';
    }
  }
}
