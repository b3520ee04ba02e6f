/**
 * Fuzz target: the Xen migration stream parser (src/transport/xenstream.ts, with the record
 * decoders of xen-records.ts), fed what a primary's XEN_STREAM frames carry, one checkpoint
 * after another on one parser.
 *
 * Input: byte 0 is a control byte; the rest is one or more checkpoint units separated by the
 * 8 bytes "XLHAUNIT" (at most 4 units are parsed).
 *   control bits 0..6: how the second and third parsers get each unit cut (_check.ts cuts()).
 * Three parsers read the same units: (a) joined, listing pages; (b) cut, listing pages;
 * (c) cut, without the page list (what a backup that hands the bytes on does). All three must
 * accept and refuse the same units with the same error, and (a) and (b) list the same pages.
 * Clean: ProtocolError. A refused unit must leave the parser's state as it was.
 */
import { ProtocolError } from '../../../src/transport/framing.js';
import { XenStreamParser, type ParsedCheckpoint } from '../../../src/transport/xenstream.js';
import { PAGE_SIZE, pageTypeHasData } from '../../../src/transport/xen-records.js';
import { attempt, cuts, expect, split, type CleanRule } from './_check.js';

const NAME = 'xen-stream';
const CLEAN: CleanRule = { classes: [ProtocolError] };
export const sync = true;
/** Separates checkpoint units in an input. */
export const UNIT_SEPARATOR = Buffer.from('XLHAUNIT', 'latin1');
const MAX_UNITS = 4;

function units(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (out.length < MAX_UNITS - 1) {
    const i = buf.indexOf(UNIT_SEPARATOR, at);
    if (i < 0) break;
    out.push(buf.subarray(at, i));
    at = i + UNIT_SEPARATOR.length;
  }
  out.push(buf.subarray(at));
  return out;
}

function summary(c: ParsedCheckpoint, pages: boolean): string {
  return JSON.stringify({
    index: c.index,
    first: c.first,
    hdr: [c.libxlHeader, c.imageHeader, c.domainHeader],
    vcpus: c.vcpus.map((v) => [v.id, v.context.toString('hex')]),
    state: c.checkpointState,
    others: c.others.map((o) => [o.layer, o.type, o.body.toString('hex')]),
    records: c.records,
    skipped: c.skipped,
    ended: c.ended,
    ...(pages ? { pages: c.pages.map((p) => [p.pfn, p.type, p.data.toString('hex')]) } : {}),
  });
}

export function fuzz(data: Buffer): void {
  if (data.length === 0) return;
  const ctl = data[0]!;
  const a = new XenStreamParser();
  const b = new XenStreamParser();
  const c = new XenStreamParser();
  for (const [n, unit] of units(data.subarray(1)).entries()) {
    const parts = split(unit, cuts(ctl, unit.length));
    const before = a.checkpointsParsed;
    const ra = attempt(NAME, `parseCheckpoint(unit ${n})`, () => a.parseCheckpoint(unit), CLEAN);
    const rb = attempt(NAME, `parseCheckpoint(unit ${n}, cut)`, () => b.parseCheckpoint(parts), CLEAN);
    const rc = attempt(NAME, `parseCheckpoint(unit ${n}, cut, pages: false)`, () => c.parseCheckpoint(parts, { pages: false }), CLEAN);
    expect(NAME, ra.ok === rb.ok && ra.ok === rc.ok, `unit ${n}: joined ${ra.ok ? 'accepted' : 'refused'}, cut ${rb.ok ? 'accepted' : 'refused'}, without pages ${rc.ok ? 'accepted' : 'refused'}`);
    if (!ra.ok && !rb.ok && !rc.ok) {
      expect(NAME, ra.error.message === rb.error.message, `unit ${n}: "${ra.error.message}" joined, "${rb.error.message}" cut`);
      expect(NAME, ra.error.message === rc.error.message, `unit ${n}: "${ra.error.message}" with pages, "${rc.error.message}" without`);
      expect(NAME, a.checkpointsParsed === before, `unit ${n}: a refused unit changed the parser's state`);
      continue;
    }
    if (!ra.ok || !rb.ok || !rc.ok) continue;
    expect(NAME, summary(ra.value, true) === summary(rb.value, true), `unit ${n}: joined and cut parse differently`);
    expect(NAME, summary(ra.value, false) === summary(rc.value, false), `unit ${n}: the parse differs without the page list`);
    expect(NAME, rc.value.pages.length === 0, `unit ${n}: pages listed with pages: false`);
    for (const p of ra.value.pages) {
      expect(NAME, p.data.length === (pageTypeHasData(p.type) ? PAGE_SIZE : 0), `unit ${n}: page ${p.pfn} of type ${p.type} has ${p.data.length} bytes`);
    }
    expect(NAME, a.checkpointsParsed === before + 1, `unit ${n}: accepted but not counted`);
  }
}
