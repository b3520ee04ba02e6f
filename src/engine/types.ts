/**
 * Seams of the checkpoint engine.
 *
 * The engine owns the order of phases. A {@link Mode} owns every decision: at setup it returns
 * a {@link ModePlan} (its devices, how many checkpoints may be in flight, its phase order and
 * the rule that lets output go), and in the loop it says when the next checkpoint is due. It
 * never calls the backend. A {@link CheckpointDevice} owns one kind of side effect (network
 * output, disk writes) and is told about each phase through optional hooks, like libxl's
 * checkpoint device ops: a missing hook is a no-op, and `teardown` runs even when `setup`
 * failed. Devices report what they see through typed events ({@link DeviceEvents}) that the
 * mode subscribes to.
 */
import type { BackendFeatures, SaveSession } from '../backend/types.js';
import type { ModeId } from './modes/ids.js';
import type { DeviceEvents } from './events.js';

export type Phase = 'suspend' | 'postsuspend' | 'capture' | 'preresume' | 'resume' | 'commit';

/** A frame a device adds to a checkpoint; it is covered by that checkpoint's seal. */
export interface ContentFrame {
  type: number;
  body: Buffer;
}

/** Where a device sends the frames of its initial synchronisation (see SaveSession's ContentSink for stream bytes). */
export type FrameSink = (f: ContentFrame) => Promise<void>;

/** The replication link's side channel, as a device sees it (src/transport/side.ts). */
export interface SidePort {
  /** Resolves once the backup has acknowledged the frame. */
  send(kind: number, payload: Buffer): Promise<void>;
  /** Side frames from the backup go to `handler`. */
  onMessage(handler: (m: { kind: number; payload: Buffer }) => void | Promise<void>): void;
}

export interface DeviceContext {
  session: SaveSession;
  domainName: string;
  /** Where the device reports what it sees (output pending, outputs diverged, input arrived). */
  events: DeviceEvents;
  side: SidePort;
}

export interface CheckpointDevice {
  readonly kind: string;
  setup?(ctx: DeviceContext): Promise<void> | void;
  /**
   * Synchronisation that goes with a full checkpoint: `initial` for the first (e.g. the whole
   * disk), `resync` for one after the backup rejected a checkpoint and kept its copy of the last
   * one it acknowledged (e.g. only the blocks written since).
   */
  begin?(send: FrameSink, why: 'initial' | 'resync'): Promise<void>;
  /**
   * The guest is about to be suspended for checkpoint `epoch`. A device that holds the guest's
   * I/O back (a disk at its epoch cap) lets it through now: a PV guest cannot suspend with
   * requests outstanding, so holding them across the suspend would deadlock it.
   */
  presuspend?(epoch: number): void;
  /** The guest is suspended; epoch `epoch` is closing. */
  postsuspend?(epoch: number): void;
  /** What this device adds to checkpoint `epoch`. */
  contribute?(epoch: number): ContentFrame[];
  preresume?(epoch: number): void;
  /** The backup acknowledged checkpoint `epoch`. */
  commit?(epoch: number): void;
  /** Replication stopped (peer lost or protection ended): stop holding anything back. */
  release?(): void;
  /** The backup took the domain over (fencing): drop what is held, never let it out. */
  discard?(): void;
  teardown?(): Promise<void> | void;
  /** Output this device holds back right now, in bytes (status). */
  readonly heldBytes?: number;
}

/** What the engine tells a mode about the loop. All times are performance.now(). */
export interface LoopState {
  readonly epoch: number;
  /** When the last checkpoint's suspend began (0 before the first). */
  readonly lastCheckpointAt: number;
  /** When the last checkpoint closed its epoch (after its devices' postsuspend): output raised before this is covered by it. */
  readonly lastEpochClosedAt: number;
  /** When the guest last resumed after a checkpoint (0 before the first). */
  readonly lastResumedAt: number;
  readonly inFlight: number;
}

/**
 * When the guest runs again after a capture:
 * - `resume-then-ack`: at once, speculatively; the checkpoint travels while it runs (remus, kemari);
 * - `ack-then-resume`: only once the backup has acknowledged the checkpoint, and after its commit
 *   (colo: the secondary must hold the primary's state before the two run on and are compared
 *   again, and the output the checkpoint covers leaves before any output of the next epoch).
 */
export type PhaseOrder = 'resume-then-ack' | 'ack-then-resume';

/**
 * What lets the guest's output leave:
 * - `after-checkpoint-ack`: the ack of the checkpoint that covers it (remus, kemari);
 * - `when-secondary-agrees`: at once, when the secondary produced the same output (colo);
 * - `after-input-ack`: the ack of the inputs that caused it (llm).
 * The plan's devices carry the rule out; the engine reports it.
 */
export type OutputRule = 'after-checkpoint-ack' | 'when-secondary-agrees' | 'after-input-ack';

export interface ModePlan {
  devices: CheckpointDevice[];
  /** Checkpoints sent and not yet acknowledged, at most (1 with `ack-then-resume`). */
  maxInFlight: number;
  phaseOrder: PhaseOrder;
  outputRule: OutputRule;
}

/** What a mode is told at setup: what the backend can do and what the admin asked for. */
export interface ModeSetupContext {
  features: BackendFeatures;
  backendKind: string;
  /** Hold network output (false with `-n`). */
  netbuf: boolean;
  /** Replicate disk writes (false with `-d`). */
  disk: boolean;
  /** `--in-flight N`, when given. */
  inFlight?: number;
  /** The protection's event bus: the mode subscribes, its devices emit. */
  events: DeviceEvents;
}

export interface Mode {
  readonly id: ModeId;
  /** The mode's plan, or a {@link ModeSetupError} naming what cannot run here. */
  setup(ctx: ModeSetupContext): ModePlan;
  /** Resolves when the next checkpoint is due; rejects with the signal's reason on abort. */
  nextCheckpoint(state: LoopState, signal: AbortSignal): Promise<void>;
  /** Figures of the mode's own (status, bench). */
  stats?(): Record<string, number>;
  /** Ends the mode's subscriptions; idempotent. */
  dispose?(): void;
}

export class ModeSetupError extends Error {
  readonly code = 'EMODESETUP';
}
