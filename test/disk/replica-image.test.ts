/**
 * ReplicaImage, the backup's copy of a replicated disk on Xen: made the primary's size, a
 * checkpoint's writes applied in order and made stable before it resolves, all or none when a
 * write fails, torn only when putting back fails too, and nothing written for writes outside
 * the disk.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReplicaImage, type ImageApplyError, type ImageIo } from '../../src/disk/replica-image.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-replica-image-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const w = (offset: number, byte: number, len = 4096) => ({ offset, data: Buffer.alloc(len, byte) });

/** Real writes, with the calls logged and the `failAt`-th write (0-based) failing with `code`. */
function io(o: { failAt?: number; failUndo?: boolean; code?: string } = {}): ImageIo & { log: string[] } {
  let n = 0;
  const log: string[] = [];
  return {
    log,
    write(fd, data, offset) {
      const i = n++;
      if (i === o.failAt || (o.failUndo && o.failAt !== undefined && i > o.failAt)) {
        log.push(`fail ${offset}`);
        throw Object.assign(new Error(`${o.code ?? 'ENOSPC'}: no space left on device, write`), { code: o.code ?? 'ENOSPC' });
      }
      fs.writeSync(fd, data, 0, data.length, offset);
      log.push(`write ${offset}+${data.length}`);
    },
    async sync() {
      log.push('sync');
    },
  };
}

t.test('a new image is made the primary disk\'s size, sparse, and an existing file is resized to it', async (t) => {
  const f = path.join(dir, 'new.img');
  const img = ReplicaImage.open(f, 8 << 20);
  t.equal(fs.statSync(f).size, 8 << 20);
  t.equal(fs.statSync(f).mode & 0o777, 0o600, 'readable by its owner only');
  img.close();
  fs.writeFileSync(f, Buffer.alloc(100, 1));
  ReplicaImage.open(f, 1 << 20).close();
  t.equal(fs.statSync(f).size, 1 << 20);
  t.throws(() => ReplicaImage.open(f, 0), /replica disk .*new\.img: size 0 is not a positive number of bytes/);
  t.throws(() => ReplicaImage.open(dir, 1 << 20), /cannot open the replica disk|neither a regular file nor a block device/);
});

t.test('a checkpoint\'s writes go in their order, then one sync, before applyAll resolves', async (t) => {
  const l = io();
  const img = ReplicaImage.open(path.join(dir, 'order.img'), 1 << 20, l);
  await img.applyAll([w(0, 1), w(4096, 2), w(0, 3, 512)], 1);
  t.same(l.log, ['write 0+4096', 'write 4096+4096', 'write 0+512', 'sync']);
  t.same(img.read(0, 512), Buffer.alloc(512, 3), 'the later write to the same bytes wins');
  t.same(img.read(512, 4096 - 512), Buffer.alloc(4096 - 512, 1));
  t.same(img.read(4096, 4096), Buffer.alloc(4096, 2));
  t.equal(img.applied, 1);
  l.log.length = 0;
  await img.applyAll([], 2);
  t.same(l.log, [], 'an epoch without writes touches nothing');
  img.close();
});

t.test('a write the guest flushed after is synced before the next write of the checkpoint', async (t) => {
  const l = io();
  const img = ReplicaImage.open(path.join(dir, 'barrier.img'), 1 << 20, l);
  await img.applyAll([w(0, 1), { ...w(4096, 2), flush: true }, w(8192, 3), { ...w(12288, 4), flush: true }], 1);
  t.same(l.log, ['write 0+4096', 'write 4096+4096', 'sync', 'write 8192+4096', 'write 12288+4096', 'sync'], 'one sync at the barrier, one at the end (a barrier on the last write needs no second)');
  t.equal(img.barrierSyncs, 1);
  l.log.length = 0;
  const f = io({ failAt: 3 });
  const img2 = ReplicaImage.open(path.join(dir, 'barrier2.img'), 1 << 20, f);
  const e = await img2.applyAll([w(0, 1), { ...w(4096, 2), flush: true }, w(8192, 3), w(12288, 4)], 1).then(() => null, (err: ImageApplyError) => err);
  t.ok(e, 'the failing write fails the checkpoint');
  t.notOk(e?.torn, 'not torn');
  t.same(img2.read(4096, 4096), Buffer.alloc(4096), 'writes before the barrier are put back too: all or none');
  img.close();
  img2.close();
});

t.test('a write outside the disk refuses the whole checkpoint before anything is written', async (t) => {
  const l = io();
  const img = ReplicaImage.open(path.join(dir, 'range.img'), 1 << 20, l);
  await t.rejects(img.applyAll([w(0, 9), w((1 << 20) - 100, 9, 200)], 7), /checkpoint 7: disk write at 1048476\+200 is beyond the 1048576-byte disk/);
  await t.rejects(img.applyAll([{ offset: -1, data: Buffer.alloc(1) }], 8), /disk write at -1\+1/);
  t.same(l.log, [], 'nothing written');
  t.same(img.read(0, 4096), Buffer.alloc(4096), 'the image is unchanged');
  img.close();
});

t.test('a write that fails puts back what the checkpoint already wrote: the image is the previous checkpoint', async (t) => {
  const f = path.join(dir, 'undo.img');
  const first = ReplicaImage.open(f, 1 << 20);
  await first.applyAll([w(0, 0xaa, 16384)], 1);
  first.close();
  const l = io({ failAt: 2 });
  const img = ReplicaImage.open(f, 1 << 20, l);
  const err = (await img.applyAll([w(0, 1), w(8192, 2), w(4096, 3)], 2).catch((e: unknown) => e)) as ImageApplyError;
  t.equal(err.code, 'ENOSPC', 'the errno goes with the error (the backup ends replication on a full disk)');
  t.match(err.message, /writing checkpoint 2's disk writes to .*undo\.img: ENOSPC.*\(the image is as before\)/);
  t.equal(err.path, f);
  t.notOk(err.torn);
  t.equal(img.torn, null);
  t.same(img.read(0, 16384), Buffer.alloc(16384, 0xaa), 'every byte as checkpoint 1 left it');
  t.same(l.log.slice(0, 3), ['write 0+4096', 'write 8192+4096', 'fail 4096']);
  t.equal(l.log.at(-1), 'sync', 'the restored bytes are made stable too');
  img.close();
});

t.test('when putting back fails too the image is torn and takes no more checkpoints', async (t) => {
  const l = io({ failAt: 1, failUndo: true, code: 'EIO' });
  const img = ReplicaImage.open(path.join(dir, 'torn.img'), 1 << 20, l);
  const err = (await img.applyAll([w(0, 1), w(4096, 2)], 3).catch((e: unknown) => e)) as ImageApplyError;
  t.equal(err.torn, true);
  t.match(err.message, /the image is torn/);
  t.match(img.torn, /^checkpoint 3: /);
  await t.rejects(img.applyAll([w(0, 5)], 4), /is torn .*: it takes no more checkpoints/);
  img.close();
});
