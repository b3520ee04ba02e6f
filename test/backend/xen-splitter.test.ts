import t from 'tap';
import { LibxcSplitter } from '../../src/backend/xen/splitter.js';
import { XenStreamWriter } from '../../src/transport/xenstream.js';
import { XL_REC, encodeFrame } from '../../src/transport/records.js';

/** A libxc stream as xc_domain_save writes it: headers, pages, vCPU context, CHECKPOINT. */
function libxcStream(): { bytes: Buffer; pages: number } {
  const w = new XenStreamWriter();
  const begin = w.begin({ domainType: 1, xenMajor: 4, xenMinor: 17 });
  // begin() also emits the libxl header and LIBXC_CONTEXT (16 + 8 bytes): xc_domain_save does not.
  const libxc = begin.subarray(16 + 8);
  const pfns = Array.from({ length: 1500 }, (_, i) => i * 3);
  const pages = Buffer.alloc(1500 * 4096, 7);
  const cp = w.checkpoint();
  const checkpointEnd = encodeFrame(XL_REC.CHECKPOINT_END, Buffer.alloc(0));
  const libxcCheckpoint = cp.subarray(0, cp.length - checkpointEnd.length); // without the libxl record
  const bytes = Buffer.concat([libxc, ...w.pageDataRecords(pfns, pages), w.vcpuBasic(0, Buffer.alloc(64, 1)), libxcCheckpoint]);
  return { bytes, pages: 1500 };
}

t.test('the splitter returns whole records whatever the pipe chunking, and finds the checkpoint', async (t) => {
  const { bytes, pages } = libxcStream();
  for (const size of [7, 4096, 65536, bytes.length]) {
    const s = new LibxcSplitter();
    const records: Buffer[] = [];
    let checkpoints = 0;
    let seenPages = 0;
    // The first 300 bytes (headers, first record header) arrive one byte at a time.
    for (let off = 0; off < 300; off++) records.push(...s.push(bytes.subarray(off, off + 1)).records);
    for (let off = 300; off < bytes.length; off += size) {
      const r = s.push(bytes.subarray(off, off + size));
      records.push(...r.records);
      checkpoints += r.checkpoints;
      seenPages += r.pages;
    }
    t.ok(Buffer.concat(records).equals(bytes), `chunks of ${size}: the records rebuild the stream exactly`);
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
  t.ok(Buffer.concat([...first.records, ...rest.records]).equals(bytes), 'and everything is there, in order');
  t.equal(s.bufferedBytes, 0, 'nothing left over');
});
