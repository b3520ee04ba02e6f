/**
 * Incremental reader for xl-ha channel frames (see docs/protocol.md).
 *
 * Data arrives from a socket in chunks of any size; {@link FrameReader.push}
 * returns the frames completed so far and keeps the remainder. Chunks are
 * queued, not concatenated, so the cost is linear in the bytes received
 * whatever the chunking: a body that lies inside one chunk is returned as a
 * view of that chunk, a body that spans chunks is copied exactly once, or, for
 * content frames (XEN_STREAM, DISK_WRITES: megabytes per checkpoint), not at
 * all: their `parts` are the views, and `body` joins them only if asked for.
 */

import {
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  type Frame,
  frameSize,
  gatherBytes,
  hex32,
  ProtocolError,
  type ProtocolErrorCode,
} from './framing.js';
import { isChannelType, isContentFrame } from './channel-records.js';
import { recordTypeName } from './record-names.js';

export type { Frame } from './framing.js';

/** Options of {@link FrameReader}. */
export interface FrameReaderOptions {
  /** Largest accepted frame body in bytes (default 64 MiB). */
  maxFrameBytes?: number;
  /**
   * Called with the bytes the reader is done with, so their read buffers can be reused
   * (src/util/slab-reads.ts SlabPool): frame headers and padding, and the bytes a control
   * frame's body came from (such bodies are then copies). A content frame's body stays the
   * consumer's, who gives it back itself.
   */
  release?: (bytes: Buffer) => void;
}

/**
 * A ProtocolError raised by {@link FrameReader.push}. `frames` holds the
 * frames that were completed by the same push before the bad one, so a caller
 * can still act on them (e.g. a SEAL that preceded garbage).
 */
export class FrameReaderError extends ProtocolError {
  readonly frames: Frame[];

  constructor(code: ProtocolErrorCode, message: string, frames: Frame[]) {
    super(code, message);
    this.name = 'FrameReaderError';
    this.frames = frames;
  }
}

interface PendingFrame {
  type: number;
  length: number;
  /** Header + body + padding. */
  total: number;
}

/** Compact the chunk queue once this many consumed slots accumulate. */
const COMPACT_AT = 64;

/**
 * Splits a byte stream into channel frames.
 *
 * Frame types are checked as soon as a header is complete: an unknown type or
 * a length above `maxFrameBytes` fails before the body is buffered. Padding
 * bytes are skipped without inspection. After an error the stream is out of
 * sync and the reader is dead: every later push throws the same error.
 */
export class FrameReader {
  /** Largest accepted frame body in bytes. */
  readonly maxFrameBytes: number;

  private chunks: Buffer[] = [];
  /** Index in `chunks` of the first chunk with unread bytes. */
  private head = 0;
  /** Bytes already consumed from chunks[head]. */
  private headOffset = 0;
  private buffered = 0;
  private pending: PendingFrame | null = null;
  private failure: ProtocolError | null = null;
  private readonly scratch = Buffer.alloc(FRAME_HEADER_BYTES);
  private readonly release: ((bytes: Buffer) => void) | null;

  constructor(opts: FrameReaderOptions = {}) {
    this.release = opts.release ?? null;
    const max = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isInteger(max) || max < 0 || max > 0xffff_ffff) {
      throw new RangeError(`maxFrameBytes must be an integer in 0..2^32-1, got ${max}`);
    }
    this.maxFrameBytes = max;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Type and body length of the frame being received, if its header is in. */
  get pendingFrame(): { type: number; length: number } | null {
    return this.pending ? { type: this.pending.type, length: this.pending.length } : null;
  }

  /**
   * Add received bytes; return every frame completed by them, in order.
   * Returned bodies may be views of the pushed chunks, so chunks must not be
   * modified after being pushed (socket 'data' buffers never are). Throws a {@link FrameReaderError} on an unknown frame type or an
   * oversized frame.
   */
  push(chunk: Buffer): Frame[] {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (!this.pending) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const header = this.peekHeader();
        const type = header.readUInt32LE(0);
        const length = header.readUInt32LE(4);
        if (!isChannelType(type)) {
          this.fail('EBADTYPE', `channel frame type ${hex32(type)} is unknown`, frames);
        }
        if (length > this.maxFrameBytes) {
          this.fail(
            'ETOOBIG',
            `channel frame ${recordTypeName('channel', type)}: length ${length} exceeds the limit of ${this.maxFrameBytes} bytes`,
            frames,
          );
        }
        this.pending = { type, length, total: frameSize(length) };
      }
      const p = this.pending;
      if (this.buffered < p.total) break;
      this.skip(FRAME_HEADER_BYTES, true);
      if (isContentFrame(p.type) && !this.contiguous(p.length)) {
        frames.push(new SplitFrame(p.type, this.takeParts(p.length), p.length));
      } else if (this.release && !isContentFrame(p.type)) {
        frames.push({ type: p.type, body: this.take(p.length, true) });
      } else {
        frames.push({ type: p.type, body: this.take(p.length) });
      }
      this.skip(p.total - FRAME_HEADER_BYTES - p.length, true);
      this.pending = null;
    }
    this.compact();
    return frames;
  }

  /**
   * Declare the end of the input (the connection closed). Throws ETRUNC if a
   * partial frame is buffered; a clean end between frames is fine.
   */
  finish(): void {
    if (this.failure) throw this.failure;
    if (this.buffered === 0) return;
    if (this.pending) {
      throw new ProtocolError(
        'ETRUNC',
        `channel ended inside a ${recordTypeName('channel', this.pending.type)} frame (${this.buffered} of ${this.pending.total} bytes received)`,
      );
    }
    throw new ProtocolError('ETRUNC', `channel ended inside a frame header (${this.buffered} of ${FRAME_HEADER_BYTES} bytes received)`);
  }

  private fail(code: ProtocolErrorCode, message: string, frames: Frame[]): never {
    const err = new FrameReaderError(code, message, frames);
    this.failure = err;
    throw err;
  }

  /** The next 8 bytes, without consuming them. Caller ensures they exist. */
  private peekHeader(): Buffer {
    const first = this.chunks[this.head]!;
    if (first.length - this.headOffset >= FRAME_HEADER_BYTES) {
      return first.subarray(this.headOffset, this.headOffset + FRAME_HEADER_BYTES);
    }
    return gatherBytes(this.chunks, this.head, this.headOffset, FRAME_HEADER_BYTES, this.scratch);
  }

  /** Consumes `n` bytes (n <= buffered); `done`: nobody holds them, they go to `release`. */
  private skip(n: number, done = false): void {
    this.buffered -= n;
    const release = done ? this.release : null;
    while (n > 0) {
      const c = this.chunks[this.head]!;
      const avail = c.length - this.headOffset;
      if (n < avail) {
        release?.(c.subarray(this.headOffset, this.headOffset + n));
        this.headOffset += n;
        return;
      }
      release?.(this.headOffset ? c.subarray(this.headOffset) : c);
      n -= avail;
      this.advance();
    }
    this.dropEmptyHead();
  }

  /** Whether the next `n` bytes lie in one chunk. */
  private contiguous(n: number): boolean {
    this.dropEmptyHead();
    const c = this.chunks[this.head];
    return n === 0 || (c !== undefined && c.length - this.headOffset >= n);
  }

  /** Consume `n` bytes (n <= buffered) and return them as views of the chunks. */
  private takeParts(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      this.dropEmptyHead();
      const c = this.chunks[this.head]!;
      const m = Math.min(c.length - this.headOffset, n);
      out.push(c.subarray(this.headOffset, this.headOffset + m));
      this.skip(m);
      n -= m;
    }
    return out;
  }

  /**
   * The next `n` bytes: a view when they lie in one chunk, else a copy. With `copy`, always a
   * copy, and the bytes it came from go to `release`.
   */
  private take(n: number, copy = false): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.dropEmptyHead();
    const c = this.chunks[this.head]!;
    if (!copy && n <= c.length - this.headOffset) {
      const view = c.subarray(this.headOffset, this.headOffset + n);
      this.skip(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    while (copied < n) {
      this.dropEmptyHead();
      const cur = this.chunks[this.head]!;
      const m = Math.min(cur.length - this.headOffset, n - copied);
      cur.copy(out, copied, this.headOffset, this.headOffset + m);
      copied += m;
      this.skip(m, copy);
    }
    return out;
  }

  private advance(): void {
    this.chunks[this.head] = EMPTY; // release the memory
    this.head++;
    this.headOffset = 0;
  }

  private dropEmptyHead(): void {
    while (this.head < this.chunks.length && this.chunks[this.head]!.length === this.headOffset) {
      this.advance();
    }
  }

  private compact(): void {
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
      this.headOffset = 0;
    } else if (this.head >= COMPACT_AT && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** A content frame whose body stays in the views it arrived in until someone needs it whole. */
class SplitFrame implements Frame {
  private joined: Buffer | null = null;

  constructor(
    readonly type: number,
    readonly parts: readonly Buffer[],
    private readonly length: number,
  ) {}

  get body(): Buffer {
    return (this.joined ??= Buffer.concat(this.parts as Buffer[], this.length));
  }
}
