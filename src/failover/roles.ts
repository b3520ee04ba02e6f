/**
 * The part the backup plays, chosen from the HELLO's mode. The session (backup.ts) owns what
 * every mode shares: the handshake, verifying and applying sealed checkpoints, heartbeats and
 * failover. A role adds what its mode needs on top, through optional hooks (a missing hook is a
 * no-op), as the modes' devices do on the primary:
 * - `replica` (remus, kemari): a parked replica that takes checkpoints and runs only on
 *   failover; it takes no side frames;
 * - `secondary` (colo): the replica runs between checkpoints, fed the mirrored input over the
 *   side channel, and its output goes back to the primary to be compared;
 * - llm will keep the input log that arrives over the side channel and replay it on failover.
 * A mode this host cannot serve is refused at HELLO with a message naming it.
 */
import type { Logger } from 'winston';
import type { BackendFeatures, IndexedInput, ReplicaDomain, SecondaryReplica } from '../backend/types.js';
import type { ModeId } from '../engine/modes/ids.js';
import type { SideMessage } from '../transport/side.js';
import { COLO_SIDE, decodeColoInput, encodeColoOutput } from '../transport/colo-records.js';

export interface RoleContext {
  replica: ReplicaDomain;
  /** A side frame to the primary; resolves at its ack. */
  sendSide(kind: number, payload: Buffer): Promise<void>;
  log: Logger;
}

export interface BackupRole {
  readonly name: string;
  /** The replica is built (before the first checkpoint); throwing refuses the HELLO. */
  start?(ctx: RoleContext): void;
  /** A verified side frame from the primary; throwing ends the stream as a protocol error. */
  onSide?(m: SideMessage): void | Promise<void>;
  /** Checkpoint `epoch` was applied to the replica. */
  afterApply?(epoch: number): void | Promise<void>;
  /** Figures of the role's own (status). */
  stats?(): Record<string, number>;
  dispose?(): void;
}

/**
 * colo's secondary: the replica runs from each checkpoint, fed the primary's client input
 * (INPUT side frames) in the primary's order; its output goes back to the primary (OUTPUT side
 * frames) to be compared, never to a client. After each checkpoint it is fed again from the
 * first input the primary had not consumed when it was taken.
 */
export class SecondaryRole implements BackupRole {
  readonly name = 'secondary';
  private ctx: RoleContext | null = null;
  private sec: SecondaryReplica | null = null;
  /** The primary's inputs not yet known to be consumed by a checkpoint, in order. */
  private inputs: IndexedInput[] = [];
  private running = false;
  private outputs = 0;
  private inputsTaken = 0;

  start(ctx: RoleContext): void {
    if (!ctx.replica.secondary) throw new RoleSetupError(`the replica of ${ctx.replica.name} cannot run as colo's secondary on this host`);
    this.ctx = ctx;
    this.sec = ctx.replica.secondary;
  }

  onSide(m: SideMessage): void {
    if (m.kind !== COLO_SIDE.INPUT) throw new Error(`colo: side frame kind ${m.kind} from the primary is not an input`);
    const got = decodeColoInput(m.payload);
    const last = this.inputs.length ? this.inputs[this.inputs.length - 1]!.index : 0;
    const fresh = got.filter((i) => i.index > last);
    if (fresh.length === 0) return;
    this.inputsTaken += fresh.length;
    // Inputs are small and few between checkpoints; copy them out of the channel's buffers.
    const own = fresh.map((i) => ({ index: i.index, conn: i.conn, data: Buffer.from(i.data) }));
    this.inputs.push(...own);
    if (this.running) this.sec!.deliver(own);
  }

  /** The replica holds checkpoint `epoch` and is paused: feed it from where that checkpoint is, and let it run. */
  afterApply(epoch: number): void {
    const sec = this.sec!;
    if (!this.running) {
      sec.start((conn, data) => this.forward(conn, data));
      this.running = true;
    }
    const handled = sec.inputsHandled;
    this.inputs = this.inputs.filter((i) => i.index > handled);
    if (this.inputs.length && this.inputs[0]!.index === handled + 1) sec.deliver(this.inputs);
    else if (this.inputs.length) {
      this.ctx!.log.warn('colo: the secondary misses input before the mirrored stream starts', { epoch, handled, first: this.inputs[0]!.index });
    }
    sec.resume();
  }

  private outbox: { epoch: number; packets: { conn: number; data: Uint8Array }[] } | null = null;

  /**
   * One output of the secondary: to the primary, tagged with the checkpoint it ran from when it
   * produced it. What it emits in one turn goes in one side frame.
   */
  private forward(conn: number, data: Uint8Array): void {
    const ctx = this.ctx;
    if (!ctx) return;
    this.outputs++;
    const epoch = ctx.replica.lastEpoch;
    if (this.outbox && this.outbox.epoch !== epoch) this.flush();
    if (!this.outbox) {
      this.outbox = { epoch, packets: [] };
      queueMicrotask(() => this.flush());
    }
    this.outbox.packets.push({ conn, data });
  }

  private flush(): void {
    const box = this.outbox;
    this.outbox = null;
    if (box && this.ctx) this.ctx.sendSide(COLO_SIDE.OUTPUT, encodeColoOutput(box)).catch(() => {});
  }

  stats(): Record<string, number> {
    return { secondaryOutputs: this.outputs, inputsMirrored: this.inputsTaken, inputsPending: this.inputs.length };
  }

  dispose(): void {
    this.ctx = null;
  }
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
      return new SecondaryRole();
    case 'llm':
      throw new RoleSetupError(`mode llm is not implemented yet by the backup on host ${hostName}`);
  }
}
