/**
 * Guest memory of a simulated domain: 4 KiB pages in one SharedArrayBuffer, shared between
 * the host (main thread) and the vCPU (worker thread), with a log-dirty bitmap that behaves
 * like Xen's: every guest write sets the page's bit; the toolstack reads-and-clears it.
 *
 * Bit operations are atomic (`Atomics.or` by the guest, `Atomics.exchange` by the host), so
 * the host can scan the log while the guest runs (live precopy) without losing a write.
 */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

export interface GuestMemoryShared {
  mem: SharedArrayBuffer;
  dirty: SharedArrayBuffer;
}

export class GuestMemory {
  readonly pages: number;
  readonly bytes: Uint8Array;
  readonly dirtyWords: Int32Array;

  constructor(readonly shared: GuestMemoryShared) {
    this.pages = Math.floor(shared.mem.byteLength / PAGE_SIZE); // not >>>: a 4 GiB guest has 2^32 bytes
    this.bytes = new Uint8Array(shared.mem);
    this.dirtyWords = new Int32Array(shared.dirty);
  }

  static allocate(memoryMiB: number): GuestMemory {
    const pages = memoryMiB * 256;
    return new GuestMemory({
      mem: new SharedArrayBuffer(pages * PAGE_SIZE),
      dirty: new SharedArrayBuffer(Math.ceil(pages / 32) * 4),
    });
  }

  /** Marks the pages covering [offset, offset+length) dirty (what the guest's MMU does). */
  markDirty(offset: number, length: number): void {
    if (length <= 0) return;
    const first = offset >>> PAGE_SHIFT;
    const last = (offset + length - 1) >>> PAGE_SHIFT;
    for (let pfn = first; pfn <= last; pfn++) Atomics.or(this.dirtyWords, pfn >>> 5, 1 << (pfn & 31));
  }

  /** Reads and clears the log-dirty bitmap; returns the dirty pfns in ascending order. */
  readAndClearDirty(): Uint32Array {
    const words = this.dirtyWords;
    let count = 0;
    const found: number[] = [];
    for (let w = 0; w < words.length; w++) {
      if (Atomics.load(words, w) === 0) continue;
      const bits = Atomics.exchange(words, w, 0);
      found.push(w, bits);
      count += popcount(bits);
    }
    const pfns = new Uint32Array(count);
    let n = 0;
    for (let i = 0; i < found.length; i += 2) {
      const base = found[i]! << 5;
      let bits = found[i + 1]!;
      while (bits !== 0) {
        const low = bits & -bits;
        pfns[n++] = base + (31 - Math.clz32(low));
        bits ^= low;
      }
    }
    return pfns;
  }

  /** Counts dirty pages without clearing. */
  dirtyCount(): number {
    let count = 0;
    for (let w = 0; w < this.dirtyWords.length; w++) count += popcount(Atomics.load(this.dirtyWords, w));
    return count;
  }

  clearDirty(): void {
    for (let w = 0; w < this.dirtyWords.length; w++) Atomics.store(this.dirtyWords, w, 0);
  }

  page(pfn: number): Uint8Array {
    return this.bytes.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }
}

function popcount(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
