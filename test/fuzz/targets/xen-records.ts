/**
 * Fuzz target: the Xen migration stream's record decoders (src/transport/xen-records.ts) on
 * their own: the stream headers, PAGE_DATA (with and without its entry list, and from its head
 * alone as a backup reads it), X86_PV_VCPU_BASIC and CHECKPOINT_STATE.
 *
 * Input: byte 0 picks the decoder (modulo the list below), the rest is the body.
 * Clean: ProtocolError. A PAGE_DATA that decodes must encode back to the same entries and
 * data, and its three ways of reading must agree.
 */
import { ProtocolError } from '../../../src/transport/framing.js';
import {
  decodeCheckpointState,
  decodeDomainHeader,
  decodeImageHeader,
  decodeLibxlHeader,
  decodePageData,
  decodeVcpuBasic,
  encodePageData,
  MAX_PAGES_PER_RECORD,
} from '../../../src/transport/xen-records.js';
import { attempt, expect, type CleanRule } from './_check.js';

const NAME = 'xen-records';
const CLEAN: CleanRule = { classes: [ProtocolError] };
export const sync = true;

export const DECODERS = ['libxl-header', 'image-header', 'domain-header', 'page-data', 'vcpu-basic', 'checkpoint-state'] as const;

function pageData(body: Buffer): void {
  const full = attempt(NAME, 'decodePageData', () => decodePageData(body), CLEAN);
  const bare = attempt(NAME, 'decodePageData(entries: false)', () => decodePageData(body, false), CLEAN);
  const headLength = Math.min(body.length, 8 + 8 * MAX_PAGES_PER_RECORD);
  const head = attempt(NAME, 'decodePageData(head, entries: false)', () => decodePageData(body.subarray(0, headLength), false, body.length), CLEAN);
  expect(NAME, full.ok === bare.ok && full.ok === head.ok, `PAGE_DATA: with entries ${full.ok}, without ${bare.ok}, from its head ${head.ok}`);
  if (!full.ok || !bare.ok || !head.ok) {
    expect(NAME, !full.ok && !bare.ok && !head.ok && full.error.message === bare.error.message && full.error.message === head.error.message, 'PAGE_DATA: the three reads refuse differently');
    return;
  }
  const pd = full.value;
  // the same entries and data encode to the same bytes, bar the reserved header word and bits 52..59
  const again = encodePageData({ pfns: pd.entries.map((e) => e.pfn), types: pd.entries.map((e) => e.type), data: pd.data });
  const back = decodePageData(again);
  expect(NAME, again.length === body.length, `PAGE_DATA of ${body.length} bytes encodes back to ${again.length}`);
  expect(NAME, JSON.stringify(back.entries) === JSON.stringify(pd.entries) && back.data.equals(pd.data), 'PAGE_DATA does not encode back to its entries and data');
}

export function fuzz(data: Buffer): void {
  if (data.length === 0) return;
  const kind = DECODERS[data[0]! % DECODERS.length]!;
  const body = data.subarray(1);
  switch (kind) {
    case 'libxl-header':
      attempt(NAME, 'decodeLibxlHeader', () => decodeLibxlHeader(body), CLEAN);
      break;
    case 'image-header':
      attempt(NAME, 'decodeImageHeader', () => decodeImageHeader(body), CLEAN);
      break;
    case 'domain-header':
      attempt(NAME, 'decodeDomainHeader', () => decodeDomainHeader(body), CLEAN);
      break;
    case 'page-data':
      pageData(body);
      break;
    case 'vcpu-basic':
      attempt(NAME, 'decodeVcpuBasic', () => decodeVcpuBasic(body), CLEAN);
      break;
    case 'checkpoint-state':
      attempt(NAME, 'decodeCheckpointState', () => decodeCheckpointState(body), CLEAN);
      break;
  }
}
