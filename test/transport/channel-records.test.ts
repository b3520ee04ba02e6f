import t from 'tap';
import { randomBytes } from 'node:crypto';
import { XC_REC, XL_REC } from '../../src/transport/xen-records.js';
import {
  BODY_BYTES,
  decodeAck,
  decodeChannelFrame,
  decodeDiskWrites,
  DISK_WRITE_FLUSH,
  decodeGoodbye,
  decodeHeartbeat,
  decodeHello,
  decodeHelloAck,
  decodeNack,
  decodeSeal,
  encodeAck,
  encodeDiskWrites,
  encodeGoodbye,
  encodeHeartbeat,
  encodeHello,
  encodeHelloAck,
  encodeNack,
  encodeSeal,
  isContentFrame,
  XLHA_REC,
} from '../../src/transport/channel-records.js';
import { recordTypeName } from '../../src/transport/record-names.js';
import { expectProtocolError } from '../helpers/protocol-error.js';

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

t.test('a DISK_WRITES entry carries the guest\'s barrier in its flags, and unknown flags are refused', async (t) => {
  const writes = [
    { offset: 0, data: Buffer.from('journal') },
    { offset: 4096, data: Buffer.from('commit'), flush: true },
    { offset: 8192, data: Buffer.from('data') },
  ];
  const body = encodeDiskWrites(writes);
  t.equal(body.readUInt32LE(8 + 12), 0, 'no flag on a plain write');
  t.equal(body.readUInt32LE(8 + 24 + 12), DISK_WRITE_FLUSH, 'DISK_WRITE_FLUSH on the write before the barrier');
  const back = decodeDiskWrites(body);
  t.same(back.map((w) => w.flush === true), [false, true, false]);
  t.notOk('flush' in back[0]!, 'a plain write decodes without the field');
  const odd = Buffer.from(body);
  odd.writeUInt32LE(DISK_WRITE_FLUSH | 0x10, 8 + 24 + 12);
  const r = expectProtocolError(() => decodeDiskWrites(odd), 'EBADVALUE', 'DISK_WRITES: write 1 of 3 has unknown flags 0x11');
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

t.test('fixed body sizes match the documented layouts', async (t) => {
  t.equal(BODY_BYTES.CHECKPOINT_SEAL, 32);
  t.equal(BODY_BYTES.CHECKPOINT_ACK, 16);
  t.equal(BODY_BYTES.HEARTBEAT, 24);
});
