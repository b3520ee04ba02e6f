/**
 * Cuts the libxc stream that xc_domain_save writes into whole records, so the daemon can
 * forward them inside xl-ha frames and see where each checkpoint ends (the libxc CHECKPOINT
 * record). The stream opens with the 24-byte image header and the 16-byte domain header.
 *
 * Pipe reads are small (64 KiB) and PAGE_DATA records large (up to 4 MiB): incoming chunks are
 * kept as they are until a whole record is there, then joined once, so each byte is copied at
 * most once (re-joining a growing buffer on every read was quadratic).
 */
import { FRAME_HEADER_BYTES, XC_REC, paddedLength } from '../../transport/records.js';

const HEADERS_BYTES = 24 + 16;

export interface SplitResult {
  /** Whole records (and, first, the headers), in stream order. */
  records: Buffer[];
  /** CHECKPOINT records among them. */
  checkpoints: number;
  /** The libxc END record came. */
  ended: boolean;
  /** Pages carried by the PAGE_DATA records among them. */
  pages: number;
}

export class LibxcSplitter {
  private chunks: Buffer[] = [];
  private head = 0; // first unconsumed chunk
  private have = 0;
  /** Bytes of the next unit (headers or record), 0 while unknown. */
  private need = 0;
  private headersSeen = false;

  push(chunk: Buffer): SplitResult {
    const out: SplitResult = { records: [], checkpoints: 0, ended: false, pages: 0 };
    if (chunk.length) {
      if (this.head > 64 && this.head * 2 > this.chunks.length) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
      this.chunks.push(chunk);
      this.have += chunk.length;
    }
    for (;;) {
      if (this.need === 0) {
        if (!this.headersSeen) this.need = HEADERS_BYTES;
        else if (this.have >= FRAME_HEADER_BYTES) this.need = FRAME_HEADER_BYTES + paddedLength(this.peek(FRAME_HEADER_BYTES).readUInt32LE(4));
        else break;
      }
      if (this.have < this.need) break;
      const unit = this.take(this.need);
      this.need = 0;
      if (!this.headersSeen) {
        this.headersSeen = true;
      } else {
        const type = unit.readUInt32LE(0);
        if (type === XC_REC.CHECKPOINT) out.checkpoints++;
        if (type === XC_REC.END) out.ended = true;
        if (type === XC_REC.PAGE_DATA && unit.readUInt32LE(4) >= 4) out.pages += unit.readUInt32LE(FRAME_HEADER_BYTES);
      }
      out.records.push(unit);
    }
    return out;
  }

  /** The first `n` buffered bytes, without consuming them. */
  private peek(n: number): Buffer {
    const first = this.chunks[this.head]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    for (let i = this.head, off = 0; off < n; i++) off += this.chunks[i]!.copy(out, off, 0, Math.min(this.chunks[i]!.length, n - off));
    return out;
  }

  /** Consumes `n` buffered bytes: a view when they lie in one chunk, else one join. */
  private take(n: number): Buffer {
    this.have -= n;
    const first = this.chunks[this.head]!;
    if (first.length >= n) {
      if (first.length === n) this.head++;
      else this.chunks[this.head] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[this.head]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.head++;
      else this.chunks[this.head] = c.subarray(k);
    }
    return out;
  }

  get bufferedBytes(): number {
    return this.have;
  }
}
