/**
 * Cuts the libxc stream that xc_domain_save writes into whole records, so the daemon can
 * forward them inside xl-ha frames and see where each checkpoint ends (the libxc CHECKPOINT
 * record). The stream opens with the 24-byte image header and the 16-byte domain header.
 */
import { FRAME_HEADER_BYTES, XC_REC, paddedLength } from '../../transport/records.js';

const HEADERS_BYTES = 24 + 16;

export interface SplitResult {
  /** Whole records (and, first, the headers), in stream order. */
  bytes: Buffer;
  /** CHECKPOINT records among them. */
  checkpoints: number;
  /** The libxc END record came. */
  ended: boolean;
  /** Pages carried by the PAGE_DATA records among them. */
  pages: number;
}

export class LibxcSplitter {
  private pending: Buffer = Buffer.alloc(0);
  private headersSeen = false;

  push(chunk: Buffer): SplitResult {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let off = 0;
    let checkpoints = 0;
    let ended = false;
    let pages = 0;
    if (!this.headersSeen) {
      if (buf.length < HEADERS_BYTES) {
        this.pending = buf;
        return { bytes: Buffer.alloc(0), checkpoints, ended, pages: 0 };
      }
      this.headersSeen = true;
      off = HEADERS_BYTES;
    }
    while (buf.length - off >= FRAME_HEADER_BYTES) {
      const type = buf.readUInt32LE(off);
      const len = buf.readUInt32LE(off + 4);
      const total = FRAME_HEADER_BYTES + paddedLength(len);
      if (buf.length - off < total) break;
      if (type === XC_REC.CHECKPOINT) checkpoints++;
      if (type === XC_REC.END) ended = true;
      if (type === XC_REC.PAGE_DATA && len >= 4) pages += buf.readUInt32LE(off + FRAME_HEADER_BYTES);
      off += total;
    }
    this.pending = off === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(off));
    return { bytes: buf.subarray(0, off), checkpoints, ended, pages };
  }

  get bufferedBytes(): number {
    return this.pending.length;
  }
}
