import t from 'tap';
import { LibxcSplitter } from '../../src/backend/xen/splitter.js';
import { XenStreamWriter } from '../../src/transport/xenstream.js';
import { encodeFrame } from '../../src/transport/framing.js';
import { XL_REC } from '../../src/transport/xen-records.js';

/** A libxc stream as xc_domain_save writes it: headers, pages, vCPU context, CHECKPOINT. */
function libxcStream(): { bytes: Buffer; pages: number; ends: Set<number> } {
  const w = new XenStreamWriter();
  const begin = w.begin({ domainType: 1, xenMajor: 4, xenMinor: 17 });
  // begin() also emits the libxl header and LIBXC_CONTEXT (16 + 8 bytes): xc_domain_save does not.
  const libxc = begin.subarray(16 + 8);
  const pfns = Array.from({ length: 1500 }, (_, i) => i * 3);
  const pages = Buffer.alloc(1500 * 4096, 7);
  const cp = w.checkpoint();
  const checkpointEnd = encodeFrame(XL_REC.CHECKPOINT_END, Buffer.alloc(0));
  const libxcCheckpoint = cp.subarray(0, cp.length - checkpointEnd.length); // without the libxl record
  const units = [libxc, ...w.pageDataRecords(pfns, pages), w.vcpuBasic(0, Buffer.alloc(64, 1)), libxcCheckpoint];
  const bytes = Buffer.concat(units);
  // where the headers and each record end (the CHECKPOINT record is its own unit)
  const ends = new Set<number>([0, 24 + 16]); // nothing yet; the image and domain headers
  let off = 0;
  for (const u of units.slice(0, -1)) ends.add((off += u.length));
  ends.add(bytes.length - 8);
  ends.add(bytes.length);
  return { bytes, pages: 1500, ends };
}

t.test('the splitter hands out whole records whatever the pipe chunking, copies nothing, and finds the checkpoint', async (t) => {
  const { bytes, pages, ends } = libxcStream();
  for (const size of [7, 4096, 65536, bytes.length]) {
    const s = new LibxcSplitter();
    const parts: Buffer[] = [];
    let checkpoints = 0;
    let seenPages = 0;
    let emitted = 0;
    const cuts: number[] = [];
    const take = (r: { parts: Buffer[] }) => {
      for (const b of r.parts) {
        parts.push(b);
        emitted += b.length;
      }
      cuts.push(emitted);
    };
    // The first 300 bytes (headers, first record header) arrive one byte at a time.
    for (let off = 0; off < 300; off++) take(s.push(bytes.subarray(off, off + 1)));
    for (let off = 300; off < bytes.length; off += size) {
      const r = s.push(bytes.subarray(off, off + size));
      take(r);
      checkpoints += r.checkpoints;
      seenPages += r.pages;
    }
    t.ok(Buffer.concat(parts).equals(bytes), `chunks of ${size}: the parts rebuild the stream exactly`);
    t.ok(parts.every((b) => b.buffer === bytes.buffer), `chunks of ${size}: every part is a view of the pipe's bytes, not a copy`);
    t.same(cuts.filter((c) => !ends.has(c)), [], `chunks of ${size}: each push ends its output at a record boundary`);
    t.equal(checkpoints, 1, `chunks of ${size}: one CHECKPOINT`);
    t.equal(seenPages, pages, `chunks of ${size}: ${pages} pages counted`);
    t.equal(s.bufferedBytes, 0, `chunks of ${size}: nothing left over`);
  }
});

t.test('a record cut short stays buffered until its last byte arrives', async (t) => {
  const { bytes } = libxcStream();
  const s = new LibxcSplitter();
  // The last 10 bytes: the CHECKPOINT record (8) and the tail of the vCPU record before it.
  const first = s.push(bytes.subarray(0, bytes.length - 10));
  t.equal(first.checkpoints, 0, 'the CHECKPOINT is not out yet');
  t.ok(s.bufferedBytes > 0, `the partial vCPU record is held (${s.bufferedBytes} bytes)`);
  const rest = s.push(bytes.subarray(bytes.length - 10));
  t.equal(rest.checkpoints, 1, 'the CHECKPOINT comes with the last bytes');
  t.ok(Buffer.concat([...first.parts, ...rest.parts]).equals(bytes), 'and everything is there, in order');
  t.equal(s.bufferedBytes, 0, 'nothing left over');
});
