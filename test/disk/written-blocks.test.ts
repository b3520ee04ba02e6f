/** WrittenBlocks: the bitmap of blocks written since the last good checkpoint. */
import t from 'tap';
import { WrittenBlocks } from '../../src/disk/written-blocks.js';

t.test('a block size that is not a power of two of at least 512 bytes is refused, naming it', async (t) => {
  t.throws(() => new WrittenBlocks(1 << 20, 1000), /power of two of at least 512 bytes, got 1000/);
  t.throws(() => new WrittenBlocks(1 << 20, 256), /got 256/);
});

t.test('ranges() gives the runs of marked blocks as byte ranges, the last one cut at the end of the disk', async (t) => {
  const w = new WrittenBlocks(100 * 4096 + 100, 4096);
  t.equal(w.blocks, 101);
  t.equal(w.bitmapBytes, 13);
  w.mark(0, 1);
  w.mark(4096 * 9, 4096 * 3); // blocks 9-11
  w.mark(4096 * 12, 1); // block 12 joins the run
  w.mark(4096 * 64, 1); // past an empty byte of the bitmap
  w.mark(100 * 4096 + 50, 10); // the short last block
  t.same([...w.ranges()], [
    { offset: 0, length: 4096 },
    { offset: 9 * 4096, length: 4 * 4096 },
    { offset: 64 * 4096, length: 4096 },
    { offset: 100 * 4096, length: 100 },
  ]);
  t.equal(w.count(), 1 + 4 + 1 + 1);
});

t.test('a good checkpoint clears the blocks of every epoch up to it, except those a later epoch wrote', async (t) => {
  const w = new WrittenBlocks(64 * 512, 512);
  w.mark(0, 512 * 4); // epoch 1: 0-3
  w.close(1);
  w.mark(512 * 2, 512); // epoch 2: 2
  w.mark(512 * 10, 512); // epoch 2: 10
  w.close(2);
  w.mark(512 * 3, 1); // open: 3
  w.good(1);
  t.same([0, 1, 2, 3, 10].filter((b) => w.has(b)), [2, 3, 10]);
  w.good(1);
  t.same([0, 1, 2, 3, 10].filter((b) => w.has(b)), [2, 3, 10], 'twice is as once');
  w.good(2);
  t.same([0, 1, 2, 3, 10].filter((b) => w.has(b)), [3]);
  w.reset();
  t.equal(w.count(), 0);
});
