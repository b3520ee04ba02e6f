import t, { type Test } from 'tap';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { SimBackend } from '../../src/backend/sim/host.js';
import type { ReplicaSpec } from '../../src/backend/types.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { silentLogger, createLogger } from '../../src/util/log.js';
import { startProtection, type ProtectOptions, type Protection } from '../../src/daemon/protect.js';
import type { ChannelLink } from '../../src/engine/link.js';
import { freePort } from '../../src/demo/hosts.js';
import { pairedKeys } from '../helpers/keys.js';
import { untilAsync } from '../helpers/engine-fakes.js';

/**
 * Primary and backup sim hosts in this process, the backup's replicas failing to apply the
 * checkpoints listed in `failApply` (once each): the backup NACKs them and the primary resyncs.
 * The primary writes the digest of the memory it captured at every epoch, the backup the digest
 * of what it activates (XLHA_DEBUG_DIGESTS), so a test compares them byte for byte.
 */
async function setup(t: Test, failApply: number[] = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-fgbi-'));
  const digests = path.join(dir, 'digests');
  const saved = process.env.XLHA_DEBUG_DIGESTS;
  process.env.XLHA_DEBUG_DIGESTS = digests;
  const keys = pairedKeys(dir);
  const log = process.env.XLHA_TEST_LOG ? createLogger() : silentLogger();
  const rejected: number[] = [];
  class FlakyApplySim extends SimBackend {
    override async createReplica(spec: ReplicaSpec) {
      const r = await super.createReplica(spec);
      const apply = r.applyCheckpoint.bind(r);
      r.applyCheckpoint = async (cp) => {
        const i = failApply.indexOf(cp.epoch);
        if (i >= 0) {
          failApply.splice(i, 1);
          rejected.push(cp.epoch);
          throw new Error(`test: checkpoint ${cp.epoch} cannot be applied`);
        }
        return apply(cp);
      };
      return r;
    }
  }
  const primary = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  const backupBe = new FlakyApplySim({ hostName: 'b', stateDir: path.join(dir, 'b') });
  const replPort = await freePort();
  const backup = new Daemon({ backend: backupBe, hostName: 'b', stateDir: path.join(dir, 'b'), controlPath: path.join(dir, 'b.sock'), listen: { host: '127.0.0.1', port: replPort }, keys: keys.b!, log });
  await backup.start();
  // a kv guest with no clients whose background writer changes 64 bytes at a time: fine-grained
  // changes, over few enough free pages (8 MiB: 767) that each is dirtied again within
  // FGBI_REPEAT_WINDOW checkpoints and takes a shadow
  const dom = await primary.createDomain({ name: 'fg1', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 8, seed: 11 } });
  const opts: ProtectOptions = {
    domain: dom.domid,
    mode: 'remus',
    peer: { host: '127.0.0.1', port: replPort },
    intervalMs: 10,
    netbuf: true,
    disk: true,
    blackhole: false,
    heartbeatMs: 50,
    failoverTimeoutMs: 1500,
    transfer: 'fgbi',
    fgbiBlockBytes: 64,
  };
  t.teardown(async () => {
    process.env.XLHA_DEBUG_DIGESTS = saved;
    if (saved === undefined) delete process.env.XLHA_DEBUG_DIGESTS;
    await backup.stop();
    await primary.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const protect = () => startProtection(primary, opts, log, keys.p!);
  /** Cuts the link under the primary and waits for the backup to fail over; returns the activated and captured digests. */
  const cutAndFailOver = async (p: Protection) => {
    (p.link as ChannelLink).channel.socket.destroy();
    await p.done;
    await untilAsync(async () => [...backup.backups].some((s) => s.state === 'active'), 10_000, 'the backup fails over');
    const lines = fs.readFileSync(digests, 'utf8').trim().split('\n');
    const act = lines.filter((l) => l.startsWith('activated ')).pop()!.split(' ');
    const epoch = Number(act[1]);
    const captured = lines.filter((l) => l.startsWith(`captured ${epoch} `)).map((l) => l.split(' ')[2]);
    return { epoch, activated: act[2], captured };
  };
  return { protect, cutAndFailOver, backup, rejected };
}

t.test('a rejected checkpoint, with others in flight behind it, does not desynchronise the shadow', async (t) => {
  const s = await setup(t, [6, 30]);
  const p = await s.protect();
  await untilAsync(async () => Number(p.status().committed) > 60 && s.rejected.length === 2, 15_000, 'both rejections and 60 checkpoints');
  const st = p.status();
  t.ok(Number(st.resyncs) >= 2, `the primary resent a full checkpoint after each rejection (${st.resyncs} resyncs)`);
  const tr = st.transfer as Record<string, number>;
  t.ok(tr.deltaPages > 0, `pages went as blocks (${tr.deltaPages})`);
  t.ok(tr.shadowPages > 0, `the primary holds a shadow (${tr.shadowPages} pages)`);
  const b = [...s.backup.backups][0]!.status();
  t.equal((b.transfer as Record<string, unknown>).id, 'fgbi', 'the backup decodes fgbi');
  const r = await s.cutAndFailOver(p);
  t.ok(r.epoch > 30, `the backup activated checkpoint ${r.epoch}, after both rejections`);
  t.same(r.captured, [r.activated], `the backup's memory is checkpoint ${r.epoch} byte for byte`);
});

t.test('a lost link starts both shadows again from a full first checkpoint', async (t) => {
  const s = await setup(t);
  const p1 = await s.protect();
  await untilAsync(async () => Number(p1.status().committed) > 20, 10_000, '20 checkpoints');
  (p1.link as ChannelLink).channel.socket.destroy();
  t.equal(await p1.done, 'lost', 'the first protection lost its backup');
  const p2 = await s.protect(); // the backup retires the stale replica and builds a new one
  const deltas = () => Number((p2.status().transfer as Record<string, number>).deltaPages);
  // a page takes a shadow on its second incremental send, and goes as blocks from its third
  await untilAsync(async () => Number(p2.status().committed) > 20 && deltas() > 0, 15_000, '20 checkpoints on the new link, some pages as blocks').catch(() => {});
  t.ok(Number((p2.status().transfer as Record<string, number>).deltaPages) > 0, 'the new link sends blocks again');
  const r = await s.cutAndFailOver(p2);
  t.same(r.captured.slice(-1), [r.activated], `the backup's memory is checkpoint ${r.epoch} of the second link byte for byte`);
});
