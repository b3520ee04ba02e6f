/**
 * The checkpoint engine, primary side. One loop, the same for every mode; the mode's plan
 * says which devices run, how many checkpoints may travel at once, and the phase order:
 *
 *   resume-then-ack (remus, kemari):
 *     nextCheckpoint (mode) → capture [suspend → postsuspend → capture] → resume [preresume →
 *     resume] → ship [transmit + seal] → acked → commit (devices release the epoch's output)
 *   ack-then-resume (colo):
 *     nextCheckpoint → capture → ship → acked → commit → resume
 *
 * With resume-then-ack the guest runs again as soon as its state is captured (speculative
 * execution); the transmission and the wait for the ack overlap the next epoch, up to the
 * plan's `maxInFlight` checkpoints. The steps `capture`, `resume`, `ship`, `acked` and `commit`
 * are public, so a driver for several domains can run one epoch across all of them; `run()`
 * is the one-domain driver. Read top to bottom: `run` → `checkpoint` → the steps.
 */
import type { Logger } from 'winston';
import type { CaptureResult, SaveSession } from '../backend/types.js';
import { SEAL_FLAG, XLHA_REC } from '../transport/channel-records.js';
import type { ContentFrame, LoopState, Mode, ModePlan, Phase } from './types.js';
import type { DeviceEvents } from './events.js';
import { NackError, ReplicationLostError, type ReplicationLink } from './link.js';
import { Samples } from '../util/samples.js';
import { DEFAULT_BUFFER_LIMIT_MIB, type BufferFullPolicy } from './buffer-policy.js';

export interface EngineOptions {
  session: SaveSession;
  link: ReplicationLink;
  mode: Mode;
  /** What `mode.setup` returned. */
  plan: ModePlan;
  /** The bus `mode.setup` subscribed to; the plan's devices emit on it. */
  events: DeviceEvents;
  domainName: string;
  log: Logger;
  /** Called after each committed checkpoint (tests, diagnostics). */
  onCommit?: (epoch: number) => void;
  /**
   * The backup is lost: whether the output held for it may be released (the domain runs on
   * alone) or must be dropped (`fence`: the backup took the domain over; the caller has paused
   * it). Without it, output is released.
   */
  onLost?: () => Promise<'release' | 'fence'>;
  /** Called while the guest is suspended, after capture (tests: snapshot of memory). */
  onCaptured?: (epoch: number) => void;
  /** Full resyncs in a row the backup may reject before protection is given up. */
  maxResyncs?: number;
  /** Output the devices may hold for the backup before `onBufferFull` acts (default BUFFER_LIMIT_BYTES). */
  bufferLimitBytes?: number;
  /** What happens when the held output passes the limit (default `throttle`); see BufferFullPolicy. */
  onBufferFull?: BufferFullPolicy;
}

export { BUFFER_FULL_POLICIES, type BufferFullPolicy } from './buffer-policy.js';

/** Held output allowed by default (see DEFAULT_BUFFER_LIMIT_MIB). */
export const BUFFER_LIMIT_BYTES = DEFAULT_BUFFER_LIMIT_MIB << 20;

/**
 * How often the held output is looked at while the loop waits for an ack (ms). On Xen each look
 * is one rtnetlink query per vif (the plug qdiscs' backlog), so not more often: a guest can pass
 * the limit by at most this long's output before it is paused.
 */
const PRESSURE_POLL_MS = 50;

export class BufferFullError extends Error {
  readonly code = 'EBUFFERFULL';
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
  /** Content bytes sent per checkpoint, after the transfer's stages (fgbi). */
  bytesPerCheckpoint: Samples;
  /** Content bytes captured per checkpoint, before them. */
  capturedBytesPerCheckpoint: Samples;
  pagesPerCheckpoint: Samples;
  precopyPages: number;
  resyncs: number;
  phaseMs: Record<Phase, number>;
  /** Per-checkpoint time in the two phases that dominate the pause. */
  suspendMs: Samples;
  captureMs: Samples;
  /** Times the guest was paused because its held output passed the limit, and for how long in all. */
  throttles: number;
  throttledMs: number;
  /** The most output held at once (bytes). */
  maxHeldBytes: number;
  /** performance.now() of the last acknowledged checkpoint (0: none yet). */
  lastAckAt: number;
}

export type EngineState = 'starting' | 'protected' | 'stopping' | 'stopped' | 'lost' | 'fenced' | 'failed';

/**
 * A checkpoint this large takes the backup a while to verify, parse and apply (colo's periodic
 * checkpoint after 5 s of a guest dirtying 20 MiB/s is 100 MiB): while it is in flight the
 * backup may be silent for up to LARGE_CHECKPOINT_SILENCE_MS before it is declared dead, instead
 * of the heartbeat timeout (measured on sim: an 80 MiB colo checkpoint silenced the backup for
 * more than 150 ms, and the primary gave up protection).
 */
export const LARGE_CHECKPOINT_BYTES = 16 << 20;
export const LARGE_CHECKPOINT_SILENCE_MS = 2000;

/**
 * A checkpoint's Xen stream goes in XEN_STREAM frames of at most this much (whole records):
 * one frame for all but large checkpoints, and never above the reader's frame limit (64 MiB).
 */
export const MAX_STREAM_FRAME_BYTES = 32 << 20;

/** `chunks` (whole records, each far below `max`) in groups of at most `max` bytes. */
export function frameGroups(chunks: readonly Buffer[], max = MAX_STREAM_FRAME_BYTES): Buffer[][] {
  const groups: Buffer[][] = [];
  let cur: Buffer[] = [];
  let size = 0;
  for (const c of chunks) {
    if (size + c.length > max && cur.length) {
      groups.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(c);
    size += c.length;
  }
  if (cur.length) groups.push(cur);
  return groups;
}

/** A checkpoint captured while its guest is suspended, until it is resumed and shipped. */
export interface Captured {
  readonly epoch: number;
  readonly full: boolean;
  readonly capture: CaptureResult;
  /** Frames the devices added (disk writes). */
  readonly extra: ContentFrame[];
  /** performance.now() at suspend. */
  readonly suspendedAt: number;
  resumed: boolean;
}

export class CheckpointEngine {
  private epochNo = 0;
  private lastCheckpointAt = 0;
  private lastEpochClosedAt = 0;
  private lastResumedAt = 0;
  /** Shipped checkpoints not yet settled, oldest first: resolves once committed (or rejected). */
  private readonly inFlight = new Map<number, Promise<void>>();
  private needFull = false;
  private fullEpoch = 0;
  private resyncsInRow = 0;
  /** The last large checkpoint in flight: the link's slow phase ends with its commit. */
  private slowUntilEpoch = 0;
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
    capturedBytesPerCheckpoint: new Samples(),
    pagesPerCheckpoint: new Samples(),
    precopyPages: 0,
    resyncs: 0,
    phaseMs: { suspend: 0, postsuspend: 0, capture: 0, preresume: 0, resume: 0, commit: 0 },
    suspendMs: new Samples(),
    captureMs: new Samples(),
    throttles: 0,
    throttledMs: 0,
    lastAckAt: 0,
    maxHeldBytes: 0,
  };

  constructor(private readonly o: EngineOptions) {}

  get epoch(): number {
    return this.epochNo;
  }

  get error(): Error | null {
    return this.failure;
  }

  /** Checkpoints that may be in flight at once (the mode's plan). */
  get maxInFlight(): number {
    return this.o.plan.phaseOrder === 'ack-then-resume' ? 1 : this.o.plan.maxInFlight;
  }

  /** Output the devices hold back right now, in bytes. */
  get heldBytes(): number {
    return this.o.plan.devices.reduce((n, d) => n + (d.heldBytes ?? 0), 0);
  }

  get bufferLimitBytes(): number {
    return this.o.bufferLimitBytes ?? BUFFER_LIMIT_BYTES;
  }

  get bufferFullPolicy(): BufferFullPolicy {
    return this.o.onBufferFull ?? 'throttle';
  }

  /** True when the held output is past the limit (and notes the peak). */
  private overLimit(): boolean {
    const held = this.heldBytes;
    if (held > this.stats.maxHeldBytes) this.stats.maxHeldBytes = held;
    return held > this.bufferLimitBytes;
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
    const { session, link, mode, log } = this.o;
    const { devices } = this.o.plan;
    const ready: typeof devices = [];
    try {
      for (const d of devices) {
        ready.push(d); // teardown is called even if setup fails
        await d.setup?.({
          session,
          domainName: this.o.domainName,
          events: this.o.events,
          side: { send: (kind, payload) => link.sendSide(kind, payload), onMessage: (h) => link.onSide(h) },
        });
      }
      link.slowPhase(true);
      link.startFull?.();
      const pre = await session.begin((chunk, written) => link.sendContent(XLHA_REC.XEN_STREAM, chunk, written));
      this.stats.precopyPages = pre.pages;
      for (const d of devices) await d.begin?.((f) => link.sendContent(f.type, f.body), 'initial');
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
        await Promise.race([mode.nextCheckpoint(state, signal), link.lost]);
        const full = this.needFull;
        if (full) await this.resync();
        await this.checkpoint(full);
        await this.drainInFlight(this.maxInFlight);
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
      get lastEpochClosedAt() {
        return self.lastEpochClosedAt;
      },
      get lastResumedAt() {
        return self.lastResumedAt;
      },
      get inFlight() {
        return self.inFlight.size;
      },
    };
  }

  /** One checkpoint of this domain, in the plan's phase order; the commit follows the ack. */
  private async checkpoint(full: boolean): Promise<void> {
    const c = await this.capture(full);
    if (this.o.plan.phaseOrder === 'ack-then-resume') {
      try {
        if (await Promise.race([this.ship(c), this.o.link.lost])) this.commit(c.epoch);
      } finally {
        await this.resume(c); // the guest never stays suspended, acknowledged or not
      }
      return;
    }
    await this.resume(c);
    const settled = this.ship(c).then((ok) => {
      if (ok) this.commit(c.epoch);
    });
    // Only the oldest in-flight checkpoint is awaited (drainInFlight); the others may be
    // rejected (link lost) before anyone awaits them, which must not count as unhandled.
    settled.catch(() => {});
    this.inFlight.set(c.epoch, settled);
  }

  /**
   * Step 1: suspends the guest, closes its epoch (devices' postsuspend) and captures the
   * dirty pages, the vCPU context and what the devices add. The guest stays suspended until
   * {@link resume}; if this throws, it has been resumed.
   */
  async capture(full: boolean): Promise<Captured> {
    const { session } = this.o;
    const { devices } = this.o.plan;
    const epoch = ++this.epochNo;
    this.stats.epoch = epoch;
    const t0 = performance.now();
    this.lastCheckpointAt = t0;
    for (const d of devices) d.presuspend?.(epoch);
    await session.suspend();
    try {
      const t1 = performance.now();
      for (const d of devices) d.postsuspend?.(epoch);
      const t2 = performance.now();
      this.lastEpochClosedAt = t2;
      const capture = await session.capture();
      const extra = devices.flatMap((d) => d.contribute?.(epoch) ?? []);
      this.o.onCaptured?.(epoch);
      const t3 = performance.now();
      const ph = this.stats.phaseMs;
      ph.suspend += t1 - t0;
      ph.postsuspend += t2 - t1;
      ph.capture += t3 - t2;
      this.stats.suspendMs.add(t1 - t0);
      this.stats.captureMs.add(t3 - t2);
      this.stats.pagesPerCheckpoint.add(capture.pages);
      return { epoch, full, capture, extra, suspendedAt: t0, resumed: false };
    } catch (err) {
      await session.resume();
      throw err;
    }
  }

  /** Step 2: the devices' preresume, then the guest runs again. Idempotent. */
  async resume(c: Captured): Promise<void> {
    if (c.resumed) return;
    c.resumed = true;
    const t3 = performance.now();
    try {
      for (const d of this.o.plan.devices) d.preresume?.(c.epoch);
    } finally {
      const t4 = performance.now();
      await this.o.session.resume();
      const t5 = performance.now();
      this.lastResumedAt = t5;
      this.stats.phaseMs.preresume += t4 - t3;
      this.stats.phaseMs.resume += t5 - t4;
      if (c.epoch === 1) this.stats.firstPauseMs = t5 - c.suspendedAt;
      else this.stats.pauseMs.add(t5 - c.suspendedAt);
    }
  }

  /**
   * Step 3: queues the checkpoint's frames in order (its Xen stream in XEN_STREAM frames of at
   * most MAX_STREAM_FRAME_BYTES, their buffers written vectored, then the devices' frames) and
   * its SEAL. Resolves true when the backup has
   * acknowledged it, false when it rejected a later checkpoint (a full resync is then due);
   * rejects when the link is lost or the first checkpoint is rejected. It does not commit.
   */
  ship(c: Captured): Promise<boolean> {
    const { link } = this.o;
    const { epoch, capture, extra } = c;
    const t6 = performance.now();
    if (!c.full && capture.bytes >= LARGE_CHECKPOINT_BYTES) {
      this.slowUntilEpoch = epoch;
      link.slowPhase(true, LARGE_CHECKPOINT_SILENCE_MS);
    }
    const sentBefore = link.contentBytes;
    const sending = [
      ...frameGroups(capture.chunks).map((g) => link.sendContent(XLHA_REC.XEN_STREAM, g)),
      ...extra.map((f) => link.sendContent(f.type, f.body)),
    ];
    // what went on the wire for it (after the transfer's stages), when the link counts it
    const raw = capture.bytes + extra.reduce((s, f) => s + f.body.length, 0);
    this.stats.capturedBytesPerCheckpoint.add(raw);
    this.stats.bytesPerCheckpoint.add(sentBefore !== undefined && link.contentBytes !== undefined ? link.contentBytes - sentBefore : raw);
    link.seal(epoch, c.full ? SEAL_FLAG.FULL : 0);
    const sealedAt = performance.now();
    const transmitted = Promise.all(sending).then(() => void this.stats.transmitMs.add(performance.now() - t6));
    return transmitted
      .then(() => link.waitAck(epoch))
      .then(
        () => {
          capture.release?.(); // acknowledged: the backup has every byte, the buffers are free
          this.stats.lastAckAt = performance.now();
          this.stats.ackMs.add(this.stats.lastAckAt - sealedAt);
          return true;
        },
        (err: Error) => {
          if (!(err instanceof NackError) || epoch === 1) throw err;
          this.o.log.warn('checkpoint rejected by backup', { epoch, reason: err.message });
          // The checkpoints in flight behind a rejected one are rejected with it ("waiting for a
          // full checkpoint"): one resync answers them all, and counts once.
          if (epoch >= this.fullEpoch && !this.needFull) {
            if (++this.resyncsInRow > (this.o.maxResyncs ?? 3)) {
              throw new Error(`backup rejected ${this.resyncsInRow} full resyncs in a row; last: ${err.message}`);
            }
            this.needFull = true;
          }
          return false;
        },
      );
  }

  /** Step 4: checkpoint `epoch` is on the backup: its output may leave. */
  commit(epoch: number): void {
    const t = performance.now();
    for (const d of this.o.plan.devices) d.commit?.(epoch);
    this.stats.phaseMs.commit += performance.now() - t;
    this.stats.committed = epoch;
    if (epoch >= this.fullEpoch) this.resyncsInRow = 0;
    if (epoch >= this.fullEpoch && epoch >= this.slowUntilEpoch) this.o.link.slowPhase(false);
    this.o.onCommit?.(epoch);
  }

  /**
   * Waits until fewer than `limit` checkpoints are in flight. Meanwhile the guest runs (remus,
   * kemari) and its output is held: past the buffer limit, the policy acts (see BufferFullPolicy).
   */
  private async drainInFlight(limit: number): Promise<void> {
    while (this.inFlight.size >= limit) {
      const [epoch, p] = this.inFlight.entries().next().value as [number, Promise<void>];
      let over = false;
      const watching = this.state === 'protected' ? this.whenOverLimit() : null;
      try {
        over = (await Promise.race([p.then(() => false), this.o.link.lost, ...(watching ? [watching.over] : [])])) === true;
        if (!over) this.inFlight.delete(epoch);
      } catch (err) {
        this.inFlight.delete(epoch);
        throw err;
      } finally {
        watching?.stop();
      }
      if (over) await this.relieve();
    }
    if (this.state === 'protected' && this.inFlight.size > 0 && this.overLimit()) await this.relieve();
  }

  /** Resolves `over` with true once the held output passes the limit (polled while waiting). */
  private whenOverLimit(): { over: Promise<boolean>; stop: () => void } {
    let timer: NodeJS.Timeout | null = null;
    const over = new Promise<boolean>((resolve) => {
      const look = () => {
        if (this.overLimit()) resolve(true);
        else timer = setTimeout(look, PRESSURE_POLL_MS);
      };
      look();
    });
    return { over, stop: () => timer && clearTimeout(timer) };
  }

  /**
   * The held output is past the limit. `throttle`: pause the guest until every checkpoint in
   * flight has settled, then let it run. `degrade`: give the backup up (the witness decides).
   */
  private async relieve(): Promise<void> {
    const { link, log, session } = this.o;
    const held = this.heldBytes;
    if (this.bufferFullPolicy === 'degrade') {
      const err = new BufferFullError(
        `${held} bytes of output held for the backup passed the limit of ${this.bufferLimitBytes} (the backup acknowledges slower than the guest writes): protection given up as configured (on buffer full: degrade)`,
      );
      log.error('BUFFER FULL: giving up protection', { domain: this.o.domainName, heldBytes: held, limitBytes: this.bufferLimitBytes, inFlight: this.inFlight.size });
      link.giveUp(err);
      throw err;
    }
    const t0 = performance.now();
    this.stats.throttles++;
    log.warn('buffer full: guest paused until the backup catches up', { domain: this.o.domainName, heldBytes: held, limitBytes: this.bufferLimitBytes, inFlight: this.inFlight.size });
    await session.throttle(true);
    try {
      for (const [epoch, p] of [...this.inFlight]) {
        try {
          await Promise.race([p, link.lost]);
        } finally {
          this.inFlight.delete(epoch);
        }
      }
    } finally {
      await session.throttle(false);
      const ms = performance.now() - t0;
      this.stats.throttledMs += ms;
      if (!link.isLost) log.info('backup caught up: guest runs again', { domain: this.o.domainName, pausedMs: Math.round(ms), heldBytes: this.heldBytes });
    }
  }

  /**
   * After the backup rejected a checkpoint it waits for one that stands alone: every page
   * and the whole disk again, sent live, then a checkpoint flagged FULL.
   */
  private async resync(): Promise<void> {
    const { session, link, log } = this.o;
    this.needFull = false;
    this.stats.resyncs++;
    this.fullEpoch = this.epochNo + 1;
    log.warn('resending a full checkpoint', { epoch: this.fullEpoch });
    link.slowPhase(true);
    link.startFull?.();
    await session.resync((chunk, written) => link.sendContent(XLHA_REC.XEN_STREAM, chunk, written));
    for (const d of this.o.plan.devices) await d.begin?.((f) => link.sendContent(f.type, f.body), 'resync');
  }

  private async finish(signal: AbortSignal, ready: ModePlan['devices']): Promise<void> {
    const { link, log, session, mode } = this.o;
    const clean = signal.aborted && !this.failure && !link.isLost;
    const lostFirst = link.isLost;
    if (!clean && !lostFirst && this.failure) {
      // Protection failed with the backup alive (it rejected the first checkpoint, or every
      // resync): tell it, so that it drops its replica rather than take over from a silent link
      // while this copy runs on; the witness then decides as for a lost backup.
      link.giveUp(new ReplicationLostError(`the primary gave protection up: ${this.failure.message}`));
    }
    if (clean) {
      this.state = 'stopping';
      try {
        await this.drainInFlight(1); // everything sent is committed before output flows freely
        await link.goodbye('protection stopped');
      } catch (err) {
        this.failure = err as Error;
      }
    }
    mode.dispose?.();
    let fence = false;
    if (!clean && link.isLost && this.o.onLost) {
      try {
        fence = (await this.o.onLost()) === 'fence';
      } catch (err) {
        fence = true; // no verdict is no licence to release
        log.error('deciding what to do without the backup failed: held output is dropped', { error: (err as Error).message });
      }
    }
    for (const d of ready) {
      try {
        if (fence) d.discard?.();
        else d.release?.();
        await d.teardown?.();
      } catch (err) {
        log.error('device teardown failed', { device: d.kind, error: (err as Error).message });
      }
    }
    await session.close().catch(() => {});
    link.close();
    if (fence) {
      this.state = 'fenced';
      log.error('protection ended: the backup took the domain over; this copy is paused and its held output dropped', { error: this.failure?.message, epoch: this.epochNo });
    } else if (this.failure) {
      this.state = lostFirst && !clean ? 'lost' : 'failed';
      log.error('protection ended: domain keeps running unprotected', { error: this.failure.message, epoch: this.epochNo });
    } else {
      this.state = 'stopped';
    }
  }
}
