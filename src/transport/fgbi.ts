/**
 * Fine-grained block identification (FGBI, OPODIS'11): for each dirty page, only the blocks
 * (default 64 bytes) that differ from the copy the backup holds go on the wire.
 *
 * The transform works on the Xen stream's records, so it is the same for every backend and
 * mode: the encoder (primary) replaces each libxc PAGE_DATA record by one FGBI_PAGE_DATA record
 * (docs/protocol.md §5.7) and passes every other record through; the decoder (backup) turns each
 * FGBI_PAGE_DATA back into the PAGE_DATA record it came from, with whole pages, so what the
 * replica (or libxc) gets is an ordinary migration stream.
 *
 * Both ends keep a shadow: for some pfns, the page as the backup holds it. The invariant is
 * that the primary's shadow after encoding checkpoint N equals the backup's after committing N.
 * - The encoder updates its shadow as it encodes (checkpoints are encoded in epoch order).
 * - The decoder builds an overlay per checkpoint and folds it into its shadow only at commit
 *   (`DecodedCheckpoint.commit`, after the replica applied it); a rejected checkpoint leaves it
 *   untouched.
 * - A FULL checkpoint (the first, a resync) goes as it is: its PAGE_DATA records are not
 *   replaced and no shadow is built from them. The primary starts it with `startFull()` (the
 *   shadow empties, encoding stops until the checkpoint's seal: `endCheckpoint()`), and the
 *   backup takes it with no decoding at all, emptying its shadow at the commit. So a FULL
 *   checkpoint costs fgbi nothing, and a rejection costs the two shadows only their content.
 * - The shadow starts from the pages of incremental checkpoints: a page takes one when it is
 *   sent again within FGBI_REPEAT_WINDOW incremental checkpoints, and both sides drop a shadow
 *   no checkpoint touched for FGBI_IDLE_CHECKPOINTS (the same rule on both, counted in
 *   incremental checkpoints since the FULL one, so they agree without a word on the wire).
 * - Which pages have a shadow is decided by the encoder alone and carried by each entry's
 *   encoding (PAGE_KEEP keeps one, PAGE drops it): the backup follows, and checks the bound.
 * Details and the bound: docs/transfer.md.
 */
import { FRAME_HEADER_BYTES, paddedLength, ProtocolError } from './framing.js';
import { MAX_PAGES_PER_RECORD, PAGE_SIZE, pageTypeHasData, XC_REC, isValidPageType } from './xen-records.js';

/** libxc-level record type of xl-ha's own (not Xen's): "XLH" 0x60. Mandatory (bit 31 clear): libxc alone must refuse it. */
export const XC_REC_FGBI_PAGE_DATA = 0x584c4860;

/** How an entry's page is carried. */
export const FGBI_ENC = {
  /** 4096 bytes; the page becomes the pfn's shadow on both sides. */
  PAGE_KEEP: 0,
  /** 4096 bytes; no shadow is kept for the pfn (any is dropped). */
  PAGE: 1,
  /** The changed blocks against the pfn's shadow, which is updated. */
  DELTA: 2,
  /** A page type that carries no data (BROKEN, XALLOC, XTAB): no bytes; any shadow is dropped. */
  NODATA: 3,
} as const;

export const FGBI_BLOCK_BYTES = { min: 16, max: 2048, default: 64 } as const;
/** Default bound of each side's shadow (`ha_fgbi_shadow_mib`). */
export const FGBI_DEFAULT_SHADOW_MIB = 64;
/**
 * A page that changed whole loses its shadow, and its next this many dirty copies go whole
 * without one being taken (a page rewritten each epoch would otherwise be copied into the shadow
 * every other epoch for nothing).
 */
export const FGBI_WHOLE_COOLDOWN = 16;
/**
 * A page without a shadow takes one when it is sent in an incremental checkpoint no more than
 * this many incremental checkpoints after its previous send (0.8 s at remus' 25 ms): the pages
 * a guest dirties again and again. A page dirtied once in a while (a background writer's random
 * pages, the first dirty copy of anything) goes whole and takes none.
 */
export const FGBI_REPEAT_WINDOW = 32;
/**
 * A shadow that no checkpoint touched (sent as blocks or kept) for this many incremental
 * checkpoints is dropped by both sides (6.4 s at 25 ms), so the shadow follows the pages the
 * guest dirties now. Both sides sweep at the end of every FGBI_SWEEP_EVERY-th incremental
 * checkpoint since the FULL one: the encoder when the checkpoint is sealed, the decoder when it
 * is committed.
 */
export const FGBI_IDLE_CHECKPOINTS = 256;
export const FGBI_SWEEP_EVERY = 32;

/** Stream headers before the first record (libxl header 16, LIBXC_CONTEXT 8, image header 24, domain header 16). */
export const STREAM_HEADER_BYTES = 64;

const ENTRY_BYTES = 16;
const HEAD_BYTES = 8;

export interface FgbiParams {
  /** Block size, a power of two from 16 to 2048. */
  blockBytes: number;
  /** The most page bytes each side's shadow holds. */
  shadowCapBytes: number;
}

export function isValidBlockBytes(n: number): boolean {
  return Number.isInteger(n) && n >= FGBI_BLOCK_BYTES.min && n <= FGBI_BLOCK_BYTES.max && (n & (n - 1)) === 0;
}

// ---------------------------------------------------------------------------
// Shadow storage
// ---------------------------------------------------------------------------

const SLAB_PAGES = 64;

/** Copies of pages by pfn, in slabs of 64 pages with a free list (no allocation per page). */
export class PageStore {
  private readonly slabs: Buffer[] = [];
  private readonly free: number[] = [];
  private readonly slot = new Map<number, number>();
  /** By slot: the incremental checkpoint (since the FULL one) that last touched the page. */
  private stamps = new Uint32Array(0);

  get pages(): number {
    return this.slot.size;
  }
  /** Page bytes held. */
  get bytes(): number {
    return this.slot.size * PAGE_SIZE;
  }
  /** Memory taken, free slots included. */
  get allocatedBytes(): number {
    return this.slabs.length * SLAB_PAGES * PAGE_SIZE;
  }

  has(pfn: number): boolean {
    return this.slot.has(pfn);
  }

  /** The stored page (a view of the store's memory: it changes with the next put of that pfn). */
  get(pfn: number): Buffer | undefined {
    const s = this.slot.get(pfn);
    return s === undefined ? undefined : this.view(s);
  }

  put(pfn: number, page: Uint8Array, stamp = 0): void {
    let s = this.slot.get(pfn);
    if (s === undefined) {
      s = this.free.pop();
      if (s === undefined) {
        const base = this.slabs.length * SLAB_PAGES;
        this.slabs.push(Buffer.allocUnsafeSlow(SLAB_PAGES * PAGE_SIZE));
        for (let i = SLAB_PAGES - 1; i > 0; i--) this.free.push(base + i);
        s = base;
      }
      this.slot.set(pfn, s);
    }
    this.view(s).set(page);
    this.stamp(pfn, stamp, s);
  }

  /** Notes that checkpoint `n` touched the pfn's shadow (if it has one). */
  stamp(pfn: number, n: number, s = this.slot.get(pfn)): void {
    if (s === undefined) return;
    if (s >= this.stamps.length) {
      const grown = new Uint32Array(Math.max(s + 1, this.stamps.length * 2, 1024));
      grown.set(this.stamps);
      this.stamps = grown;
    }
    this.stamps[s] = n;
  }

  /** Drops every page last touched at or before checkpoint `n`; returns how many. */
  sweep(n: number): number {
    let dropped = 0;
    for (const [pfn, s] of this.slot) {
      if (this.stamps[s]! <= n) {
        this.slot.delete(pfn);
        this.free.push(s);
        dropped++;
      }
    }
    return dropped;
  }

  delete(pfn: number): void {
    const s = this.slot.get(pfn);
    if (s === undefined) return;
    this.slot.delete(pfn);
    this.free.push(s);
  }

  /** Drops every page and gives the memory back. */
  clear(): void {
    this.slot.clear();
    this.free.length = 0;
    this.slabs.length = 0;
    this.stamps = new Uint32Array(0);
  }

  private view(s: number): Buffer {
    const slab = this.slabs[(s / SLAB_PAGES) | 0]!;
    const o = (s % SLAB_PAGES) * PAGE_SIZE;
    return slab.subarray(o, o + PAGE_SIZE);
  }
}

// ---------------------------------------------------------------------------
// Splitting bytes into whole records
// ---------------------------------------------------------------------------

/**
 * Cuts a byte stream into whole items: first `headerBytes` of stream headers (one item), then
 * records (header, body, padding). An item is a view into the part it lies in; one that spans
 * two parts is joined (alone). Bytes of an unfinished item wait for the next part.
 */
export class RecordSplitter {
  private carry: Buffer[] = [];
  private carryLen = 0;
  /** Size of the item the carried bytes begin, once known (its 8-byte header arrived). */
  private carrySize: number | undefined;

  constructor(private headerLeft = 0) {}

  /** Bytes of an unfinished item. */
  get pending(): number {
    return this.carryLen;
  }

  push(part: Buffer, out: (item: Buffer, isHeader: boolean) => void): void {
    let off = 0;
    if (this.carryLen > 0) {
      // The size is worked out once per item, from its first 8 bytes: an item carried over many
      // small parts costs one copy of its bytes, not one join of everything carried per part.
      const size = (this.carrySize ??= this.sizeWith(part));
      if (size === undefined || this.carryLen + part.length < size) {
        this.carry.push(Buffer.from(part));
        this.carryLen += part.length;
        return;
      }
      off = size - this.carryLen;
      const item = Buffer.concat([...this.carry, part.subarray(0, off)], size);
      this.carry = [];
      this.carryLen = 0;
      this.carrySize = undefined;
      this.emit(item, out);
    }
    for (;;) {
      const left = part.length - off;
      if (left === 0) return;
      let size: number;
      if (this.headerLeft > 0) size = this.headerLeft;
      else if (left < FRAME_HEADER_BYTES) break;
      else size = FRAME_HEADER_BYTES + paddedLength(part.readUInt32LE(off + 4));
      if (left < size) break;
      this.emit(part.subarray(off, off + size), out);
      off += size;
    }
    this.carry = [Buffer.from(part.subarray(off))];
    this.carryLen = part.length - off;
    this.carrySize = undefined;
  }

  private emit(item: Buffer, out: (item: Buffer, isHeader: boolean) => void): void {
    const header = this.headerLeft > 0;
    this.headerLeft = 0;
    out(item, header);
  }

  /** Size of the item the carried bytes begin, once 8 bytes of it are known (with `next`). */
  private sizeWith(next: Buffer): number | undefined {
    if (this.headerLeft > 0) return this.headerLeft;
    if (this.carryLen + next.length < FRAME_HEADER_BYTES) return undefined;
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    let w = 0;
    for (const c of [...this.carry, next]) {
      w += c.copy(head, w, 0, Math.min(c.length, FRAME_HEADER_BYTES - w));
      if (w === FRAME_HEADER_BYTES) break;
    }
    return FRAME_HEADER_BYTES + paddedLength(head.readUInt32LE(4));
  }
}

// ---------------------------------------------------------------------------
// Encoder (primary)
// ---------------------------------------------------------------------------

export interface FgbiStats {
  /** Data pages seen in PAGE_DATA records. */
  pages: number;
  /** Of those, sent as changed blocks. */
  deltaPages: number;
  /** Sent whole after changing (nearly) whole against their shadow. */
  wholePages: number;
  /** Sent whole, not sent in the FGBI_REPEAT_WINDOW checkpoints before (no shadow taken). */
  firstPages: number;
  /** Sent whole and kept as a shadow. */
  keptPages: number;
  /** Sent whole without a shadow because the shadow was at its bound. */
  capRefusals: number;
  /** Shadows dropped because no checkpoint touched them for FGBI_IDLE_CHECKPOINTS. */
  idleDrops: number;
  blocks: number;
  /** PAGE_DATA bytes in, FGBI_PAGE_DATA bytes out. */
  bytesIn: number;
  bytesOut: number;
}

const newStats = (): FgbiStats => ({ pages: 0, firstPages: 0, deltaPages: 0, wholePages: 0, keptPages: 0, capRefusals: 0, idleDrops: 0, blocks: 0, bytesIn: 0, bytesOut: 0 });

/**
 * When each pfn was last sent in an incremental checkpoint (its index since the FULL one; 0:
 * not since). 4 bytes per pfn below 2^22 (16 GiB of guest), a map entry above.
 */
class SendLog {
  private low = new Uint32Array(0);
  private readonly high = new Map<number, number>();
  static readonly LOW_PFNS = 1 << 22;

  /** Records a send at `n`; returns the previous one (0: none). */
  swap(pfn: number, n: number): number {
    if (pfn >= SendLog.LOW_PFNS) {
      const was = this.high.get(pfn) ?? 0;
      this.high.set(pfn, n);
      return was;
    }
    if (pfn >= this.low.length) {
      const grown = new Uint32Array(Math.min(SendLog.LOW_PFNS, Math.max(pfn + 1, this.low.length * 2, 4096)));
      grown.set(this.low);
      this.low = grown;
    }
    const was = this.low[pfn]!;
    this.low[pfn] = n;
    return was;
  }

  clear(): void {
    this.low = new Uint32Array(0);
    this.high.clear();
  }

  get bytes(): number {
    return this.low.byteLength + this.high.size * 16;
  }
}

export class FgbiEncoder {
  readonly shadow = new PageStore();
  readonly stats = newStats();
  private readonly cooldown = new Map<number, number>();
  private readonly sent = new SendLog();
  /**
   * Between `startFull()` and the FULL checkpoint's seal (`endCheckpoint()`) the stream goes as
   * it is. A stream starts with a FULL checkpoint, so an encoder starts passing.
   */
  private passing = true;
  /** Incremental checkpoints sealed since the FULL one. */
  private sealed = 0;
  private splitter = new RecordSplitter(0);
  private readonly blockShift: number;
  private readonly blocksPerPage: number;
  private readonly changed: Uint16Array;

  constructor(readonly params: FgbiParams) {
    if (!isValidBlockBytes(params.blockBytes)) throw new RangeError(`fgbi block size ${params.blockBytes} is not a power of two from ${FGBI_BLOCK_BYTES.min} to ${FGBI_BLOCK_BYTES.max}`);
    this.blockShift = Math.log2(params.blockBytes);
    this.blocksPerPage = PAGE_SIZE >>> this.blockShift;
    this.changed = new Uint16Array(this.blocksPerPage);
  }

  /**
   * A FULL checkpoint begins: it goes as it is, and the backup, which takes it with no shadow,
   * empties its own at its commit; so does this side now.
   */
  startFull(): void {
    this.shadow.clear();
    this.cooldown.clear();
    this.sent.clear();
    this.sealed = 0;
    this.passing = true;
  }

  /**
   * The checkpoint whose content was encoded is sealed (every body of it went through
   * `encode`). After a FULL one, encoding starts; after an incremental one, the idle sweep
   * runs when it is due, as the backup's at its commit.
   */
  endCheckpoint(): void {
    if (this.splitter.pending > 0) throw new Error(`fgbi: a checkpoint sealed inside a record (${this.splitter.pending} bytes of it)`);
    if (this.passing) {
      this.passing = false;
      return;
    }
    this.sealed++;
    if (this.sealed % FGBI_SWEEP_EVERY === 0) this.stats.idleDrops += this.shadow.sweep(this.sealed - FGBI_IDLE_CHECKPOINTS);
  }

  /** Memory the encoder's own bookkeeping takes besides the shadow (when each pfn was last sent). */
  get bookkeepingBytes(): number {
    return this.sent.bytes;
  }

  /** One XEN_STREAM body (whole records or pieces of them, in stream order). */
  encode(body: Buffer | readonly Buffer[]): Buffer[] {
    if (this.passing) return Buffer.isBuffer(body) ? [body] : [...(body as readonly Buffer[])];
    const out: Buffer[] = [];
    const emit = (item: Buffer) => {
      if (item.readUInt32LE(0) === XC_REC.PAGE_DATA) out.push(this.encodePageData(item));
      else out.push(item);
    };
    if (Buffer.isBuffer(body)) this.splitter.push(body, emit);
    else for (const p of body as readonly Buffer[]) this.splitter.push(p, emit);
    return out;
  }

  /** One PAGE_DATA record (header, body, padding) as an FGBI_PAGE_DATA record. */
  private encodePageData(rec: Buffer): Buffer {
    const count = rec.readUInt32LE(8);
    const B = this.params.blockBytes;
    const bpp = this.blocksPerPage;
    const encs = new Uint8Array(count);
    const idx: (Uint16Array | null)[] = new Array(count).fill(null);
    let dataBytes = 0;
    let d = FRAME_HEADER_BYTES + 8 + 8 * count; // first page's offset in the record
    const n = this.sealed + 1; // this checkpoint, counted since the FULL one
    for (let i = 0; i < count; i++) {
      const at = FRAME_HEADER_BYTES + 8 + 8 * i;
      const pfn = rec.readUInt32LE(at) + (rec.readUInt32LE(at + 4) & 0xfffff) * 2 ** 32;
      const type = rec.readUInt32LE(at + 4) >>> 28;
      if (!pageTypeHasData(type)) {
        encs[i] = FGBI_ENC.NODATA;
        this.shadow.delete(pfn);
        continue;
      }
      const page = rec.subarray(d, d + PAGE_SIZE);
      d += PAGE_SIZE;
      this.stats.pages++;
      const base = this.shadow.get(pfn);
      if (base) {
        let k = 0;
        for (let b = 0, o = 0; b < bpp; b++, o += B) if (page.compare(base, o, o + B, o, o + B) !== 0) this.changed[k++] = b;
        const deltaBytes = paddedLength(2 * k) + k * B;
        if (k === bpp || deltaBytes >= PAGE_SIZE) {
          encs[i] = FGBI_ENC.PAGE;
          this.shadow.delete(pfn);
          this.sent.swap(pfn, n);
          this.cooldown.set(pfn, FGBI_WHOLE_COOLDOWN);
          this.stats.wholePages++;
          dataBytes += PAGE_SIZE;
        } else {
          encs[i] = FGBI_ENC.DELTA;
          idx[i] = this.changed.slice(0, k);
          base.set(page);
          this.shadow.stamp(pfn, n);
          this.sent.swap(pfn, n);
          this.stats.deltaPages++;
          this.stats.blocks += k;
          dataBytes += deltaBytes;
        }
        continue;
      }
      const cool = this.cooldown.get(pfn);
      const last = this.sent.swap(pfn, n);
      if (last === 0 || n - last > FGBI_REPEAT_WINDOW) {
        encs[i] = FGBI_ENC.PAGE;
        this.stats.firstPages++;
      } else if (cool !== undefined) {
        if (cool <= 1) this.cooldown.delete(pfn);
        else this.cooldown.set(pfn, cool - 1);
        encs[i] = FGBI_ENC.PAGE;
      } else if (this.shadow.bytes + PAGE_SIZE <= this.params.shadowCapBytes) {
        encs[i] = FGBI_ENC.PAGE_KEEP;
        this.shadow.put(pfn, page, n);
        this.stats.keptPages++;
      } else {
        encs[i] = FGBI_ENC.PAGE;
        this.stats.capRefusals++;
      }
      dataBytes += PAGE_SIZE;
    }
    const bodyLen = HEAD_BYTES + ENTRY_BYTES * count + dataBytes;
    const outRec = Buffer.allocUnsafe(FRAME_HEADER_BYTES + paddedLength(bodyLen));
    outRec.writeUInt32LE(XC_REC_FGBI_PAGE_DATA, 0);
    outRec.writeUInt32LE(bodyLen, 4);
    outRec.writeUInt32LE(count, 8);
    outRec.writeUInt32LE(this.blockShift, 12); // blockShift u8, reserved 3 bytes (0)
    let w = FRAME_HEADER_BYTES + HEAD_BYTES + ENTRY_BYTES * count;
    d = FRAME_HEADER_BYTES + 8 + 8 * count;
    for (let i = 0; i < count; i++) {
      const e = FRAME_HEADER_BYTES + HEAD_BYTES + ENTRY_BYTES * i;
      rec.copy(outRec, e, FRAME_HEADER_BYTES + 8 + 8 * i, FRAME_HEADER_BYTES + 16 + 8 * i);
      const enc = encs[i]!;
      const ix = idx[i];
      outRec.writeUInt32LE(enc | ((ix ? ix.length : 0) << 16), e + 8);
      outRec.writeUInt32LE(0, e + 12);
      if (enc === FGBI_ENC.NODATA) continue;
      if (enc !== FGBI_ENC.DELTA) {
        rec.copy(outRec, w, d, d + PAGE_SIZE);
        w += PAGE_SIZE;
      } else {
        const k = ix!.length;
        for (let j = 0; j < k; j++) outRec.writeUInt16LE(ix![j]!, w + 2 * j);
        const padded = paddedLength(2 * k);
        outRec.fill(0, w + 2 * k, w + padded);
        w += padded;
        for (let j = 0; j < k; j++) {
          const o = d + (ix![j]! << this.blockShift);
          rec.copy(outRec, w, o, o + B);
          w += B;
        }
      }
      d += PAGE_SIZE;
    }
    outRec.fill(0, w);
    this.stats.bytesIn += rec.length;
    this.stats.bytesOut += outRec.length;
    return outRec;
  }
}

// ---------------------------------------------------------------------------
// Decoder (backup)
// ---------------------------------------------------------------------------

/** A checkpoint's stream with whole pages again; its shadow changes wait for `commit`. */
export interface DecodedCheckpoint {
  /** Xen stream bytes (PAGE_DATA records with whole pages), in order. */
  parts: Buffer[];
  /** The checkpoint was applied: the shadow takes its pages (copies them: `parts` may go). */
  commit(): void;
}

interface OverlayEntry {
  /** The page as this checkpoint leaves it; null: no data. */
  page: Buffer | null;
  /** Whether it is the pfn's shadow afterwards. */
  keep: boolean;
}

const bad = (code: 'ETRUNC' | 'EBADLEN' | 'EBADVALUE' | 'EBADSEQ', msg: string): never => {
  throw new ProtocolError(code, `fgbi: ${msg}`);
};

export class FgbiDecoder {
  readonly shadow = new PageStore();
  private streamStarted = false;
  /** Incremental checkpoints committed since the FULL one (the encoder counts its seals alike). */
  private committed = 0;
  private readonly blockShift: number;

  constructor(readonly params: FgbiParams) {
    if (!isValidBlockBytes(params.blockBytes)) throw new RangeError(`fgbi block size ${params.blockBytes} is not a power of two from ${FGBI_BLOCK_BYTES.min} to ${FGBI_BLOCK_BYTES.max}`);
    this.blockShift = Math.log2(params.blockBytes);
  }

  /**
   * The XEN_STREAM bodies of one sealed checkpoint, as they arrived. `full`: the seal's FULL
   * flag. A FULL checkpoint went as it is: it is handed on untouched (an FGBI_PAGE_DATA in it
   * is an unknown mandatory record to the parser, which refuses it), and its commit empties
   * the shadow. Otherwise every FGBI_PAGE_DATA is rebuilt into its PAGE_DATA; a fault throws a
   * ProtocolError naming the record, the entry, the field and the value, the shadow unchanged.
   */
  decode(parts: readonly Buffer[], full: boolean): DecodedCheckpoint {
    if (full) {
      return {
        parts: [...parts],
        commit: () => {
          this.shadow.clear();
          this.committed = 0;
          this.streamStarted = true;
        },
      };
    }
    const overlay = new Map<number, OverlayEntry>();
    let shadowPages = this.shadow.pages;
    const out: Buffer[] = [];
    const first = !this.streamStarted;
    const splitter = new RecordSplitter(first ? STREAM_HEADER_BYTES : 0);
    let recNo = 0;
    const emit = (item: Buffer, isHeader: boolean) => {
      if (isHeader) return void out.push(item);
      const type = item.readUInt32LE(0);
      if (type === XC_REC.PAGE_DATA) bad('EBADSEQ', `record ${recNo}: a PAGE_DATA record in an incremental checkpoint of an fgbi stream (the primary sends its pages in FGBI_PAGE_DATA records only)`);
      if (type === XC_REC_FGBI_PAGE_DATA) {
        const decoded = this.decodeRecord(item, recNo, false, overlay, shadowPages);
        shadowPages = decoded.shadowPages;
        out.push(decoded.rec);
      } else out.push(item);
      recNo++;
    };
    for (const p of parts) splitter.push(p, emit);
    if (splitter.pending > 0) bad('ETRUNC', `the checkpoint ends inside a record (${splitter.pending} bytes of it)`);
    return {
      parts: out,
      commit: () => {
        const n = ++this.committed;
        for (const [pfn, e] of overlay) {
          if (e.keep) this.shadow.put(pfn, e.page!, n);
          else this.shadow.delete(pfn);
        }
        if (n % FGBI_SWEEP_EVERY === 0) this.shadow.sweep(n - FGBI_IDLE_CHECKPOINTS);
        if (first) this.streamStarted = true;
      },
    };
  }

  private decodeRecord(rec: Buffer, recNo: number, full: boolean, overlay: Map<number, OverlayEntry>, shadowPages: number): { rec: Buffer; shadowPages: number } {
    const where = `FGBI_PAGE_DATA record ${recNo}`;
    const length = rec.readUInt32LE(4);
    if (length < HEAD_BYTES) bad('ETRUNC', `${where}: length ${length} is shorter than its ${HEAD_BYTES}-byte head`);
    const count = rec.readUInt32LE(8);
    if (count < 1 || count > MAX_PAGES_PER_RECORD) bad('EBADVALUE', `${where}: count ${count} is not from 1 to ${MAX_PAGES_PER_RECORD}`);
    const shift = rec.readUInt8(12);
    if (shift !== this.blockShift) bad('EBADVALUE', `${where}: blockShift ${shift} (${2 ** shift}-byte blocks) is not the ${this.params.blockBytes}-byte blocks agreed in HELLO (blockShift ${this.blockShift})`);
    if (rec.readUIntLE(13, 3) !== 0) bad('EBADVALUE', `${where}: reserved bytes 5..7 are ${rec.readUIntLE(13, 3)}, expected 0`);
    const end = FRAME_HEADER_BYTES + length;
    const table = FRAME_HEADER_BYTES + HEAD_BYTES;
    if (table + ENTRY_BYTES * count > end) bad('ETRUNC', `${where}: ${count} entries need ${HEAD_BYTES + ENTRY_BYTES * count} bytes, the record has ${length}`);
    const B = this.params.blockBytes;
    const bpp = PAGE_SIZE >>> this.blockShift;
    // Pass 1: check every entry and find how many data pages the PAGE_DATA will carry.
    let r = table + ENTRY_BYTES * count;
    let dataPages = 0;
    for (let i = 0; i < count; i++) {
      const e = table + ENTRY_BYTES * i;
      const type = rec.readUInt32LE(e + 4) >>> 28;
      const pfn = rec.readUInt32LE(e) + (rec.readUInt32LE(e + 4) & 0xfffff) * 2 ** 32;
      const enc = rec.readUInt16LE(e + 8);
      const blocks = rec.readUInt16LE(e + 10);
      const at = `${where} entry ${i} (pfn ${pfn})`;
      if (!isValidPageType(type)) bad('EBADVALUE', `${at}: page type 0x${type.toString(16)} is invalid`);
      if (rec.readUInt32LE(e + 12) !== 0) bad('EBADVALUE', `${at}: reserved field is ${rec.readUInt32LE(e + 12)}, expected 0`);
      const hasData = pageTypeHasData(type);
      if (enc > FGBI_ENC.NODATA) bad('EBADVALUE', `${at}: encoding ${enc} is unknown (expected 0 PAGE_KEEP, 1 PAGE, 2 DELTA or 3 NODATA)`);
      if ((enc === FGBI_ENC.NODATA) === hasData) bad('EBADVALUE', `${at}: encoding ${enc} does not fit page type 0x${type.toString(16)} (${hasData ? 'a type with data takes 0, 1 or 2' : 'a type without data takes 3 NODATA'})`);
      if (enc !== FGBI_ENC.DELTA && blocks !== 0) bad('EBADVALUE', `${at}: blocks ${blocks} with encoding ${enc}, expected 0 (only DELTA has blocks)`);
      if (hasData) dataPages++;
      let size = 0;
      if (enc === FGBI_ENC.PAGE_KEEP || enc === FGBI_ENC.PAGE) size = PAGE_SIZE;
      else if (enc === FGBI_ENC.DELTA) {
        if (blocks > bpp) bad('EBADVALUE', `${at}: blocks ${blocks} is more than the ${bpp} blocks of a page`);
        size = paddedLength(2 * blocks) + blocks * B;
      }
      if (r + size > end) bad('ETRUNC', `${at}: its data (${size} bytes) runs past the record's end (length ${length})`);
      r += size;
    }
    if (r !== end) bad('EBADLEN', `${where}: length ${length}, but its ${count} entries and their data take ${r - FRAME_HEADER_BYTES} bytes`);
    // Pass 2: rebuild the PAGE_DATA record.
    const pdLen = 8 + 8 * count + PAGE_SIZE * dataPages;
    const pd = Buffer.allocUnsafe(FRAME_HEADER_BYTES + pdLen);
    pd.writeUInt32LE(XC_REC.PAGE_DATA, 0);
    pd.writeUInt32LE(pdLen, 4);
    pd.writeUInt32LE(count, 8);
    pd.writeUInt32LE(0, 12);
    r = table + ENTRY_BYTES * count;
    let w = FRAME_HEADER_BYTES + 8 + 8 * count;
    for (let i = 0; i < count; i++) {
      const e = table + ENTRY_BYTES * i;
      rec.copy(pd, FRAME_HEADER_BYTES + 8 + 8 * i, e, e + 8);
      const pfn = rec.readUInt32LE(e) + (rec.readUInt32LE(e + 4) & 0xfffff) * 2 ** 32;
      const enc = rec.readUInt16LE(e + 8);
      const blocks = rec.readUInt16LE(e + 10);
      const at = `${where} entry ${i} (pfn ${pfn})`;
      const prev = overlay.get(pfn);
      const hadShadow = prev ? prev.keep : !full && this.shadow.has(pfn);
      if (enc === FGBI_ENC.NODATA) {
        overlay.set(pfn, { page: null, keep: false });
        if (hadShadow) shadowPages--;
        continue;
      }
      const page = pd.subarray(w, w + PAGE_SIZE);
      w += PAGE_SIZE;
      if (enc === FGBI_ENC.DELTA) {
        const base = prev ? (prev.keep ? prev.page : null) : full ? null : this.shadow.get(pfn) ?? null;
        if (!base) bad('EBADVALUE', `${at}: DELTA against a page this backup holds no copy of${full ? ' (a FULL checkpoint has no shadow before its own pages)' : ''}`);
        base!.copy(page);
        const data = r + paddedLength(2 * blocks);
        let last = -1;
        for (let j = 0; j < blocks; j++) {
          const b = rec.readUInt16LE(r + 2 * j);
          if (b >= bpp) bad('EBADVALUE', `${at}: block index ${b} is out of range (a page has ${bpp} blocks of ${B} bytes)`);
          if (b <= last) bad('EBADVALUE', `${at}: block index ${b} follows ${last} (indices must be strictly ascending)`);
          last = b;
          rec.copy(page, b << this.blockShift, data + j * B, data + (j + 1) * B);
        }
        r = data + blocks * B;
        overlay.set(pfn, { page, keep: true });
      } else {
        rec.copy(page, 0, r, r + PAGE_SIZE);
        r += PAGE_SIZE;
        const keep = enc === FGBI_ENC.PAGE_KEEP;
        overlay.set(pfn, { page, keep });
        if (keep && !hadShadow) shadowPages++;
        if (!keep && hadShadow) shadowPages--;
        if (shadowPages * PAGE_SIZE > this.params.shadowCapBytes) {
          bad('EBADVALUE', `${at}: PAGE_KEEP takes the shadow to ${shadowPages} pages, past the ${this.params.shadowCapBytes} bytes agreed in HELLO`);
        }
      }
    }
    return { rec: pd, shadowPages };
  }
}
