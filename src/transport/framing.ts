/**
 * The framing layer, shared by the xl-ha replication channel and the Xen
 * migration stream: the framed unit both are made of, the error every decoder
 * in src/transport throws, and the byte helpers the record modules share.
 * The record vocabularies built on it are xen-records.ts (the Xen migration
 * stream) and channel-records.ts (xl-ha's own channel frames).
 *
 * The byte layouts are documented in docs/protocol.md.
 *
 * Conventions (here and in the record modules):
 *  - Every framed unit, at both levels, is `type u32 | length u32 | body |
 *    zero padding to a multiple of 8`, little-endian. `encodeFrame` writes
 *    one; the channel reader (reader.ts) and the Xen stream parser
 *    (xenstream.ts) read them.
 *  - `encodeX` returns the *body* of record X (no frame header) unless its
 *    name says `Record`/`Frame`. `decodeX` takes a body.
 *  - Decoders never trust the input: lengths are checked before any read and
 *    every failure is a {@link ProtocolError} whose message names the record
 *    and the offending value. Encoders reject bad arguments (programming
 *    errors) with RangeError/TypeError.
 *  - 64-bit integers are exposed as JavaScript numbers; decoders reject
 *    values above Number.MAX_SAFE_INTEGER rather than lose precision.
 */

// ---------------------------------------------------------------------------
// Errors

/**
 * Machine-readable classification of a {@link ProtocolError}.
 *
 *  - ETRUNC     input ended inside a header, record or frame
 *  - ETRAILING  bytes follow the point where the unit must end
 *  - EBADTYPE   unknown frame/record type (mandatory records only)
 *  - EBADLEN    a length field disagrees with the content or the record kind
 *  - EBADHDR    a stream header (libxl, image, domain) is invalid/unsupported
 *  - EBADVALUE  a field holds a value outside its domain (page type, JSON
 *               shape, UTF-8, 64-bit value beyond 2^53-1, ...)
 *  - EBADSEQ    a record is valid on its own but not at this point
 *  - ETOOBIG    a channel frame exceeds the reader's size limit
 *  - ECHECKSUM  a checkpoint's content does not match its seal
 */
export type ProtocolErrorCode =
  | 'ETRUNC'
  | 'ETRAILING'
  | 'EBADTYPE'
  | 'EBADLEN'
  | 'EBADHDR'
  | 'EBADVALUE'
  | 'EBADSEQ'
  | 'ETOOBIG'
  | 'ECHECKSUM';

/** Malformed or unexpected wire data. `message` names what was wrong. */
export class ProtocolError extends Error {
  /** Classification, see {@link ProtocolErrorCode}. */
  readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// Generic constants

/** Size of the `type u32 | length u32` header that starts every frame/record. */
export const FRAME_HEADER_BYTES = 8;
/** Frames and records are padded to a multiple of this many bytes. */
export const FRAME_ALIGN = 8;
/** Largest value of a u32 length field. */
export const MAX_U32 = 0xffff_ffff;

/** Default largest channel frame body accepted by the reader (64 MiB). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Small helpers

/**
 * Copies the `n` bytes that start at `chunks[index]`, offset `offset`, into `into` (from its
 * start), across as many chunks as they span, and returns `into.subarray(0, n)`. The caller
 * knows the bytes are there. For a header or record that straddles the reads it came in.
 */
export function gatherBytes(chunks: readonly Buffer[], index: number, offset: number, n: number, into: Buffer): Buffer {
  for (let i = index, off = offset, got = 0; got < n; i++, off = 0) {
    got += chunks[i]!.copy(into, got, off, Math.min(chunks[i]!.length, off + n - got));
  }
  return into.subarray(0, n);
}

/** `length` rounded up to the next multiple of 8. */
export function paddedLength(length: number): number {
  return Math.ceil(length / FRAME_ALIGN) * FRAME_ALIGN;
}

/** Total bytes a frame/record with a body of `length` bytes occupies. */
export function frameSize(length: number): number {
  return FRAME_HEADER_BYTES + paddedLength(length);
}

/** `0x` followed by 8 lower-case hex digits. */
export function hex32(n: number): string {
  return '0x' + (n >>> 0).toString(16).padStart(8, '0');
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** Throws a RangeError unless `value` is a u32. Internal to src/transport. */
export function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new RangeError(`${what} must be an integer in 0..2^32-1, got ${value}`);
  }
}

/** Throws a RangeError unless `value` is a non-negative safe integer. Internal to src/transport. */
export function checkU64(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

/** Write a non-negative safe integer as a little-endian u64. Internal to src/transport. */
export function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32LE(value % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}

/** Read a little-endian u64 that must fit in a double without loss. Internal to src/transport. */
export function readU64(buf: Buffer, offset: number, what: string): number {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  if (hi > 0x1f_ffff) {
    const big = (BigInt(hi) << 32n) | BigInt(lo);
    throw new ProtocolError('EBADVALUE', `${what} ${big} exceeds 2^53-1`);
  }
  return hi * 0x1_0000_0000 + lo;
}

/** Throws a ProtocolError unless `body` is exactly `exact` bytes. Internal to src/transport. */
export function needLength(body: Buffer, exact: number, what: string): void {
  if (body.length !== exact) {
    throw new ProtocolError(
      body.length < exact ? 'ETRUNC' : 'EBADLEN',
      `${what} body is ${body.length} bytes, expected ${exact}`,
    );
  }
}

/** Throws a ProtocolError (ETRUNC) unless `body` has at least `min` bytes. Internal to src/transport. */
export function needAtLeast(body: Buffer, min: number, what: string): void {
  if (body.length < min) {
    throw new ProtocolError('ETRUNC', `${what} body is ${body.length} bytes, expected at least ${min}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes strict UTF-8; invalid bytes are a ProtocolError (EBADVALUE). Internal to src/transport. */
export function decodeUtf8(bytes: Buffer, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch (err) {
    throw new ProtocolError('EBADVALUE', `${what} is not valid UTF-8`, { cause: err });
  }
}

// ---------------------------------------------------------------------------
// Framing

/** A channel frame as delivered by the reader: type and (unpadded) body. */
export interface Frame {
  type: number;
  body: Buffer;
  /**
   * The body as the views it arrived in, when the reader did not join them (a content frame
   * that spans socket reads; `body` then joins them on first use). Consumers that pass the
   * bytes on (digest, libxc's pipe) take `parts` and copy nothing.
   */
  parts?: readonly Buffer[];
}

/** The body of `f` as a list of buffers, without joining it. */
export function frameParts(f: Frame): readonly Buffer[] {
  return f.parts ?? [f.body];
}

/** The 8-byte `type | length` header of a frame/record. */
export function encodeFrameHeader(type: number, length: number): Buffer {
  checkU32(type, 'frame type');
  checkU32(length, 'frame length');
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(length, 4);
  return h;
}

/**
 * One frame (channel frame or Xen record: the framing is the same) as a
 * single buffer: header, body, zero padding to a multiple of 8.
 */
export function encodeFrame(type: number, body: Uint8Array): Buffer {
  checkU32(type, 'frame type');
  checkU32(body.length, 'frame length');
  const out = Buffer.alloc(frameSize(body.length)); // zeroed: padding is 0
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(body.length, 4);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

