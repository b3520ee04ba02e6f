import t from 'tap';
import { encodeFrame, ProtocolError } from '../../src/transport/framing.js';
import {
  CHECKPOINT_STATE,
  DOMAIN_TYPE,
  encodeCheckpointState,
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxlHeader,
  encodePageData,
  PAGE_SIZE,
  PAGE_TYPE,
  XC_REC,
  XL_REC,
} from '../../src/transport/xen-records.js';
import { XenStreamParser, XenStreamWriter } from '../../src/transport/xenstream.js';

const SOME_RECORDS = 16;
import { expectProtocolError } from '../helpers/protocol-error.js';

const EMPTY = Buffer.alloc(0);
const rec = (type: number, body: Uint8Array = EMPTY): Buffer => encodeFrame(type, body);

/** A page whose bytes identify it: every byte is (pfn + salt) & 0xff. */
function page(pfn: number, salt = 0): Buffer {
  return Buffer.alloc(PAGE_SIZE, (pfn + salt) & 0xff);
}

function pagesOf(pfns: number[], salt = 0): Buffer {
  return Buffer.concat(pfns.map((p) => page(p, salt)));
}

/** Bytes of a first checkpoint and a later one, made by the writer. */
function sampleStream(): { w: XenStreamWriter; first: Buffer; second: Buffer } {
  const w = new XenStreamWriter();
  const first = Buffer.concat([
    w.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 }),
    w.pageData([0, 1, 2, 3], pagesOf([0, 1, 2, 3])),
    w.vcpuBasic(0, Buffer.alloc(64, 7)),
    w.checkpoint(),
  ]);
  const second = Buffer.concat([w.pageData([2, 5], pagesOf([2, 5], 100)), w.vcpuBasic(0, Buffer.alloc(64, 8)), w.checkpoint()]);
  return { w, first, second };
}

/** The libxc CHECKPOINT + libxl CHECKPOINT_END tail, raw. */
const CP_TAIL = Buffer.concat([rec(XC_REC.CHECKPOINT), rec(XL_REC.CHECKPOINT_END)]);

/** A parser that has accepted the first sample checkpoint. */
function startedParser(): XenStreamParser {
  const p = new XenStreamParser();
  p.parseCheckpoint(sampleStream().first);
  return p;
}


t.test('the writer lays out the stream headers as a checkpointed save sends them', async (t) => {
  const w = new XenStreamWriter();
  const h = w.begin({ domainType: DOMAIN_TYPE.X86_HVM, xenMajor: 4, xenMinor: 19 });
  t.equal(h.length, 16 + 8 + 24 + 16 + 8);
  t.same(h.subarray(0, 16), encodeLibxlHeader(), 'libxl header');
  t.same(h.subarray(16, 24), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]), 'LIBXC_CONTEXT, length 0');
  t.same(h.subarray(24, 48), encodeImageHeader(), 'image header v3');
  t.same(h.subarray(48, 64), encodeDomainHeader({ type: DOMAIN_TYPE.X86_HVM, xenMajor: 4, xenMinor: 19 }), 'domain header');
  t.same(h.subarray(64, 72), Buffer.from([0x10, 0, 0, 0, 0, 0, 0, 0]), 'STATIC_DATA_END');
  t.same(w.checkpoint(), CP_TAIL, 'CHECKPOINT then CHECKPOINT_END');
  t.same(w.end(), Buffer.concat([rec(XC_REC.END), rec(XL_REC.END)]), 'END then END');

  const v2 = new XenStreamWriter().begin({ domainType: DOMAIN_TYPE.X86_PV, xenMajor: 4, xenMinor: 6, imageVersion: 2 });
  t.equal(v2.length, 64, 'a version 2 image has no STATIC_DATA_END');
  t.equal(v2.readUInt32BE(36), 2);
});

t.test('the writer splits page data into records of at most 1024 pages', async (t) => {
  const w = new XenStreamWriter();
  w.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 });
  const pfns = Array.from({ length: 2500 }, (_, i) => i * 3);
  const recs = w.pageDataRecords(pfns, (i) => page(pfns[i]!));
  t.same(recs.map((r) => r.readUInt32LE(8)), [1024, 1024, 452]);
  t.same(Buffer.concat(recs), w.pageData(pfns, pagesOf(pfns)), 'provider and contiguous bytes give the same records');
  t.throws(() => w.pageData([1, 2], Buffer.alloc(PAGE_SIZE)), RangeError);
  t.throws(() => w.pageData([1], Buffer.alloc(2 * PAGE_SIZE)), RangeError);
  t.throws(() => new XenStreamWriter().pageData([1], page(1)), /begin\(\) has not been called/);
  w.end();
  t.throws(() => w.checkpoint(), /the stream has ended/);
});

t.test('checkpoints round-trip through the writer and the parser', async (t) => {
  const { w, first, second } = sampleStream();
  const p = new XenStreamParser();
  const a = p.parseCheckpoint(first);
  t.equal(a.first, true);
  t.equal(a.index, 0);
  t.same(a.libxlHeader, { version: 2, options: 0 });
  t.same(a.imageHeader, { version: 3, options: 0 });
  t.same(a.domainHeader, { type: DOMAIN_TYPE.XLHA_SIM, pageShift: 12, xenMajor: 4, xenMinor: 17 });
  t.same(a.pages.map((x) => x.pfn), [0, 1, 2, 3]);
  for (const pg of a.pages) t.ok(pg.data.equals(page(pg.pfn)), `page ${pg.pfn} data`);
  t.equal(a.pages[0]!.data.buffer, first.buffer, 'page data is a view of the input');
  t.same(a.vcpus, [{ id: 0, context: Buffer.alloc(64, 7) }]);
  // LIBXC_CONTEXT, STATIC_DATA_END, PAGE_DATA, VCPU, CHECKPOINT, CHECKPOINT_END
  t.equal(a.records, 6);
  t.equal(a.ended, false);
  t.same(p.headers?.domain.type, DOMAIN_TYPE.XLHA_SIM);

  const b = p.parseCheckpoint(second);
  t.equal(b.first, false);
  t.equal(b.index, 1);
  t.equal(b.imageHeader, undefined);
  t.same(b.pages.map((x) => [x.pfn, x.data[0]]), [
    [2, 102],
    [5, 105],
  ]);
  t.equal(b.records, 4);

  const big = Array.from({ length: 1500 }, (_, i) => 1500 - i);
  const c = p.parseCheckpoint(
    Buffer.concat([w.pageData(big, (i) => page(big[i]!, 1)), w.checkpoint({ checkpointState: CHECKPOINT_STATE.SVM_READY })]),
  );
  t.equal(c.pages.length, 1500);
  t.ok(c.pages.every((x, i) => x.pfn === big[i] && x.data[0] === ((x.pfn + 1) & 0xff)), 'pages in stream order');
  t.equal(c.checkpointState, CHECKPOINT_STATE.SVM_READY);

  const d = p.parseCheckpoint(Buffer.concat([w.pageData([9], page(9)), w.end()]));
  t.equal(d.ended, true);
  t.equal(d.pages.length, 1);
  t.equal(p.streamEnded, true);
  t.equal(p.checkpointsParsed, 4);
  const r = expectProtocolError(() => p.parseCheckpoint(CP_TAIL), 'EBADSEQ', 'after the end of the stream');
  t.ok(r.ok, r.message);
});

t.test('a whole migration in one unit (headers, pages, END, END) parses as ended', async (t) => {
  const w = new XenStreamWriter();
  const bytes = Buffer.concat([w.begin({ domainType: DOMAIN_TYPE.X86_PV, xenMajor: 4, xenMinor: 6, imageVersion: 2 }), w.pageData([1], page(1)), w.end()]);
  const res = new XenStreamParser().parseCheckpoint(bytes);
  t.equal(res.first, true);
  t.equal(res.ended, true);
  t.equal(res.imageHeader?.version, 2);
});

t.test('page types without data yield empty buffers and repeated pfns keep stream order', async (t) => {
  const w = new XenStreamWriter();
  w.begin({ domainType: DOMAIN_TYPE.X86_PV, xenMajor: 4, xenMinor: 17 });
  const p = startedParser();
  const types = [PAGE_TYPE.NOTAB, PAGE_TYPE.XTAB, PAGE_TYPE.L2TAB, PAGE_TYPE.BROKEN, PAGE_TYPE.XALLOC, PAGE_TYPE.NOTAB];
  const pfns = [10, 11, 12, 13, 14, 10];
  const bytes = Buffer.concat([w.pageData(pfns, Buffer.concat([page(10), page(12), page(10, 1)]), types), w.checkpoint()]);
  const res = p.parseCheckpoint(bytes);
  t.same(
    res.pages.map((x) => [x.pfn, x.type, x.data.length]),
    [
      [10, 0, PAGE_SIZE],
      [11, 0xf, 0],
      [12, 2, PAGE_SIZE],
      [13, 0xd, 0],
      [14, 0xe, 0],
      [10, 0, PAGE_SIZE],
    ],
  );
  t.equal(res.pages[5]!.data[0], 11, 'the later copy of pfn 10 is the second one');
});

t.test('unknown optional records are skipped at both layers', async (t) => {
  const p = startedParser();
  const res = p.parseCheckpoint(
    Buffer.concat([
      rec(0x8000_0013, Buffer.from('future')),
      rec(XC_REC.HVM_CONTEXT, Buffer.alloc(16, 1)),
      rec(XC_REC.CHECKPOINT),
      rec(0x8000_0006, Buffer.alloc(3)),
      rec(XL_REC.EMULATOR_CONTEXT, Buffer.alloc(8, 2)),
      rec(XL_REC.CHECKPOINT_END),
    ]),
  );
  t.equal(res.skipped, 2);
  t.equal(res.records, 6);
  t.same(
    res.others.map((o) => [o.layer, o.type, o.body.length]),
    [
      ['libxc', XC_REC.HVM_CONTEXT, 16],
      ['libxl', XL_REC.EMULATOR_CONTEXT, 8],
    ],
  );
});

t.test('every truncation of a checkpoint is rejected as truncated', async (t) => {
  const { first, second } = sampleStream();
  const fresh = new XenStreamParser();
  let bad = 0;
  for (let n = 0; n < first.length; n += n < 200 ? 1 : 97) {
    const r = expectProtocolError(() => fresh.parseCheckpoint(first.subarray(0, n)), 'ETRUNC');
    if (!r.ok) {
      bad++;
      t.fail(`first checkpoint cut at ${n}: ${r.message}`);
    }
  }
  const p = startedParser();
  for (let n = 0; n < second.length; n += n < 200 || n > second.length - 100 ? 1 : 89) {
    const r = expectProtocolError(() => p.parseCheckpoint(second.subarray(0, n)), 'ETRUNC');
    if (!r.ok) {
      bad++;
      t.fail(`later checkpoint cut at ${n}: ${r.message}`);
    }
  }
  t.equal(bad, 0, 'all cuts rejected with ETRUNC');
  t.equal(fresh.parseCheckpoint(first).first, true, 'the fresh parser still takes the whole first checkpoint');
  t.equal(p.parseCheckpoint(second).index, 1, 'the started parser still takes the whole later checkpoint');

  const r = expectProtocolError(() => p.parseCheckpoint(second.subarray(0, 8 + 8 + 16 + 100)), 'ETRUNC', 'libxc PAGE_DATA record of length', 'truncated');
  t.ok(r.ok, r.message);
  const r2 = expectProtocolError(() => p.parseCheckpoint(rec(XC_REC.CHECKPOINT)), 'ETRUNC', 'before the libxl CHECKPOINT_END');
  t.ok(r2.ok, r2.message);
  const r3 = expectProtocolError(() => p.parseCheckpoint(EMPTY), 'ETRUNC', 'before the libxc CHECKPOINT');
  t.ok(r3.ok, r3.message);
});

t.test('malformed checkpoints are rejected with errors naming the problem', async (t) => {
  const pageRec = (count: number, pages: number): Buffer => {
    const body = encodePageData({ pfns: Array.from({ length: count }, (_, i) => i), data: Buffer.alloc(count * PAGE_SIZE) });
    return rec(XC_REC.PAGE_DATA, body.subarray(0, 8 + 8 * count + pages * PAGE_SIZE));
  };
  const cases: [string, Buffer, string, string[]][] = [
    ['trailing bytes', Buffer.concat([CP_TAIL, Buffer.alloc(8)]), 'ETRAILING', ['8 trailing byte(s) after libxl CHECKPOINT_END']],
    ['PAGE_DATA short of data', Buffer.concat([pageRec(2, 1), CP_TAIL]), 'EBADLEN', ['PAGE_DATA record', 'does not match count 2']],
    [
      'PAGE_DATA count too big',
      (() => {
        const b = Buffer.alloc(16);
        b.writeUInt32LE(2000, 0);
        return Buffer.concat([rec(XC_REC.PAGE_DATA, b), CP_TAIL]);
      })(),
      'EBADVALUE',
      ['PAGE_DATA record: count 2000 exceeds 1024'],
    ],
    ['unknown mandatory libxc', Buffer.concat([rec(0x13), CP_TAIL]), 'EBADTYPE', ['unknown mandatory libxc record type 0x00000013']],
    [
      'unknown mandatory libxl',
      Buffer.concat([rec(XC_REC.CHECKPOINT), rec(6), rec(XL_REC.CHECKPOINT_END)]),
      'EBADTYPE',
      ['unknown mandatory libxl record type 0x00000006'],
    ],
    [
      'END instead of CHECKPOINT_END',
      Buffer.concat([rec(XC_REC.CHECKPOINT), rec(XL_REC.END)]),
      'EBADSEQ',
      ['libxl END after libxc CHECKPOINT (expected CHECKPOINT_END)'],
    ],
    [
      'CHECKPOINT_END after END',
      Buffer.concat([rec(XC_REC.END), rec(XL_REC.CHECKPOINT_END)]),
      'EBADSEQ',
      ['libxl CHECKPOINT_END after libxc END (expected END)'],
    ],
    [
      'non-empty CHECKPOINT',
      Buffer.concat([rec(XC_REC.CHECKPOINT, Buffer.alloc(8)), rec(XL_REC.CHECKPOINT_END)]),
      'EBADLEN',
      ['libxc CHECKPOINT record has length 8, expected 0'],
    ],
    [
      'non-empty CHECKPOINT_END',
      Buffer.concat([rec(XC_REC.CHECKPOINT), rec(XL_REC.CHECKPOINT_END, Buffer.alloc(1))]),
      'EBADLEN',
      ['libxl CHECKPOINT_END record has length 1, expected 0'],
    ],
    [
      'second LIBXC_CONTEXT',
      Buffer.concat([rec(XC_REC.CHECKPOINT), rec(XL_REC.LIBXC_CONTEXT), rec(XL_REC.CHECKPOINT_END)]),
      'EBADSEQ',
      ['LIBXC_CONTEXT may only appear once'],
    ],
    ['second STATIC_DATA_END', Buffer.concat([rec(XC_REC.STATIC_DATA_END), CP_TAIL]), 'EBADSEQ', ['STATIC_DATA_END received twice']],
    [
      'bad CHECKPOINT_STATE',
      Buffer.concat([rec(XC_REC.CHECKPOINT), rec(XL_REC.CHECKPOINT_STATE, encodeCheckpointState(7)), rec(XL_REC.CHECKPOINT_END)]),
      'EBADVALUE',
      ['CHECKPOINT_STATE record: state 7 is unknown'],
    ],
    [
      'short VCPU_BASIC',
      Buffer.concat([rec(XC_REC.X86_PV_VCPU_BASIC, Buffer.alloc(4)), CP_TAIL]),
      'ETRUNC',
      ['X86_PV_VCPU_BASIC record', '4 bytes'],
    ],
    [
      'odd dirty pfn list',
      Buffer.concat([rec(XC_REC.CHECKPOINT_DIRTY_PFN_LIST, Buffer.alloc(12)), CP_TAIL]),
      'EBADLEN',
      ['CHECKPOINT_DIRTY_PFN_LIST record has length 12, not a multiple of 8'],
    ],
    ['repeated headers', sampleStream().first, 'EBADSEQ', ['libxl header repeated']],
  ];
  const p = startedParser();
  const { second } = sampleStream();
  for (const [name, bytes, code, parts] of cases) {
    const r = expectProtocolError(() => p.parseCheckpoint(bytes), code, 'Xen stream checkpoint 1, byte', ...parts);
    t.ok(r.ok, `${name}: ${r.message}`);
  }
  t.equal(p.checkpointsParsed, 1, 'no rejected checkpoint was counted');
  const ok = p.parseCheckpoint(second);
  t.equal(ok.index, 1, 'a rejected checkpoint leaves the parser usable for the next good one');
  t.equal(ok.pages.length, 2);
});

t.test('errors give the byte offset of the offending record', async (t) => {
  const p = startedParser();
  const bytes = Buffer.concat([rec(XC_REC.HVM_PARAMS, Buffer.alloc(16)), rec(0x55), CP_TAIL]);
  const r = expectProtocolError(() => p.parseCheckpoint(bytes), 'EBADTYPE', 'checkpoint 1, byte 24:', '0x00000055');
  t.ok(r.ok, r.message);
});

t.test('the first checkpoint must carry valid headers in order', async (t) => {
  const libxl = encodeLibxlHeader();
  const ctx = rec(XL_REC.LIBXC_CONTEXT);
  const img3 = encodeImageHeader();
  const img2 = encodeImageHeader({ version: 2 });
  const dom = encodeDomainHeader({ type: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 });
  const sde = rec(XC_REC.STATIC_DATA_END);
  const pages = rec(XC_REC.PAGE_DATA, encodePageData({ pfns: [1], data: page(1) }));
  const cases: [string, Buffer, string, string[]][] = [
    ['bad libxl ident', Buffer.concat([Buffer.from('NotLibxl'), libxl.subarray(8), ctx, img3, dom, sde, CP_TAIL]), 'EBADHDR', ['libxl header: ident']],
    [
      'missing LIBXC_CONTEXT',
      Buffer.concat([libxl, rec(XL_REC.EMULATOR_CONTEXT), img3, dom, sde, CP_TAIL]),
      'EBADSEQ',
      ['expected libxl LIBXC_CONTEXT after the libxl header, found EMULATOR_CONTEXT'],
    ],
    [
      'non-empty LIBXC_CONTEXT',
      Buffer.concat([libxl, rec(XL_REC.LIBXC_CONTEXT, Buffer.alloc(8)), img3, dom, sde, CP_TAIL]),
      'EBADLEN',
      ['libxl LIBXC_CONTEXT record has length 8, expected 0'],
    ],
    ['bad image header', Buffer.concat([libxl, ctx, encodeImageHeader({ version: 9 }), dom, sde, CP_TAIL]), 'EBADHDR', ['byte 24:', 'image header: version 9']],
    [
      'bad domain header',
      Buffer.concat([libxl, ctx, img3, encodeDomainHeader({ type: 9, xenMajor: 4, xenMinor: 1 }), sde, CP_TAIL]),
      'EBADHDR',
      ['byte 48:', 'domain header: guest type 0x00000009'],
    ],
    ['v3 pages before STATIC_DATA_END', Buffer.concat([libxl, ctx, img3, dom, pages, sde, CP_TAIL]), 'EBADSEQ', ['PAGE_DATA before STATIC_DATA_END']],
    ['v3 without STATIC_DATA_END', Buffer.concat([libxl, ctx, img3, dom, CP_TAIL]), 'EBADSEQ', ['CHECKPOINT before STATIC_DATA_END']],
    ['v2 with STATIC_DATA_END', Buffer.concat([libxl, ctx, img2, dom, sde, CP_TAIL]), 'EBADSEQ', ['STATIC_DATA_END in a version 2 stream']],
  ];
  const p = new XenStreamParser();
  for (const [name, bytes, code, parts] of cases) {
    const r = expectProtocolError(() => p.parseCheckpoint(bytes), code, 'Xen stream checkpoint 0', ...parts);
    t.ok(r.ok, `${name}: ${r.message}`);
  }
  t.equal(p.headers, undefined, 'no headers were recorded by rejected first checkpoints');
  const good = p.parseCheckpoint(Buffer.concat([libxl, ctx, img2, dom, pages, CP_TAIL]));
  t.equal(good.first, true, 'after rejections the parser still expects the headers');
  t.equal(good.pages.length, 1);
});

/** `bytes` cut into parts at the given offsets (as XEN_STREAM frames arrive). */
function cutAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

t.test('a checkpoint given as the frames it came in parses as the joined bytes do, wherever the cuts fall', async (t) => {
  const { first, second } = sampleStream();
  const whole = new XenStreamParser();
  const a = whole.parseCheckpoint(first);
  const b = whole.parseCheckpoint(second);
  let bad = 0;
  for (let c = 0; c <= first.length; c += c < 120 ? 1 : 61) {
    const p = new XenStreamParser();
    const pa = p.parseCheckpoint(cutAt(first, [c, Math.min(first.length, c + 5)]));
    const pb = p.parseCheckpoint(cutAt(second, [Math.min(second.length, c)]));
    const same =
      pa.records === a.records &&
      pa.pages.length === a.pages.length &&
      pa.pages.every((pg, i) => pg.pfn === a.pages[i]!.pfn && pg.data.equals(a.pages[i]!.data)) &&
      pb.pages.every((pg, i) => pg.pfn === b.pages[i]!.pfn && pg.data.equals(b.pages[i]!.data)) &&
      pb.vcpus[0]!.context.equals(b.vcpus[0]!.context);
    if (!same) {
      bad++;
      t.fail(`cut at ${c} parses differently`);
    }
  }
  t.equal(bad, 0, 'every cut gives the same pages, vCPUs and record count');
  // truncation and the byte offset of an error do not depend on the cuts either
  const p = startedParser();
  const trunc = expectProtocolError(() => p.parseCheckpoint(cutAt(second.subarray(0, 8 + 8 + 16 + 100), [3, 40])), 'ETRUNC', 'checkpoint 1, byte 0:', 'libxc PAGE_DATA record of length');
  t.ok(trunc.ok, trunc.message);
  const bytes = Buffer.concat([rec(XC_REC.HVM_PARAMS, Buffer.alloc(16)), rec(0x55), CP_TAIL]);
  const r = expectProtocolError(() => p.parseCheckpoint(cutAt(bytes, [10, 26])), 'EBADTYPE', 'checkpoint 1, byte 24:', '0x00000055');
  t.ok(r.ok, r.message);
  t.equal(p.parseCheckpoint([second.subarray(0, 0), second, Buffer.alloc(0)]).index, 1, 'empty parts are nothing');
});

t.test('without listing pages the parser checks every record the same way', async (t) => {
  const { first, second } = sampleStream();
  const p = new XenStreamParser();
  const a = p.parseCheckpoint(first, { pages: false });
  t.equal(a.pages.length, 0, 'no pages listed');
  t.equal(a.records, new XenStreamParser().parseCheckpoint(first).records, 'the same records');
  t.equal(a.vcpus.length, 1, 'vCPUs are still decoded');
  const badType = Buffer.from(second);
  badType.writeUInt32LE((0x6000_0000 | badType.readUInt32LE(16 + 4)) >>> 0, 16 + 4); // entry 0 of the PAGE_DATA: type 6 (invalid)
  const r = expectProtocolError(() => p.parseCheckpoint(badType, { pages: false }), 'EBADVALUE', 'invalid page type 0x6');
  t.ok(r.ok, r.message);
  const short = Buffer.concat([rec(XC_REC.PAGE_DATA, encodePageData({ pfns: [1, 2], data: pagesOf([1, 2]) }).subarray(0, 8 + 16 + PAGE_SIZE)), CP_TAIL]);
  const r2 = expectProtocolError(() => p.parseCheckpoint(short, { pages: false }), 'EBADLEN', 'does not match count 2');
  t.ok(r2.ok, r2.message);
  t.equal(p.parseCheckpoint(second, { pages: false }).index, 1, 'the next good checkpoint is taken');
});

t.test('parseCheckpointAsync lets the event loop turn when its slice of time is spent (here 0 ms: at every record), and parses as parseCheckpoint does', async (t) => {
  const w = new XenStreamWriter();
  const records = 8 * SOME_RECORDS;
  const parts = [w.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 })];
  for (let i = 0; i < records; i++) parts.push(w.pageData([i], page(i)));
  parts.push(w.vcpuBasic(0, Buffer.alloc(64, 7)), w.checkpoint());
  let turns = 0;
  const tick = () => {
    turns++;
    if (!done) setImmediate(tick);
  };
  let done = false;
  setImmediate(tick);
  const parsing = new XenStreamParser().parseCheckpointAsync(parts, {}, 0);
  const res = await parsing;
  done = true;
  t.ok(turns >= records - 1, `the loop turned ${turns} times during the parse of ${records} records`);
  const sync = new XenStreamParser().parseCheckpoint(parts);
  t.equal(res.pages.length, records);
  t.same(res.pages.map((p) => p.pfn), sync.pages.map((p) => p.pfn), 'the same pages');
  t.equal(res.records, sync.records);
  t.equal(res.vcpus.length, 1);
});

t.test('parseCheckpointAsync leaves the parser as it was when the checkpoint is refused', async (t) => {
  const w = new XenStreamWriter();
  const parts = [w.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 })];
  for (let i = 0; i < 3 * SOME_RECORDS; i++) parts.push(w.pageData([i], page(i)));
  const p = new XenStreamParser();
  await t.rejects(p.parseCheckpointAsync(parts), { code: 'ETRUNC' }, 'no CHECKPOINT record: truncated');
  t.equal(p.checkpointsParsed, 0);
  t.notOk(p.headers, 'the headers were not taken');
  parts.push(w.vcpuBasic(0, Buffer.alloc(64, 7)), w.checkpoint());
  t.equal((await p.parseCheckpointAsync(parts)).first, true, 'the same checkpoint, whole, is the first');
});
