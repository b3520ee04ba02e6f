import t from 'tap';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import {
  CHUNK_HEADER_BYTES,
  CODEC,
  DEFAULT_ZSTD_LEVEL,
  ZstdCodec,
  decodeChunk,
  defaultCodec,
  encodeChunk,
} from '../../src/transport/compress.js';
import { ProtocolError } from '../../src/transport/framing.js';
import { GuestMemory, PAGE_SIZE } from '../../src/backend/sim/memory.js';
import { KvGuest } from '../../src/backend/sim/guest.js';
import { KV_OP, encodeRequest } from '../../src/backend/sim/kvproto.js';
import { XenStreamWriter } from '../../src/transport/xenstream.js';
import { MAX_STREAM_FRAME_BYTES } from '../../src/engine/engine.js';
import { expectProtocolError } from '../helpers/protocol-error.js';

const codec = defaultCodec();
const wireOf = (raw: Buffer) => Buffer.concat(encodeChunk(raw, codec).parts);

/**
 * Real guest pages: the sim kv guest program (the one its vCPU runs) after `writes` PUTs,
 * its dirty pages as the PAGE_DATA records of a checkpoint.
 */
function kvCheckpointBytes(writes: number): Buffer {
  const mem = GuestMemory.allocate(8);
  const guest = new KvGuest(mem, { net: () => {}, disk: () => {} });
  guest.boot();
  for (let i = 0; i < writes; i++) {
    const req = encodeRequest({
      clientId: 1 + (i % 16),
      seq: 1 + Math.floor(i / 16),
      op: KV_OP.PUT,
      key: Buffer.from(`c${(1 + (i % 16)).toString(16)}-k${i % 64}`),
      value: Buffer.from(`v${i % 16}.${i}.${randomBytes(6).toString('hex')}`),
    });
    guest.handle(1, req.subarray(4));
  }
  const pfns = mem.readAndClearDirty();
  const w = new XenStreamWriter();
  w.begin({ domainType: 1, xenMajor: 4, xenMinor: 17 });
  return Buffer.concat(w.pageDataRecords(pfns, (k) => mem.page(pfns[k]!)));
}
const kvBytes = kvCheckpointBytes(3000);

/** The frame with its Frame_Content_Size field set to `size` (RFC 8878 §3.1.1.1). */
function withDeclaredSize(frame: Buffer, size: number): Buffer {
  const f = Buffer.from(frame);
  const fhd = f[4]!;
  const single = (fhd >> 5) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3]!;
  const fcsBytes = fhd >> 6 === 0 ? single : [0, 2, 4, 8][fhd >> 6]!;
  const at = 5 + (single ? 0 : 1) + dictBytes;
  if (fcsBytes === 1) f[at] = size;
  else if (fcsBytes === 2) f.writeUInt16LE(size - 256, at);
  else if (fcsBytes === 4) f.writeUInt32LE(size, at);
  else throw new Error(`frame with a ${fcsBytes}-byte content size field`);
  return f;
}

t.test('chunks round-trip exactly through the wire form: random, zero, repetitive and real kv guest pages, from 0 bytes to 32 MiB', async (t) => {
  const repetitive = (n: number) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (i * 7) % 251 ^ (i >> 12);
    return b;
  };
  const inputs: [string, Buffer][] = [];
  for (const n of [0, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1]) {
    inputs.push([`random ${n}`, randomBytes(n)], [`zero ${n}`, Buffer.alloc(n)], [`repetitive ${n}`, repetitive(n)]);
  }
  inputs.push(['kv guest pages', kvBytes], ['kv guest pages, first 4096 bytes', kvBytes.subarray(0, 4096)]);
  for (const n of [MAX_STREAM_FRAME_BYTES - 1, MAX_STREAM_FRAME_BYTES]) {
    const b = Buffer.alloc(n);
    for (let off = 0; off + kvBytes.length <= n; off += kvBytes.length * 2) kvBytes.copy(b, off); // kv pages, zero pages between
    randomBytes(4096).copy(b, n - 4096);
    inputs.push([`kv pages and zeros ${n}`, b]);
  }
  for (const [what, raw] of inputs) {
    const enc = encodeChunk(raw, codec);
    const wire = Buffer.concat(enc.parts);
    t.equal(wire.length, enc.length, `${what}: length is header + bytes`);
    t.equal(wire.readUInt32LE(4), raw.length, `${what}: the header carries the raw length`);
    const back = decodeChunk(wire, MAX_STREAM_FRAME_BYTES);
    t.ok(back.equals(raw), `${what}: round-trips (${raw.length} bytes sent as ${enc.length}, ${enc.codec === CODEC.ZSTD ? 'zstd' : 'raw'})`);
    if (enc.codec === CODEC.ZSTD) t.ok(codec.decompress(enc.parts[1], raw.length).equals(raw), `${what}: the codec alone round-trips`);
  }
});

t.test('zero, repetitive and kv guest pages are packed, to far fewer bytes', async (t) => {
  for (const [what, raw, atLeast] of [
    ['zero pages', Buffer.alloc(64 * PAGE_SIZE), 100],
    ['kv guest pages', kvBytes, 5],
  ] as const) {
    const packed = codec.compress(raw);
    t.ok(packed, `${what}: compressed`);
    t.ok(raw.length / packed!.length >= atLeast, `${what}: ${raw.length} → ${packed!.length} bytes, at least ${atLeast}× smaller`);
    t.equal(encodeChunk(raw, codec).codec, CODEC.ZSTD, `${what}: sent as zstd`);
  }
  t.equal(codec.name, `zstd-${DEFAULT_ZSTD_LEVEL}`);
});

t.test('incompressible input is reported as such, and goes on the wire raw', async (t) => {
  for (const n of [0, 1, 7, 4096, 1 << 20]) {
    const raw = randomBytes(n);
    t.equal(codec.compress(raw), null, `${n} random bytes: compress says it would not shrink`);
    const enc = encodeChunk(raw, codec);
    t.equal(enc.codec, CODEC.RAW, `${n} random bytes: sent raw`);
    t.equal(enc.length, CHUNK_HEADER_BYTES + n, `${n} random bytes: only the header is added`);
    t.equal(enc.parts[1], raw, `${n} random bytes: the raw chunk is not copied`);
  }
});

t.test('a corrupt, truncated or mis-sized zstd chunk is refused with a ProtocolError that says what was wrong', async (t) => {
  const raw = Buffer.concat([kvBytes.subarray(0, 100_000), Buffer.alloc(50_000)]);
  const packed = codec.compress(raw)!;
  t.ok(packed, 'the sample compresses');
  const cases: [string, () => unknown, string, ...string[]][] = [
    ['no bytes', () => codec.decompress(Buffer.alloc(0), 10), 'EBADVALUE', 'too few for a zstd frame'],
    ['not zstd', () => codec.decompress(randomBytes(64), 64), 'EBADVALUE', 'do not start with a zstd frame'],
    ['truncated', () => codec.decompress(packed.subarray(0, packed.length - 5), raw.length), 'EBADVALUE', 'not a whole zstd frame'],
    ['header only', () => codec.decompress(packed.subarray(0, 6), raw.length), 'EBADVALUE', 'not a whole zstd frame'],
    ['trailing bytes', () => codec.decompress(Buffer.concat([packed, Buffer.from([0])]), raw.length), 'ETRAILING', '1 bytes follow the zstd frame'],
    ['two frames', () => codec.decompress(Buffer.concat([packed, packed]), raw.length), 'ETRAILING', 'follow the zstd frame'],
    ['larger than said', () => codec.decompress(packed, raw.length - 1), 'EBADLEN', `declares ${raw.length} bytes of content, the chunk header ${raw.length - 1}`],
    ['smaller than said', () => codec.decompress(packed, raw.length + 1), 'EBADLEN', `declares ${raw.length} bytes`],
    // A hostile frame whose header agrees with the chunk header but whose blocks hold more:
    // it is decompressed into rawLength bytes and stops there.
    ['blocks hold more than the header declares', () => codec.decompress(withDeclaredSize(packed, 70_000), 70_000), 'EBADVALUE', 'corrupt frame'],
  ];
  for (const [what, fn, code, ...parts] of cases) {
    const r = expectProtocolError(fn, code, ...parts);
    t.ok(r.ok, `${what}: ${r.message}`);
  }
  t.throws(() => codec.decompress(packed, -1), RangeError, 'a negative raw length is the caller’s bug');
});

t.test('the wire header is checked before anything is decompressed', async (t) => {
  const raw = Buffer.alloc(8192, 3);
  const wire = wireOf(raw);
  t.equal(wire[0], CODEC.ZSTD);
  const bad = (edit: (b: Buffer) => void) => {
    const b = Buffer.from(wire);
    edit(b);
    return b;
  };
  const cases: [string, () => unknown, string, ...string[]][] = [
    ['short header', () => decodeChunk(wire.subarray(0, 7), 1 << 20), 'ETRUNC', 'shorter than its 8-byte header'],
    ['reserved bytes', () => decodeChunk(bad((b) => (b[2] = 1)), 1 << 20), 'EBADVALUE', 'header bytes 1..3 are 000100'],
    ['over the limit', () => decodeChunk(wire, 8191), 'ETOOBIG', 'raw length 8192 exceeds the limit of 8191 bytes'],
    ['unknown codec', () => decodeChunk(bad((b) => (b[0] = 9)), 1 << 20), 'EBADVALUE', 'unknown codec 9', 'decodes raw, zstd'],
    ['raw chunk, wrong length', () => decodeChunk(Buffer.concat([encodeChunk(randomBytes(10), codec).parts[0], randomBytes(9)]), 100), 'EBADLEN', 'raw chunk: 9 bytes, the header says 10'],
    ['header and frame disagree', () => decodeChunk(bad((b) => b.writeUInt32LE(8000, 4)), 1 << 20), 'EBADLEN', 'declares 8192 bytes of content, the chunk header 8000'],
    ['packed not smaller than raw', () => decodeChunk(bad((b) => b.writeUInt32LE(wire.length - CHUNK_HEADER_BYTES, 4)), 1 << 20), 'EBADLEN', 'a chunk that does not shrink is sent raw'],
  ];
  for (const [what, fn, code, ...parts] of cases) {
    const r = expectProtocolError(fn, code, ...parts);
    t.ok(r.ok, `${what}: ${r.message}`);
  }
  t.ok(decodeChunk(wire, 8192).equals(raw), 'at the limit it decodes');
});

t.test('any bytes round-trip through the wire form (property)', async (t) => {
  const chunk = fc.oneof(
    fc.uint8Array({ maxLength: 20_000 }),
    fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 40_000 })).map(([v, n]) => new Uint8Array(n).fill(v)),
    fc.tuple(fc.integer({ min: 0, max: kvBytes.length }), fc.integer({ min: 0, max: 64 * 1024 })).map(([at, n]) => kvBytes.subarray(at, at + n)),
  );
  fc.assert(
    fc.property(chunk, (bytes) => {
      const raw = Buffer.from(bytes);
      return decodeChunk(wireOf(raw), MAX_STREAM_FRAME_BYTES).equals(raw);
    }),
    { numRuns: 300 },
  );
  t.pass('300 chunks round-tripped');
});

t.test('a packed chunk with any bytes changed is refused with a ProtocolError or decodes to exactly its raw length, never more (property)', async (t) => {
  const raw = kvBytes.subarray(0, 200_000);
  const wire = wireOf(raw);
  t.equal(wire[0], CODEC.ZSTD);
  let refused = 0;
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: CHUNK_HEADER_BYTES, max: wire.length - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 0, max: 16 }),
      (edits, cut) => {
        const b = Buffer.from(wire.subarray(0, wire.length - cut));
        for (const [at, x] of edits) if (at < b.length) b[at]! ^= x;
        try {
          const out = decodeChunk(b, MAX_STREAM_FRAME_BYTES);
          return out.length === raw.length;
        } catch (err) {
          refused++;
          return err instanceof ProtocolError;
        }
      },
    ),
    { numRuns: 500 },
  );
  t.ok(refused > 0, `${refused} of 500 corrupted chunks were refused`);
});

t.test('a zstd level outside libzstd’s range is refused when the codec is made', async (t) => {
  t.throws(() => new ZstdCodec(1000), /zstd level 1000 is not valid: expected an integer from -\d+ to 22/);
  t.throws(() => new ZstdCodec(1.5), /zstd level 1.5 is not valid/);
  const three = new ZstdCodec(3);
  t.equal(three.name, 'zstd-3');
  t.ok(three.decompress(three.compress(kvBytes)!, kvBytes.length).equals(kvBytes), 'level 3 round-trips too');
});
