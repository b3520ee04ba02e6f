import t from 'tap';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import {
  BODY_BYTES,
  CheckpointDigest,
  decodeAck,
  decodeChannelFrame,
  decodeCheckpointState,
  decodeDiskWrites,
  decodeDomainHeader,
  decodeGoodbye,
  decodeHeartbeat,
  decodeHello,
  decodeHelloAck,
  decodeImageHeader,
  decodeLibxlHeader,
  decodeNack,
  decodePageData,
  decodeSeal,
  decodeVcpuBasic,
  DOMAIN_TYPE,
  encodeAck,
  encodeCheckpointState,
  encodeDiskWrites,
  encodeDomainHeader,
  encodeFrame,
  encodeFrameParts,
  encodeFrames,
  encodeGoodbye,
  encodeHeartbeat,
  encodeHello,
  encodeHelloAck,
  encodeImageHeader,
  encodeLibxlHeader,
  encodeNack,
  encodePageData,
  encodePageDataRecord,
  encodeSeal,
  encodeVcpuBasic,
  isContentFrame,
  PAGE_SIZE,
  PAGE_TYPE,
  ProtocolError,
  recordTypeName,
  XC_REC,
  XL_REC,
  XLHA_REC,
  frameParts,
  type Frame,
} from '../../src/transport/records.js';
import { FrameReader, FrameReaderError } from '../../src/transport/reader.js';
import { expectProtocolError } from '../helpers/protocol-error.js';

/** Deterministic PRNG (mulberry32) so random chunkings are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}


t.test('frames are padded with zeros to a multiple of 8 bytes', async (t) => {
  for (let len = 0; len <= 17; len++) {
    const body = Buffer.alloc(len, 0xab);
    const f = encodeFrame(XLHA_REC.GOODBYE, body);
    t.equal(f.length, 8 + Math.ceil(len / 8) * 8, `length for body ${len}`);
    t.equal(f.readUInt32LE(0), XLHA_REC.GOODBYE);
    t.equal(f.readUInt32LE(4), len);
    t.same(f.subarray(8, 8 + len), body);
    t.ok(f.subarray(8 + len).every((b) => b === 0), `padding is zero for body ${len}`);
    t.same(Buffer.concat(encodeFrameParts(XLHA_REC.GOODBYE, body)), f, `parts match for body ${len}`);
  }
  const two = encodeFrames([
    { type: XLHA_REC.GOODBYE, body: Buffer.from('abc') },
    { type: XLHA_REC.HELLO, body: Buffer.from('{}') },
  ]);
  t.same(two, Buffer.concat([encodeFrame(XLHA_REC.GOODBYE, Buffer.from('abc')), encodeFrame(XLHA_REC.HELLO, Buffer.from('{}'))]));
});

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

t.test('HELLO and HELLO_ACK carry JSON objects and reject anything else', async (t) => {
  const hello = { version: 1, node: 'a', caps: ['disk'] };
  t.same(decodeHello(encodeHello(hello)), hello);
  t.same(decodeHelloAck(encodeHelloAck({ ok: true })), { ok: true });
  const bad: [string, Buffer, string][] = [
    ['array', Buffer.from('[1,2]'), 'HELLO body must be a JSON object, got an array'],
    ['null', Buffer.from('null'), 'got null'],
    ['number', Buffer.from('42'), 'got a number'],
    ['string', Buffer.from('"x"'), 'got a string'],
  ];
  for (const [name, body, part] of bad) {
    const r = expectProtocolError(() => decodeHello(body), 'EBADVALUE', part);
    t.ok(r.ok, `${name}: ${r.message}`);
  }
  let r = expectProtocolError(() => decodeHello(Buffer.from('{"a":')), 'EBADVALUE', 'HELLO body is not valid JSON');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeHelloAck(Buffer.from([0x7b, 0xff, 0x7d])), 'EBADVALUE', 'HELLO_ACK body is not valid UTF-8');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeHelloAck(Buffer.from('[]')), 'EBADVALUE', 'HELLO_ACK body must be a JSON object');
  t.ok(r.ok, r.message);
});

t.test('GOODBYE carries a UTF-8 reason', async (t) => {
  t.equal(decodeGoodbye(encodeGoodbye('operator stopped protection ✓')), 'operator stopped protection ✓');
  t.equal(decodeGoodbye(Buffer.alloc(0)), '');
  const r = expectProtocolError(() => decodeGoodbye(Buffer.from([0xc3])), 'EBADVALUE', 'GOODBYE reason is not valid UTF-8');
  t.ok(r.ok, r.message);
});

t.test('CHECKPOINT_SEAL has a fixed 32-byte layout and round-trips', async (t) => {
  const seal = { epoch: 2 ** 40 + 5, contentBytes: 123456789012, contentFrames: 17, flags: 0, crc32: 0xdeadbeef };
  const body = encodeSeal(seal);
  t.equal(body.length, 32);
  t.equal(body.readBigUInt64LE(0), BigInt(seal.epoch));
  t.equal(body.readBigUInt64LE(8), BigInt(seal.contentBytes));
  t.equal(body.readUInt32LE(16), 17);
  t.equal(body.readUInt32LE(20), 0);
  t.equal(body.readUInt32LE(24), 0xdeadbeef);
  t.equal(body.readUInt32LE(28), 0, 'reserved');
  t.same(decodeSeal(body), seal);
  t.throws(() => encodeSeal({ ...seal, crc32: 2 ** 32 }), /crc32/, 'a crc32 beyond 32 bits is refused');
  let r = expectProtocolError(() => decodeSeal(body.subarray(0, 20)), 'ETRUNC', 'CHECKPOINT_SEAL body is 20 bytes, expected 32');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeSeal(Buffer.concat([body, Buffer.alloc(8)])), 'EBADLEN', 'CHECKPOINT_SEAL body is 40 bytes');
  t.ok(r.ok, r.message);
  const huge = Buffer.from(body);
  huge.writeBigUInt64LE(2n ** 60n, 0);
  r = expectProtocolError(() => decodeSeal(huge), 'EBADVALUE', 'CHECKPOINT_SEAL epoch', 'exceeds 2^53-1');
  t.ok(r.ok, r.message);
});

t.test('CHECKPOINT_ACK and CHECKPOINT_NACK round-trip', async (t) => {
  const ack = encodeAck({ epoch: 9, applyMicros: 1500 });
  t.equal(ack.length, 16);
  t.same(decodeAck(ack), { epoch: 9, applyMicros: 1500 });
  t.equal(decodeAck(encodeAck({ epoch: 1, applyMicros: 1e12 })).applyMicros, 0xffff_ffff, 'applyMicros saturates');
  let r = expectProtocolError(() => decodeAck(Buffer.alloc(8)), 'ETRUNC', 'CHECKPOINT_ACK body is 8 bytes, expected 16');
  t.ok(r.ok, r.message);

  const nack = encodeNack({ epoch: 4, reason: 'sha256 mismatch' });
  t.same(decodeNack(nack), { epoch: 4, reason: 'sha256 mismatch' });
  t.same(decodeNack(encodeNack({ epoch: 0, reason: '' })), { epoch: 0, reason: '' });
  r = expectProtocolError(() => decodeNack(Buffer.alloc(7)), 'ETRUNC', 'CHECKPOINT_NACK', 'at least 8');
  t.ok(r.ok, r.message);
});

t.test('HEARTBEAT round-trips and writes "no epoch" as all ones', async (t) => {
  const hb = { seq: 77, sentAtMs: 1_700_000_000_123, lastEpoch: 12 };
  const body = encodeHeartbeat(hb);
  t.equal(body.length, 24);
  t.same(decodeHeartbeat(body), hb);
  const none = encodeHeartbeat({ seq: 0, sentAtMs: 1, lastEpoch: null });
  t.equal(none.subarray(16).toString('hex'), 'ffffffffffffffff');
  t.equal(decodeHeartbeat(none).lastEpoch, null);
  const r = expectProtocolError(() => decodeHeartbeat(Buffer.alloc(23)), 'ETRUNC', 'HEARTBEAT body is 23 bytes, expected 24');
  t.ok(r.ok, r.message);
});

t.test('DISK_WRITES round-trips with each write padded to 8 bytes', async (t) => {
  const writes = [
    { offset: 0, data: Buffer.from('hello') },
    { offset: 2 ** 40, data: randomBytes(4096) },
    { offset: 512, data: Buffer.alloc(0) },
  ];
  const body = encodeDiskWrites(writes);
  t.equal(body.length, 8 + (16 + 8) + (16 + 4096) + 16);
  t.equal(body.readUInt32LE(0), 3);
  t.same(body.subarray(8 + 16 + 5, 8 + 16 + 8), Buffer.alloc(3), 'padding after a 5-byte write is zero');
  t.same(decodeDiskWrites(body), writes);
  t.same(decodeDiskWrites(encodeDiskWrites([])), []);

  let r = expectProtocolError(() => decodeDiskWrites(body.subarray(0, 4)), 'ETRUNC', 'DISK_WRITES body is 4 bytes');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeDiskWrites(body.subarray(0, 8 + 24 + 100)), 'ETRUNC', 'DISK_WRITES: write 1 of 3 (length 4096)', 'runs past the end');
  t.ok(r.ok, r.message);
  r = expectProtocolError(() => decodeDiskWrites(Buffer.concat([body, Buffer.alloc(8)])), 'ETRAILING', 'DISK_WRITES: 8 trailing bytes');
  t.ok(r.ok, r.message);
  const lying = Buffer.from(body);
  lying.writeUInt32LE(1_000_000, 0);
  r = expectProtocolError(() => decodeDiskWrites(lying), 'EBADLEN', 'count 1000000 cannot fit');
  t.ok(r.ok, r.message);
});

t.test('the checkpoint digest produces seals that verify and rejects torn or corrupt content', async (t) => {
  const bodies = [randomBytes(100), randomBytes(9000), Buffer.alloc(0)];
  const tx = new CheckpointDigest();
  for (const b of bodies) tx.update(b);
  const seal = tx.seal(5);
  t.equal(seal.contentBytes, 9100);
  t.equal(seal.contentFrames, 3);
  t.equal(seal.crc32, crc32(Buffer.concat(bodies)), 'CRC-32 of the bodies, as one');
  t.equal(tx.contentBytes, 0, 'sealing resets the accumulator');
  const wire = decodeSeal(encodeSeal(seal));

  const rx = new CheckpointDigest();
  for (const b of bodies) rx.update(b);
  t.doesNotThrow(() => rx.verify(wire));

  rx.update(bodies[0]!);
  let r = expectProtocolError(() => rx.verify(wire), 'EBADLEN', 'checkpoint 5', 'announces 3 content frame(s), received 1');
  t.ok(r.ok, r.message);
  rx.update(bodies[0]!);
  rx.update(bodies[1]!);
  rx.update(Buffer.alloc(5));
  r = expectProtocolError(() => rx.verify(wire), 'EBADLEN', 'seal announces 9100 content bytes, received 9105');
  t.ok(r.ok, r.message);
  const corrupt = bodies.map((b) => Buffer.from(b));
  corrupt[1]![10]! ^= 1;
  for (const b of corrupt) rx.update(b);
  r = expectProtocolError(() => rx.verify(wire), 'ECHECKSUM', 'checkpoint 5: crc32 mismatch');
  t.ok(r.ok, r.message);
});

t.test('channel frames decode by type and unknown types are named in hex', async (t) => {
  t.equal(decodeChannelFrame({ type: XLHA_REC.GOODBYE, body: encodeGoodbye('bye') }).kind, 'goodbye');
  const ack = decodeChannelFrame({ type: XLHA_REC.CHECKPOINT_ACK, body: encodeAck({ epoch: 3, applyMicros: 1 }) });
  t.same(ack, { kind: 'ack', ack: { epoch: 3, applyMicros: 1 } });
  const r = expectProtocolError(() => decodeChannelFrame({ type: 0x12345678, body: Buffer.alloc(0) }), 'EBADTYPE', 'channel frame type 0x12345678 is unknown');
  t.ok(r.ok, r.message);
  t.equal(recordTypeName('libxc', XC_REC.PAGE_DATA), 'PAGE_DATA');
  t.equal(recordTypeName('libxl', XL_REC.CHECKPOINT_END), 'CHECKPOINT_END');
  t.equal(recordTypeName('channel', XLHA_REC.DISK_WRITES), 'DISK_WRITES');
  t.equal(recordTypeName('libxc', 0x80000013), '0x80000013');
  t.ok(isContentFrame(XLHA_REC.XEN_STREAM) && isContentFrame(XLHA_REC.DISK_WRITES));
  t.notOk(isContentFrame(XLHA_REC.HEARTBEAT));
});

/** Type and (joined) body of each frame. */
function plain(frames: Frame[]): { type: number; body: Buffer }[] {
  return frames.map((f) => ({ type: f.type, body: f.body }));
}

/** A varied sequence of frames and their wire bytes. */
function sampleFrames(): { frames: { type: number; body: Buffer }[]; wire: Buffer } {
  const frames = [
    { type: XLHA_REC.HELLO, body: encodeHello({ node: 'primary', n: 1 }) },
    { type: XLHA_REC.XEN_STREAM, body: randomBytes(13) },
    { type: XLHA_REC.XEN_STREAM, body: Buffer.alloc(0) },
    { type: XLHA_REC.DISK_WRITES, body: encodeDiskWrites([{ offset: 4096, data: randomBytes(700) }]) },
    { type: XLHA_REC.HEARTBEAT, body: encodeHeartbeat({ seq: 1, sentAtMs: 2, lastEpoch: null }) },
    { type: XLHA_REC.CHECKPOINT_SEAL, body: encodeSeal({ epoch: 1, contentBytes: 1, contentFrames: 1, crc32: 1 }) },
    { type: XLHA_REC.XEN_STREAM, body: randomBytes(20_000) },
    { type: XLHA_REC.GOODBYE, body: encodeGoodbye('done') },
  ];
  return { frames, wire: encodeFrames(frames) };
}

t.test('the frame reader reassembles frames fed one byte at a time', async (t) => {
  const { frames, wire } = sampleFrames();
  const r = new FrameReader();
  const got: { type: number; body: Buffer }[] = [];
  for (let i = 0; i < wire.length; i++) got.push(...r.push(wire.subarray(i, i + 1)));
  t.same(plain(got), frames);
  t.equal(r.bufferedBytes, 0);
  t.doesNotThrow(() => r.finish());
});

t.test('the frame reader gives the same frames for random chunkings', async (t) => {
  const { frames, wire } = sampleFrames();
  for (let seed = 1; seed <= 50; seed++) {
    const rnd = prng(seed);
    const r = new FrameReader();
    const got: { type: number; body: Buffer }[] = [];
    let off = 0;
    while (off < wire.length) {
      const n = Math.min(wire.length - off, 1 + Math.floor(rnd() * (rnd() < 0.5 ? 16 : 4000)));
      got.push(...r.push(wire.subarray(off, off + n)));
      off += n;
    }
    t.same(plain(got), frames, `seed ${seed}`);
    t.equal(r.bufferedBytes, 0, `seed ${seed} leaves nothing buffered`);
  }
});

t.test('the frame reader hands a content frame that spans chunks over as views of them, not a copy', async (t) => {
  const { frames, wire } = sampleFrames();
  const r = new FrameReader();
  const got: Frame[] = [];
  for (let off = 0; off < wire.length; off += 1000) got.push(...r.push(wire.subarray(off, off + 1000)));
  const big = got.find((f) => f.type === XLHA_REC.XEN_STREAM && f.parts && f.parts.length > 1);
  t.ok(big, 'the 20000-byte XEN_STREAM frame came in parts');
  t.ok(big!.parts!.every((p) => p.buffer === wire.buffer), 'each part is a view of the received bytes');
  t.same(Buffer.concat(big!.parts as Buffer[]), frames[6]!.body, 'the parts are the body');
  t.same(big!.body, frames[6]!.body, 'and body joins them when asked');
  t.same(frameParts(got[0]!), [got[0]!.body], 'a frame in one piece is its own single part');
  const hello = got.find((f) => f.type === XLHA_REC.HELLO)!;
  t.equal(hello.parts, undefined, 'control frames are always whole');
});

t.test('the frame reader returns views for bodies inside one chunk', async (t) => {
  const { frames, wire } = sampleFrames();
  const r = new FrameReader();
  const got = r.push(wire);
  t.same(got, frames);
  for (const f of got) if (f.body.length > 0) t.equal(f.body.buffer, wire.buffer, 'body shares the chunk memory');
});

t.test('the frame reader handles a multi-megabyte frame in small chunks', async (t) => {
  const big = randomBytes(6 * 1024 * 1024 + 3);
  const wire = Buffer.concat([
    encodeFrame(XLHA_REC.XEN_STREAM, big),
    encodeFrame(XLHA_REC.CHECKPOINT_ACK, encodeAck({ epoch: 1, applyMicros: 2 })),
  ]);
  const r = new FrameReader();
  const got: { type: number; body: Buffer }[] = [];
  const start = Date.now();
  for (let off = 0; off < wire.length; off += 1500) {
    got.push(...r.push(wire.subarray(off, off + 1500)));
    if (off === 3000) t.same(r.pendingFrame, { type: XLHA_REC.XEN_STREAM, length: big.length });
  }
  t.equal(got.length, 2);
  t.ok(got[0]!.body.equals(big), 'the big body is intact');
  t.same(decodeAck(got[1]!.body), { epoch: 1, applyMicros: 2 });
  t.ok(Date.now() - start < 2000, 'fast (linear) reassembly');
});

t.test('the frame reader rejects unknown types and oversized frames with named errors', async (t) => {
  const unknown = Buffer.alloc(16);
  unknown.writeUInt32LE(0x12345678, 0);
  let r = new FrameReader();
  let res = expectProtocolError(() => r.push(unknown), 'EBADTYPE', 'channel frame type 0x12345678 is unknown');
  t.ok(res.ok, res.message);
  res = expectProtocolError(() => r.push(Buffer.alloc(0)), 'EBADTYPE', '0x12345678');
  t.ok(res.ok, `a failed reader stays failed: ${res.message}`);

  // The error carries the good frames that preceded the bad one in the same push.
  r = new FrameReader();
  const good = encodeFrame(XLHA_REC.GOODBYE, Buffer.from('x'));
  try {
    r.push(Buffer.concat([good, unknown]));
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof FrameReaderError);
    t.equal((err as FrameReaderError).frames.length, 1);
  }

  r = new FrameReader({ maxFrameBytes: 1024 });
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(XLHA_REC.XEN_STREAM, 0);
  hdr.writeUInt32LE(2048, 4);
  res = expectProtocolError(() => r.push(hdr), 'ETOOBIG', 'XEN_STREAM', 'length 2048 exceeds the limit of 1024 bytes');
  t.ok(res.ok, res.message);

  r = new FrameReader();
  r.push(encodeFrame(XLHA_REC.XEN_STREAM, Buffer.alloc(100)).subarray(0, 50));
  res = expectProtocolError(() => r.finish(), 'ETRUNC', 'inside a XEN_STREAM frame', '50 of 112');
  t.ok(res.ok, res.message);
  r = new FrameReader();
  r.push(Buffer.alloc(3));
  res = expectProtocolError(() => r.finish(), 'ETRUNC', 'inside a frame header');
  t.ok(res.ok, res.message);
});

t.test('the frame reader ignores the contents of padding bytes', async (t) => {
  const f = encodeFrame(XLHA_REC.GOODBYE, Buffer.from('abc'));
  f.fill(0xee, 11);
  const got = new FrameReader().push(f);
  t.same(got, [{ type: XLHA_REC.GOODBYE, body: Buffer.from('abc') }]);
});

t.test('fixed body sizes match the documented layouts', async (t) => {
  t.equal(BODY_BYTES.CHECKPOINT_SEAL, 32);
  t.equal(BODY_BYTES.CHECKPOINT_ACK, 16);
  t.equal(BODY_BYTES.HEARTBEAT, 24);
});

t.test('with a release hook, the frame reader gives back every byte it is done with, once, and keeps content frames as views', async (t) => {
  const { frames, wire } = sampleFrames();
  for (let seed = 1; seed <= 30; seed++) {
    const rnd = prng(seed);
    // each read in a buffer of its own, with a count per byte of how often it came back
    const counts = new Map<ArrayBufferLike, Uint8Array>();
    const mark = (b: Buffer) => {
      if (!b.length) return;
      const c = counts.get(b.buffer);
      if (!c) throw new Error('a buffer that was never read into');
      for (let i = 0; i < b.length; i++) c[b.byteOffset + i]!++;
    };
    const r = new FrameReader({ release: mark });
    const got: Frame[] = [];
    let off = 0;
    while (off < wire.length) {
      const n = Math.min(wire.length - off, 1 + Math.floor(rnd() * (rnd() < 0.5 ? 16 : 4000)));
      const chunk = Buffer.from(new ArrayBuffer(n));
      wire.copy(chunk, 0, off, off + n);
      counts.set(chunk.buffer, new Uint8Array(n));
      got.push(...r.push(chunk));
      off += n;
    }
    t.same(plain(got), frames, `seed ${seed}: the same frames`);
    for (const f of got) {
      if (isContentFrame(f.type)) for (const p of frameParts(f)) if (p.length) t.ok(counts.has(p.buffer), `seed ${seed}: content is a view of a read`);
      if (!isContentFrame(f.type) && f.body.length) t.notOk(counts.has(f.body.buffer), `seed ${seed}: a control frame's body is a copy`);
    }
    for (const f of got) if (isContentFrame(f.type)) for (const p of frameParts(f)) mark(p); // the consumer gives content back
    let wrong = 0;
    for (const c of counts.values()) for (const v of c) if (v !== 1) wrong++;
    t.equal(wrong, 0, `seed ${seed}: every byte came back exactly once`);
  }
});
