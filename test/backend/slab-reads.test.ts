import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { SLAB_READ_BYTES, SlabPool, slabReadFd } from '../../src/util/slab-reads.js';

t.test('large reads of a pipe pass every byte on, in order, as views that later reads never overwrite', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-pipe-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'fifo');
  const src = path.join(dir, 'src');
  execFileSync('mkfifo', [fifo]);
  // 5 MiB that identify their offsets, written in uneven pieces
  const bytes = Buffer.alloc(5 << 20);
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE(i, i);
  fs.writeFileSync(src, bytes);
  const pieces = [1, 7, 300, 5000, 70000, 2000000];
  const writer = spawn(process.execPath, [
    '-e',
    `const fs = require('fs'); const b = fs.readFileSync(${JSON.stringify(src)}); const fd = fs.openSync(${JSON.stringify(fifo)}, 'w');
     let off = 0; for (const n of ${JSON.stringify(pieces)}) { fs.writeSync(fd, b, off, n); off += n; }
     while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off); fs.closeSync(fd);`,
  ]);
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY); // returns once the writer has opened its end (libuv makes it non-blocking)
  const chunks: Buffer[] = [];
  const sock = slabReadFd(fd, (c) => chunks.push(c));
  await new Promise<void>((resolve) => sock.once('end', () => resolve()));
  sock.destroy();
  await new Promise((r) => writer.once('exit', r));
  const got = Buffer.concat(chunks);
  t.equal(got.length, bytes.length, 'every byte arrived');
  t.ok(got.equals(bytes), 'in order, none overwritten by a later read');
  t.ok(chunks.every((c) => c.buffer.byteLength === SLAB_READ_BYTES), 'each chunk is a view of one of the reader\'s buffers');
  const slabs = new Set(chunks.map((c) => c.buffer));
  t.ok(slabs.size < chunks.length, `reads share buffers (${chunks.length} reads in ${slabs.size} buffers)`);
});

t.test('a slab pool reuses a buffer only once every byte read into it was given back', async (t) => {
  const pool = new SlabPool(1 << 16, 4);
  const a = pool.take();
  t.equal(pool.allocated, 1);
  pool.delivered(a.buffer, 100);
  pool.delivered(a.buffer, 50);
  const v1 = a.subarray(0, 100);
  const v2a = a.subarray(100, 120);
  const v2b = a.subarray(120, 150);
  pool.retire(a.buffer);
  pool.release(v1);
  pool.release(v2a);
  t.equal(pool.freeCount, 0, 'not free while 30 bytes are still held');
  const b = pool.take();
  t.not(b.buffer, a.buffer, 'a held buffer is not handed out again');
  pool.release(v2b);
  t.equal(pool.freeCount, 1, 'free once every byte came back');
  const c = pool.take();
  t.equal(c.buffer, a.buffer, 'and then reused');
  t.equal(pool.reused, 1);

  // a buffer still taking reads is not free, even with every byte so far given back
  pool.delivered(c.buffer, 10);
  pool.release(c.subarray(0, 10));
  t.equal(pool.freeCount, 0, 'not retired: not free');
  pool.retire(c.buffer);
  t.equal(pool.freeCount, 1, 'retired and all given back: free');

  // giving back more than was read marks the buffer never to be reused
  const d = pool.take();
  t.equal(d.buffer, c.buffer);
  pool.delivered(d.buffer, 8);
  pool.release(d.subarray(0, 8));
  pool.release(d.subarray(0, 8));
  pool.retire(d.buffer);
  t.equal(pool.overReleased, 1, 'the double release is counted');
  t.equal(pool.freeCount, 0, 'and the buffer is not reused');
  // bytes that were never the pool's are ignored
  pool.release(Buffer.alloc(5));
  t.equal(pool.overReleased, 1);
});

t.test('reads through a pool: every byte in order, and a steady relay allocates no new buffers', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-pool-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const total = 24 << 20;
  const writer = spawn(process.execPath, [
    '-e',
    `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(fifo)}, 'w'); const b = Buffer.alloc(1 << 18);
     for (let off = 0; off < ${total}; off += b.length) { for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(off + i, i); fs.writeSync(fd, b); }
     fs.closeSync(fd);`,
  ]);
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY);
  const pool = new SlabPool();
  let expect = 0;
  let bad = 0;
  let carry = Buffer.alloc(0);
  // the consumer checks each read, then gives it back at once (as an acknowledged checkpoint would)
  const sock = slabReadFd(
    fd,
    (c) => {
      const all = carry.length ? Buffer.concat([carry, c]) : c;
      let i = 0;
      for (; i + 4 <= all.length; i += 4, expect += 4) if (all.readUInt32LE(i) !== expect) bad++;
      carry = Buffer.from(all.subarray(i));
      pool.release(c);
    },
    pool,
  );
  await new Promise<void>((resolve) => sock.once('end', () => resolve()));
  sock.destroy();
  await new Promise((r) => writer.once('exit', r));
  t.equal(expect, total, 'every byte arrived');
  t.equal(bad, 0, 'in order');
  t.ok(pool.allocated <= 3, `${pool.allocated} buffers allocated for ${total >> 20} MiB`);
  t.ok(pool.reused >= 10, `${pool.reused} reuses`);
  t.equal(pool.overReleased, 0);
});
