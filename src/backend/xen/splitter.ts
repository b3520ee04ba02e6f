/**
 * Finds the record boundaries in the libxc stream that xc_domain_save writes, so the daemon
 * can forward whole records and see where each checkpoint ends (the libxc CHECKPOINT record).
 * The stream opens with the 24-byte image header and the 16-byte domain header.
 *
 * Nothing is copied: the output is the pipe's chunks themselves, cut at the end of the last
 * whole record (a PAGE_DATA record of 1024 pages spans some 64 pipe reads). Only record headers
 * are read, and only the 12 bytes of one that straddles two chunks are gathered. Under
 * emulation, in the lab, joining each record cost more CPU than libxenguest's own work.
 */
import { FRAME_HEADER_BYTES, gatherBytes, paddedLength } from '../../transport/framing.js';
import { XC_REC } from '../../transport/xen-records.js';

const HEADERS_BYTES = 24 + 16;

export interface SplitResult {
  /** The bytes of whole records (and, first, the headers), in stream order, as views. */
  parts: Buffer[];
  /** CHECKPOINT records among them. */
  checkpoints: number;
  /** The libxc END record came. */
  ended: boolean;
  /** Pages carried by the PAGE_DATA records among them. */
  pages: number;
}

export class LibxcSplitter {
  /** Bytes not yet handed out, in order. */
  private chunks: Buffer[] = [];
  /** Where the next unit starts: chunk index and offset in it (all before it are whole records). */
  private ci = 0;
  private co = 0;
  private have = 0;
  /** Bytes of `chunks` before the scan position. */
  private scanned = 0;
  private headersSeen = false;
  private readonly head = Buffer.alloc(FRAME_HEADER_BYTES + 4);

  push(chunk: Buffer): SplitResult {
    const out: SplitResult = { parts: [], checkpoints: 0, ended: false, pages: 0 };
    if (chunk.length) {
      this.chunks.push(chunk);
      this.have += chunk.length;
    }
    for (;;) {
      const rest = this.have - this.scanned;
      let total: number;
      if (!this.headersSeen) {
        if (rest < HEADERS_BYTES) break;
        total = HEADERS_BYTES;
        this.headersSeen = true;
      } else {
        if (rest < FRAME_HEADER_BYTES) break;
        const h = this.peek(Math.min(rest, FRAME_HEADER_BYTES + 4));
        const type = h.readUInt32LE(0);
        const length = h.readUInt32LE(4);
        total = FRAME_HEADER_BYTES + paddedLength(length);
        if (rest < total) break;
        if (type === XC_REC.CHECKPOINT) out.checkpoints++;
        if (type === XC_REC.END) out.ended = true;
        if (type === XC_REC.PAGE_DATA && length >= 4) out.pages += h.readUInt32LE(FRAME_HEADER_BYTES);
      }
      this.advance(total);
    }
    if (this.scanned) out.parts = this.emit();
    return out;
  }

  /** The next `n` bytes from the scan position (n <= 12), gathered if they straddle chunks. */
  private peek(n: number): Buffer {
    const c = this.chunks[this.ci]!;
    if (c.length - this.co >= n) return c.subarray(this.co, this.co + n);
    return gatherBytes(this.chunks, this.ci, this.co, n, this.head);
  }

  private advance(n: number): void {
    this.scanned += n;
    while (n > 0) {
      const c = this.chunks[this.ci]!;
      const k = Math.min(c.length - this.co, n);
      this.co += k;
      n -= k;
      if (this.co === c.length && this.ci < this.chunks.length - 1) {
        this.ci++;
        this.co = 0;
      }
    }
  }

  /** Hands out everything before the scan position; keeps the rest. */
  private emit(): Buffer[] {
    const parts = this.chunks.slice(0, this.ci);
    const c = this.chunks[this.ci]!;
    if (this.co > 0) parts.push(this.co === c.length ? c : c.subarray(0, this.co));
    const tail = this.co === c.length ? [] : [this.co ? c.subarray(this.co) : c];
    this.chunks = [...tail, ...this.chunks.slice(this.ci + 1)];
    this.have -= this.scanned;
    this.scanned = 0;
    this.ci = 0;
    this.co = 0;
    return parts;
  }

  get bufferedBytes(): number {
    return this.have;
  }
}
