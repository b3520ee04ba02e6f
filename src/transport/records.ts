/**
 * Wire constants, encoders and decoders for the xl-ha replication channel and
 * for the parts of the Xen migration stream (v2 libxl layer, v2/v3 libxc
 * layer) that xl-ha inspects.
 *
 * The byte layouts are documented in docs/protocol.md. The numeric constants
 * in this file are duplicated in libxl-shim/xlha.h: the two must change
 * together.
 *
 * Conventions:
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

import { crc32 } from 'node:zlib';

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

/** log2 of the guest page size. */
export const PAGE_SHIFT = 12;
/** Guest page size in bytes; PAGE_DATA carries whole pages. */
export const PAGE_SIZE = 4096;
/** Most pfn entries one PAGE_DATA record may carry. */
export const MAX_PAGES_PER_RECORD = 1024;

/** Bit 31 of a libxc/libxl record type: the record is optional (skippable). */
export const REC_TYPE_OPTIONAL = 0x8000_0000;

/** The all-ones u64, used by HEARTBEAT.lastEpoch to mean "no epoch yet". */
export const U64_NONE = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------
// Record/frame types

/** libxc (Xen migration stream v2/v3, "XENF" image) record types. */
export const XC_REC = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;

/** libxl ("LibxlFmt" v2) record types. */
export const XL_REC = {
  END: 0,
  LIBXC_CONTEXT: 1,
  EMULATOR_XENSTORE_DATA: 2,
  EMULATOR_CONTEXT: 3,
  CHECKPOINT_END: 4,
  CHECKPOINT_STATE: 5,
} as const;

/** xl-ha channel frame types (ASCII "XLH" + a sub-type byte). */
export const XLHA_REC = {
  HELLO: 0x584c_4801,
  HELLO_ACK: 0x584c_4802,
  XEN_STREAM: 0x584c_4810,
  CHECKPOINT_SEAL: 0x584c_4811,
  CHECKPOINT_ACK: 0x584c_4812,
  CHECKPOINT_NACK: 0x584c_4813,
  HEARTBEAT: 0x584c_4820,
  DISK_WRITES: 0x584c_4830,
  GOODBYE: 0x584c_4840,
} as const;

/** Values of the libxl CHECKPOINT_STATE record (COLO secondary-VM states). */
export const CHECKPOINT_STATE = {
  NEW: 0,
  SVM_SUSPENDED: 1,
  SVM_READY: 2,
  SVM_RESUMED: 3,
} as const;

/**
 * Page types carried in bits 63..60 of a PAGE_DATA pfn entry.
 * NOTAB is an ordinary page. L1TAB..L4TAB are PV page-table pages, optionally
 * combined with the LPINTAB (pinned) flag. BROKEN, XALLOC and XTAB carry no
 * page data. Values 5..8 are invalid.
 */
export const PAGE_TYPE = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  LPINTAB: 0x8,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;

/** libxl stream header ("LibxlFmt"), big-endian. */
export const LIBXL_HEADER = {
  BYTES: 16,
  /** "LibxlFmt" as a big-endian u64. */
  IDENT: 0x4c69_6278_6c46_6d74n,
  VERSION: 2,
  OPT_BIG_ENDIAN: 0x1,
  OPT_LEGACY: 0x2,
} as const;

/** libxc image header ("XENF"), big-endian. */
export const IMAGE_HEADER = {
  BYTES: 24,
  MARKER: 0xffff_ffff_ffff_ffffn,
  /** "XENF" as a big-endian u32. */
  ID: 0x5845_4e46,
  /** Version xl-ha writes. */
  VERSION: 3,
  /** Oldest version xl-ha accepts (v2 has no STATIC_DATA_END). */
  MIN_VERSION: 2,
  OPT_BIG_ENDIAN: 0x1,
} as const;

/** libxc domain header, little-endian, directly after the image header. */
export const DOMAIN_HEADER = {
  BYTES: 16,
} as const;

/** Guest types of the libxc domain header. */
export const DOMAIN_TYPE = {
  X86_PV: 0x1,
  X86_HVM: 0x2,
  /** xl-ha's simulated guest (sim backend), not a Xen type. */
  XLHA_SIM: 0xffff_0001,
} as const;

/** Bits of CHECKPOINT_SEAL.flags. */
export const SEAL_FLAG = {
  /**
   * The checkpoint carries the whole guest memory (the first checkpoint, or
   * a resynchronisation after a rejected one), not only dirty pages.
   */
  FULL: 0x1,
} as const;

/** Fixed body sizes of xl-ha channel frames. */
export const BODY_BYTES = {
  /** 8 + 8 + 4 + 4 + 4 (crc32) + 4 (reserved). */
  CHECKPOINT_SEAL: 32,
  CHECKPOINT_ACK: 16,
  /** Minimum; the UTF-8 reason follows. */
  CHECKPOINT_NACK: 8,
  HEARTBEAT: 24,
  /** Minimum: the DISK_WRITES header before the writes. */
  DISK_WRITES: 8,
  /** Per-write header inside DISK_WRITES. */
  DISK_WRITE_HEADER: 16,
} as const;

/** Default largest channel frame body accepted by the reader (64 MiB). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Which numbering a record type belongs to. */
export type RecordLayer = 'libxc' | 'libxl' | 'channel';

function invert(table: Record<string, number>): Map<number, string> {
  const m = new Map<number, string>();
  for (const [k, v] of Object.entries(table)) m.set(v, k);
  return m;
}

const NAMES: Record<RecordLayer, Map<number, string>> = {
  libxc: invert(XC_REC),
  libxl: invert(XL_REC),
  channel: invert(XLHA_REC),
};

/** `0x` followed by 8 lower-case hex digits. */
export function hex32(n: number): string {
  return '0x' + (n >>> 0).toString(16).padStart(8, '0');
}

/**
 * Name of a record/frame type for messages: the symbolic name when known
 * (e.g. "PAGE_DATA"), otherwise its hex value (e.g. "0x80000013").
 */
export function recordTypeName(layer: RecordLayer, type: number): string {
  return NAMES[layer].get(type) ?? hex32(type);
}

/** Whether `type` is one of the known values for `layer`. */
export function isKnownRecordType(layer: RecordLayer, type: number): boolean {
  return NAMES[layer].has(type);
}

/** Whether `type` is an xl-ha channel frame type. */
export function isChannelType(type: number): boolean {
  return NAMES.channel.has(type);
}

/** Whether frames of this type count towards a checkpoint's seal. */
export function isContentFrame(type: number): boolean {
  return type === XLHA_REC.XEN_STREAM || type === XLHA_REC.DISK_WRITES;
}

/** Whether a page type carries 4096 bytes of data in PAGE_DATA. */
export function pageTypeHasData(type: number): boolean {
  return type !== PAGE_TYPE.XTAB && type !== PAGE_TYPE.XALLOC && type !== PAGE_TYPE.BROKEN;
}

/** Whether `type` (0..15) is a page type PAGE_DATA may carry. */
export function isValidPageType(type: number): boolean {
  return Number.isInteger(type) && type >= 0 && type <= 0xf && !(type >= 5 && type <= 8);
}

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

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new RangeError(`${what} must be an integer in 0..2^32-1, got ${value}`);
  }
}

function checkU64(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
  }
}

/** Write a non-negative safe integer as a little-endian u64. */
function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32LE(value % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}

/** Read a little-endian u64 that must fit in a double without loss. */
function readU64(buf: Buffer, offset: number, what: string): number {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  if (hi > 0x1f_ffff) {
    const big = (BigInt(hi) << 32n) | BigInt(lo);
    throw new ProtocolError('EBADVALUE', `${what} ${big} exceeds 2^53-1`);
  }
  return hi * 0x1_0000_0000 + lo;
}

function needLength(body: Buffer, exact: number, what: string): void {
  if (body.length !== exact) {
    throw new ProtocolError(
      body.length < exact ? 'ETRUNC' : 'EBADLEN',
      `${what} body is ${body.length} bytes, expected ${exact}`,
    );
  }
}

function needAtLeast(body: Buffer, min: number, what: string): void {
  if (body.length < min) {
    throw new ProtocolError('ETRUNC', `${what} body is ${body.length} bytes, expected at least ${min}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: Buffer, what: string): string {
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

const ZERO_PAD = Buffer.alloc(FRAME_ALIGN);

/**
 * The same bytes as {@link encodeFrame} as a list `[header, body, padding?]`
 * that shares the body's memory: use it with a vectored write to avoid
 * copying large bodies.
 */
export function encodeFrameParts(type: number, body: Uint8Array): Buffer[] {
  const parts = [encodeFrameHeader(type, body.length)];
  if (body.length > 0) parts.push(asBuffer(body));
  const pad = paddedLength(body.length) - body.length;
  if (pad > 0) parts.push(ZERO_PAD.subarray(0, pad));
  return parts;
}

/** Several frames concatenated into one buffer. */
export function encodeFrames(list: readonly { type: number; body: Uint8Array }[]): Buffer {
  let total = 0;
  for (const f of list) total += frameSize(f.body.length);
  const out = Buffer.alloc(total);
  let off = 0;
  for (const f of list) {
    checkU32(f.type, 'frame type');
    checkU32(f.body.length, 'frame length');
    out.writeUInt32LE(f.type, off);
    out.writeUInt32LE(f.body.length, off + 4);
    out.set(f.body, off + FRAME_HEADER_BYTES);
    off += frameSize(f.body.length);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Xen stream headers

/** Decoded libxl stream header. */
export interface LibxlHeader {
  version: number;
  options: number;
}

/** The 16-byte big-endian libxl header. xl-ha writes options 0. */
export function encodeLibxlHeader(h: Partial<LibxlHeader> = {}): Buffer {
  const version = h.version ?? LIBXL_HEADER.VERSION;
  const options = h.options ?? 0;
  checkU32(version, 'libxl header version');
  checkU32(options, 'libxl header options');
  const b = Buffer.alloc(LIBXL_HEADER.BYTES);
  b.writeBigUInt64BE(LIBXL_HEADER.IDENT, 0);
  b.writeUInt32BE(version, 8);
  b.writeUInt32BE(options, 12);
  return b;
}

/**
 * Decode and validate the libxl header from the first 16 bytes of `buf`.
 * Rejects a wrong ident, a version other than 2, and big-endian or legacy
 * streams (EBADHDR); a short buffer is ETRUNC.
 */
export function decodeLibxlHeader(buf: Buffer): LibxlHeader {
  if (buf.length < LIBXL_HEADER.BYTES) {
    throw new ProtocolError('ETRUNC', `libxl header truncated: ${buf.length} of ${LIBXL_HEADER.BYTES} bytes`);
  }
  const ident = buf.readBigUInt64BE(0);
  if (ident !== LIBXL_HEADER.IDENT) {
    throw new ProtocolError(
      'EBADHDR',
      `libxl header: ident 0x${ident.toString(16).padStart(16, '0')} is not "LibxlFmt" (0x${LIBXL_HEADER.IDENT.toString(16)})`,
    );
  }
  const version = buf.readUInt32BE(8);
  const options = buf.readUInt32BE(12);
  if (version !== LIBXL_HEADER.VERSION) {
    throw new ProtocolError('EBADHDR', `libxl header: version ${version} is not supported (expected ${LIBXL_HEADER.VERSION})`);
  }
  if (options & LIBXL_HEADER.OPT_BIG_ENDIAN) {
    throw new ProtocolError('EBADHDR', 'libxl header: big-endian streams are not supported');
  }
  if (options & LIBXL_HEADER.OPT_LEGACY) {
    throw new ProtocolError('EBADHDR', 'libxl header: legacy (converted) streams are not supported');
  }
  return { version, options };
}

/** Decoded libxc image header. */
export interface ImageHeader {
  /** 2 or 3. */
  version: number;
  options: number;
}

/** The 24-byte big-endian libxc image header (version 3 unless given). */
export function encodeImageHeader(h: Partial<ImageHeader> = {}): Buffer {
  const version = h.version ?? IMAGE_HEADER.VERSION;
  const options = h.options ?? 0;
  checkU32(version, 'image header version');
  if (!Number.isInteger(options) || options < 0 || options > 0xffff) {
    throw new RangeError(`image header options must be a u16, got ${options}`);
  }
  const b = Buffer.alloc(IMAGE_HEADER.BYTES);
  b.writeBigUInt64BE(IMAGE_HEADER.MARKER, 0);
  b.writeUInt32BE(IMAGE_HEADER.ID, 8);
  b.writeUInt32BE(version, 12);
  b.writeUInt16BE(options, 16);
  // 16-bit and 32-bit reserved fields stay zero.
  return b;
}

/**
 * Decode and validate the image header from the first 24 bytes of `buf`.
 * Accepts versions 2 and 3; rejects big-endian record streams.
 */
export function decodeImageHeader(buf: Buffer): ImageHeader {
  if (buf.length < IMAGE_HEADER.BYTES) {
    throw new ProtocolError('ETRUNC', `image header truncated: ${buf.length} of ${IMAGE_HEADER.BYTES} bytes`);
  }
  const marker = buf.readBigUInt64BE(0);
  if (marker !== IMAGE_HEADER.MARKER) {
    throw new ProtocolError(
      'EBADHDR',
      `image header: marker 0x${marker.toString(16).padStart(16, '0')} is not 0xffffffffffffffff`,
    );
  }
  const id = buf.readUInt32BE(8);
  if (id !== IMAGE_HEADER.ID) {
    throw new ProtocolError('EBADHDR', `image header: id ${hex32(id)} is not "XENF" (${hex32(IMAGE_HEADER.ID)})`);
  }
  const version = buf.readUInt32BE(12);
  if (version < IMAGE_HEADER.MIN_VERSION || version > IMAGE_HEADER.VERSION) {
    throw new ProtocolError(
      'EBADHDR',
      `image header: version ${version} is not supported (expected ${IMAGE_HEADER.MIN_VERSION} or ${IMAGE_HEADER.VERSION})`,
    );
  }
  const options = buf.readUInt16BE(16);
  if (options & IMAGE_HEADER.OPT_BIG_ENDIAN) {
    throw new ProtocolError('EBADHDR', 'image header: big-endian record streams are not supported');
  }
  return { version, options };
}

/** Decoded libxc domain header. */
export interface DomainHeader {
  /** One of {@link DOMAIN_TYPE}. */
  type: number;
  pageShift: number;
  xenMajor: number;
  xenMinor: number;
}

/** The 16-byte little-endian libxc domain header. */
export function encodeDomainHeader(h: Omit<DomainHeader, 'pageShift'> & { pageShift?: number }): Buffer {
  const pageShift = h.pageShift ?? PAGE_SHIFT;
  checkU32(h.type, 'domain type');
  checkU32(h.xenMajor, 'xen major version');
  checkU32(h.xenMinor, 'xen minor version');
  if (!Number.isInteger(pageShift) || pageShift < 0 || pageShift > 0xffff) {
    throw new RangeError(`page shift must be a u16, got ${pageShift}`);
  }
  const b = Buffer.alloc(DOMAIN_HEADER.BYTES);
  b.writeUInt32LE(h.type, 0);
  b.writeUInt16LE(pageShift, 4);
  b.writeUInt32LE(h.xenMajor, 8);
  b.writeUInt32LE(h.xenMinor, 12);
  return b;
}

/**
 * Decode and validate the domain header from the first 16 bytes of `buf`.
 * Rejects unknown guest types and page sizes other than 4 KiB.
 */
export function decodeDomainHeader(buf: Buffer): DomainHeader {
  if (buf.length < DOMAIN_HEADER.BYTES) {
    throw new ProtocolError('ETRUNC', `domain header truncated: ${buf.length} of ${DOMAIN_HEADER.BYTES} bytes`);
  }
  const type = buf.readUInt32LE(0);
  const pageShift = buf.readUInt16LE(4);
  if (type !== DOMAIN_TYPE.X86_PV && type !== DOMAIN_TYPE.X86_HVM && type !== DOMAIN_TYPE.XLHA_SIM) {
    throw new ProtocolError('EBADHDR', `domain header: guest type ${hex32(type)} is unknown`);
  }
  if (pageShift !== PAGE_SHIFT) {
    throw new ProtocolError('EBADHDR', `domain header: page_shift ${pageShift} is not supported (expected ${PAGE_SHIFT})`);
  }
  return { type, pageShift, xenMajor: buf.readUInt32LE(8), xenMinor: buf.readUInt32LE(12) };
}

// ---------------------------------------------------------------------------
// PAGE_DATA

/**
 * Supplies the 4096 bytes of the page at entry `index` (an index into
 * `pfns`); only called for entries whose type carries data.
 */
export type PageProvider = (index: number) => Uint8Array;

/**
 * Input for a PAGE_DATA record. `data` is either the bytes of every entry
 * whose type carries data ({@link pageTypeHasData}), 4096 each, contiguous
 * and in entry order, or a {@link PageProvider}.
 */
export interface PageDataInput {
  pfns: ArrayLike<number>;
  /** Page type per entry; all NOTAB when omitted. */
  types?: ArrayLike<number>;
  data: Uint8Array | PageProvider;
}

/** One pfn entry of a PAGE_DATA record. */
export interface PageEntry {
  pfn: number;
  type: number;
}

/** Decoded PAGE_DATA body. */
export interface PageData {
  entries: PageEntry[];
  /** The page data area: a view into the body, 4096 bytes per data page. */
  data: Buffer;
}

/** Largest pfn a PAGE_DATA entry can carry (52 bits). */
export const MAX_PFN = 2 ** 52 - 1;

/** Validates the input; returns the body length. */
function validatePageDataInput(input: PageDataInput): number {
  const count = input.pfns.length;
  if (count < 1 || count > MAX_PAGES_PER_RECORD) {
    throw new RangeError(`PAGE_DATA: count ${count} outside 1..${MAX_PAGES_PER_RECORD}`);
  }
  if (input.types && input.types.length !== count) {
    throw new RangeError(`PAGE_DATA: ${input.types.length} types for ${count} pfns`);
  }
  let dataPages = 0;
  for (let i = 0; i < count; i++) {
    const pfn = input.pfns[i]!;
    if (!Number.isInteger(pfn) || pfn < 0 || pfn > MAX_PFN) {
      throw new RangeError(`PAGE_DATA: pfn ${pfn} at entry ${i} is not a 52-bit page frame number`);
    }
    const type = input.types ? input.types[i]! : PAGE_TYPE.NOTAB;
    if (!isValidPageType(type)) {
      throw new RangeError(`PAGE_DATA: invalid page type ${type} at entry ${i}`);
    }
    if (pageTypeHasData(type)) dataPages++;
  }
  if (typeof input.data !== 'function' && input.data.length !== dataPages * PAGE_SIZE) {
    throw new RangeError(
      `PAGE_DATA: ${input.data.length} bytes of data for ${dataPages} data page(s), expected ${dataPages * PAGE_SIZE}`,
    );
  }
  return pageDataLength(count, dataPages);
}

/** Body length of a PAGE_DATA record with `count` entries and `dataPages` data pages. */
export function pageDataLength(count: number, dataPages: number): number {
  return 8 + 8 * count + PAGE_SIZE * dataPages;
}

function writePageData(out: Buffer, off: number, input: PageDataInput): void {
  const count = input.pfns.length;
  out.writeUInt32LE(count, off);
  out.writeUInt32LE(0, off + 4);
  let p = off + 8;
  for (let i = 0; i < count; i++) {
    const pfn = input.pfns[i]!;
    const type = input.types ? input.types[i]! : PAGE_TYPE.NOTAB;
    out.writeUInt32LE(pfn % 0x1_0000_0000, p);
    out.writeUInt32LE(((type << 28) | Math.floor(pfn / 0x1_0000_0000)) >>> 0, p + 4);
    p += 8;
  }
  const data = input.data;
  if (typeof data !== 'function') {
    out.set(data, p);
    return;
  }
  for (let i = 0; i < count; i++) {
    if (input.types && !pageTypeHasData(input.types[i]!)) continue;
    const page = data(i);
    if (page.length !== PAGE_SIZE) {
      throw new RangeError(`PAGE_DATA: page provider returned ${page.length} bytes for entry ${i}, expected ${PAGE_SIZE}`);
    }
    out.set(page, p);
    p += PAGE_SIZE;
  }
}

/** PAGE_DATA body (no record header). */
export function encodePageData(input: PageDataInput): Buffer {
  const length = validatePageDataInput(input);
  const out = Buffer.allocUnsafe(length);
  writePageData(out, 0, input);
  return out;
}

/**
 * A complete PAGE_DATA record (header + body; the body is always a multiple
 * of 8 so there is no padding) built with a single allocation, each page
 * copied once.
 */
export function encodePageDataRecord(input: PageDataInput, alloc: (bytes: number) => Buffer = Buffer.allocUnsafe): Buffer {
  const length = validatePageDataInput(input);
  const out = alloc(FRAME_HEADER_BYTES + length);
  out.writeUInt32LE(XC_REC.PAGE_DATA, 0);
  out.writeUInt32LE(length, 4);
  writePageData(out, FRAME_HEADER_BYTES, input);
  return out;
}

/**
 * Decode a PAGE_DATA body. Checks count (1..1024), that the body holds all
 * entries, that every page type is valid, and that the body length is
 * exactly header + entries + 4096 × (entries whose type carries data).
 * `data` is a view into `body` (no copy). Bits 52..59 of an entry are
 * reserved and ignored. With `entries` false the checks are the same but no entry is listed
 * and `data` is empty: a backup that hands the bytes on as they are needs neither, and may then
 * pass only the body's head (header and entries) with the whole body's `bodyLength`.
 */
export function decodePageData(body: Buffer, entries = true, bodyLength = body.length): PageData {
  if (bodyLength < 8) {
    throw new ProtocolError('ETRUNC', `PAGE_DATA record: body is ${bodyLength} bytes, shorter than its 8-byte header`);
  }
  const count = body.readUInt32LE(0);
  if (count === 0) {
    throw new ProtocolError('EBADVALUE', 'PAGE_DATA record: count 0 (must be 1..1024)');
  }
  if (count > MAX_PAGES_PER_RECORD) {
    throw new ProtocolError('EBADVALUE', `PAGE_DATA record: count ${count} exceeds ${MAX_PAGES_PER_RECORD}`);
  }
  const dataStart = 8 + 8 * count;
  if (bodyLength < dataStart) {
    throw new ProtocolError(
      'EBADLEN',
      `PAGE_DATA record: length ${bodyLength} is too short for ${count} pfn entries (needs at least ${dataStart})`,
    );
  }
  const list: PageEntry[] = entries ? new Array(count) : [];
  let dataPages = 0;
  for (let i = 0, p = 8; i < count; i++, p += 8) {
    const lo = body.readUInt32LE(p);
    const hi = body.readUInt32LE(p + 4);
    const type = hi >>> 28;
    const pfn = (hi & 0xf_ffff) * 0x1_0000_0000 + lo;
    if (!isValidPageType(type)) {
      throw new ProtocolError(
        'EBADVALUE',
        `PAGE_DATA record: entry ${i} (pfn 0x${pfn.toString(16)}) has invalid page type 0x${type.toString(16)}`,
      );
    }
    if (pageTypeHasData(type)) dataPages++;
    if (entries) list[i] = { pfn, type };
  }
  const expected = dataStart + dataPages * PAGE_SIZE;
  if (bodyLength !== expected) {
    throw new ProtocolError(
      'EBADLEN',
      `PAGE_DATA record: length ${bodyLength} does not match count ${count} with ${dataPages} data page(s) (expected ${expected})`,
    );
  }
  return { entries: list, data: entries ? body.subarray(dataStart) : body.subarray(0, 0) };
}

// ---------------------------------------------------------------------------
// X86_PV_VCPU_BASIC, CHECKPOINT_STATE

/** Decoded X86_PV_VCPU_BASIC record. */
export interface VcpuBasic {
  id: number;
  /** Opaque vCPU context (a view into the body). */
  context: Buffer;
}

/** X86_PV_VCPU_BASIC body: vcpu_id u32, reserved u32, context. */
export function encodeVcpuBasic(id: number, context: Uint8Array): Buffer {
  checkU32(id, 'vcpu id');
  const b = Buffer.allocUnsafe(8 + context.length);
  b.writeUInt32LE(id, 0);
  b.writeUInt32LE(0, 4);
  b.set(context, 8);
  return b;
}

/** Decode an X86_PV_VCPU_BASIC body; the context is a view, not a copy. */
export function decodeVcpuBasic(body: Buffer): VcpuBasic {
  needAtLeast(body, 8, 'X86_PV_VCPU_BASIC record:');
  return { id: body.readUInt32LE(0), context: body.subarray(8) };
}

/** libxl CHECKPOINT_STATE body: one u32 (see {@link CHECKPOINT_STATE}). */
export function encodeCheckpointState(id: number): Buffer {
  checkU32(id, 'checkpoint state');
  const b = Buffer.alloc(4);
  b.writeUInt32LE(id, 0);
  return b;
}

/** Decode a CHECKPOINT_STATE body; rejects ids other than 0..3. */
export function decodeCheckpointState(body: Buffer): number {
  needLength(body, 4, 'CHECKPOINT_STATE record:');
  const id = body.readUInt32LE(0);
  if (id > CHECKPOINT_STATE.SVM_RESUMED) {
    throw new ProtocolError('EBADVALUE', `CHECKPOINT_STATE record: state ${id} is unknown (expected 0..3)`);
  }
  return id;
}

// ---------------------------------------------------------------------------
// Channel: HELLO / HELLO_ACK / GOODBYE

/** HELLO/HELLO_ACK payload: any JSON object. */
export type HelloMessage = { [key: string]: unknown };

function encodeJsonObject(msg: HelloMessage, what: string): Buffer {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    throw new TypeError(`${what} payload must be a plain object`);
  }
  return Buffer.from(JSON.stringify(msg), 'utf8');
}

function decodeJsonObject(body: Buffer, what: string): HelloMessage {
  const text = decodeUtf8(body, `${what} body`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError('EBADVALUE', `${what} body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw new ProtocolError('EBADVALUE', `${what} body must be a JSON object, got ${kind}`);
  }
  return value as HelloMessage;
}

/** HELLO body: the object as UTF-8 JSON. */
export function encodeHello(msg: HelloMessage): Buffer {
  return encodeJsonObject(msg, 'HELLO');
}

/** Decode a HELLO body; rejects invalid UTF-8, invalid JSON and non-objects. */
export function decodeHello(body: Buffer): HelloMessage {
  return decodeJsonObject(body, 'HELLO');
}

/** HELLO_ACK body: the object as UTF-8 JSON. */
export function encodeHelloAck(msg: HelloMessage): Buffer {
  return encodeJsonObject(msg, 'HELLO_ACK');
}

/** Decode a HELLO_ACK body; rejects invalid UTF-8, invalid JSON and non-objects. */
export function decodeHelloAck(body: Buffer): HelloMessage {
  return decodeJsonObject(body, 'HELLO_ACK');
}

/** GOODBYE body: the UTF-8 reason. */
export function encodeGoodbye(reason: string): Buffer {
  return Buffer.from(reason, 'utf8');
}

/** Decode a GOODBYE body to its reason. */
export function decodeGoodbye(body: Buffer): string {
  return decodeUtf8(body, 'GOODBYE reason');
}

// ---------------------------------------------------------------------------
// Channel: CHECKPOINT_SEAL / ACK / NACK

/** CHECKPOINT_SEAL fields. */
export interface Seal {
  epoch: number;
  /** Sum of the body lengths of the content frames since the previous seal. */
  contentBytes: number;
  /** Number of those content frames. */
  contentFrames: number;
  /** {@link SEAL_FLAG} bits; unknown bits are ignored on receipt. */
  flags: number;
  /**
   * CRC-32 (ISO-HDLC, the zlib/Ethernet polynomial) over those bodies, in order. It detects
   * corruption, not forgery: without a key any digest can be recomputed by whoever alters the
   * content (authentication is a separate layer).
   */
  crc32: number;
}

/** CHECKPOINT_SEAL body (32 bytes). */
export function encodeSeal(s: Omit<Seal, 'flags'> & { flags?: number }): Buffer {
  checkU64(s.epoch, 'seal epoch');
  checkU64(s.contentBytes, 'seal contentBytes');
  checkU32(s.contentFrames, 'seal contentFrames');
  const flags = s.flags ?? 0;
  checkU32(flags, 'seal flags');
  checkU32(s.crc32, 'seal crc32');
  const b = Buffer.alloc(BODY_BYTES.CHECKPOINT_SEAL);
  writeU64(b, s.epoch, 0);
  writeU64(b, s.contentBytes, 8);
  b.writeUInt32LE(s.contentFrames, 16);
  b.writeUInt32LE(flags, 20);
  b.writeUInt32LE(s.crc32, 24);
  // 28..31 reserved, zero (ignored on receipt)
  return b;
}

/** Decode a CHECKPOINT_SEAL body. */
export function decodeSeal(body: Buffer): Seal {
  needLength(body, BODY_BYTES.CHECKPOINT_SEAL, 'CHECKPOINT_SEAL');
  return {
    epoch: readU64(body, 0, 'CHECKPOINT_SEAL epoch'),
    contentBytes: readU64(body, 8, 'CHECKPOINT_SEAL contentBytes'),
    contentFrames: body.readUInt32LE(16),
    flags: body.readUInt32LE(20),
    crc32: body.readUInt32LE(24),
  };
}

/** CHECKPOINT_ACK fields. */
export interface Ack {
  epoch: number;
  /** Time the backup took to verify and apply the checkpoint, µs (saturates at 2^32-1). */
  applyMicros: number;
}

/** CHECKPOINT_ACK body (16 bytes). */
export function encodeAck(a: Ack): Buffer {
  checkU64(a.epoch, 'ack epoch');
  const micros = Number.isFinite(a.applyMicros) ? Math.min(MAX_U32, Math.max(0, Math.round(a.applyMicros))) : 0;
  const b = Buffer.alloc(BODY_BYTES.CHECKPOINT_ACK);
  writeU64(b, a.epoch, 0);
  b.writeUInt32LE(micros, 8);
  return b;
}

/** Decode a CHECKPOINT_ACK body. */
export function decodeAck(body: Buffer): Ack {
  needLength(body, BODY_BYTES.CHECKPOINT_ACK, 'CHECKPOINT_ACK');
  return { epoch: readU64(body, 0, 'CHECKPOINT_ACK epoch'), applyMicros: body.readUInt32LE(8) };
}

/** CHECKPOINT_NACK fields. */
export interface Nack {
  epoch: number;
  reason: string;
}

/** CHECKPOINT_NACK body: epoch u64 then the UTF-8 reason. */
export function encodeNack(n: Nack): Buffer {
  checkU64(n.epoch, 'nack epoch');
  const reason = Buffer.from(n.reason, 'utf8');
  const b = Buffer.allocUnsafe(8 + reason.length);
  writeU64(b, n.epoch, 0);
  b.set(reason, 8);
  return b;
}

/** Decode a CHECKPOINT_NACK body. */
export function decodeNack(body: Buffer): Nack {
  needAtLeast(body, BODY_BYTES.CHECKPOINT_NACK, 'CHECKPOINT_NACK');
  return {
    epoch: readU64(body, 0, 'CHECKPOINT_NACK epoch'),
    reason: decodeUtf8(body.subarray(8), 'CHECKPOINT_NACK reason'),
  };
}

// ---------------------------------------------------------------------------
// Channel: HEARTBEAT

/** HEARTBEAT fields. */
export interface Heartbeat {
  seq: number;
  /** Sender's wall clock in ms. */
  sentAtMs: number;
  /** Sender's last sealed (primary) or applied (backup) epoch; null = none yet. */
  lastEpoch: number | null;
}

/** HEARTBEAT body (24 bytes); lastEpoch null is written as 2^64-1. */
export function encodeHeartbeat(h: Heartbeat): Buffer {
  checkU64(h.seq, 'heartbeat seq');
  checkU64(h.sentAtMs, 'heartbeat sentAtMs');
  const b = Buffer.allocUnsafe(BODY_BYTES.HEARTBEAT);
  writeU64(b, h.seq, 0);
  writeU64(b, h.sentAtMs, 8);
  if (h.lastEpoch === null) {
    b.writeBigUInt64LE(U64_NONE, 16);
  } else {
    checkU64(h.lastEpoch, 'heartbeat lastEpoch');
    writeU64(b, h.lastEpoch, 16);
  }
  return b;
}

/** Decode a HEARTBEAT body. */
export function decodeHeartbeat(body: Buffer): Heartbeat {
  needLength(body, BODY_BYTES.HEARTBEAT, 'HEARTBEAT');
  const none = body.readUInt32LE(16) === MAX_U32 && body.readUInt32LE(20) === MAX_U32;
  return {
    seq: readU64(body, 0, 'HEARTBEAT seq'),
    sentAtMs: readU64(body, 8, 'HEARTBEAT sentAtMs'),
    lastEpoch: none ? null : readU64(body, 16, 'HEARTBEAT lastEpoch'),
  };
}

// ---------------------------------------------------------------------------
// Channel: DISK_WRITES

/** One replicated disk write. */
export interface DiskWrite {
  /** Byte offset on the replicated disk. */
  offset: number;
  data: Buffer;
}

/** DISK_WRITES body: count, reserved, then per write offset/length/reserved/data padded to 8. */
export function encodeDiskWrites(writes: readonly { offset: number; data: Uint8Array }[]): Buffer {
  checkU32(writes.length, 'DISK_WRITES count');
  let total: number = BODY_BYTES.DISK_WRITES;
  for (const w of writes) {
    checkU64(w.offset, 'disk write offset');
    checkU32(w.data.length, 'disk write length');
    total += BODY_BYTES.DISK_WRITE_HEADER + paddedLength(w.data.length);
  }
  const b = Buffer.alloc(total);
  b.writeUInt32LE(writes.length, 0);
  let p: number = BODY_BYTES.DISK_WRITES;
  for (const w of writes) {
    writeU64(b, w.offset, p);
    b.writeUInt32LE(w.data.length, p + 8);
    b.set(w.data, p + BODY_BYTES.DISK_WRITE_HEADER);
    p += BODY_BYTES.DISK_WRITE_HEADER + paddedLength(w.data.length);
  }
  return b;
}

/** Decode a DISK_WRITES body; each `data` is a view into the body. */
export function decodeDiskWrites(body: Buffer): DiskWrite[] {
  needAtLeast(body, BODY_BYTES.DISK_WRITES, 'DISK_WRITES');
  const count = body.readUInt32LE(0);
  // Each write takes at least 16 bytes: reject absurd counts before allocating.
  if (count > (body.length - BODY_BYTES.DISK_WRITES) / BODY_BYTES.DISK_WRITE_HEADER) {
    throw new ProtocolError(
      'EBADLEN',
      `DISK_WRITES: count ${count} cannot fit in a ${body.length}-byte body`,
    );
  }
  const writes: DiskWrite[] = [];
  let p: number = BODY_BYTES.DISK_WRITES;
  for (let i = 0; i < count; i++) {
    if (body.length - p < BODY_BYTES.DISK_WRITE_HEADER) {
      throw new ProtocolError('ETRUNC', `DISK_WRITES: write ${i} of ${count}: header truncated at byte ${p}`);
    }
    const offset = readU64(body, p, `DISK_WRITES: write ${i} offset`);
    const length = body.readUInt32LE(p + 8);
    const start = p + BODY_BYTES.DISK_WRITE_HEADER;
    const next = start + paddedLength(length);
    if (next > body.length) {
      throw new ProtocolError(
        'ETRUNC',
        `DISK_WRITES: write ${i} of ${count} (length ${length}) runs past the end of the ${body.length}-byte body`,
      );
    }
    writes.push({ offset, data: body.subarray(start, start + length) });
    p = next;
  }
  if (p !== body.length) {
    throw new ProtocolError('ETRAILING', `DISK_WRITES: ${body.length - p} trailing bytes after ${count} write(s)`);
  }
  return writes;
}

// ---------------------------------------------------------------------------
// Checkpoint content digest (the seal's byte count, frame count and hash)

/**
 * Accumulates the content frames (XEN_STREAM, DISK_WRITES) of one checkpoint
 * and produces or verifies its seal. The primary calls {@link update} for each
 * content body it sends then {@link seal}; the backup calls {@link update} for
 * each one it receives then {@link verify} on the SEAL. Both reset the
 * accumulator for the next checkpoint.
 */
export class CheckpointDigest {
  private crc = 0;
  private bytes = 0;
  private frames = 0;

  /** Content bytes accumulated since the last reset. */
  get contentBytes(): number {
    return this.bytes;
  }

  /** Content frames accumulated since the last reset. */
  get contentFrames(): number {
    return this.frames;
  }

  /** Add one content frame body (or the parts it is written from, in order). */
  update(body: Uint8Array | readonly Uint8Array[]): void {
    for (const part of body instanceof Uint8Array ? [body] : body) {
      this.crc = crc32(part, this.crc);
      this.bytes += part.length;
    }
    this.frames++;
  }

  /** Forget everything accumulated (e.g. after discarding a checkpoint). */
  reset(): void {
    this.crc = 0;
    this.bytes = 0;
    this.frames = 0;
  }

  /** Finish: the seal for `epoch`, then reset. */
  seal(epoch: number, flags = 0): Seal {
    const s = { epoch, contentBytes: this.bytes, contentFrames: this.frames, flags, crc32: this.crc >>> 0 };
    this.reset();
    return s;
  }

  /**
   * Finish and compare with a received seal, then reset. Throws a
   * ProtocolError (EBADLEN for a byte/frame count mismatch, i.e. a torn
   * checkpoint; ECHECKSUM for a checksum mismatch) naming the epoch.
   */
  verify(seal: Seal): void {
    const ours = this.seal(seal.epoch);
    if (ours.contentFrames !== seal.contentFrames) {
      throw new ProtocolError(
        'EBADLEN',
        `checkpoint ${seal.epoch}: seal announces ${seal.contentFrames} content frame(s), received ${ours.contentFrames}`,
      );
    }
    if (ours.contentBytes !== seal.contentBytes) {
      throw new ProtocolError(
        'EBADLEN',
        `checkpoint ${seal.epoch}: seal announces ${seal.contentBytes} content bytes, received ${ours.contentBytes}`,
      );
    }
    if (ours.crc32 !== seal.crc32 >>> 0) {
      const hex = (v: number) => (v >>> 0).toString(16).padStart(8, '0');
      throw new ProtocolError('ECHECKSUM', `checkpoint ${seal.epoch}: crc32 mismatch (seal ${hex(seal.crc32)}, content ${hex(ours.crc32)})`);
    }
  }
}

// ---------------------------------------------------------------------------
// Typed decoding of a whole channel frame

/** A decoded channel frame. XEN_STREAM bodies stay opaque. */
export type ChannelMessage =
  | { kind: 'hello'; hello: HelloMessage }
  | { kind: 'hello_ack'; hello: HelloMessage }
  | { kind: 'xen_stream'; bytes: Buffer }
  | { kind: 'seal'; seal: Seal }
  | { kind: 'ack'; ack: Ack }
  | { kind: 'nack'; nack: Nack }
  | { kind: 'heartbeat'; heartbeat: Heartbeat }
  | { kind: 'disk_writes'; writes: DiskWrite[] }
  | { kind: 'goodbye'; reason: string };

/** Decode a channel frame by type; unknown types are EBADTYPE. */
export function decodeChannelFrame(frame: Frame): ChannelMessage {
  const { type, body } = frame;
  switch (type) {
    case XLHA_REC.HELLO:
      return { kind: 'hello', hello: decodeHello(body) };
    case XLHA_REC.HELLO_ACK:
      return { kind: 'hello_ack', hello: decodeHelloAck(body) };
    case XLHA_REC.XEN_STREAM:
      return { kind: 'xen_stream', bytes: body };
    case XLHA_REC.CHECKPOINT_SEAL:
      return { kind: 'seal', seal: decodeSeal(body) };
    case XLHA_REC.CHECKPOINT_ACK:
      return { kind: 'ack', ack: decodeAck(body) };
    case XLHA_REC.CHECKPOINT_NACK:
      return { kind: 'nack', nack: decodeNack(body) };
    case XLHA_REC.HEARTBEAT:
      return { kind: 'heartbeat', heartbeat: decodeHeartbeat(body) };
    case XLHA_REC.DISK_WRITES:
      return { kind: 'disk_writes', writes: decodeDiskWrites(body) };
    case XLHA_REC.GOODBYE:
      return { kind: 'goodbye', reason: decodeGoodbye(body) };
    default:
      throw new ProtocolError('EBADTYPE', `channel frame type ${hex32(type)} is unknown`);
  }
}
