/**
 * NbdDisk, the DiskTap over the NBD server: what it records for the backup, in what order,
 * when it replies, and what it marks for a resync. Driven through the server by a raw client
 * (exact control of each request) and by qemu-io where a real client matters.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { DiskWrite, SaveSession } from '../../src/backend/types.js';
import { DiskReplicationDevice } from '../../src/devices/disk.js';
import { decodeDiskWrites, encodeDiskWrites } from '../../src/transport/channel-records.js';
import { NBD_CMD, NBD_CMD_FLAG_FUA, NBD_ERR } from '../../src/disk/nbd/protocol.js';
import { DeviceEvents } from '../../src/engine/events.js';
import type { DeviceContext } from '../../src/engine/types.js';
import { mulberry32 } from '../../src/util/prng.js';
import { RawClient, missingTool, serveImage, settlesWithin } from '../helpers/nbd.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const noQemu = missingTool('qemu-io', 'qemu-utils');

function randomWrites(seed: number, n: number, size: number): DiskWrite[] {
  const r = mulberry32(seed);
  const out: DiskWrite[] = [];
  for (let i = 0; i < n; i++) {
    const length = 1 + Math.floor(r() * 20000);
    const offset = Math.floor(r() * (size - length));
    const data = Buffer.alloc(length);
    for (let j = 0; j < length; j++) data[j] = Math.floor(r() * 256);
    out.push({ offset, data });
  }
  return out;
}

async function connected(socket: string): Promise<RawClient> {
  const c = await RawClient.connect(socket);
  await c.go();
  return c;
}

const CAP = 64 * 1024;

/** Two 32 KiB writes of `fill` at offset 0: exactly the cap. */
async function fillTheCap(t: Test, c: RawClient, fill: number): Promise<void> {
  for (let i = 0; i < 2; i++) t.equal((await c.call(NBD_CMD.WRITE, i * 32768, 32768, { data: Buffer.alloc(32768, fill) })).error, 0, `write ${i + 1} of 2 up to the cap`);
}

/** A served image with a 64 KiB epoch cap, recording, a client connected, and the cap reached. */
async function atTheCap(t: Test) {
  const s = await serveImage(MiB, { disk: { epochCapBytes: CAP } });
  t.teardown(() => s.close());
  s.disk.start();
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  await fillTheCap(t, c, 1);
  return { s, c };
}

t.test('drain() returns exactly the writes issued between two drains, in issue order, each with its offset and data', async (t) => {
  const size = 2 * MiB;
  const s = await serveImage(size);
  t.teardown(() => s.close());
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  await c.call(NBD_CMD.WRITE, 0, 4, { data: Buffer.from('pre!') });
  t.same(s.disk.drain(), [], 'before start() writes are applied but not recorded');
  s.disk.start();
  for (const [seed, epoch] of [[1, 1], [2, 2]] as const) {
    const writes = randomWrites(seed, 60, size); // overlapping, unaligned
    for (const w of writes) t.equal((await c.call(NBD_CMD.WRITE, w.offset, w.data.length, { data: w.data })).error, 0);
    const d = s.disk.drainEpoch(epoch);
    s.disk.resumed();
    t.equal(d.epoch, epoch);
    t.equal(d.writes.length, writes.length, `epoch ${epoch}: one recorded write per write issued`);
    let same = 0;
    writes.forEach((w, i) => {
      const got = d.writes[i]!;
      if (got.offset === w.offset && Buffer.compare(got.data, w.data) === 0) same++;
      else t.fail(`epoch ${epoch} write ${i}: got ${got.data.length} bytes at ${got.offset}, expected ${w.data.length} at ${w.offset}`);
    });
    t.equal(same, writes.length, `epoch ${epoch}: every write matches, in order`);
    t.equal(d.bytes, writes.reduce((n, w) => n + w.data.length, 0));
    t.same(d.barriers, []);
  }
  t.same(s.disk.drain(), [], 'a drain with no write since the last returns nothing');
  s.disk.resumed();
});

t.test('replaying the drained writes on a copy of the image as it was gives the image as it is', { skip: noQemu }, async (t) => {
  const size = 4 * MiB;
  const r = mulberry32(3);
  const fill = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) fill.fill(Math.floor(r() * 256), i, i + 4096);
  const s = await serveImage(size, { fill });
  t.teardown(() => s.close());
  s.disk.start();
  const cmds: string[] = [];
  for (let i = 0; i < 40; i++) cmds.push('-c', `write -P ${i + 1} ${Math.floor(r() * (size / 512 - 64)) * 512} ${(1 + Math.floor(r() * 64)) * 512}`);
  cmds.push('-c', 'write -z 8192 65536', '-c', 'flush');
  await run('qemu-io', ['-f', 'raw', s.uri, ...cmds]);
  const d = s.disk.drainEpoch();
  s.disk.resumed();
  t.equal(d.writes.length, 41, 'each qemu-io write is one recorded write');
  const copy = Buffer.from(fill);
  for (const w of d.writes) w.data.copy(copy, w.offset);
  t.equal(Buffer.compare(copy, fs.readFileSync(s.image)), 0, 'the backup, applying them in order, has the primary image');
  t.ok(d.barriers.includes(41), 'the flush after the last write is a barrier after it');
});

t.test('a flush is replied to only after the fsync returned, and a failed fsync is an EIO', async (t) => {
  let release!: () => void;
  let fail = false;
  const seen: string[] = [];
  const s = await serveImage(MiB, {
    disk: {
      sync: async (fd, dataOnly) => {
        const b = Buffer.alloc(4);
        fs.readSync(fd, b, 0, 4, 0);
        seen.push(`${dataOnly ? 'fdatasync' : 'fsync'}:${b.toString()}`);
        await new Promise<void>((r) => (release = r));
        if (fail) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      },
    },
  });
  t.teardown(() => s.close());
  s.disk.start();
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  await c.call(NBD_CMD.WRITE, 0, 4, { data: Buffer.from('AAAA') });
  const h = c.request(NBD_CMD.FLUSH, 0, 0);
  const reply = c.reply();
  t.notOk(await settlesWithin(reply, 150), 'no reply while the fsync runs');
  t.same(seen, ['fsync:AAAA'], 'the fsync ran after the write was on the image');
  release();
  t.match(await reply, { error: 0, handle: h }, 'the reply once it returned');
  // FUA: the write's own fdatasync
  const fua = c.request(NBD_CMD.WRITE, 0, 4, { data: Buffer.from('BBBB'), flags: NBD_CMD_FLAG_FUA });
  const fuaReply = c.reply();
  t.notOk(await settlesWithin(fuaReply, 100), 'a FUA write waits for its fdatasync');
  t.same(seen.at(-1), 'fdatasync:BBBB');
  release();
  t.match(await fuaReply, { error: 0, handle: fua });
  fail = true;
  const bad = c.call(NBD_CMD.FLUSH, 0, 0);
  await new Promise((r) => setTimeout(r, 20));
  release();
  t.equal((await bad).error, NBD_ERR.EIO, 'a failed fsync fails the flush with EIO');
  t.ok(s.lines.some((l) => /NBD_CMD_FLUSH failed on the export: EIO/.test(l.message)));
});

t.test('flushes and FUA writes are recorded as barriers at their place among the epoch\'s writes', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  s.disk.start();
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  const w = (off: number, flags = 0) => c.call(NBD_CMD.WRITE, off, 512, { data: Buffer.alloc(512, off / 512), flags });
  await c.call(NBD_CMD.FLUSH, 0, 0); // nothing before it: a barrier at 0
  await w(0);
  await w(512);
  await c.call(NBD_CMD.FLUSH, 0, 0);
  await c.call(NBD_CMD.FLUSH, 0, 0); // twice in a row: one barrier
  await w(1024, NBD_CMD_FLAG_FUA);
  await w(1536);
  const d = s.disk.drainEpoch();
  s.disk.resumed();
  t.same(d.barriers, [0, 2, 3], 'barriers after 0, 2 and 3 writes');
  t.same(d.writes.map((x) => x.offset), [0, 512, 1024, 1536]);
  t.same(d.writes.map((x) => x.flush === true), [false, true, true, false], 'each barrier marks the write before it (the one at 0 covers earlier epochs only)');
  t.same(decodeDiskWrites(encodeDiskWrites(d.writes)).map((x) => x.flush === true), [false, true, true, false], 'and the marks cross the wire');
  t.equal(s.disk.stats.flushes, 4);
});

t.test('from drain() to resumed(), replies are held while the requests still reach the image', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  s.disk.start();
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  s.disk.drain(1);
  const h = c.request(NBD_CMD.WRITE, 0, 5, { data: Buffer.from('later') });
  const reply = c.reply();
  t.notOk(await settlesWithin(reply, 150), 'no reply while the checkpoint is captured');
  t.equal(fs.readFileSync(s.image).subarray(0, 5).toString(), 'later', 'the write is on the image already');
  t.equal(s.disk.pendingBytes, 5, 'and recorded in the next epoch');
  s.disk.resumed();
  t.match(await reply, { error: 0, handle: h });
  t.same(s.disk.drain(2).map((w) => w.data.toString()), ['later']);
  s.disk.resumed();
});

t.test('the epoch cap: past it no further request is read until the next drain', async (t) => {
  const { s, c } = await atTheCap(t);
  t.equal(s.disk.pendingBytes, CAP);
  const next = c.call(NBD_CMD.WRITE, CAP, 4096, { data: Buffer.alloc(4096, 2) });
  t.notOk(await settlesWithin(next, 150), 'the request past the cap waits');
  t.ok(fs.readFileSync(s.image).subarray(65536, 69632).every((b) => b === 0), 'and is not applied');
  t.ok(s.lines.some((l) => /reached the cap: the guest I\/O waits for the next checkpoint/.test(l.message)), 'the stall is logged');
  t.equal(s.disk.drain(1).length, 2);
  s.disk.resumed();
  t.equal((await next).error, 0, 'the drain lets it through');
  t.equal(s.disk.pendingBytes, 4096);
  t.equal(s.disk.stats.capStalls, 1);
  t.ok(s.disk.stats.capStalledMs >= 100);
});

t.test('the epoch cap holds nothing once the guest is about to be suspended: a PV guest cannot suspend with requests outstanding', async (t) => {
  const { s, c } = await atTheCap(t);
  const held = c.call(NBD_CMD.WRITE, CAP, 4096, { data: Buffer.alloc(4096, 2) });
  t.notOk(await settlesWithin(held, 150), 'past the cap a request waits');
  s.disk.suspending();
  t.equal((await held).error, 0, 'suspending() lets the held request through before the drain');
  t.equal((await c.call(NBD_CMD.WRITE, 69632, 4096, { data: Buffer.alloc(4096, 3) })).error, 0, 'and takes new ones until the drain');
  t.ok(fs.readFileSync(s.image).subarray(65536, 73728).every((b, i) => b === (i < 4096 ? 2 : 3)), 'both applied');
  const drained = s.disk.drain(1);
  t.same(drained.map((w) => w.offset), [0, 32768, 65536, 69632], 'all four go with the epoch that closes, past the cap');
  s.disk.resumed();
  await fillTheCap(t, c, 4);
  const next = c.call(NBD_CMD.WRITE, CAP, 4096, { data: Buffer.alloc(4096, 5) });
  t.notOk(await settlesWithin(next, 150), 'after the drain the cap holds again');
  s.disk.drain(2);
  s.disk.resumed();
  t.equal((await next).error, 0);
});

t.test('onWritePending fires at the first write after each drain, and not for the ones after it', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  s.disk.start();
  let fired = 0;
  const sub = s.disk.onWritePending(() => fired++);
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  for (let i = 0; i < 3; i++) await c.call(NBD_CMD.WRITE, i * 512, 512, { data: Buffer.alloc(512) });
  t.equal(fired, 1);
  s.disk.drain();
  s.disk.resumed();
  await c.call(NBD_CMD.READ, 0, 512);
  t.equal(fired, 1, 'a read is no write');
  await c.call(NBD_CMD.WRITE, 0, 512, { data: Buffer.alloc(512) });
  t.equal(fired, 2);
  sub.dispose();
  s.disk.drain();
  s.disk.resumed();
  await c.call(NBD_CMD.WRITE, 0, 512, { data: Buffer.alloc(512) });
  t.equal(fired, 2, 'a disposed listener is not called');
});

t.test('readAll covers the whole image in order, its last chunk cut at the end', async (t) => {
  const size = 3 * MiB + 4096 + 512;
  const r = mulberry32(9);
  const fill = Buffer.alloc(size);
  for (let i = 0; i < size; i++) fill[i] = Math.floor(r() * 256);
  const s = await serveImage(size, { fill });
  t.teardown(() => s.close());
  const all = await s.disk.readAll();
  t.equal(all.sizeBytes, size);
  const got = Buffer.alloc(size);
  let next = 0;
  for await (const ch of all.chunks) {
    t.equal(ch.offset, next, `chunk at ${ch.offset} follows the previous one`);
    ch.data.copy(got, ch.offset);
    next = ch.offset + ch.data.length;
  }
  t.equal(next, size, 'up to the last byte');
  t.equal(Buffer.compare(got, fill), 0, 'byte for byte');
});

t.test('the written-blocks bitmap marks exactly the blocks written, and a good checkpoint clears only its own', async (t) => {
  const size = MiB + 1000; // a last block of 1000 bytes
  const s = await serveImage(size, { disk: { blockBytes: 4096 } });
  t.teardown(() => s.close());
  s.disk.start();
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  const write = (off: number, len: number, v: number) => c.call(NBD_CMD.WRITE, off, len, { data: Buffer.alloc(len, v) });
  const blocksOf = (off: number, len: number) => Array.from({ length: Math.floor((off + len - 1) / 4096) - Math.floor(off / 4096) + 1 }, (_, i) => Math.floor(off / 4096) + i);
  const marked = () => Array.from({ length: s.disk.written.blocks }, (_, b) => b).filter((b) => s.disk.written.has(b));
  // epoch 1
  await write(4095, 2, 1); // straddles blocks 0 and 1
  await write(40960, 4096, 1); // exactly block 10
  await write(size - 10, 10, 1); // the short last block
  s.disk.drain(1);
  s.disk.resumed();
  // epoch 2
  await write(40960 + 100, 1, 2); // block 10 again
  await write(200000, 10000, 2);
  s.disk.drain(2);
  s.disk.resumed();
  // epoch 3, open
  await c.call(NBD_CMD.WRITE_ZEROES, 500000, 8192);
  const e1 = [...blocksOf(4095, 2), 10, blocksOf(size - 10, 10)[0]!];
  const e2 = [10, ...blocksOf(200000, 10000)];
  const e3 = blocksOf(500000, 8192);
  const union = (...l: number[][]) => [...new Set(l.flat())].sort((a, b) => a - b);
  t.same(marked(), union(e1, e2, e3), 'every block written since the start, no other');
  t.equal(s.disk.written.count(), union(e1, e2, e3).length);
  s.disk.committed(1);
  t.same(marked(), union(e2, e3), 'checkpoint 1 is good: its blocks go, block 10 stays (epoch 2 wrote it)');
  // the resync reads exactly those blocks, as they are now
  const img = fs.readFileSync(s.image);
  const ranges: [number, number][] = [];
  for await (const w of s.disk.readWritten().chunks) {
    ranges.push([w.offset, w.data.length]);
    t.equal(Buffer.compare(w.data, img.subarray(w.offset, w.offset + w.data.length)), 0, `resync data at ${w.offset} is the image's`);
  }
  const expectBlocks = union(e2, e3);
  t.same(ranges.flatMap(([o, l]) => blocksOf(o, l)), expectBlocks, 'the resync covers the marked blocks and nothing else');
  s.disk.committed(2);
  t.same(marked(), e3, 'checkpoint 2 is good: only the open epoch remains');
  s.disk.drain(3);
  s.disk.resumed();
  s.disk.committed(3);
  t.equal(s.disk.written.count(), 0, 'everything is on the backup');
});

t.test('the disk device drains with the epoch, lets held replies go at preresume, forgets blocks at commit, and counts pending writes as held', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  const dev = new DiskReplicationDevice();
  const events = new DeviceEvents();
  let pending = 0;
  events.on('output-pending', () => pending++);
  const ctx = { session: { disk: s.disk } as unknown as SaveSession, domainName: 'vm', events, side: {} } as unknown as DeviceContext;
  dev.setup(ctx);
  t.teardown(() => dev.teardown());
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  await dev.begin(async () => {});
  await c.call(NBD_CMD.WRITE, 0, 8192, { data: Buffer.alloc(8192, 3) });
  t.equal(pending, 1, 'the first write of the epoch is an output-pending event');
  t.equal(dev.heldBytes, 8192, 'the open epoch counts against the buffer limit');
  dev.postsuspend(5);
  t.equal(dev.contribute().length, 1, 'one DISK_WRITES frame for checkpoint 5');
  t.equal(dev.heldBytes, 8192, 'now as sent and not acknowledged');
  const held = c.call(NBD_CMD.WRITE, 8192, 512, { data: Buffer.alloc(512, 4) });
  t.notOk(await settlesWithin(held, 100), 'replies wait while checkpoint 5 is captured');
  dev.preresume();
  t.equal((await held).error, 0, 'preresume lets them go');
  t.equal(dev.heldBytes, 8192 + 512);
  t.ok(s.disk.written.has(0), 'block 0 is written since the last good checkpoint');
  dev.commit(5);
  t.notOk(s.disk.written.has(0), 'checkpoint 5 acknowledged: block 0 is on the backup');
  t.ok(s.disk.written.has(2), 'block 2, written in epoch 6, is not');
  t.equal(dev.heldBytes, 512);
});

t.test('during the precopy the disk records nothing and the cap holds nothing: the disk copy read after it has those writes', async (t) => {
  const s = await serveImage(MiB, { disk: { epochCapBytes: CAP } });
  t.teardown(() => s.close());
  const dev = new DiskReplicationDevice();
  const ctx = { session: { disk: s.disk } as unknown as SaveSession, domainName: 'vm', events: new DeviceEvents(), side: {} } as unknown as DeviceContext;
  dev.setup(ctx);
  t.teardown(() => dev.teardown());
  const c = await connected(s.socket);
  t.teardown(() => c.end());
  // the memory's precopy: the guest writes four times the cap, and every write completes
  for (let i = 0; i < 8; i++) {
    const r = c.call(NBD_CMD.WRITE, i * 32768, 32768, { data: Buffer.alloc(32768, 10 + i) });
    t.ok(await settlesWithin(r, 2000), `precopy write ${i + 1} of 8 is not held`);
  }
  t.equal(s.disk.pendingBytes, 0, 'nothing recorded before the disk copy');
  t.equal(s.disk.stats.capStalls, 0, 'no stall at the cap');
  // the disk's copy (begin), then one write after it, then the first checkpoint's drain
  const frames: Buffer[] = [];
  await dev.begin(async (f) => void frames.push(f.body));
  await c.call(NBD_CMD.WRITE, 0, 4096, { data: Buffer.alloc(4096, 99) });
  dev.presuspend();
  dev.postsuspend(1);
  const copy = Buffer.alloc(MiB);
  for (const w of frames.flatMap((b) => decodeDiskWrites(b))) Buffer.from(w.data).copy(copy, w.offset);
  for (let i = 0; i < 8; i++) t.ok(copy.subarray(i * 32768, (i + 1) * 32768).every((b) => b === 10 + i), `the copy has precopy write ${i + 1}`);
  const logged = dev.contribute().flatMap((f) => decodeDiskWrites(f.body));
  t.same(logged.map((w) => [w.offset, w.data.length]), [[0, 4096]], 'the first checkpoint carries only the write made after the copy');
  for (const w of logged) Buffer.from(w.data).copy(copy, w.offset);
  t.same(copy, fs.readFileSync(s.image), 'copy then log is the primary\'s disk');
  dev.preresume();
});
