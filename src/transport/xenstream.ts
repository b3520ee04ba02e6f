/**
 * Parser/validator and writer for the Xen migration-stream bytes that a
 * checkpointed (Remus-style) save sends, one checkpoint at a time.
 *
 * Layout of a stream (details in docs/protocol.md):
 *
 *   libxl header, libxl LIBXC_CONTEXT (empty),
 *   libxc image header, libxc domain header, [STATIC_DATA_END (v3)],
 *   ...checkpoint 0: libxc records (PAGE_DATA, vCPU state, ...), libxc CHECKPOINT,
 *                    libxl records (EMULATOR_*, CHECKPOINT_STATE), libxl CHECKPOINT_END
 *   ...checkpoint n: libxc records ..., libxc CHECKPOINT, libxl records ..., libxl CHECKPOINT_END
 *   end of stream:   [libxc records ...], libxc END, [libxl records ...], libxl END
 *
 * Every "checkpoint" unit above is what {@link XenStreamParser.parseCheckpoint}
 * takes: the concatenated XEN_STREAM bodies between two channel SEALs. Only
 * the first unit carries the headers.
 */

import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  frameSize,
  gatherBytes,
  ProtocolError,
} from './framing.js';
import {
  decodeCheckpointState,
  decodeDomainHeader,
  decodeImageHeader,
  decodeLibxlHeader,
  decodePageData,
  decodeVcpuBasic,
  type DomainHeader,
  DOMAIN_HEADER,
  encodeCheckpointState,
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxlHeader,
  encodePageDataRecord,
  encodeVcpuBasic,
  IMAGE_HEADER,
  type ImageHeader,
  LIBXL_HEADER,
  type LibxlHeader,
  MAX_PAGES_PER_RECORD,
  PAGE_SIZE,
  PAGE_TYPE,
  type PageProvider,
  pageTypeHasData,
  REC_TYPE_OPTIONAL,
  XC_REC,
  XL_REC,
} from './xen-records.js';
import { isKnownRecordType, recordTypeName } from './record-names.js';
import { SLICE_MS, TimeSlicer } from '../util/slicer.js';

/** One page of a checkpoint, in stream order. */
export interface ParsedPage {
  pfn: number;
  /** A {@link PAGE_TYPE} value. */
  type: number;
  /**
   * 4096 bytes (a view into the checkpoint bytes, not a copy), or an empty
   * buffer for the types that carry no data (XTAB, XALLOC, BROKEN).
   */
  data: Buffer;
}

/** One X86_PV_VCPU_BASIC record. */
export interface ParsedVcpu {
  id: number;
  /** Opaque context (a view). On the sim backend: the sim register file. */
  context: Buffer;
}

/** A record that was validated but is not interpreted by the parser. */
export interface ParsedRecord {
  layer: 'libxc' | 'libxl';
  type: number;
  /** A view into the checkpoint bytes. */
  body: Buffer;
}

/** Result of {@link XenStreamParser.parseCheckpoint}. */
export interface ParsedCheckpoint {
  /** 0-based position of this unit in the stream. */
  index: number;
  /** Whether this was the first unit (the one carrying the headers). */
  first: boolean;
  /** Present on the first unit only. */
  libxlHeader?: LibxlHeader;
  /** Present on the first unit only. */
  imageHeader?: ImageHeader;
  /** Present on the first unit only. */
  domainHeader?: DomainHeader;
  /** Pages in stream order; when a pfn repeats, the later entry wins. */
  pages: ParsedPage[];
  /** vCPU contexts in stream order; when an id repeats, the later one wins. */
  vcpus: ParsedVcpu[];
  /** Value of the last libxl CHECKPOINT_STATE record, if any. */
  checkpointState?: number;
  /** Other known records (HVM_CONTEXT, EMULATOR_CONTEXT, ...), in order. */
  others: ParsedRecord[];
  /** Records parsed, both layers, skipped ones included (headers excluded). */
  records: number;
  /** Unknown optional records skipped. */
  skipped: number;
  /** True when this unit ended the stream (libxc END + libxl END). */
  ended: boolean;
}

/**
 * Reads a checkpoint's bytes as given: one buffer, or the XEN_STREAM bodies as they arrived.
 * Nothing is joined except a record (or header) that spans two of them, alone: joining a whole
 * first checkpoint (the precopy, all of the guest's memory) cost seconds under emulation.
 */
class Cursor {
  private i = 0;
  private off = 0;
  /** Bytes consumed. */
  pos = 0;
  readonly length: number;

  constructor(private readonly parts: readonly Buffer[]) {
    let n = 0;
    for (const p of parts) n += p.length;
    this.length = n;
  }

  get left(): number {
    return this.length - this.pos;
  }

  /** The next min(n, left) bytes, contiguous, not consumed: a view when they lie in one part. */
  view(n: number): Buffer {
    n = Math.min(n, this.left);
    while (this.i < this.parts.length && this.off === this.parts[this.i]!.length) {
      this.i++;
      this.off = 0;
    }
    const p = this.parts[this.i];
    if (p && p.length - this.off >= n) return p.subarray(this.off, this.off + n);
    return gatherBytes(this.parts, this.i, this.off, n, Buffer.allocUnsafe(n));
  }

  skip(n: number): void {
    this.pos += n;
    while (n > 0) {
      const p = this.parts[this.i]!;
      const k = Math.min(p.length - this.off, n);
      this.off += k;
      n -= k;
      if (this.off === p.length) {
        this.i++;
        this.off = 0;
      }
    }
  }
}

interface RecordView {
  type: number;
  body: Buffer;
}

/**
 * The next record; its body is a view (joined when it spans two buffers). With `headOnly` the
 * body is only its first `headOnly` bytes (at most), and `length` says how long it is.
 */
function readRecord(cur: Cursor, layer: 'libxc' | 'libxl', headOnly?: (type: number) => number | undefined): RecordView & { length: number } {
  const left = cur.left;
  if (left < FRAME_HEADER_BYTES) {
    throw new ProtocolError('ETRUNC', `${layer} record header truncated: ${left} of ${FRAME_HEADER_BYTES} bytes`);
  }
  const hdr = cur.view(FRAME_HEADER_BYTES);
  const type = hdr.readUInt32LE(0);
  const length = hdr.readUInt32LE(4);
  const total = frameSize(length);
  if (total > left) {
    throw new ProtocolError(
      'ETRUNC',
      `${layer} ${recordTypeName(layer, type)} record of length ${length} is truncated: needs ${total} bytes with header and padding, ${left} left`,
    );
  }
  const want = Math.min(length, headOnly?.(type) ?? length);
  const body = cur.view(FRAME_HEADER_BYTES + want).subarray(FRAME_HEADER_BYTES);
  cur.skip(total);
  return { type, body, length };
}

/** The most of a PAGE_DATA body its checks read: header and 1024 entries. */
const PAGE_DATA_HEAD = 8 + 8 * MAX_PAGES_PER_RECORD;
const pageDataHead = (type: number): number | undefined => (type === XC_REC.PAGE_DATA ? PAGE_DATA_HEAD : undefined);


/** Options of {@link XenStreamParser.parseCheckpoint}. */
export interface ParseOptions {
  /**
   * List the pages (default true). False validates every record the same way but leaves
   * `pages` empty: for a backup that hands the bytes on to libxc as they are.
   */
  pages?: boolean;
}

function requireEmpty(layer: 'libxc' | 'libxl', type: number, body: Buffer): void {
  if (body.length !== 0) {
    throw new ProtocolError(
      'EBADLEN',
      `${layer} ${recordTypeName(layer, type)} record has length ${body.length}, expected 0`,
    );
  }
}

/**
 * Validates and decodes the Xen stream bytes of one checkpoint at a time,
 * keeping the stream state (headers seen, format version, STATIC_DATA_END,
 * end of stream) between calls.
 *
 * A rejected checkpoint leaves the state exactly as it was, so the caller can
 * discard it and parse the next one (which, if the rejected one was the
 * first, must again start with the headers).
 */
export class XenStreamParser {
  private started = false;
  private ended = false;
  private imageVersion = 0;
  private staticDataEnd = false;
  private units = 0;
  private hdrs: { libxl: LibxlHeader; image: ImageHeader; domain: DomainHeader } | undefined;

  /** Checkpoint units accepted so far. */
  get checkpointsParsed(): number {
    return this.units;
  }

  /** Whether the stream's END/END has been accepted. */
  get streamEnded(): boolean {
    return this.ended;
  }

  /** The stream headers, once the first unit has been accepted. */
  get headers(): { libxl: LibxlHeader; image: ImageHeader; domain: DomainHeader } | undefined {
    return this.hdrs;
  }

  /**
   * Parse the Xen stream bytes of one checkpoint (the XEN_STREAM bodies between two seals,
   * joined or as the list they came in). Returned buffers are views into `bytes` (a record
   * that spans two buffers is a copy). Throws a ProtocolError whose message names the
   * checkpoint index, the byte offset and what was wrong; the parser state is then unchanged.
   */
  parseCheckpoint(bytes: Buffer | readonly Buffer[], opts: ParseOptions = {}): ParsedCheckpoint {
    const steps = this.steps(bytes, opts);
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
    }
  }

  /**
   * {@link parseCheckpoint}, letting the event loop turn each time `sliceMs` (default SLICE_MS,
   * src/util/slicer.ts) of parsing has run: one process serves every domain it protects, and a
   * first checkpoint (the precopy's passes, several times the guest's memory) parsed in one go
   * kept the other domains' heartbeats in this process for seconds; slices of 16 records still
   * took up to 360 ms with 8 domains on the sim. Nothing else may parse with this parser
   * meanwhile (the backup handles one frame at a time); the state changes only at the end.
   */
  async parseCheckpointAsync(bytes: Buffer | readonly Buffer[], opts: ParseOptions = {}, sliceMs = SLICE_MS): Promise<ParsedCheckpoint> {
    const steps = this.steps(bytes, opts);
    const slicer = new TimeSlicer(sliceMs);
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
      await slicer.maybeYield();
    }
  }

  /** The parse itself: yields after every libxc record, returns the checkpoint. */
  private *steps(bytes: Buffer | readonly Buffer[], opts: ParseOptions): Generator<void, ParsedCheckpoint, void> {
    const cur = new Cursor(Buffer.isBuffer(bytes) ? [bytes] : bytes);
    const listPages = opts.pages ?? true;
    if (this.ended) {
      throw new ProtocolError('EBADSEQ', 'Xen stream: data after the end of the stream (libxc END and libxl END already received)');
    }
    const index = this.units;
    const first = !this.started;
    let version = this.imageVersion;
    let staticDataEnd = this.staticDataEnd;
    const res: ParsedCheckpoint = {
      index,
      first,
      pages: [],
      vcpus: [],
      others: [],
      records: 0,
      skipped: 0,
      ended: false,
    };

    /** Start of the item being parsed, for error messages. */
    let at = 0;
    try {
      if (first) {
        res.libxlHeader = decodeLibxlHeader(cur.view(LIBXL_HEADER.BYTES));
        cur.skip(LIBXL_HEADER.BYTES);
        at = cur.pos;
        const ctx = readRecord(cur, 'libxl');
        if (ctx.type !== XL_REC.LIBXC_CONTEXT) {
          throw new ProtocolError(
            'EBADSEQ',
            `expected libxl LIBXC_CONTEXT after the libxl header, found ${recordTypeName('libxl', ctx.type)}`,
          );
        }
        requireEmpty('libxl', ctx.type, ctx.body);
        res.records++;
        at = cur.pos;
        res.imageHeader = decodeImageHeader(cur.view(IMAGE_HEADER.BYTES));
        cur.skip(IMAGE_HEADER.BYTES);
        at = cur.pos;
        res.domainHeader = decodeDomainHeader(cur.view(DOMAIN_HEADER.BYTES));
        cur.skip(DOMAIN_HEADER.BYTES);
        version = res.imageHeader.version;
        staticDataEnd = false;
      } else if (cur.left >= 8 && cur.view(8).readBigUInt64BE(0) === LIBXL_HEADER.IDENT) {
        throw new ProtocolError(
          'EBADSEQ',
          'libxl header repeated: only the first checkpoint of a stream starts with the stream headers',
        );
      }

      // libxc records up to CHECKPOINT or END.
      let libxcEnd: number;
      for (;;) {
        at = cur.pos;
        if (cur.left === 0) {
          throw new ProtocolError('ETRUNC', 'checkpoint data ends before the libxc CHECKPOINT (or END) record');
        }
        // Without a page list, a PAGE_DATA's pages are never read: only its head is viewed (a
        // record that spans two frames is then not joined).
        const { type, body, length } = readRecord(cur, 'libxc', listPages ? undefined : pageDataHead);
        res.records++;
        yield;
        if (type === XC_REC.CHECKPOINT || type === XC_REC.END) {
          requireEmpty('libxc', type, body);
          if (version >= 3 && !staticDataEnd) {
            throw new ProtocolError('EBADSEQ', `libxc ${recordTypeName('libxc', type)} before STATIC_DATA_END in a version 3 stream`);
          }
          libxcEnd = type;
          break;
        }
        switch (type) {
          case XC_REC.PAGE_DATA: {
            if (version >= 3 && !staticDataEnd) {
              throw new ProtocolError('EBADSEQ', 'libxc PAGE_DATA before STATIC_DATA_END in a version 3 stream');
            }
            const pd = decodePageData(body, listPages, length);
            if (!listPages) break;
            let d = 0;
            for (const e of pd.entries) {
              if (pageTypeHasData(e.type)) {
                res.pages.push({ pfn: e.pfn, type: e.type, data: pd.data.subarray(d, d + PAGE_SIZE) });
                d += PAGE_SIZE;
              } else {
                res.pages.push({ pfn: e.pfn, type: e.type, data: pd.data.subarray(0, 0) });
              }
            }
            break;
          }
          case XC_REC.X86_PV_VCPU_BASIC: {
            const v = decodeVcpuBasic(body);
            res.vcpus.push({ id: v.id, context: v.context });
            break;
          }
          case XC_REC.STATIC_DATA_END:
            requireEmpty('libxc', type, body);
            if (version < 3) {
              throw new ProtocolError('EBADSEQ', `libxc STATIC_DATA_END in a version ${version} stream (only version 3 has it)`);
            }
            if (staticDataEnd) {
              throw new ProtocolError('EBADSEQ', 'libxc STATIC_DATA_END received twice');
            }
            staticDataEnd = true;
            break;
          case XC_REC.CHECKPOINT_DIRTY_PFN_LIST:
            if (body.length % 8 !== 0) {
              throw new ProtocolError(
                'EBADLEN',
                `libxc CHECKPOINT_DIRTY_PFN_LIST record has length ${body.length}, not a multiple of 8`,
              );
            }
            res.others.push({ layer: 'libxc', type, body });
            break;
          default:
            if (isKnownRecordType('libxc', type)) {
              res.others.push({ layer: 'libxc', type, body });
            } else if (type & REC_TYPE_OPTIONAL) {
              res.skipped++;
            } else {
              throw new ProtocolError('EBADTYPE', `unknown mandatory libxc record type ${recordTypeName('libxc', type)}`);
            }
        }
      }

      // libxl records up to CHECKPOINT_END (after CHECKPOINT) or END (after END).
      const want = libxcEnd === XC_REC.CHECKPOINT ? XL_REC.CHECKPOINT_END : XL_REC.END;
      const wantName = recordTypeName('libxl', want);
      for (;;) {
        at = cur.pos;
        if (cur.left === 0) {
          throw new ProtocolError(
            'ETRUNC',
            `checkpoint data ends before the libxl ${wantName} record (after libxc ${recordTypeName('libxc', libxcEnd)})`,
          );
        }
        const { type, body } = readRecord(cur, 'libxl');
        res.records++;
        if (type === XL_REC.END || type === XL_REC.CHECKPOINT_END) {
          if (type !== want) {
            throw new ProtocolError(
              'EBADSEQ',
              `libxl ${recordTypeName('libxl', type)} after libxc ${recordTypeName('libxc', libxcEnd)} (expected ${wantName})`,
            );
          }
          requireEmpty('libxl', type, body);
          break;
        }
        switch (type) {
          case XL_REC.LIBXC_CONTEXT:
            throw new ProtocolError('EBADSEQ', 'libxl LIBXC_CONTEXT may only appear once, at the start of the stream');
          case XL_REC.CHECKPOINT_STATE:
            res.checkpointState = decodeCheckpointState(body);
            break;
          case XL_REC.EMULATOR_XENSTORE_DATA:
          case XL_REC.EMULATOR_CONTEXT:
            res.others.push({ layer: 'libxl', type, body });
            break;
          default:
            if (type & REC_TYPE_OPTIONAL) {
              res.skipped++;
            } else {
              throw new ProtocolError('EBADTYPE', `unknown mandatory libxl record type ${recordTypeName('libxl', type)}`);
            }
        }
      }
      res.ended = want === XL_REC.END;

      at = cur.pos;
      if (cur.left !== 0) {
        throw new ProtocolError('ETRAILING', `${cur.left} trailing byte(s) after libxl ${wantName}`);
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        throw new ProtocolError(err.code, `Xen stream checkpoint ${index}, byte ${at}: ${err.message}`, { cause: err });
      }
      throw err;
    }

    // Commit: only now does the parser state change.
    if (first) {
      this.started = true;
      this.hdrs = { libxl: res.libxlHeader!, image: res.imageHeader!, domain: res.domainHeader! };
    }
    this.imageVersion = version;
    this.staticDataEnd = staticDataEnd;
    this.ended = res.ended;
    this.units++;
    return res;
  }
}

/** Options of {@link XenStreamWriter.begin}. */
export interface StreamBeginOptions {
  /** A DOMAIN_TYPE value. */
  domainType: number;
  xenMajor: number;
  xenMinor: number;
  /** libxc image version: 3 (default, with STATIC_DATA_END) or 2. */
  imageVersion?: 2 | 3;
}

/** A libxl record to put before CHECKPOINT_END / END. */
export interface LibxlRecordInput {
  type: number;
  body: Uint8Array;
}

/** Options of {@link XenStreamWriter.checkpoint}. */
export interface CheckpointOptions {
  /** Emit a libxl CHECKPOINT_STATE record with this value. */
  checkpointState?: number;
  /** Further libxl records (e.g. EMULATOR_CONTEXT), before CHECKPOINT_STATE. */
  libxlRecords?: readonly LibxlRecordInput[];
}

/**
 * Builds the Xen stream bytes a checkpointed save sends, in the layout
 * {@link XenStreamParser} accepts: call {@link begin} once, then for each
 * checkpoint any of {@link pageData}/{@link vcpuBasic}/{@link record}
 * followed by {@link checkpoint}; finally {@link end}.
 */
export class XenStreamWriter {
  private state: 'new' | 'open' | 'ended' = 'new';

  /**
   * Stream headers: libxl header, LIBXC_CONTEXT, image header, domain
   * header and (version 3) STATIC_DATA_END.
   */
  begin(opts: StreamBeginOptions): Buffer {
    if (this.state !== 'new') throw new Error('XenStreamWriter: begin() called twice');
    const version = opts.imageVersion ?? IMAGE_HEADER.VERSION;
    const parts = [
      encodeLibxlHeader(),
      encodeFrame(XL_REC.LIBXC_CONTEXT, Buffer.alloc(0)),
      encodeImageHeader({ version }),
      encodeDomainHeader({ type: opts.domainType, xenMajor: opts.xenMajor, xenMinor: opts.xenMinor }),
    ];
    if (version >= 3) parts.push(encodeFrame(XC_REC.STATIC_DATA_END, Buffer.alloc(0)));
    this.state = 'open';
    return Buffer.concat(parts);
  }

  /**
   * PAGE_DATA records for the given pages, at most 1024 entries each, as
   * separate buffers (no extra copy; one record fits one XEN_STREAM frame).
   * `pages` is either the bytes of every data-carrying entry, 4096 each, in
   * order, or a function returning the 4096 bytes of entry `i` (an index into
   * `pfns`). `types` defaults to all NOTAB.
   */
  /**
   * Where PAGE_DATA records are built (default: a fresh buffer each). A save session can hand
   * out slices of a reused arena, so a checkpoint's copy does not page-fault in new memory.
   */
  alloc: (bytes: number) => Buffer = Buffer.allocUnsafe;

  pageDataRecords(pfns: ArrayLike<number>, pages: Uint8Array | PageProvider, types?: ArrayLike<number>): Buffer[] {
    this.requireOpen('pageData');
    if (types && types.length !== pfns.length) {
      throw new RangeError(`pageData: ${types.length} types for ${pfns.length} pfns`);
    }
    const out: Buffer[] = [];
    let dataOff = 0;
    for (let i = 0; i < pfns.length; i += MAX_PAGES_PER_RECORD) {
      const n = Math.min(MAX_PAGES_PER_RECORD, pfns.length - i);
      const chunkPfns: number[] = new Array(n);
      const chunkTypes: number[] = new Array(n);
      let dataPages = 0;
      for (let j = 0; j < n; j++) {
        chunkPfns[j] = pfns[i + j]!;
        const t = types ? types[i + j]! : PAGE_TYPE.NOTAB;
        chunkTypes[j] = t;
        if (pageTypeHasData(t)) dataPages++;
      }
      let data: Uint8Array | PageProvider;
      if (typeof pages === 'function') {
        const base = i;
        data = (j: number) => pages(base + j);
      } else {
        const dataEnd = dataOff + dataPages * PAGE_SIZE;
        if (dataEnd > pages.length) {
          throw new RangeError(`pageData: ${pages.length} bytes of page data is too little for the pages given`);
        }
        data = pages.subarray(dataOff, dataEnd);
        dataOff = dataEnd;
      }
      out.push(encodePageDataRecord({ pfns: chunkPfns, types: types ? chunkTypes : undefined, data }, this.alloc));
    }
    if (typeof pages !== 'function' && dataOff !== pages.length) {
      throw new RangeError(`pageData: ${pages.length} bytes of page data for ${dataOff / PAGE_SIZE} data page(s)`);
    }
    return out;
  }

  /** Same as {@link pageDataRecords}, concatenated into one buffer. */
  pageData(pfns: ArrayLike<number>, pages: Uint8Array | PageProvider, types?: ArrayLike<number>): Buffer {
    const recs = this.pageDataRecords(pfns, pages, types);
    return recs.length === 1 ? recs[0]! : Buffer.concat(recs);
  }

  /** An X86_PV_VCPU_BASIC record. */
  vcpuBasic(id: number, context: Uint8Array): Buffer {
    this.requireOpen('vcpuBasic');
    return encodeFrame(XC_REC.X86_PV_VCPU_BASIC, encodeVcpuBasic(id, context));
  }

  /**
   * Any other libxc record (e.g. HVM_CONTEXT, or an optional record with
   * bit 31 set). CHECKPOINT, END and STATIC_DATA_END are refused: use
   * {@link checkpoint}/{@link end}.
   */
  record(type: number, body: Uint8Array): Buffer {
    this.requireOpen('record');
    if (type === XC_REC.CHECKPOINT || type === XC_REC.END || type === XC_REC.STATIC_DATA_END) {
      throw new Error(`XenStreamWriter.record: ${recordTypeName('libxc', type)} is written by the writer itself`);
    }
    return encodeFrame(type, body);
  }

  /**
   * End of a checkpoint: libxc CHECKPOINT, the optional libxl records, libxl
   * CHECKPOINT_END.
   */
  checkpoint(opts: CheckpointOptions = {}): Buffer {
    this.requireOpen('checkpoint');
    const parts = [encodeFrame(XC_REC.CHECKPOINT, Buffer.alloc(0))];
    for (const r of opts.libxlRecords ?? []) parts.push(encodeFrame(r.type, r.body));
    if (opts.checkpointState !== undefined) {
      parts.push(encodeFrame(XL_REC.CHECKPOINT_STATE, encodeCheckpointState(opts.checkpointState)));
    }
    parts.push(encodeFrame(XL_REC.CHECKPOINT_END, Buffer.alloc(0)));
    return Buffer.concat(parts);
  }

  /** End of the stream: libxc END, the optional libxl records, libxl END. */
  end(opts: { libxlRecords?: readonly LibxlRecordInput[] } = {}): Buffer {
    this.requireOpen('end');
    const parts = [encodeFrame(XC_REC.END, Buffer.alloc(0))];
    for (const r of opts.libxlRecords ?? []) parts.push(encodeFrame(r.type, r.body));
    parts.push(encodeFrame(XL_REC.END, Buffer.alloc(0)));
    this.state = 'ended';
    return Buffer.concat(parts);
  }

  private requireOpen(what: string): void {
    if (this.state === 'new') throw new Error(`XenStreamWriter.${what}: begin() has not been called`);
    if (this.state === 'ended') throw new Error(`XenStreamWriter.${what}: the stream has ended`);
  }
}
