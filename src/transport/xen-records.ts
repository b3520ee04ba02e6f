/**
 * The Xen migration stream v2 vocabulary: constants, encoders and decoders
 * for the parts of the stream (v2 libxl layer, v2/v3 libxc layer) that xl-ha
 * inspects or writes. Records are framed as framing.ts describes; the stream
 * parser and writer built on them is xenstream.ts.
 *
 * The byte layouts are documented in docs/protocol.md. The record type numbers
 * (XC_REC, XL_REC) are duplicated in libxl-shim/xlha.h: the two must change
 * together.
 *
 * Conventions are framing.ts's: `encodeX` returns the body of record X (no
 * record header) unless its name says `Record`; `decodeX` takes a body,
 * checks every length before reading and throws a {@link ProtocolError}
 * naming the record and the offending value.
 */

import {
  checkU32,
  FRAME_HEADER_BYTES,
  hex32,
  needAtLeast,
  needLength,
  ProtocolError,
} from './framing.js';

// ---------------------------------------------------------------------------
// Constants

/** log2 of the guest page size. */
export const PAGE_SHIFT = 12;
/** Guest page size in bytes; PAGE_DATA carries whole pages. */
export const PAGE_SIZE = 4096;
/** Most pfn entries one PAGE_DATA record may carry. */
export const MAX_PAGES_PER_RECORD = 1024;

/** Bit 31 of a libxc/libxl record type: the record is optional (skippable). */
export const REC_TYPE_OPTIONAL = 0x8000_0000;

// ---------------------------------------------------------------------------
// Record types

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

/** Whether a page type carries 4096 bytes of data in PAGE_DATA. */
export function pageTypeHasData(type: number): boolean {
  return type !== PAGE_TYPE.XTAB && type !== PAGE_TYPE.XALLOC && type !== PAGE_TYPE.BROKEN;
}

/** Whether `type` (0..15) is a page type PAGE_DATA may carry. */
export function isValidPageType(type: number): boolean {
  return Number.isInteger(type) && type >= 0 && type <= 0xf && !(type >= 5 && type <= 8);
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
