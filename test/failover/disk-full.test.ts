/**
 * A full disk on the backup. The sim replica applies a checkpoint's disk writes first and all
 * or none (memory is not touched when they fail; a replica whose image could not be put back
 * never activates). The backup then ends replication of the domain: NACK and GOODBYE with the
 * reason, the replica dropped; the primary runs on unprotected and reconnects with backoff,
 * refused with the error while the disk is full; protection comes back once it has room.
 * The disk fills by fault injection (the daemon's `sim-disk` command, src/backend/sim/disk.ts
 * SimDiskSpace); as root, the rollback is also checked against the kernel's own ENOSPC on a
 * small tmpfs.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { SimBackend } from '../../src/backend/sim/host.js';
import { SimDisk } from '../../src/backend/sim/disk.js';
import type { DiskWrite, VerifiedCheckpoint } from '../../src/backend/types.js';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from '../../src/demo/hosts.js';
import { KvClient, KvConnection } from '../../src/client/kv.js';
import { startEtcd } from '../helpers/etcd.js';

const PAGE = 4096;
const MEMORY_MIB = 8;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = performance.now() + ms;
  let v = await what();
  while (!ok(v) && performance.now() < deadline) {
    await sleep(50);
    v = await what();
  }
  return v;
}

function checkpoint(epoch: number, pages: [number, number][], diskWrites: [number, number, number][]): VerifiedCheckpoint {
  const regs = Buffer.alloc(64);
  regs.writeInt32LE(1, 8 * 4); // booted
  return {
    epoch,
    xen: [],
    pages: pages.map(([pfn, fill]) => ({ pfn, type: 0, data: Buffer.alloc(PAGE, fill) })),
    vcpus: [{ id: 0, context: regs }],
    diskWrites: diskWrites.map(([offset, len, fill]): DiskWrite => ({ offset, data: Buffer.alloc(len, fill) })),
  };
}

t.test('the sim replica applies a checkpoint whole or not at all when its disk is full', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-diskfull-unit-'));
  const be = new SimBackend({ hostName: 'b', stateDir: dir });
  t.teardown(async () => {
    await be.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const domain = { name: 'vm-df', memoryMiB: MEMORY_MIB, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle' as const, dirtyMiBPerSec: 0, seed: 1 } };
  const replica = await be.createReplica({ domain, uuid: crypto.randomUUID() });
  const image = path.join(dir, 'vm-df.replica.img');
  const mem = Buffer.alloc(MEMORY_MIB << 20);
  const model = (pages: [number, number][]) => {
    for (const [pfn, fill] of pages) mem.fill(fill, pfn * PAGE, (pfn + 1) * PAGE);
    return sha(mem);
  };

  await replica.applyCheckpoint(checkpoint(1, [[1, 0x11]], [[0, 256, 0xa1]]));
  const after1 = model([[1, 0x11]]);
  const image1 = fs.readFileSync(image);

  be.diskFault({ full: true });
  await t.rejects(replica.applyCheckpoint(checkpoint(2, [[1, 0x21], [2, 0x22]], [[4096, 256, 0xb1], [8192, 256, 0xb2]])), {
    code: 'ENOSPC',
    message: new RegExp(`^ENOSPC: no space left on device, write '${image}'$`),
  }, 'a full disk fails the checkpoint with ENOSPC, naming the image');
  t.equal(replica.lastEpoch, 1, 'checkpoint 1 stays in force');
  t.equal(await replica.memoryDigest(), after1, 'memory untouched: disk writes go first');
  t.same(fs.readFileSync(image), image1, 'the image unchanged');

  be.diskFault({ full: false });
  await replica.applyCheckpoint(checkpoint(2, [[1, 0x21], [2, 0x22]], [[4096, 256, 0xb1], [8192, 256, 0xb2]]));
  const after2 = model([[1, 0x21], [2, 0x22]]);
  t.equal(replica.lastEpoch, 2, 'with room again the same checkpoint applies');
  t.equal(await replica.memoryDigest(), after2);
  t.equal(fs.readFileSync(image)[8192], 0xb2);

  await t.test('an image that cannot be put back is torn: no more checkpoints, never activated', async (t) => {
    be.diskFault({ full: true, leftBytes: 300 }); // the first write fits, the second lands in part
    await t.rejects(replica.applyCheckpoint(checkpoint(3, [[3, 0x33]], [[0, 256, 0xc1], [4096, 256, 0xc2], [8192, 256, 0xc3]])), {
      code: 'ENOSPC',
      torn: true,
      message: /putting back the 2 write\(s\) of this checkpoint already on the image failed too .*the image is torn/,
    });
    t.equal(replica.lastEpoch, 2);
    t.equal(await replica.memoryDigest(), after2, 'memory is still checkpoint 2');
    be.diskFault({ full: false });
    await t.rejects(replica.applyCheckpoint(checkpoint(4, [[3, 0x44]], [])), /takes no more checkpoints: its disk image is torn/);
    await t.rejects(replica.activate(), new RegExp(`cannot be activated: its disk image ${image} is torn`));
    t.equal((await be.findDomain('vm-df')).state, 'replica', 'it stays a parked replica');
  });

  await t.test('no replica is built on a full disk', async (t) => {
    be.diskFault({ full: true });
    await t.rejects(be.createReplica({ domain: { ...domain, name: 'vm-df2' }, uuid: crypto.randomUUID() }), {
      code: 'ENOSPC',
      message: /ENOSPC: no space left on device, open '.*vm-df2\.replica\.img': the replica of vm-df2 needs 1048576 bytes there .*, 0 free/,
    });
    be.diskFault({ full: false });
    t.notOk((await be.listDomains()).some((d) => d.name === 'vm-df2'));
  });
});

const root = process.getuid?.() === 0;
t.test("on a real full tmpfs (root): the kernel's ENOSPC, and the writes already made are put back", { skip: root ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'xlha-test', mnt], { stdio: 'ignore' });
  } catch {
    fs.rmdirSync(mnt);
    t.pass('skipped: mount -t tmpfs is not allowed here');
    return;
  }
  t.teardown(() => {
    execFileSync('umount', [mnt]);
    fs.rmdirSync(mnt);
  });
  const img = path.join(mnt, 'replica.img');
  const disk = new SimDisk(img, 1 << 20); // sparse: the image takes no room yet
  t.teardown(() => disk.close());
  disk.applyAll([{ offset: 0, data: Buffer.alloc(PAGE, 0x11) }]); // one page of it allocated
  const ballast = fs.openSync(path.join(mnt, 'ballast'), 'w');
  try {
    for (;;) fs.writeSync(ballast, Buffer.alloc(PAGE, 1));
  } catch (err) {
    t.equal((err as NodeJS.ErrnoException).code, 'ENOSPC', 'the tmpfs is full');
  } finally {
    fs.closeSync(ballast);
  }
  let caught = null as (NodeJS.ErrnoException & { torn?: boolean }) | null;
  try {
    // an overwrite (it needs no new page: it lands), then a write into a hole (it needs one)
    disk.applyAll([{ offset: 0, data: Buffer.alloc(PAGE, 0x22) }, { offset: 512 << 10, data: Buffer.alloc(PAGE, 0x33) }]);
  } catch (err) {
    caught = err as typeof caught;
  }
  t.equal(caught?.code, 'ENOSPC', `the kernel refused the write into the hole: ${caught?.message}`);
  t.match(caught?.message, img, 'the error names the image');
  t.notOk(caught?.torn, 'the overwrite was put back');
  const back = fs.readFileSync(img);
  t.equal(back[0], 0x11, 'the image is as before the checkpoint');
  t.equal(back[512 << 10], 0);
});

t.test('disk full on the backup: clear errors on both sides, the primary runs on unprotected, no acked write lost, protection comes back with room', async (t) => {
  const etcd = await startEtcd(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-diskfull-'));
  const replPort = await freePort();
  const servicePort = await freePort();
  const backup = new SimHostProcess('backup', dir, replPort);
  const primary = new SimHostProcess('primary', dir);
  backup.extraArgs = ['--witness', `127.0.0.1:${etcd.port}`];
  primary.extraArgs = ['--witness', `127.0.0.1:${etcd.port}`];
  pairSimHosts(primary, backup);
  const conn = new KvConnection({ host: '127.0.0.1', port: servicePort, retryMs: 300, deadlineMs: 20_000 });
  t.teardown(async () => {
    conn.close();
    await Promise.all([primary.stop(), backup.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await Promise.all([backup.start(), primary.start()]);
  const name = 'kv-diskfull';
  await primary.request({ cmd: 'create', text: kvCfg({ name, memoryMiB: 8, servicePort }) });
  await primary.request({
    cmd: 'protect',
    options: { domain: name, mode: 'remus', peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150 },
  });
  type PStatus = { state: string; resumed?: number; committed: number; error?: string; reconnect?: { attempts: number; lastError?: string } };
  const pStatus = async () => (await primary.request<{ protections: PStatus[] }>({ cmd: 'status' })).protections[0]!;
  const bStatus = async () => (await backup.request<{ replicas: { state: string }[] }>({ cmd: 'status' })).replicas;
  const runningOn = async (h: SimHostProcess) => (await h.request<{ name: string; state: string }[]>({ cmd: 'list' })).some((d) => d.name === name && d.state === 'running');

  // One client writing in a loop: the last acknowledged value of each key is what must survive.
  const client = new KvClient(conn, 77);
  const acked = new Map<string, string>();
  let writing = true;
  let n = 0;
  let ackedCount = 0;
  const writer = (async () => {
    while (writing) {
      const key = `k${n % 16}`;
      const value = `v${++n}`;
      await client.put(key, value); // an error here fails the test: the primary must keep answering
      acked.set(key, value);
      ackedCount++;
      await sleep(3);
    }
  })();
  const protectedAt = await until(pStatus, (s) => s.state === 'protected' && s.committed > 10, 10_000);
  t.equal(protectedAt.state, 'protected', 'protected to begin with');
  await sleep(300);

  t.same(await backup.request({ cmd: 'sim-disk', full: true }), { full: true, leftBytes: 0 }, "the backup's disk is full");
  const lost = await until(pStatus, (s) => s.state === 'reconnecting' && /backup refused/.test(s.reconnect?.lastError ?? ''), 10_000);
  t.equal(lost.state, 'reconnecting', 'the primary gave the backup up and reconnects');
  t.match(lost.reconnect?.lastError, new RegExp(`backup refused protection: backup disk full: ENOSPC: no space left on device, open '${path.join(dir, 'backup', 'sim')}/${name}\\.replica\\.img'`), 'a reconnection is refused, naming the errno and the image');
  t.match(primary.tail(400), /checkpoint rejected by backup .*backup disk full: ENOSPC: no space left on device, write '[^']*kv-diskfull\.replica\.img'/, "the primary's log gives the backup's reason");
  t.match(backup.tail(400), new RegExp(`error backup disk full: ENOSPC: no space left on device, write '${path.join(dir, 'backup', 'sim')}/${name}\\.replica\\.img'; checkpoint \\d+ not applied, replica of ${name} on backup dropped`), "the backup's log names the errno and the image");
  t.ok(await runningOn(primary), 'the domain runs on the primary');
  const during = ackedCount;
  await sleep(1500);
  t.ok(ackedCount > during + 20, `writes are acknowledged while it runs unprotected (${ackedCount - during} in 1.5 s)`);
  t.notOk(await runningOn(backup), 'nothing runs on the backup');
  t.notOk((await bStatus()).some((r) => r.state === 'active' || r.state === 'replicating'), 'and it keeps no replica');

  t.same(await backup.request({ cmd: 'sim-disk', full: false }), { full: false, leftBytes: null }, 'room again');
  const back = await until(pStatus, (s) => s.state === 'protected' && (s.resumed ?? 0) >= 1, 40_000);
  t.equal(back.state, 'protected', 'protection came back by itself');
  t.ok((back.resumed ?? 0) >= 1);

  writing = false;
  await writer;
  await sleep(400); // a few checkpoints with no new writes: the replica's disk catches up
  const pImage = fs.readFileSync(path.join(dir, 'primary', 'sim', `${name}.img`));
  const bImage = fs.readFileSync(path.join(dir, 'backup', 'sim', `${name}.replica.img`));
  t.equal(sha(bImage), sha(pImage), "the new replica's disk is the primary's");

  primary.kill();
  const r = await until(bStatus, (rs) => rs.some((x) => x.state === 'active'), 10_000);
  t.ok(r.some((x) => x.state === 'active'), 'the backup takes over from the resumed protection');
  let lostWrites = 0;
  for (const [key, value] of acked) if ((await client.get(key)) !== value) lostWrites++;
  t.equal(lostWrites, 0, `every acknowledged write is there after the failover (${acked.size} keys, ${ackedCount} writes)`);
});
