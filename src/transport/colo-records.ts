/**
 * colo's side frames (SIDE kinds, docs/protocol.md §3.10): the client input the primary
 * mirrors to the secondary, and the secondary's output that goes back to be compared. Each is
 * the payload of one SIDE frame, whose sequence number and CRC-32 (side.ts) cover it.
 */
import type { IndexedInput } from '../backend/types.js';
import { checkU32, checkU64, needAtLeast, paddedLength, ProtocolError, readU64, writeU64 } from './framing.js';

export const COLO_SIDE = {
  /** primary → secondary: client inputs, in the primary's input order. */
  INPUT: 1,
  /** secondary → primary: the secondary's output, with the checkpoint it ran from. */
  OUTPUT: 2,
} as const;

export interface ColoOutput {
  /** The checkpoint the secondary ran from when it produced these. */
  epoch: number;
  packets: { conn: number; data: Uint8Array }[];
}

const ENTRY_HEADER = 8;

/** `head`, then per entry `extraBytes` written by `writeExtra`, flow u32, length u32, data padded to 8. */
function encodeEntries(
  head: Buffer,
  entries: readonly { conn: number; data: Uint8Array }[],
  extraBytes = 0,
  writeExtra: (i: number, b: Buffer, off: number) => void = () => {},
): Buffer {
  let total = head.length;
  for (const e of entries) total += extraBytes + ENTRY_HEADER + paddedLength(e.data.length);
  const b = Buffer.alloc(total);
  head.copy(b, 0);
  let off = head.length;
  entries.forEach((e, i) => {
    writeExtra(i, b, off);
    off += extraBytes;
    checkU32(e.conn, 'flow id');
    checkU32(e.data.length, 'packet length');
    b.writeUInt32LE(e.conn, off);
    b.writeUInt32LE(e.data.length, off + 4);
    b.set(e.data, off + ENTRY_HEADER);
    off += ENTRY_HEADER + paddedLength(e.data.length);
  });
  return b;
}

function decodeEntries(body: Buffer, from: number, count: number, what: string, extra: number): { at: number; conn: number; data: Buffer }[] {
  const out: { at: number; conn: number; data: Buffer }[] = [];
  let off = from;
  for (let i = 0; i < count; i++) {
    if (off + extra + ENTRY_HEADER > body.length) throw new ProtocolError('ETRUNC', `${what}: entry ${i} of ${count} is cut short`);
    const at = off;
    off += extra;
    const conn = body.readUInt32LE(off);
    const len = body.readUInt32LE(off + 4);
    if (off + ENTRY_HEADER + len > body.length) throw new ProtocolError('ETRUNC', `${what}: entry ${i} claims ${len} bytes past the end`);
    out.push({ at, conn, data: body.subarray(off + ENTRY_HEADER, off + ENTRY_HEADER + len) });
    off += ENTRY_HEADER + paddedLength(len);
  }
  if (off !== body.length) throw new ProtocolError('ETRAILING', `${what}: ${body.length - off} trailing bytes after ${count} entries`);
  return out;
}

/** INPUT: count u32, reserved u32, then per input: index u64, flow u32, length u32, data padded to 8. */
export function encodeColoInput(inputs: readonly IndexedInput[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(inputs.length, 0);
  return encodeEntries(head, inputs, 8, (i, b, off) => {
    checkU64(inputs[i]!.index, 'input index');
    writeU64(b, inputs[i]!.index, off);
  });
}

export function decodeColoInput(body: Buffer): IndexedInput[] {
  needAtLeast(body, 8, 'colo INPUT');
  const count = body.readUInt32LE(0);
  const entries = decodeEntries(body, 8, count, 'colo INPUT', 8);
  const inputs = entries.map((e) => ({ index: readU64(body, e.at, 'colo INPUT index'), conn: e.conn, data: e.data }));
  for (let i = 1; i < inputs.length; i++) {
    if (inputs[i]!.index !== inputs[i - 1]!.index + 1) throw new ProtocolError('EBADSEQ', `colo INPUT: input ${inputs[i]!.index} follows ${inputs[i - 1]!.index}`);
  }
  return inputs;
}

/** OUTPUT: epoch u64, count u32, reserved u32, then per packet: flow u32, length u32, data padded to 8. */
export function encodeColoOutput(o: ColoOutput): Buffer {
  checkU64(o.epoch, 'colo OUTPUT epoch');
  const head = Buffer.alloc(16);
  writeU64(head, o.epoch, 0);
  head.writeUInt32LE(o.packets.length, 8);
  return encodeEntries(head, o.packets);
}

export function decodeColoOutput(body: Buffer): ColoOutput {
  needAtLeast(body, 16, 'colo OUTPUT');
  const epoch = readU64(body, 0, 'colo OUTPUT epoch');
  const count = body.readUInt32LE(8);
  return { epoch, packets: decodeEntries(body, 16, count, 'colo OUTPUT', 0).map((e) => ({ conn: e.conn, data: e.data })) };
}
