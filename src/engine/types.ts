/**
 * Seams of the checkpoint engine.
 *
 * The engine owns the order of phases. A {@link ModePolicy} decides when a checkpoint is
 * taken (and, in later modes, what else happens around it); it never calls the backend.
 * A {@link CheckpointDevice} owns one kind of side effect (network output, disk writes) and
 * is told about each phase through optional hooks, like libxl's checkpoint device ops:
 * a missing hook is a no-op, and `teardown` runs even when `setup` failed.
 */
import type { BackendCapabilities, ModeId, SaveSession } from '../backend/types.js';

export type Phase = 'suspend' | 'postsuspend' | 'send' | 'preresume' | 'resume' | 'commit';

/** A frame a device adds to a checkpoint; it is covered by that checkpoint's seal. */
export interface ContentFrame {
  type: number;
  body: Buffer;
}

export type ContentSink = (f: ContentFrame) => Promise<void>;

export interface DeviceContext {
  session: SaveSession;
  domainName: string;
}

export interface CheckpointDevice {
  readonly kind: string;
  setup?(ctx: DeviceContext): Promise<void> | void;
  /** Initial synchronisation, part of the first checkpoint (e.g. the whole disk). */
  begin?(send: ContentSink): Promise<void>;
  /** The guest is suspended; epoch `epoch` is closing. */
  postsuspend?(epoch: number): void;
  /** What this device adds to checkpoint `epoch`. */
  contribute?(epoch: number): ContentFrame[];
  preresume?(epoch: number): void;
  /** The backup acknowledged checkpoint `epoch`. */
  commit?(epoch: number): void;
  /** Replication stopped (peer lost or protection ended): stop holding anything back. */
  release?(): void;
  teardown?(): Promise<void> | void;
}

/** What the engine tells a policy about the loop. */
export interface LoopState {
  readonly epoch: number;
  /** performance.now() when the last checkpoint's suspend began (0 before the first). */
  readonly lastCheckpointAt: number;
  /** performance.now() when the guest last resumed after a checkpoint (0 before the first). */
  readonly lastResumedAt: number;
  readonly inFlight: number;
}

export interface PolicySetupContext {
  capabilities: BackendCapabilities;
  backendKind: string;
  devices: readonly CheckpointDevice[];
}

export interface ModePolicy {
  readonly id: ModeId;
  /** Throws a clear error when this mode cannot run here (backend, devices, options). */
  setup(ctx: PolicySetupContext): void;
  /** Resolves when the next checkpoint is due; rejects with the signal's reason on abort. */
  nextCheckpoint(state: LoopState, signal: AbortSignal): Promise<void>;
}

export class ModeSetupError extends Error {
  readonly code = 'EMODESETUP';
}
