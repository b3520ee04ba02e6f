import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { SLAB_READ_BYTES, slabReadFd } from '../../src/util/slab-reads.js';

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
