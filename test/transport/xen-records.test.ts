import t from 'tap';
import { randomBytes } from 'node:crypto';
import { encodeFrame } from '../../src/transport/framing.js';
import {
  decodeCheckpointState,
  decodeDomainHeader,
  decodeImageHeader,
  decodeLibxlHeader,
  decodePageData,
  decodeVcpuBasic,
  DOMAIN_TYPE,
  encodeCheckpointState,
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodePageDataRecord,
  encodeVcpuBasic,
  PAGE_SIZE,
  PAGE_TYPE,
  XC_REC,
  XL_REC,
} from '../../src/transport/xen-records.js';
import { expectProtocolError } from '../helpers/protocol-error.js';

t.test('the libxl header is 16 big-endian bytes spelling LibxlFmt', async (t) => {
  const h = encodeLibxlHeader();
  t.equal(h.toString('hex'), Buffer.from('LibxlFmt').toString('hex') + '00000002' + '00000000');
  t.same(decodeLibxlHeader(h), { version: 2, options: 0 });
  const bad = Buffer.from(h);
  bad[0] = 0x6d;
  let r = expectProtocolError(() => decodeLibxlHeader(bad), 'EBADHDR', 'libxl header', 'ident', 'LibxlFmt');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeLibxlHeader(encodeLibxlHeader({ version: 3 })), 'EBADHDR', 'version 3');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeLibxlHeader(encodeLibxlHeader({ options: 1 })), 'EBADHDR', 'big-endian');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeLibxlHeader(encodeLibxlHeader({ options: 2 })), 'EBADHDR', 'legacy');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeLibxlHeader(h.subarray(0, 10)), 'ETRUNC', 'libxl header truncated', '10 of 16');
  t.ok(r.ok, r.message);
});

t.test('the image header is 24 big-endian bytes with the XENF id', async (t) => {
  const h = encodeImageHeader();
  t.equal(h.toString('hex'), 'ffffffffffffffff' + '58454e46' + '00000003' + '0000' + '0000' + '00000000');
  t.same(decodeImageHeader(h), { version: 3, options: 0 });
  t.same(decodeImageHeader(encodeImageHeader({ version: 2 })), { version: 2, options: 0 });
  const badMarker = Buffer.from(h);
  badMarker[3] = 0;
  let r = expectProtocolError(() => decodeImageHeader(badMarker), 'EBADHDR', 'image header', 'marker');
  t.ok(r.ok, r.message);
  const badId = Buffer.from(h);
  badId.writeUInt32BE(0x58454e47, 8);
  r = expectProtocolError(() => decodeImageHeader(badId), 'EBADHDR', 'id 0x58454e47', 'XENF');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeImageHeader(encodeImageHeader({ version: 4 })), 'EBADHDR', 'version 4');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeImageHeader(encodeImageHeader({ options: 1 })), 'EBADHDR', 'big-endian');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeImageHeader(h.subarray(0, 23)), 'ETRUNC', 'image header truncated');
  t.ok(r.ok, r.message);
});

t.test('the domain header is 16 little-endian bytes', async (t) => {
  const h = encodeDomainHeader({ type: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 });
  t.equal(h.toString('hex'), '0100ffff' + '0c00' + '0000' + '04000000' + '11000000');
  t.same(decodeDomainHeader(h), { type: DOMAIN_TYPE.XLHA_SIM, pageShift: 12, xenMajor: 4, xenMinor: 17 });
  let r = expectProtocolError(
    () => decodeDomainHeader(encodeDomainHeader({ type: 7, xenMajor: 4, xenMinor: 1 })),
    'EBADHDR',
    'guest type 0x00000007 is unknown',
  );
  t.ok(r.ok, r.message);
  r = expectProtocolError(
    () => decodeDomainHeader(encodeDomainHeader({ type: 1, pageShift: 16, xenMajor: 4, xenMinor: 1 })),
    'EBADHDR',
    'page_shift 16',
  );
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeDomainHeader(h.subarray(0, 4)), 'ETRUNC', 'domain header truncated');
  t.ok(r.ok, r.message);
});

t.test('PAGE_DATA round-trips with page types and puts the type in bits 63..60', async (t) => {
  const pfns = [0, 1, 0x12345, 2 ** 52 - 1, 7];
  const types = [PAGE_TYPE.NOTAB, PAGE_TYPE.XTAB, PAGE_TYPE.L1TAB | PAGE_TYPE.LPINTAB, PAGE_TYPE.NOTAB, PAGE_TYPE.XALLOC];
  const data = randomBytes(3 * PAGE_SIZE); // entries 0, 2 and 3 carry data
  const body = encodePageData({ pfns, types, data });
  t.equal(body.length, 8 + 8 * 5 + 3 * PAGE_SIZE);
  t.equal(body.readUInt32LE(0), 5);
  t.equal(body.readUInt32LE(4), 0, 'reserved is zero');
  t.equal(body.readBigUInt64LE(8 + 8), 0xf000_0000_0000_0001n, 'XTAB entry');
  t.equal(body.readBigUInt64LE(8 + 16), 0x9000_0000_0001_2345n, 'pinned L1 entry');
  t.equal(body.readBigUInt64LE(8 + 24), 0x000f_ffff_ffff_ffffn, 'largest pfn');
  const dec = decodePageData(body);
  t.same(dec.entries, pfns.map((pfn, i) => ({ pfn, type: types[i] })));
  t.same(dec.data, data);
  t.equal(dec.data.buffer, body.buffer, 'page data is a view, not a copy');

  const rec = encodePageDataRecord({ pfns, types, data });
  t.same(rec, encodeFrame(XC_REC.PAGE_DATA, body), 'the record form equals the framed body');
  const viaProvider = encodePageDataRecord({
    pfns,
    types,
    data: (i) => data.subarray([0, -1, 1, 2, -1][i]! * PAGE_SIZE, ([0, -1, 1, 2, -1][i]! + 1) * PAGE_SIZE),
  });
  t.same(viaProvider, rec, 'a page provider yields the same bytes');
});

t.test('PAGE_DATA decoding names what is wrong', async (t) => {
  const good = encodePageData({ pfns: [1, 2], data: Buffer.alloc(2 * PAGE_SIZE) });
  const cases: [string, Buffer, string, string[]][] = [
    ['short header', good.subarray(0, 4), 'ETRUNC', ['PAGE_DATA record', 'shorter than its 8-byte header']],
    ['count 0', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), 'EBADVALUE', ['PAGE_DATA record: count 0']],
    [
      'count 2000',
      (() => {
        const b = Buffer.alloc(8 + 2000 * 8);
        b.writeUInt32LE(2000, 0);
        return b;
      })(),
      'EBADVALUE',
      ['PAGE_DATA record: count 2000 exceeds 1024'],
    ],
    ['entries cut', good.subarray(0, 20), 'EBADLEN', ['too short for 2 pfn entries']],
    ['data short', good.subarray(0, good.length - 8), 'EBADLEN', ['does not match count 2', 'expected 8216']],
    ['data long', Buffer.concat([good, Buffer.alloc(8)]), 'EBADLEN', ['length 8224 does not match']],
    [
      'invalid type',
      (() => {
        const b = Buffer.from(good);
        b.writeUInt32LE(0x5000_0000, 8 + 8 + 4);
        return b;
      })(),
      'EBADVALUE',
      ['entry 1 (pfn 0x2) has invalid page type 0x5'],
    ],
  ];
  for (const [name, body, code, parts] of cases) {
    const r = expectProtocolError(() => decodePageData(body), code, ...parts);
    t.ok(r.ok, `${name}: ${r.message}`);
  }
  t.throws(() => encodePageData({ pfns: [], data: Buffer.alloc(0) }), RangeError);
  t.throws(() => encodePageData({ pfns: [1], data: Buffer.alloc(10) }), RangeError);
  t.throws(() => encodePageData({ pfns: [1], types: [6], data: Buffer.alloc(PAGE_SIZE) }), RangeError);
});

t.test('X86_PV_VCPU_BASIC and CHECKPOINT_STATE round-trip', async (t) => {
  const ctx = randomBytes(100);
  const body = encodeVcpuBasic(3, ctx);
  t.equal(body.readUInt32LE(0), 3);
  t.equal(body.readUInt32LE(4), 0);
  const v = decodeVcpuBasic(body);
  t.equal(v.id, 3);
  t.same(v.context, ctx);
  let r = expectProtocolError(() => decodeVcpuBasic(body.subarray(0, 6)), 'ETRUNC', 'X86_PV_VCPU_BASIC', '6 bytes');
  t.ok(r.ok, r.message);

  for (let s = 0; s <= 3; s++) t.equal(decodeCheckpointState(encodeCheckpointState(s)), s);
  t.equal(encodeFrame(XL_REC.CHECKPOINT_STATE, encodeCheckpointState(2)).length, 16, 'a 4-byte body is padded to 8');
  r = expectProtocolError(() => decodeCheckpointState(encodeCheckpointState(9)), 'EBADVALUE', 'CHECKPOINT_STATE', 'state 9');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeCheckpointState(Buffer.alloc(8)), 'EBADLEN', 'CHECKPOINT_STATE', '8 bytes, expected 4');
  t.ok(r.ok, r.message);
});
