import t from 'tap';
import { FGBI_ENC, FGBI_IDLE_CHECKPOINTS, FGBI_REPEAT_WINDOW, FGBI_SWEEP_EVERY, FgbiDecoder, FgbiEncoder, RecordSplitter, XC_REC_FGBI_PAGE_DATA, type FgbiParams } from '../../src/transport/fgbi.js';
import { PAGE_SIZE, PAGE_TYPE, XC_REC } from '../../src/transport/xen-records.js';
import { XenStreamParser, XenStreamWriter } from '../../src/transport/xenstream.js';
import { mulberry32 } from '../../src/util/prng.js';
import { expectProtocolError } from '../helpers/protocol-error.js';

const BLOCK_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048];

/** A primary and a backup end of one stream, with a guest memory of `pages` pages. */
class Pair {
  readonly enc: FgbiEncoder;
  readonly dec: FgbiDecoder;
  readonly writer = new XenStreamWriter();
  readonly parser = new XenStreamParser();
  mem: Buffer;
  private started = false;

  constructor(readonly pages: number, params: Partial<FgbiParams> = {}) {
    const p = { blockBytes: 64, shadowCapBytes: 1 << 30, ...params };
    this.enc = new FgbiEncoder(p);
    this.dec = new FgbiDecoder(p);
    this.mem = Buffer.alloc(pages * PAGE_SIZE);
  }

  page(pfn: number): Buffer {
    return this.mem.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }

  /** The plain stream bytes of a checkpoint carrying `pfns` (in that order, repeats allowed). */
  plain(pfns: number[], types?: number[]): Buffer[] {
    const chunks: Buffer[] = [];
    if (!this.started) {
      chunks.push(this.writer.begin({ domainType: 0xffff0001, xenMajor: 4, xenMinor: 17 }));
      this.started = true;
    }
    if (pfns.length) chunks.push(...this.writer.pageDataRecords(pfns, (i) => Buffer.from(this.page(pfns[i]!)), types));
    chunks.push(this.writer.vcpuBasic(0, Buffer.alloc(64, 7)));
    chunks.push(this.writer.checkpoint());
    return chunks;
  }

  /** Encodes `chunks` one frame each and seals the checkpoint; returns the wire parts. */
  encode(chunks: Buffer[], full = false): Buffer[] {
    if (full) this.enc.startFull();
    const out = chunks.flatMap((c) => this.enc.encode(c));
    this.enc.endCheckpoint();
    return out;
  }

  /** Sends a checkpoint through both ends; returns the plain and the decoded bytes, and the wire size. */
  checkpoint(pfns: number[], full = false, types?: number[]): { plain: Buffer; decoded: Buffer; wire: number } {
    const chunks = this.plain(pfns, types);
    const wire = this.encode(chunks, full);
    const d = this.dec.decode(wire, full);
    this.parser.parseCheckpoint(d.parts as Buffer[]); // the decoded stream is a valid Xen stream
    d.commit();
    return { plain: Buffer.concat(chunks), decoded: Buffer.concat(d.parts), wire: wire.reduce((n, b) => n + b.length, 0) };
  }

  /**
   * A FULL checkpoint of `pfns` (no shadow), then two incremental ones: a page takes a shadow
   * when an incremental checkpoint sends it again soon after another did.
   */
  prime(pfns: number[]): void {
    this.checkpoint(pfns, true);
    this.checkpoint(pfns);
    this.checkpoint(pfns);
  }

  /** Whether both shadows hold the same pfns with the same bytes. */
  shadowsAgree(): string | null {
    if (this.enc.shadow.pages !== this.dec.shadow.pages) return `primary shadow ${this.enc.shadow.pages} pages, backup ${this.dec.shadow.pages}`;
    for (let pfn = 0; pfn < this.pages; pfn++) {
      const a = this.enc.shadow.get(pfn);
      const b = this.dec.shadow.get(pfn);
      if (!a !== !b) return `pfn ${pfn}: shadow on ${a ? 'primary' : 'backup'} only`;
      if (a && b && !a.equals(b)) return `pfn ${pfn}: shadows differ`;
    }
    return null;
  }
}

function all(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

t.test('fgbi round-trips random pages exactly, at every block size', async (t) => {
  for (const blockBytes of BLOCK_SIZES) {
    const rnd = mulberry32(blockBytes);
    const p = new Pair(32, { blockBytes });
    for (let i = 0; i < p.mem.length; i++) p.mem[i] = rnd() * 256;
    const first = p.checkpoint(all(32), true);
    t.ok(first.decoded.equals(first.plain), `${blockBytes}: first checkpoint decodes to the plain stream`);
    p.checkpoint(all(32));
    p.checkpoint(all(32));
    for (let epoch = 2; epoch <= 12; epoch++) {
      const dirty = new Set<number>();
      for (let w = 0; w < 20; w++) {
        const pfn = Math.floor(rnd() * 32);
        const off = Math.floor(rnd() * PAGE_SIZE);
        const len = 1 + Math.floor(rnd() * (rnd() < 0.1 ? PAGE_SIZE : 200));
        for (let k = off; k < Math.min(PAGE_SIZE, off + len); k++) p.mem[pfn * PAGE_SIZE + k] = rnd() * 256;
        dirty.add(pfn);
      }
      const r = p.checkpoint([...dirty].sort((a, b) => a - b));
      if (!r.decoded.equals(r.plain)) t.fail(`${blockBytes}: checkpoint ${epoch} differs after decoding`);
    }
    t.equal(p.shadowsAgree(), null, `${blockBytes}: both shadows agree`);
    t.ok(p.enc.stats.deltaPages > 0, `${blockBytes}: some pages went as blocks`);
  }
});

t.test('fgbi round-trips adversarial changes at every block size', async (t) => {
  for (const B of BLOCK_SIZES) {
    const bpp = PAGE_SIZE / B;
    const p = new Pair(8, { blockBytes: B });
    p.mem.fill(0x11);
    p.prime(all(8));
    const cases: [string, (pg: Buffer) => void][] = [
      ['every byte of the page changed', (pg) => pg.fill(0xee)],
      ['one byte changed', (pg) => (pg[1234] ^= 1)],
      ['the first byte of a block', (pg) => (pg[B * Math.min(3, bpp - 1)] ^= 0xff)],
      ['the last byte of a block', (pg) => (pg[B - 1] ^= 0xff)],
      ['a change straddling two blocks', (pg) => pg.fill(0x77, B - 3, B + 3)],
      ['the first block', (pg) => pg.fill(0x42, 0, B)],
      ['the last block', (pg) => pg.fill(0x43, PAGE_SIZE - B)],
      ['the last byte of the page', (pg) => (pg[PAGE_SIZE - 1] ^= 0x80)],
    ];
    for (const [name, change] of cases) {
      const pfn = 3;
      change(p.page(pfn));
      const r = p.checkpoint([pfn]);
      t.ok(r.decoded.equals(r.plain), `${B}: ${name}: decoded exactly`);
      t.equal(p.shadowsAgree(), null, `${B}: ${name}: shadows agree`);
      p.checkpoint(all(8)); // and the pages whose shadow went come back
    }
    // a page that changes and then changes back to its old content
    const old = Buffer.from(p.page(5));
    p.page(5)[100] ^= 0x55;
    p.checkpoint([5]);
    p.page(5).set(old);
    const back = p.checkpoint([5]);
    t.ok(back.decoded.equals(back.plain), `${B}: a page changed back to its old content decodes exactly`);
    // the same pfn twice in one checkpoint: the second is a delta against the first
    const twice = p.checkpoint([6, 6]);
    t.ok(twice.decoded.equals(twice.plain), `${B}: a pfn twice in one checkpoint decodes exactly`);
    t.equal(p.shadowsAgree(), null, `${B}: shadows agree at the end`);
  }
});

t.test('a page with one byte changed goes as one block, and a page changed whole goes whole without a shadow', async (t) => {
  const p = new Pair(4);
  p.checkpoint(all(4), true);
  t.equal(p.enc.shadow.pages, 0, 'a FULL checkpoint builds no shadow');
  p.checkpoint(all(4));
  t.equal(p.enc.shadow.pages, 0, 'the first incremental copy of a page takes none');
  p.checkpoint(all(4));
  t.equal(p.enc.shadow.pages, 4, 'the second, soon after, does');
  p.page(2)[10] = 9;
  const one = p.checkpoint([2]);
  const plainPageData = 8 + 8 + 8 + PAGE_SIZE;
  t.ok(one.wire < one.plain.length - plainPageData + 8 + 8 + 16 + 8 + 64 + 1, `one block on the wire (${one.wire} bytes for a plain ${one.plain.length})`);
  t.equal(p.enc.stats.deltaPages, 1);
  p.page(2).fill(0xab);
  p.checkpoint([2]);
  t.equal(p.enc.stats.wholePages, 1, 'changed whole: sent whole');
  t.notOk(p.enc.shadow.has(2), 'and its shadow dropped on the primary');
  t.notOk(p.dec.shadow.has(2), 'and on the backup');
  p.page(2)[0] = 1;
  p.checkpoint([2]);
  t.notOk(p.enc.shadow.has(2), 'its next dirty copy takes no shadow (cool-down)');
  t.equal(p.shadowsAgree(), null);
});

t.test('the shadow stops growing at its bound, and pages past it go whole', async (t) => {
  const p = new Pair(8, { shadowCapBytes: 3 * PAGE_SIZE });
  p.checkpoint(all(8), true);
  p.checkpoint(all(8));
  const r = p.checkpoint(all(8));
  t.ok(r.decoded.equals(r.plain));
  t.equal(p.enc.shadow.pages, 3, 'primary holds 3 pages');
  t.equal(p.dec.shadow.pages, 3, 'backup holds 3 pages');
  t.equal(p.enc.stats.capRefusals, 5);
  for (const pfn of all(8)) p.page(pfn)[7] ^= 1;
  const r2 = p.checkpoint(all(8));
  t.ok(r2.decoded.equals(r2.plain), 'pages with and without a shadow decode exactly');
  t.equal(p.enc.stats.deltaPages, 3);
  t.equal(p.shadowsAgree(), null);
});

t.test('a FULL checkpoint resets both shadows', async (t) => {
  const p = new Pair(4);
  p.prime(all(4));
  p.page(1)[5] = 5;
  p.checkpoint([1]);
  t.same([p.enc.shadow.pages, p.dec.shadow.pages], [4, 4], 'both hold shadows before');
  const r = p.checkpoint([0, 1, 1], true);
  t.ok(r.decoded.equals(r.plain));
  t.same([p.enc.shadow.pages, p.dec.shadow.pages], [0, 0], 'a FULL checkpoint empties both and builds nothing');
  t.equal(p.shadowsAgree(), null);
  p.page(1)[9] = 9;
  const after = p.checkpoint([1]);
  t.ok(after.decoded.equals(after.plain), 'an incremental checkpoint after it decodes exactly');
  t.equal(p.enc.stats.firstPages > 0, true);
});

t.test('pages without data (XTAB) pass and drop the shadow', async (t) => {
  const p = new Pair(4);
  p.prime(all(4));
  const r = p.checkpoint([1, 2], false, [PAGE_TYPE.XTAB, PAGE_TYPE.NOTAB]);
  t.ok(r.decoded.equals(r.plain));
  t.notOk(p.dec.shadow.has(1));
  t.equal(p.shadowsAgree(), null);
});

t.test('the decoder takes a checkpoint cut anywhere across its parts, and the splitter is linear', async (t) => {
  const p = new Pair(16);
  p.mem.fill(3);
  p.prime(all(16));
  for (let pfn = 0; pfn < 16; pfn++) p.page(pfn)[pfn * 50] ^= 0x5a;
  const chunks = p.plain(all(16));
  const wire = Buffer.concat(chunks.flatMap((c) => p.enc.encode(c)));
  p.enc.endCheckpoint();
  t.ok(wire.length < Buffer.concat(chunks).length / 4, 'the pages went as blocks');
  const cuts: Buffer[] = [];
  for (let o = 0, step = 1; o < wire.length; o += step, step = (step * 7 + 3) % 5000 + 1) cuts.push(wire.subarray(o, Math.min(wire.length, o + step)));
  const d = p.dec.decode(cuts, false);
  t.ok(Buffer.concat(d.parts).equals(Buffer.concat(chunks)));
  // and the encoder takes records split over frames
  const q = new Pair(4);
  q.prime(all(4));
  const plain = Buffer.concat(q.plain(all(4)));
  const parts = [plain.subarray(0, 5), plain.subarray(5, 70), plain.subarray(70, 5000), plain.subarray(5000)].flatMap((c) => q.enc.encode(c));
  q.enc.endCheckpoint();
  t.ok(Buffer.concat(q.dec.decode(parts, false).parts).equals(plain));
  // A 4 MiB record in 1-byte... 512-byte parts: every byte is copied once into the item, not
  // once per part (the quadratic join made a 256 MiB first checkpoint take the backup 49 s).
  const big = Buffer.alloc(8 + 4096 * 1024);
  big.writeUInt32LE(0x1234, 0);
  big.writeUInt32LE(4096 * 1024, 4);
  const splitter = new RecordSplitter(0);
  const origConcat = Buffer.concat;
  let joined = 0;
  Buffer.concat = ((list: readonly Uint8Array[], len?: number) => {
    const r = origConcat(list, len);
    joined += r.length;
    return r;
  }) as typeof Buffer.concat;
  let items = 0;
  try {
    for (let o = 0; o < big.length; o += 512) splitter.push(big.subarray(o, Math.min(big.length, o + 512)), () => items++);
  } finally {
    Buffer.concat = origConcat;
  }
  t.equal(items, 1, 'one item out');
  t.ok(joined <= 2 * big.length, `bytes joined ${joined} for a ${big.length}-byte item in ${Math.ceil(big.length / 512)} parts`);
});

t.test('a FULL checkpoint passes through both ends untouched and builds no shadow', async (t) => {
  const p = new Pair(8);
  p.mem.fill(1);
  const chunks = p.plain(all(8));
  const wire = p.encode(chunks, true);
  t.ok(Buffer.concat(wire).equals(Buffer.concat(chunks)), 'the primary sends it byte for byte');
  const d = p.dec.decode(wire, true);
  t.ok(Buffer.concat(d.parts).equals(Buffer.concat(chunks)), 'the backup hands it on byte for byte');
  p.parser.parseCheckpoint(d.parts as Buffer[]);
  d.commit();
  t.same([p.enc.shadow.pages, p.dec.shadow.pages], [0, 0]);
  // and what follows is encoded: no PAGE_DATA on the wire
  const next = p.encode(p.plain([1, 2]));
  t.notOk(next.some((b) => b.readUInt32LE(0) === XC_REC.PAGE_DATA), 'no PAGE_DATA in an incremental checkpoint');
  t.ok(next.some((b) => b.readUInt32LE(0) === XC_REC_FGBI_PAGE_DATA));
  // an FGBI_PAGE_DATA in a FULL checkpoint is an unknown mandatory record to the parser
  const q = new Pair(2);
  q.prime(all(2));
  const inc = q.encode(q.plain([0]));
  const asFull = q.dec.decode(inc, true);
  t.throws(() => q.parser.parseCheckpoint(asFull.parts as Buffer[]), /0x584c4860|unknown/i, 'the parser refuses FGBI_PAGE_DATA in a FULL checkpoint');
});

t.test('the shadow follows repeated pages: a page sent rarely takes none, an idle one is dropped on both sides alike', async (t) => {
  const p = new Pair(64);
  p.checkpoint(all(64), true);
  // pfn 1 every checkpoint; pfn 2 twice, further apart than the window; pfn 3 twice within it
  p.checkpoint([1, 2, 3]);
  for (let i = 0; i < FGBI_REPEAT_WINDOW - 2; i++) p.checkpoint([1]);
  p.checkpoint([1, 3]);
  t.ok(p.enc.shadow.has(3), 'a page sent again within the window takes a shadow');
  for (let i = 0; i < 4; i++) p.checkpoint([1]);
  p.checkpoint([1, 2]);
  t.notOk(p.enc.shadow.has(2), 'one sent again after the window takes none');
  t.ok(p.enc.shadow.has(1));
  // pfn 3 is not touched again: after FGBI_IDLE_CHECKPOINTS (and a sweep) both sides drop it
  for (let i = 0; i < FGBI_IDLE_CHECKPOINTS + FGBI_SWEEP_EVERY; i++) {
    p.page(1)[i % 4096] ^= 1;
    p.checkpoint([1]);
  }
  t.notOk(p.enc.shadow.has(3), 'the idle shadow is dropped on the primary');
  t.notOk(p.dec.shadow.has(3), 'and on the backup');
  t.ok(p.enc.shadow.has(1) && p.dec.shadow.has(1), 'the busy one stays');
  t.ok(p.enc.stats.idleDrops >= 1);
  t.equal(p.shadowsAgree(), null);
  p.page(3)[0] ^= 1;
  const r = p.checkpoint([3]);
  t.ok(r.decoded.equals(r.plain), 'the dropped page goes whole, and decodes');
});

// --- malformed records from the network --------------------------------------------------------

/** A pair after a first checkpoint, and the wire parts of a second one in which pfn 2 changed one block. */
function deltaCase(B = 64): { p: Pair; wire: Buffer[]; rec: Buffer } {
  const p = new Pair(4, { blockBytes: B });
  p.prime(all(4));
  p.page(2)[B * 2 + 1] = 0x99;
  const wire = p.encode(p.plain([1, 2]));
  const rec = wire.find((b) => b.readUInt32LE(0) === XC_REC_FGBI_PAGE_DATA)!;
  return { p, wire, rec };
}

/** Offsets in an FGBI_PAGE_DATA record of two entries (pfn 1 DELTA 0 blocks, pfn 2 DELTA 1 block). */
const ENTRY = (i: number) => 16 + 16 * i;
const DATA = 16 + 32;

t.test('malformed fgbi records are refused with the field named, and the shadow stays as it was', async (t) => {
  const cases: [string, (c: ReturnType<typeof deltaCase>) => Buffer[], string, string[]][] = [
    ['a truncated record', (c) => c.wire.map((b) => (b === c.rec ? b.subarray(0, b.length - 8) : b)), 'ETRUNC', ['ends inside a record']],
    [
      'a block index out of range',
      (c) => {
        c.rec.writeUInt16LE(64, DATA);
        return c.wire;
      },
      'EBADVALUE',
      ['entry 1 (pfn 2)', 'block index 64 is out of range', '64 blocks of 64 bytes'],
    ],
    [
      'a DELTA for a pfn the backup has no copy of',
      (c) => {
        c.rec.writeUInt32LE(3000, ENTRY(1));
        return c.wire;
      },
      'EBADVALUE',
      ['pfn 3000', 'no copy'],
    ],
    [
      'a record length that disagrees with its entries',
      (c) => {
        c.rec.writeUInt32LE(c.rec.readUInt32LE(4) + 8, 4);
        return c.wire;
      },
      'EBADLEN',
      ['length 120', 'take 112 bytes'],
    ],
    [
      'a record length too short for its entries',
      (c) => {
        c.rec.writeUInt32LE(c.rec.readUInt32LE(4) - 8, 4);
        return c.wire;
      },
      'ETRUNC',
      ['entry 1 (pfn 2)', 'runs past the record\'s end (length 104)'],
    ],
    [
      'a block count past the data',
      (c) => {
        c.rec.writeUInt16LE(5, ENTRY(1) + 10);
        return c.wire;
      },
      'ETRUNC',
      ['entry 1 (pfn 2)', 'runs past'],
    ],
    [
      'a count of 0',
      (c) => {
        c.rec.writeUInt32LE(0, 8);
        return c.wire;
      },
      'EBADVALUE',
      ['count 0'],
    ],
    [
      'another block size than agreed',
      (c) => {
        c.rec.writeUInt8(7, 12);
        return c.wire;
      },
      'EBADVALUE',
      ['blockShift 7', '64-byte blocks agreed'],
    ],
    [
      'an unknown encoding',
      (c) => {
        c.rec.writeUInt16LE(9, ENTRY(0) + 8);
        return c.wire;
      },
      'EBADVALUE',
      ['entry 0 (pfn 1)', 'encoding 9 is unknown'],
    ],
    [
      'blocks given to a whole page',
      (c) => {
        c.rec.writeUInt16LE(FGBI_ENC.PAGE, ENTRY(1) + 8);
        return c.wire;
      },
      'EBADVALUE',
      ['blocks 1 with encoding 1'],
    ],
  ];
  for (const [name, mutate, code, parts] of cases) {
    const c = deltaCase();
    const before = Buffer.from(c.p.dec.shadow.get(2)!);
    const pages = c.p.dec.shadow.pages;
    const r = expectProtocolError(() => c.p.dec.decode(mutate(c), false), code, ...parts);
    t.ok(r.ok, `${name}: ${r.message}`);
    t.equal(c.p.dec.shadow.pages, pages, `${name}: the backup's shadow keeps its pages`);
    t.ok(c.p.dec.shadow.get(2)!.equals(before), `${name}: and their bytes`);
  }
});

t.test('block indices out of order and a raw PAGE_DATA are refused', async (t) => {
  const p = new Pair(4);
  p.prime(all(4));
  p.page(2)[0] = 1;
  p.page(2)[200] = 1;
  const wire = p.encode(p.plain([2]));
  const rec = wire.find((b) => b.readUInt32LE(0) === XC_REC_FGBI_PAGE_DATA)!;
  rec.writeUInt16LE(3, 16 + 16); // indices [0, 3] → [3, 3]
  const r = expectProtocolError(() => p.dec.decode(wire, false), 'EBADVALUE', 'block index 3 follows 3');
  t.ok(r.ok, r.message);
  const q = new Pair(2);
  q.prime(all(2));
  const plain = q.plain(all(2));
  const r2 = expectProtocolError(() => q.dec.decode(plain, false), 'EBADSEQ', 'PAGE_DATA record in an incremental checkpoint of an fgbi stream');
  t.ok(r2.ok, r2.message);
});

t.test('a PAGE_KEEP past the agreed shadow bound is refused', async (t) => {
  const enc = new FgbiEncoder({ blockBytes: 64, shadowCapBytes: 4 * PAGE_SIZE });
  const dec = new FgbiDecoder({ blockBytes: 64, shadowCapBytes: 2 * PAGE_SIZE });
  const w = new XenStreamWriter();
  const first = [w.begin({ domainType: 0xffff0001, xenMajor: 4, xenMinor: 17 }), w.pageData(all(3), Buffer.alloc(3 * PAGE_SIZE, 1)), w.checkpoint()];
  enc.startFull();
  dec.decode(first.flatMap((c) => enc.encode(c)), true).commit();
  enc.endCheckpoint();
  const once = [w.pageData(all(3), Buffer.alloc(3 * PAGE_SIZE, 2)), w.checkpoint()];
  dec.decode(once.flatMap((c) => enc.encode(c)), false).commit();
  enc.endCheckpoint();
  const twice = [w.pageData(all(3), Buffer.alloc(3 * PAGE_SIZE, 3)), w.checkpoint()];
  const wire = twice.flatMap((c) => enc.encode(c));
  const r = expectProtocolError(() => dec.decode(wire, false), 'EBADVALUE', 'entry 2 (pfn 2)', 'past the 8192 bytes agreed');
  t.ok(r.ok, r.message);
  t.equal(dec.shadow.pages, 0);
});

