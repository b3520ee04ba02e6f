/**
 * Symbolic names of record and frame types across the three numberings: the
 * Xen migration stream's libxc and libxl layers (xen-records.ts) and xl-ha's
 * channel (channel-records.ts), for messages and for telling known types from
 * unknown ones. See docs/protocol.md.
 */

import { XLHA_REC } from './channel-records.js';
import { hex32 } from './framing.js';
import { XC_REC, XL_REC } from './xen-records.js';

/** Which numbering a record type belongs to. */
export type RecordLayer = 'libxc' | 'libxl' | 'channel';

function invert(table: Record<string, number>): Map<number, string> {
  const m = new Map<number, string>();
  for (const [k, v] of Object.entries(table)) m.set(v, k);
  return m;
}

const NAMES: Record<RecordLayer, Map<number, string>> = {
  libxc: invert(XC_REC),
  libxl: invert(XL_REC),
  channel: invert(XLHA_REC),
};

/**
 * Name of a record/frame type for messages: the symbolic name when known
 * (e.g. "PAGE_DATA"), otherwise its hex value (e.g. "0x80000013").
 */
export function recordTypeName(layer: RecordLayer, type: number): string {
  return NAMES[layer].get(type) ?? hex32(type);
}

/** Whether `type` is one of the known values for `layer`. */
export function isKnownRecordType(layer: RecordLayer, type: number): boolean {
  return NAMES[layer].has(type);
}
