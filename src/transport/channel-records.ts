/**
 * xl-ha's own channel frames, the replication protocol between a primary and
 * its backup: frame types, fixed body sizes, and the encoders and decoders of
 * HELLO/HELLO_ACK/GOODBYE, CHECKPOINT_SEAL/ACK/NACK, HEARTBEAT and
 * DISK_WRITES, plus typed decoding of a whole frame. Frames are framed as
 * framing.ts describes; XEN_STREAM bodies carry the Xen migration stream
 * (xen-records.ts) and stay opaque here. The seal's digest is digest.ts.
 *
 * The byte layouts are documented in docs/protocol.md. The frame type numbers
 * (XLHA_REC) are duplicated in libxl-shim/xlha.h: the two must change
 * together.
 *
 * Conventions are framing.ts's: `encodeX` returns the body of frame X (no
 * frame header); `decodeX` takes a body, checks every length before reading
 * and throws a {@link ProtocolError} naming the frame and the offending value.
 */

import { crc32 } from 'node:zlib';
import type { DiskWrite } from '../backend/types.js';
import {
  checkU32,
  checkU64,
  decodeUtf8,
  type Frame,
  hex32,
  MAX_U32,
  needAtLeast,
  needLength,
  paddedLength,
  ProtocolError,
  readU64,
  writeU64,
} from './framing.js';

// ---------------------------------------------------------------------------
// Constants and frame types

/** xl-ha channel frame types (ASCII "XLH" + a sub-type byte). */
export const XLHA_REC = {
  HELLO: 0x584c_4801,
  HELLO_ACK: 0x584c_4802,
  XEN_STREAM: 0x584c_4810,
  /**
   * With `compress` agreed in HELLO, each XEN_STREAM body goes as one compressed chunk
   * (docs/protocol.md §5.8): `codec u8 | 0 u8 | 0 u16 | rawLength u32 LE | bytes`.
   */
  XEN_STREAM_Z: 0x584c_4814,
  CHECKPOINT_SEAL: 0x584c_4811,
  CHECKPOINT_ACK: 0x584c_4812,
  CHECKPOINT_NACK: 0x584c_4813,
  HEARTBEAT: 0x584c_4820,
  DISK_WRITES: 0x584c_4830,
  GOODBYE: 0x584c_4840,
  SIDE: 0x584c_4850,
  SIDE_ACK: 0x584c_4851,
} as const;

/** Bits of CHECKPOINT_SEAL.flags. */
export const SEAL_FLAG = {
  /**
   * The checkpoint carries the whole guest memory (the first checkpoint, or
   * a resynchronisation after a rejected one), not only dirty pages.
   */
  FULL: 0x1,
} as const;

/** Fixed body sizes of xl-ha channel frames. */
export const BODY_BYTES = {
  /** 8 + 8 + 4 + 4 + 4 (crc32) + 4 (reserved). */
  CHECKPOINT_SEAL: 32,
  CHECKPOINT_ACK: 16,
  /** Minimum; the UTF-8 reason follows. */
  CHECKPOINT_NACK: 8,
  HEARTBEAT: 24,
  /** Minimum: the DISK_WRITES header before the writes. */
  DISK_WRITES: 8,
  /** Per-write header inside DISK_WRITES. */
  DISK_WRITE_HEADER: 16,
  /** Minimum: seq, kind, crc32, reserved; the payload follows. */
  SIDE: 24,
  SIDE_ACK: 16,
} as const;

/** The all-ones u64, used by HEARTBEAT.lastEpoch to mean "no epoch yet". */
export const U64_NONE = 0xffff_ffff_ffff_ffffn;

const CHANNEL_TYPES: ReadonlySet<number> = new Set(Object.values(XLHA_REC));

/** Whether `type` is an xl-ha channel frame type. */
export function isChannelType(type: number): boolean {
  return CHANNEL_TYPES.has(type);
}

/** Whether frames of this type count towards a checkpoint's seal. */
export function isContentFrame(type: number): boolean {
  return type === XLHA_REC.XEN_STREAM || type === XLHA_REC.XEN_STREAM_Z || type === XLHA_REC.DISK_WRITES;
}

// ---------------------------------------------------------------------------
// Channel: HELLO / HELLO_ACK / GOODBYE

/** HELLO/HELLO_ACK payload: any JSON object. */
export type HelloMessage = { [key: string]: unknown };

function encodeJsonObject(msg: HelloMessage, what: string): Buffer {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    throw new TypeError(`${what} payload must be a plain object`);
  }
  return Buffer.from(JSON.stringify(msg), 'utf8');
}

function decodeJsonObject(body: Buffer, what: string): HelloMessage {
  const text = decodeUtf8(body, `${what} body`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError('EBADVALUE', `${what} body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw new ProtocolError('EBADVALUE', `${what} body must be a JSON object, got ${kind}`);
  }
  return value as HelloMessage;
}

/** HELLO body: the object as UTF-8 JSON. */
export function encodeHello(msg: HelloMessage): Buffer {
  return encodeJsonObject(msg, 'HELLO');
}

/** Decode a HELLO body; rejects invalid UTF-8, invalid JSON and non-objects. */
export function decodeHello(body: Buffer): HelloMessage {
  return decodeJsonObject(body, 'HELLO');
}

/** HELLO_ACK body: the object as UTF-8 JSON. */
export function encodeHelloAck(msg: HelloMessage): Buffer {
  return encodeJsonObject(msg, 'HELLO_ACK');
}

/** Decode a HELLO_ACK body; rejects invalid UTF-8, invalid JSON and non-objects. */
export function decodeHelloAck(body: Buffer): HelloMessage {
  return decodeJsonObject(body, 'HELLO_ACK');
}

/** GOODBYE body: the UTF-8 reason. */
export function encodeGoodbye(reason: string): Buffer {
  return Buffer.from(reason, 'utf8');
}

/** Decode a GOODBYE body to its reason. */
export function decodeGoodbye(body: Buffer): string {
  return decodeUtf8(body, 'GOODBYE reason');
}

// ---------------------------------------------------------------------------
// Channel: CHECKPOINT_SEAL / ACK / NACK

/** CHECKPOINT_SEAL fields. */
export interface Seal {
  epoch: number;
  /** Sum of the body lengths of the content frames since the previous seal. */
  contentBytes: number;
  /** Number of those content frames. */
  contentFrames: number;
  /** {@link SEAL_FLAG} bits; unknown bits are ignored on receipt. */
  flags: number;
  /**
   * CRC-32 (ISO-HDLC, the zlib/Ethernet polynomial) over those bodies, in order. It detects
   * corruption, not forgery: without a key any digest can be recomputed by whoever alters the
   * content (authentication is a separate layer).
   */
  crc32: number;
}

/** CHECKPOINT_SEAL body (32 bytes). */
export function encodeSeal(s: Omit<Seal, 'flags'> & { flags?: number }): Buffer {
  checkU64(s.epoch, 'seal epoch');
  checkU64(s.contentBytes, 'seal contentBytes');
  checkU32(s.contentFrames, 'seal contentFrames');
  const flags = s.flags ?? 0;
  checkU32(flags, 'seal flags');
  checkU32(s.crc32, 'seal crc32');
  const b = Buffer.alloc(BODY_BYTES.CHECKPOINT_SEAL);
  writeU64(b, s.epoch, 0);
  writeU64(b, s.contentBytes, 8);
  b.writeUInt32LE(s.contentFrames, 16);
  b.writeUInt32LE(flags, 20);
  b.writeUInt32LE(s.crc32, 24);
  // 28..31 reserved, zero (ignored on receipt)
  return b;
}

/** Decode a CHECKPOINT_SEAL body. */
export function decodeSeal(body: Buffer): Seal {
  needLength(body, BODY_BYTES.CHECKPOINT_SEAL, 'CHECKPOINT_SEAL');
  return {
    epoch: readU64(body, 0, 'CHECKPOINT_SEAL epoch'),
    contentBytes: readU64(body, 8, 'CHECKPOINT_SEAL contentBytes'),
    contentFrames: body.readUInt32LE(16),
    flags: body.readUInt32LE(20),
    crc32: body.readUInt32LE(24),
  };
}

/** CHECKPOINT_ACK fields. */
export interface Ack {
  epoch: number;
  /** Time the backup took to verify and apply the checkpoint, µs (saturates at 2^32-1). */
  applyMicros: number;
}

/** CHECKPOINT_ACK body (16 bytes). */
export function encodeAck(a: Ack): Buffer {
  checkU64(a.epoch, 'ack epoch');
  const micros = Number.isFinite(a.applyMicros) ? Math.min(MAX_U32, Math.max(0, Math.round(a.applyMicros))) : 0;
  const b = Buffer.alloc(BODY_BYTES.CHECKPOINT_ACK);
  writeU64(b, a.epoch, 0);
  b.writeUInt32LE(micros, 8);
  return b;
}

/** Decode a CHECKPOINT_ACK body. */
export function decodeAck(body: Buffer): Ack {
  needLength(body, BODY_BYTES.CHECKPOINT_ACK, 'CHECKPOINT_ACK');
  return { epoch: readU64(body, 0, 'CHECKPOINT_ACK epoch'), applyMicros: body.readUInt32LE(8) };
}

/** CHECKPOINT_NACK fields. */
export interface Nack {
  epoch: number;
  reason: string;
}

/** CHECKPOINT_NACK body: epoch u64 then the UTF-8 reason. */
export function encodeNack(n: Nack): Buffer {
  checkU64(n.epoch, 'nack epoch');
  const reason = Buffer.from(n.reason, 'utf8');
  const b = Buffer.allocUnsafe(8 + reason.length);
  writeU64(b, n.epoch, 0);
  b.set(reason, 8);
  return b;
}

/** Decode a CHECKPOINT_NACK body. */
export function decodeNack(body: Buffer): Nack {
  needAtLeast(body, BODY_BYTES.CHECKPOINT_NACK, 'CHECKPOINT_NACK');
  return {
    epoch: readU64(body, 0, 'CHECKPOINT_NACK epoch'),
    reason: decodeUtf8(body.subarray(8), 'CHECKPOINT_NACK reason'),
  };
}

// ---------------------------------------------------------------------------
// Channel: HEARTBEAT

/** HEARTBEAT fields. */
export interface Heartbeat {
  seq: number;
  /** Sender's wall clock in ms. */
  sentAtMs: number;
  /** Sender's last sealed (primary) or applied (backup) epoch; null = none yet. */
  lastEpoch: number | null;
}

/** HEARTBEAT body (24 bytes); lastEpoch null is written as 2^64-1. */
export function encodeHeartbeat(h: Heartbeat): Buffer {
  checkU64(h.seq, 'heartbeat seq');
  checkU64(h.sentAtMs, 'heartbeat sentAtMs');
  const b = Buffer.allocUnsafe(BODY_BYTES.HEARTBEAT);
  writeU64(b, h.seq, 0);
  writeU64(b, h.sentAtMs, 8);
  if (h.lastEpoch === null) {
    b.writeBigUInt64LE(U64_NONE, 16);
  } else {
    checkU64(h.lastEpoch, 'heartbeat lastEpoch');
    writeU64(b, h.lastEpoch, 16);
  }
  return b;
}

/** Decode a HEARTBEAT body. */
export function decodeHeartbeat(body: Buffer): Heartbeat {
  needLength(body, BODY_BYTES.HEARTBEAT, 'HEARTBEAT');
  const none = body.readUInt32LE(16) === MAX_U32 && body.readUInt32LE(20) === MAX_U32;
  return {
    seq: readU64(body, 0, 'HEARTBEAT seq'),
    sentAtMs: readU64(body, 8, 'HEARTBEAT sentAtMs'),
    lastEpoch: none ? null : readU64(body, 16, 'HEARTBEAT lastEpoch'),
  };
}

// ---------------------------------------------------------------------------
// Channel: DISK_WRITES

/** A DISK_WRITES entry's flags: a barrier (the guest's flush or FUA) follows this write. */
export const DISK_WRITE_FLUSH = 1;
const DISK_WRITE_KNOWN_FLAGS = DISK_WRITE_FLUSH;

/** DISK_WRITES body: count, reserved, then per write offset/length/flags/data padded to 8. */
export function encodeDiskWrites(writes: readonly { offset: number; data: Uint8Array; flush?: boolean }[]): Buffer {
  checkU32(writes.length, 'DISK_WRITES count');
  let total: number = BODY_BYTES.DISK_WRITES;
  for (const w of writes) {
    checkU64(w.offset, 'disk write offset');
    checkU32(w.data.length, 'disk write length');
    total += BODY_BYTES.DISK_WRITE_HEADER + paddedLength(w.data.length);
  }
  const b = Buffer.alloc(total);
  b.writeUInt32LE(writes.length, 0);
  let p: number = BODY_BYTES.DISK_WRITES;
  for (const w of writes) {
    writeU64(b, w.offset, p);
    b.writeUInt32LE(w.data.length, p + 8);
    if (w.flush) b.writeUInt32LE(DISK_WRITE_FLUSH, p + 12);
    b.set(w.data, p + BODY_BYTES.DISK_WRITE_HEADER);
    p += BODY_BYTES.DISK_WRITE_HEADER + paddedLength(w.data.length);
  }
  return b;
}

/** Decode a DISK_WRITES body; each `data` is a view into the body. */
export function decodeDiskWrites(body: Buffer): DiskWrite[] {
  needAtLeast(body, BODY_BYTES.DISK_WRITES, 'DISK_WRITES');
  const count = body.readUInt32LE(0);
  // Each write takes at least 16 bytes: reject absurd counts before allocating.
  if (count > (body.length - BODY_BYTES.DISK_WRITES) / BODY_BYTES.DISK_WRITE_HEADER) {
    throw new ProtocolError(
      'EBADLEN',
      `DISK_WRITES: count ${count} cannot fit in a ${body.length}-byte body`,
    );
  }
  const writes: DiskWrite[] = [];
  let p: number = BODY_BYTES.DISK_WRITES;
  for (let i = 0; i < count; i++) {
    if (body.length - p < BODY_BYTES.DISK_WRITE_HEADER) {
      throw new ProtocolError('ETRUNC', `DISK_WRITES: write ${i} of ${count}: header truncated at byte ${p}`);
    }
    const offset = readU64(body, p, `DISK_WRITES: write ${i} offset`);
    const length = body.readUInt32LE(p + 8);
    const flags = body.readUInt32LE(p + 12);
    if (flags & ~DISK_WRITE_KNOWN_FLAGS) {
      throw new ProtocolError('EBADVALUE', `DISK_WRITES: write ${i} of ${count} has unknown flags 0x${flags.toString(16)} (known: 0x${DISK_WRITE_KNOWN_FLAGS.toString(16)}, flush)`);
    }
    const start = p + BODY_BYTES.DISK_WRITE_HEADER;
    const next = start + paddedLength(length);
    if (next > body.length) {
      throw new ProtocolError(
        'ETRUNC',
        `DISK_WRITES: write ${i} of ${count} (length ${length}) runs past the end of the ${body.length}-byte body`,
      );
    }
    const w: DiskWrite = { offset, data: body.subarray(start, start + length) };
    if (flags & DISK_WRITE_FLUSH) w.flush = true;
    writes.push(w);
    p = next;
  }
  if (p !== body.length) {
    throw new ProtocolError('ETRAILING', `DISK_WRITES: ${body.length - p} trailing bytes after ${count} write(s)`);
  }
  return writes;
}

// ---------------------------------------------------------------------------
// Channel: SIDE / SIDE_ACK (frames outside checkpoints, src/transport/side.ts)

/** A SIDE frame: `kind` is the mode's own sub-type; `crc32` covers kind and payload. */
export interface Side {
  seq: number;
  kind: number;
  payload: Buffer;
}

function sideCrc(kind: number, payload: Uint8Array): number {
  const k = Buffer.allocUnsafe(4);
  k.writeUInt32LE(kind, 0);
  return crc32(payload, crc32(k)) >>> 0;
}

/** SIDE body: seq u64, kind u32, crc32 u32, reserved u64, payload. */
export function encodeSide(m: Side): Buffer {
  checkU64(m.seq, 'side seq');
  checkU32(m.kind, 'side kind');
  const b = Buffer.allocUnsafe(BODY_BYTES.SIDE + m.payload.length);
  writeU64(b, m.seq, 0);
  b.writeUInt32LE(m.kind, 8);
  b.writeUInt32LE(sideCrc(m.kind, m.payload), 12);
  b.fill(0, 16, 24);
  b.set(m.payload, 24);
  return b;
}

/** Decode a SIDE body; a CRC that does not match the kind and payload is ECHECKSUM. */
export function decodeSide(body: Buffer): Side {
  needAtLeast(body, BODY_BYTES.SIDE, 'SIDE');
  const seq = readU64(body, 0, 'SIDE seq');
  const kind = body.readUInt32LE(8);
  const payload = body.subarray(24);
  const want = body.readUInt32LE(12);
  const got = sideCrc(kind, payload);
  if (want !== got) {
    throw new ProtocolError('ECHECKSUM', `side frame ${seq}: crc32 mismatch (frame ${want.toString(16).padStart(8, '0')}, content ${got.toString(16).padStart(8, '0')})`);
  }
  return { seq, kind, payload };
}

/** SIDE_ACK body: the highest side seq received in order, reserved u64. */
export function encodeSideAck(a: { seq: number }): Buffer {
  checkU64(a.seq, 'side ack seq');
  const b = Buffer.alloc(BODY_BYTES.SIDE_ACK);
  writeU64(b, a.seq, 0);
  return b;
}

export function decodeSideAck(body: Buffer): { seq: number } {
  needLength(body, BODY_BYTES.SIDE_ACK, 'SIDE_ACK');
  return { seq: readU64(body, 0, 'SIDE_ACK seq') };
}

// ---------------------------------------------------------------------------
// Typed decoding of a whole channel frame

/** A decoded channel frame. XEN_STREAM bodies stay opaque. */
export type ChannelMessage =
  | { kind: 'hello'; hello: HelloMessage }
  | { kind: 'hello_ack'; hello: HelloMessage }
  | { kind: 'xen_stream'; bytes: Buffer }
  | { kind: 'seal'; seal: Seal }
  | { kind: 'ack'; ack: Ack }
  | { kind: 'nack'; nack: Nack }
  | { kind: 'heartbeat'; heartbeat: Heartbeat }
  | { kind: 'disk_writes'; writes: DiskWrite[] }
  | { kind: 'goodbye'; reason: string }
  | { kind: 'side'; side: Side }
  | { kind: 'side_ack'; seq: number };

/** Decode a channel frame by type; unknown types are EBADTYPE. */
export function decodeChannelFrame(frame: Frame): ChannelMessage {
  const { type, body } = frame;
  switch (type) {
    case XLHA_REC.HELLO:
      return { kind: 'hello', hello: decodeHello(body) };
    case XLHA_REC.HELLO_ACK:
      return { kind: 'hello_ack', hello: decodeHelloAck(body) };
    case XLHA_REC.XEN_STREAM:
    case XLHA_REC.XEN_STREAM_Z:
      return { kind: 'xen_stream', bytes: body };
    case XLHA_REC.CHECKPOINT_SEAL:
      return { kind: 'seal', seal: decodeSeal(body) };
    case XLHA_REC.CHECKPOINT_ACK:
      return { kind: 'ack', ack: decodeAck(body) };
    case XLHA_REC.CHECKPOINT_NACK:
      return { kind: 'nack', nack: decodeNack(body) };
    case XLHA_REC.HEARTBEAT:
      return { kind: 'heartbeat', heartbeat: decodeHeartbeat(body) };
    case XLHA_REC.DISK_WRITES:
      return { kind: 'disk_writes', writes: decodeDiskWrites(body) };
    case XLHA_REC.GOODBYE:
      return { kind: 'goodbye', reason: decodeGoodbye(body) };
    case XLHA_REC.SIDE:
      return { kind: 'side', side: decodeSide(body) };
    case XLHA_REC.SIDE_ACK:
      return { kind: 'side_ack', seq: decodeSideAck(body).seq };
    default:
      throw new ProtocolError('EBADTYPE', `channel frame type ${hex32(type)} is unknown`);
  }
}
