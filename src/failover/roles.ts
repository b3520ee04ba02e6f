/**
 * The part the backup plays, chosen from the HELLO's mode. The session (backup.ts) owns what
 * every mode shares: the handshake, verifying and applying sealed checkpoints, heartbeats and
 * failover. A role adds what its mode needs on top, through optional hooks (a missing hook is a
 * no-op), as the modes' devices do on the primary:
 * - `replica` (remus, kemari): a parked replica that takes checkpoints and runs only on
 *   failover; it takes no side frames;
 * - colo will run its replica as the secondary, fed the mirrored input over the side channel;
 * - llm will keep the input log that arrives over the side channel and replay it on failover.
 * A mode this host cannot serve is refused at HELLO with a message naming it.
 */
import type { BackendFeatures } from '../backend/types.js';
import type { ModeId } from '../engine/modes/ids.js';
import type { SideMessage } from '../transport/side.js';

export interface BackupRole {
  readonly name: string;
  /** A verified side frame from the primary; throwing ends the stream as a protocol error. */
  onSide?(m: SideMessage): void | Promise<void>;
  /** Checkpoint `epoch` was applied to the replica. */
  afterApply?(epoch: number): void | Promise<void>;
  dispose?(): void;
}

export class RoleSetupError extends Error {
  readonly code = 'EROLESETUP';
}

/** The role for `mode` on a backend with `features`, or a RoleSetupError naming what is missing. */
export function createRole(mode: ModeId, features: BackendFeatures, backendKind: string, hostName: string): BackupRole {
  switch (mode) {
    case 'remus':
    case 'kemari':
      return { name: 'replica' };
    case 'colo':
      if (!features.runnableReplica) throw new RoleSetupError(`mode colo needs a replica that runs as the secondary, which the ${backendKind} backend on host ${hostName} cannot provide`);
      throw new RoleSetupError(`mode colo is not implemented yet by the backup on host ${hostName}`);
    case 'llm':
      throw new RoleSetupError(`mode llm is not implemented yet by the backup on host ${hostName}`);
  }
}
