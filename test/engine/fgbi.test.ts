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
import { XLHA_REC } from '../../src/transport/channel-records.js';
import { TransferDecoder } from '../../src/transport/transfer.js';
import { CHUNK_HEADER_BYTES, encodeChunk } from '../../src/transport/compress.js';
import { ProtocolError } from '../../src/transport/framing.js';

/** As test/helpers/protocol-error.ts, for an async `fn`. */
async function expectProtocolError(fn: () => Promise<unknown>, code: string, ...parts: string[]): Promise<{ ok: boolean; message: string }> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof ProtocolError)) return { ok: false, message: `not a ProtocolError: ${String(err)}` };
    const missing = parts.filter((x) => !err.message.includes(x));
    if (err.code !== code || missing.length > 0) return { ok: false, message: `got ${err.code} "${err.message}", wanted ${code} with ${JSON.stringify(parts)}` };
    return { ok: true, message: err.message };
  }
  return { ok: false, message: 'no error thrown' };
}

/**
 * Primary and backup sim hosts in this process, the backup's replicas failing to apply the
 * checkpoints listed in `failApply` (once each): the backup NACKs them and the primary resyncs.
 * The primary writes the digest of the memory it captured at every epoch, the backup the digest
 * of what it activates (XLHA_DEBUG_DIGESTS), so a test compares them byte for byte.
 */
async function setup(t: Test, failApply: number[] = [], transfer: ProtectOptions['transfer'] = 'fgbi') {
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
    transfer,
    ...(transfer?.includes('fgbi') ? { fgbiBlockBytes: 64 } : {}),
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

for (const transfer of ['compress', 'fgbi,compress'] as const) {
  t.test(`${transfer}: checkpoints go compressed and the backup's memory after failover is the checkpoint, byte for byte`, async (t) => {
    const s = await setup(t, [], transfer);
    const p = await s.protect();
    await untilAsync(async () => Number(p.status().committed) > 30, 15_000, '30 checkpoints');
    const tr = p.status().transfer as Record<string, number>;
    t.equal(tr.id, transfer);
    t.ok(tr.compressOut < tr.compressIn / 4, `compressed: ${tr.compressIn} stream bytes went as ${tr.compressOut}`);
    if (transfer === 'fgbi,compress') t.ok(tr.bytesOut < tr.bytesIn, `fgbi ran first (${tr.bytesIn} -> ${tr.bytesOut})`);
    const b = [...s.backup.backups][0]!.status();
    t.equal((b.transfer as Record<string, unknown>).id, transfer, 'the backup decodes it');
    const r = await s.cutAndFailOver(p);
    t.ok(r.epoch > 30);
    t.same(r.captured, [r.activated], `the backup's memory is checkpoint ${r.epoch} byte for byte`);
  });
}

t.test('fgbi,compress: a tampered compressed frame is refused by the seal before anything is decompressed', async (t) => {
  const s = await setup(t, [], 'fgbi,compress');
  const p = await s.protect();
  await untilAsync(async () => Number(p.status().committed) > 10, 15_000, '10 checkpoints');
  const seen: Buffer[] = [];
  const decode = TransferDecoder.prototype.decode;
  TransferDecoder.prototype.decode = function (frames, ...rest) {
    for (const f of frames) for (const b of f.parts) seen.push(b);
    return decode.call(this, frames, ...rest);
  };
  t.teardown(() => void (TransferDecoder.prototype.decode = decode));
  const channel = (p.link as ChannelLink).channel;
  const send = channel.send.bind(channel);
  let tampered: Buffer | null = null;
  // after the seal's digest took the bytes: the rawLength of one chunk becomes hostile
  channel.send = ((type: number, body: Buffer | readonly Buffer[], onWritten?: () => void) => {
    if (type === XLHA_REC.XEN_STREAM_Z && !tampered && Array.isArray(body)) {
      const header = Buffer.from(body[0] as Buffer);
      header.writeUInt32LE(0xfffffff0, 4);
      tampered = header;
      return send(type, [header, ...(body as Buffer[]).slice(1)], onWritten);
    }
    return send(type, body, onWritten);
  }) as typeof channel.send;
  await untilAsync(async () => Number(p.status().resyncs) >= 1 && Number(p.status().committed) > 40, 15_000, 'a resync after the tampered checkpoint, and more checkpoints');
  channel.send = send as typeof channel.send;
  t.ok(tampered, 'a chunk was tampered with');
  const sess = [...s.backup.backups][0]!;
  t.ok(Number(sess.status().checkpointsRejected) >= 1, 'the backup rejected it');
  t.notOk(seen.some((b) => b.length === CHUNK_HEADER_BYTES && b.readUInt32LE(4) === 0xfffffff0), 'the decoder never saw the tampered chunk');
  const r = await s.cutAndFailOver(p);
  t.same(r.captured, [r.activated], `after the resync the backup's memory is checkpoint ${r.epoch} byte for byte`);
});

t.test('compress: a chunk whose rawLength is past what the backup accepts is refused naming it, before any allocation', async (t) => {
  const d = new TransferDecoder({ id: 'compress' });
  const limits = { maxChunkBytes: 1 << 20, maxCheckpointBytes: 3 << 20, checkpointLimitSource: 'the test limit' };
  const chunk = encodeChunk(Buffer.alloc(4096, 7));
  const hostile = Buffer.concat(chunk.parts);
  hostile.writeUInt32LE(0xfffffff0, 4);
  const allocs: number[] = [];
  const alloc = Buffer.allocUnsafe;
  Buffer.allocUnsafe = ((n: number) => (allocs.push(n), alloc(n))) as typeof Buffer.allocUnsafe;
  let r: { ok: boolean; message: string };
  try {
    r = await expectProtocolError(() => d.decode([{ type: XLHA_REC.XEN_STREAM_Z, parts: [hostile] }], false, limits), 'ETOOBIG', 'frame 0', 'rawLength 4294967280', 'at most 1048576 bytes', 'the test limit');
  } finally {
    Buffer.allocUnsafe = alloc;
  }
  t.ok(r.ok, r.message);
  t.notOk(allocs.some((n) => n >= 1 << 20), `nothing large allocated (${allocs.join(', ') || 'nothing'})`);
  // the checkpoint's total counts too: three chunks of 1 MiB each fit, a fourth does not
  const mib = encodeChunk(Buffer.alloc(1 << 20));
  const f = { type: XLHA_REC.XEN_STREAM_Z, parts: mib.parts };
  const r2 = await expectProtocolError(() => d.decode([f, f, f, f], false, limits), 'ETOOBIG', 'frame 3', 'at most 3145728 bytes decompressed', '3145728 of them already taken');
  t.ok(r2.ok, r2.message);
  const r3 = await expectProtocolError(() => d.decode([{ type: XLHA_REC.XEN_STREAM, parts: [Buffer.alloc(8)] }], false, limits), 'EBADTYPE', 'every Xen stream frame is XEN_STREAM_Z');
  t.ok(r3.ok, r3.message);
});
