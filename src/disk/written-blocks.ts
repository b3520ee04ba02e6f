/**
 * The blocks of a disk written since the last good checkpoint: what a resync after a rejected
 * checkpoint must send again, instead of the whole disk (issue 19).
 *
 * One bit per block (default 4 KiB, as DRBD's bitmap: 32 KiB of bitmap per GiB of disk). The
 * writes of each epoch not yet acknowledged are also kept as block ranges, so that when
 * checkpoint N is acknowledged its blocks leave the bitmap unless a later epoch wrote them too.
 */

export interface ByteRange {
  offset: number;
  length: number;
}

export class WrittenBlocks {
  readonly blocks: number;
  private readonly bits: Uint8Array;
  /** Block ranges [first, last] (flat pairs) written in the open epoch. */
  private open: number[] = [];
  /** The same, for each closed epoch whose checkpoint is not yet known good. */
  private readonly closed = new Map<number, number[]>();

  constructor(
    readonly sizeBytes: number,
    readonly blockBytes = 4096,
  ) {
    if (!Number.isSafeInteger(blockBytes) || blockBytes < 512 || (blockBytes & (blockBytes - 1)) !== 0)
      throw new Error(`written-blocks block size must be a power of two of at least 512 bytes, got ${blockBytes}`);
    this.blocks = Math.ceil(sizeBytes / blockBytes);
    this.bits = new Uint8Array(Math.ceil(this.blocks / 8));
  }

  /** Bytes the bitmap itself takes. */
  get bitmapBytes(): number {
    return this.bits.length;
  }

  /** Marks the blocks that `length` bytes at `offset` touch, in the open epoch. */
  mark(offset: number, length: number): void {
    if (length <= 0) return;
    const first = Math.floor(offset / this.blockBytes);
    const last = Math.min(this.blocks - 1, Math.floor((offset + length - 1) / this.blockBytes));
    this.setRange(first, last);
    const n = this.open.length;
    // sequential writes make one range
    if (n && first <= this.open[n - 1]! + 1 && last >= this.open[n - 2]! - 1) {
      this.open[n - 2] = Math.min(this.open[n - 2]!, first);
      this.open[n - 1] = Math.max(this.open[n - 1]!, last);
    } else this.open.push(first, last);
  }

  /** The open epoch is closed as `epoch` (its writes were drained for that checkpoint). */
  close(epoch: number): void {
    const prev = this.closed.get(epoch);
    this.closed.set(epoch, prev ? prev.concat(this.open) : this.open);
    this.open = [];
  }

  /**
   * Checkpoint `epoch` is on the backup: the blocks of epochs up to it leave the bitmap, except
   * those a later epoch (or the open one) wrote as well.
   */
  good(epoch: number): void {
    let dropped = false;
    for (const [e, ranges] of this.closed) {
      if (e > epoch) continue;
      for (let i = 0; i < ranges.length; i += 2) this.clearRange(ranges[i]!, ranges[i + 1]!);
      this.closed.delete(e);
      dropped = true;
    }
    if (!dropped) return;
    for (const ranges of [...this.closed.values(), this.open]) for (let i = 0; i < ranges.length; i += 2) this.setRange(ranges[i]!, ranges[i + 1]!);
  }

  /** Forgets everything (a new protection starts with a whole-disk copy). */
  reset(): void {
    this.bits.fill(0);
    this.open = [];
    this.closed.clear();
  }

  has(block: number): boolean {
    return (this.bits[block >> 3]! & (1 << (block & 7))) !== 0;
  }

  /** Blocks marked. */
  count(): number {
    let n = 0;
    for (const b of this.bits) {
      let v = b;
      while (v) {
        v &= v - 1;
        n++;
      }
    }
    return n;
  }

  /** Runs of marked blocks as byte ranges (the last one cut at the end of the disk), in order. */
  *ranges(): Generator<ByteRange> {
    let start = -1;
    for (let b = 0; b <= this.blocks; b++) {
      // outside a run, a byte of the bitmap with no bit set is 8 blocks skipped at once
      if (start < 0 && b < this.blocks && (b & 7) === 0 && this.bits[b >> 3] === 0) {
        b += 7;
        continue;
      }
      const on = b < this.blocks && this.has(b);
      if (on && start < 0) start = b;
      else if (!on && start >= 0) {
        const offset = start * this.blockBytes;
        yield { offset, length: Math.min(b * this.blockBytes, this.sizeBytes) - offset };
        start = -1;
      }
    }
  }

  private setRange(first: number, last: number): void {
    for (let b = first; b <= last; b++) this.bits[b >> 3]! |= 1 << (b & 7);
  }

  private clearRange(first: number, last: number): void {
    for (let b = first; b <= last; b++) this.bits[b >> 3]! &= ~(1 << (b & 7));
  }
}
