import t from 'tap';
import { randomBytes } from 'node:crypto';
import {
  encodeFrame,
  frameParts,
  type Frame,
} from '../../src/transport/framing.js';
import {
  decodeAck,
  encodeAck,
  encodeDiskWrites,
  encodeGoodbye,
  encodeHeartbeat,
  encodeHello,
  encodeSeal,
  isContentFrame,
  XLHA_REC,
} from '../../src/transport/channel-records.js';
import { FrameReader, FrameReaderError } from '../../src/transport/reader.js';
import { expectProtocolError } from '../helpers/protocol-error.js';
import { mulberry32 } from '../../src/util/prng.js';



t.test('frames are padded with zeros to a multiple of 8 bytes', async (t) => {
  for (let len = 0; len <= 17; len++) {
    const body = Buffer.alloc(len, 0xab);
    const f = encodeFrame(XLHA_REC.GOODBYE, body);
    t.equal(f.length, 8 + Math.ceil(len / 8) * 8, `length for body ${len}`);
    t.equal(f.readUInt32LE(0), XLHA_REC.GOODBYE);
    t.equal(f.readUInt32LE(4), len);
    t.same(f.subarray(8, 8 + len), body);
    t.ok(f.subarray(8 + len).every((b) => b === 0), `padding is zero for body ${len}`);
  }
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
  return { frames, wire: Buffer.concat(frames.map((f) => encodeFrame(f.type, f.body))) };
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
    const rnd = mulberry32(seed);
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

t.test('with a release hook, the frame reader gives back every byte it is done with, once, and keeps content frames as views', async (t) => {
  const { frames, wire } = sampleFrames();
  for (let seed = 1; seed <= 30; seed++) {
    const rnd = mulberry32(seed);
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
