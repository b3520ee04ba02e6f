import t from 'tap';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { GuestMemory, PAGE_SIZE } from '../../src/backend/sim/memory.js';

const dirty = (m: GuestMemory): number[] => [...m.readAndClearDirty()];

t.test('markDirty marks exactly the pages a write touches', async (t) => {
  const m = GuestMemory.allocate(1); // 256 pages
  t.equal(m.pages, 256);

  m.markDirty(0, 1);
  t.same(dirty(m), [0], 'first byte of page 0');

  m.markDirty(PAGE_SIZE - 1, 1);
  t.same(dirty(m), [0], 'last byte of page 0 stays in page 0');

  m.markDirty(PAGE_SIZE - 1, 2);
  t.same(dirty(m), [0, 1], 'a 2-byte write across the boundary dirties both pages');

  m.markDirty(PAGE_SIZE, PAGE_SIZE);
  t.same(dirty(m), [1], 'exactly one aligned page');

  m.markDirty(PAGE_SIZE * 5 + 10, PAGE_SIZE * 3);
  t.same(dirty(m), [5, 6, 7, 8], 'an unaligned 3-page write spans 4 pages');

  m.markDirty(PAGE_SIZE * 31, PAGE_SIZE * 2);
  t.same(dirty(m), [31, 32], 'pages on both sides of a bitmap word boundary (bit 31 of word 0, bit 0 of word 1)');

  m.markDirty(PAGE_SIZE * 255 + 100, 64);
  t.same(dirty(m), [255], 'the last page of memory');

  m.markDirty(0, 256 * PAGE_SIZE);
  const all = dirty(m);
  t.equal(all.length, 256, 'the whole memory');
  t.same(all, Array.from({ length: 256 }, (_, i) => i));
});

t.test('a zero-length write dirties no page, wherever it is', async (t) => {
  const m = GuestMemory.allocate(1);
  t.doesNotThrow(() => m.markDirty(3 * PAGE_SIZE, 0));
  t.equal(m.dirtyCount(), 0, 'zero-length write at page 3');
  t.doesNotThrow(() => m.markDirty(0, 0), 'zero-length write at offset 0 does not throw');
  t.equal(m.dirtyCount(), 0, 'zero-length write at offset 0 dirties nothing');
});

t.test('readAndClearDirty returns the dirty pfns in ascending order and clears them', async (t) => {
  const m = GuestMemory.allocate(4); // 1024 pages
  const pfns = [1023, 0, 31, 32, 63, 64, 500, 7, 999, 33, 95, 96];
  for (const p of pfns) m.markDirty(p * PAGE_SIZE + 17, 1);
  m.markDirty(500 * PAGE_SIZE, 8); // the same page again is still one page
  t.equal(m.dirtyCount(), pfns.length, 'dirtyCount counts distinct pages');
  t.equal(m.dirtyCount(), pfns.length, 'dirtyCount does not clear');
  const got = m.readAndClearDirty();
  t.type(got, Uint32Array);
  t.same([...got], [...pfns].sort((a, b) => a - b));
  t.equal(m.dirtyCount(), 0, 'cleared after the read');
  t.equal(m.readAndClearDirty().length, 0, 'a second read finds nothing');

  m.markDirty(10 * PAGE_SIZE, 1);
  t.same(dirty(m), [10], 'pages dirtied after a read are reported by the next read');
});

t.test('clearDirty forgets every dirty page', async (t) => {
  const m = GuestMemory.allocate(1);
  m.markDirty(0, 256 * PAGE_SIZE);
  t.equal(m.dirtyCount(), 256);
  m.clearDirty();
  t.equal(m.dirtyCount(), 0);
  t.same(dirty(m), []);
});

t.test('page(pfn) is a 4 KiB view of guest memory at pfn', async (t) => {
  const m = GuestMemory.allocate(1);
  const p = m.page(3);
  t.equal(p.length, PAGE_SIZE);
  p[0] = 0xab;
  p[PAGE_SIZE - 1] = 0xcd;
  t.equal(m.bytes[3 * PAGE_SIZE], 0xab);
  t.equal(m.bytes[4 * PAGE_SIZE - 1], 0xcd);
  t.equal(m.dirtyCount(), 0, 'writing through page() is not a guest write: nothing is marked');
});

t.test('pages marked by another thread while the host reads-and-clears are never lost', async (t) => {
  const m = GuestMemory.allocate(64); // 16384 pages, 512 bitmap words
  const ctl = new Int32Array(new SharedArrayBuffer(8)); // [0] go, [1] done
  const memUrl = new URL('../../src/backend/sim/memory.js', import.meta.url).href;
  // The worker is the guest: it marks every page exactly once through the real markDirty,
  // visiting the pages bit by bit across all words so that every bitmap word is hit over and
  // over while the host is clearing it.
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.memUrl).then(({ GuestMemory }) => {
      const mem = new GuestMemory(workerData.shared);
      const ctl = new Int32Array(workerData.ctl);
      const words = Math.ceil(mem.pages / 32);
      parentPort.postMessage('ready');
      Atomics.wait(ctl, 0, 0);
      let n = 0;
      for (let bit = 0; bit < 32; bit++) {
        for (let w = 0; w < words; w++) {
          const pfn = w * 32 + bit;
          mem.markDirty(pfn * 4096 + ((pfn * 7) & 4095), 1);
          if ((++n & 1023) === 0) Atomics.wait(ctl, 1, 0, 1); // stretch the run over a few ms
        }
      }
      Atomics.store(ctl, 1, 1);
    });
  `;
  const worker = new Worker(code, { eval: true, workerData: { memUrl, shared: m.shared, ctl: ctl.buffer } });
  t.teardown(() => worker.terminate());
  const [msg] = await once(worker, 'message');
  t.equal(msg, 'ready');

  const seen = new Uint8Array(m.pages);
  let reported = 0;
  let nonEmptyReads = 0;
  const collect = () => {
    const pfns = m.readAndClearDirty();
    if (pfns.length) nonEmptyReads++;
    for (let i = 1; i < pfns.length; i++) if (pfns[i]! <= pfns[i - 1]!) throw new Error('pfns not ascending');
    for (const p of pfns) seen[p]!++;
    reported += pfns.length;
  };
  Atomics.store(ctl, 0, 1);
  Atomics.notify(ctl, 0);
  const deadline = performance.now() + 10_000;
  while (Atomics.load(ctl, 1) === 0 && performance.now() < deadline) collect();
  t.equal(Atomics.load(ctl, 1), 1, 'the worker finished');
  collect();

  t.equal(reported, m.pages, 'every mark was reported exactly once');
  t.equal(seen.filter((c) => c === 1).length, m.pages, 'every page was seen once and only once');
  t.ok(nonEmptyReads > 1, `the reads overlapped the marking (${nonEmptyReads} reads found pages)`);
  t.equal(m.dirtyCount(), 0);
});
