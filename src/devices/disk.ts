/**
 * disk: replicates the guest's disk writes. The whole disk goes with the first checkpoint;
 * afterwards the writes of epoch N travel inside checkpoint N (DISK_WRITES frames, covered by
 * its seal), and the backup commits them to its copy only when checkpoint N is complete.
 * The primary's own writes go straight to its disk, as in Remus.
 */
import type { DiskTap } from '../backend/types.js';
import type { Disposable } from '../engine/events.js';
import type { CheckpointDevice, ContentFrame, DeviceContext, FrameSink } from '../engine/types.js';
import { encodeDiskWrites, XLHA_REC } from '../transport/channel-records.js';

/** Disk writes per DISK_WRITES frame are bounded so a frame stays small. */
const MAX_FRAME_BYTES = 1 << 20;

export class DiskReplicationDevice implements CheckpointDevice {
  readonly kind = 'disk';
  private tap: DiskTap | null = null;
  private pending: ContentFrame[] = [];
  private sub: Disposable | null = null;
  /** Bytes of disk writes sent per checkpoint not yet acknowledged (they count against the buffer limit). */
  private readonly unacked = new Map<number, number>();
  writesSent = 0;
  /** What the last resync sent of the disk: the written blocks' bytes, or the whole disk's (a tap without a bitmap). */
  lastResync: { bytes: number; wholeDisk: boolean } | null = null;

  setup(ctx: DeviceContext): void {
    this.tap = ctx.session.disk;
    // Where the tap reports it, the first write of an epoch is an `output-pending` event.
    this.sub = this.tap?.onWritePending?.(() => ctx.events.emit('output-pending', { device: this.kind, at: performance.now() })) ?? null;
  }

  /**
   * The whole disk, after the memory's precopy (a resync: see below). The tap starts
   * recording here, just before the copy is read, not at setup: whatever the guest wrote before
   * is in the copy, and what it writes from now on is in the log, applied after the copy. Writes
   * recorded during a long precopy would only repeat the copy, and past the epoch cap they would
   * hold the guest's I/O until the first checkpoint (the lab: 130 s of precopy at 1 MiB/s).
   */
  async begin(send: FrameSink, why: 'initial' | 'resync' = 'initial'): Promise<void> {
    if (!this.tap) return;
    if (why === 'resync' && this.tap.readWritten) {
      // The backup rejected a checkpoint, which never reaches its disk: its copy is still the
      // last one it acknowledged, so only the blocks written since go again. The tap keeps
      // recording: what the guest writes meanwhile is applied after them, in the log.
      const w = this.tap.readWritten();
      this.lastResync = { bytes: w.bytes, wholeDisk: false };
      for await (const chunk of w.chunks) await send({ type: XLHA_REC.DISK_WRITES, body: encodeDiskWrites([chunk]) });
      return;
    }
    this.tap.start();
    const all = await this.tap.readAll();
    if (why === 'resync') this.lastResync = { bytes: all.sizeBytes, wholeDisk: true };
    for await (const chunk of all.chunks) await send({ type: XLHA_REC.DISK_WRITES, body: encodeDiskWrites([chunk]) });
  }

  presuspend(): void {
    this.tap?.suspending?.();
  }

  postsuspend(epoch: number): void {
    if (!this.tap) return;
    const writes = this.tap.drain(epoch);
    this.writesSent += writes.length;
    let bytes = 0;
    for (const w of writes) bytes += w.data.length;
    if (bytes) this.unacked.set(epoch, bytes);
    this.pending = [];
    let batch: typeof writes = [];
    let size = 0;
    for (const w of writes) {
      if (size + w.data.length > MAX_FRAME_BYTES && batch.length) {
        this.pending.push({ type: XLHA_REC.DISK_WRITES, body: encodeDiskWrites(batch) });
        batch = [];
        size = 0;
      }
      batch.push(w);
      size += w.data.length + 16;
    }
    if (batch.length) this.pending.push({ type: XLHA_REC.DISK_WRITES, body: encodeDiskWrites(batch) });
  }

  preresume(): void {
    this.tap?.resumed?.();
  }

  contribute(): ContentFrame[] {
    const p = this.pending;
    this.pending = [];
    return p;
  }

  commit(epoch: number): void {
    for (const e of this.unacked.keys()) if (e <= epoch) this.unacked.delete(e);
    this.tap?.committed?.(epoch);
  }

  release(): void {
    this.unacked.clear();
  }

  discard(): void {
    this.unacked.clear();
  }

  /**
   * Disk writes replicated but not yet acknowledged (the primary holds them until then), plus
   * those the tap recorded in the open epoch and not yet drained, where it reports them.
   */
  get heldBytes(): number {
    let n = this.tap?.pendingBytes ?? 0;
    for (const b of this.unacked.values()) n += b;
    return n;
  }

  teardown(): void {
    this.sub?.dispose();
    this.sub = null;
    this.tap?.stop();
    this.tap = null;
  }
}
