/**
 * Fuzz target: the decoders of xl-ha's channel frames (src/transport/channel-records.ts) and of
 * colo's side payloads (src/transport/colo-records.ts): every body a peer can send.
 *
 * Input: byte 0 picks the decoder (modulo the list below), the rest is the body.
 * Clean: ProtocolError. A fixed-layout frame that decodes must encode back to the same bytes
 * (reserved bytes aside), so that nothing is lost or misread.
 */
import { ProtocolError } from '../../../src/transport/framing.js';
import {
  decodeAck,
  decodeChannelFrame,
  decodeHeartbeat,
  decodeSeal,
  decodeSide,
  decodeSideAck,
  encodeAck,
  encodeHeartbeat,
  encodeSeal,
  encodeSide,
  encodeSideAck,
  XLHA_REC,
} from '../../../src/transport/channel-records.js';
import { decodeColoInput, decodeColoOutput } from '../../../src/transport/colo-records.js';
import { attempt, expect, type CleanRule } from './_check.js';

const NAME = 'channel-records';
const CLEAN: CleanRule = { classes: [ProtocolError] };
export const sync = true;

/** Frame types in a fixed order: byte 0 of an input picks one of these or a colo payload. */
export const DECODERS = [...(Object.keys(XLHA_REC) as (keyof typeof XLHA_REC)[]), 'COLO_INPUT', 'COLO_OUTPUT', 'UNKNOWN'] as const;

/** Whether `a` and `b` are equal outside the byte ranges `reserved` ([from, to) pairs). */
function sameOutside(a: Buffer, b: Buffer, reserved: [number, number][] = []): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i] && !reserved.some(([f, t]) => i >= f && i < t)) return false;
  }
  return true;
}

function roundTrip(kind: string, body: Buffer): void {
  switch (kind) {
    case 'CHECKPOINT_SEAL': {
      const s = decodeSeal(body);
      expect(NAME, sameOutside(encodeSeal(s), body, [[28, 32]]), 'CHECKPOINT_SEAL does not encode back to its bytes');
      break;
    }
    case 'CHECKPOINT_ACK': {
      const a = decodeAck(body);
      expect(NAME, sameOutside(encodeAck(a), body, [[12, 16]]), 'CHECKPOINT_ACK does not encode back to its bytes');
      break;
    }
    case 'HEARTBEAT': {
      const h = decodeHeartbeat(body);
      expect(NAME, encodeHeartbeat(h).equals(body), 'HEARTBEAT does not encode back to its bytes');
      break;
    }
    case 'SIDE': {
      const s = decodeSide(body);
      expect(NAME, sameOutside(encodeSide(s), body, [[16, 24]]), 'SIDE does not encode back to its bytes');
      break;
    }
    case 'SIDE_ACK': {
      const a = decodeSideAck(body);
      expect(NAME, sameOutside(encodeSideAck(a), body, [[8, 16]]), 'SIDE_ACK does not encode back to its bytes');
      break;
    }
  }
}

export function fuzz(data: Buffer): void {
  if (data.length === 0) return;
  const kind = DECODERS[data[0]! % DECODERS.length]!;
  const body = data.subarray(1);
  switch (kind) {
    case 'COLO_INPUT': {
      const r = attempt(NAME, 'decodeColoInput', () => decodeColoInput(body), CLEAN);
      if (r.ok) expect(NAME, r.value.every((i) => Number.isSafeInteger(i.index) && i.data.length <= body.length), 'colo INPUT decoded to impossible entries');
      return;
    }
    case 'COLO_OUTPUT': {
      const r = attempt(NAME, 'decodeColoOutput', () => decodeColoOutput(body), CLEAN);
      if (r.ok) expect(NAME, r.value.packets.every((p) => p.data.length <= body.length), 'colo OUTPUT decoded to impossible packets');
      return;
    }
    case 'UNKNOWN': {
      const type = body.length >= 4 ? body.readUInt32LE(0) : 0;
      attempt(NAME, 'decodeChannelFrame', () => decodeChannelFrame({ type, body: body.subarray(4) }), CLEAN);
      return;
    }
    default: {
      const type = XLHA_REC[kind];
      const r = attempt(NAME, `decodeChannelFrame(${kind})`, () => decodeChannelFrame({ type, body }), CLEAN);
      if (!r.ok) return;
      if (r.value.kind === 'disk_writes') {
        let at = 0;
        for (const w of r.value.writes) {
          expect(NAME, Number.isSafeInteger(w.offset) && w.offset >= 0, `DISK_WRITES offset ${w.offset}`);
          at += 16 + w.data.length;
        }
        expect(NAME, 8 + at <= body.length, 'DISK_WRITES decoded to more bytes than its body has');
      }
      attempt(NAME, `round trip of ${kind}`, () => roundTrip(kind, body), CLEAN);
    }
  }
}
