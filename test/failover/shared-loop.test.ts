/**
 * One backup process serves every domain it replicates: one domain's large first checkpoint
 * must not silence the others. The primary gives a backup up after 2 s of silence
 * (BACKUP_LOSS_MIN_MS); with 8 domains on one pair of hosts, the backup parsed a later domain's
 * first checkpoint in one go and the primary of an earlier one declared it dead. Driven with
 * crafted frames, as test/failover/backup-limits.test.ts does.
 */
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { SimBackend } from '../../src/backend/sim/host.js';
import { BackupSession } from '../../src/failover/backup.js';
import { Channel } from '../../src/transport/channel.js';
import type { Frame } from '../../src/transport/framing.js';
import { DOMAIN_TYPE, PAGE_TYPE } from '../../src/transport/xen-records.js';
import { XLHA_REC, SEAL_FLAG, decodeHelloAck, encodeHeartbeat, encodeHello, encodeSeal } from '../../src/transport/channel-records.js';
import { XenStreamWriter } from '../../src/transport/xenstream.js';
import { PROTOCOL_VERSION } from '../../src/transport/hello.js';
import { silentLogger } from '../../src/util/log.js';
import { until, type TT } from '../helpers/engine-fakes.js';

const HEARTBEAT_MS = 20;

function helloBody(name: string, memoryMiB: number): Record<string, unknown> {
  return {
    protocol: PROTOCOL_VERSION,
    host: 'primary-host',
    mode: 'remus',
    uuid: crypto.randomUUID(),
    domain: { name, memoryMiB, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } },
    intervalMs: 25,
    heartbeatMs: HEARTBEAT_MS,
    failoverTimeoutMs: 60_000,
    transfer: 'full',
    netbuf: false,
    disk: false,
  };
}

/** Plays one domain's primary with raw frames; notes when each of the backup's heartbeats arrives. */
class Primary {
  readonly frames: Frame[] = [];
  readonly heartbeatsAt: number[] = [];
  private readonly writer = new XenStreamWriter();
  private hb: NodeJS.Timeout | null = null;

  private constructor(readonly ch: Channel) {
    ch.onFrame((f) => (f.type === XLHA_REC.HEARTBEAT ? this.heartbeatsAt.push(performance.now()) : this.frames.push(f)));
  }

  static async connect(t: TT, port: number): Promise<Primary> {
    const p = new Primary(await Channel.connect('127.0.0.1', port));
    p.hb = setInterval(() => p.ch.send(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: 1, sentAtMs: Date.now(), lastEpoch: null })), HEARTBEAT_MS);
    t.teardown(() => {
      if (p.hb) clearInterval(p.hb);
      p.ch.dispose();
    });
    return p;
  }

  async next(timeoutMs = 30_000): Promise<Frame> {
    await until('a frame from the backup', () => this.frames.length > 0, timeoutMs);
    return this.frames.shift()!;
  }

  /**
   * A first checkpoint of `entries` page entries over the guest's `pages` pages, in PAGE_DATA
   * records of 1024: one page in 64 carries data, the others are XTAB entries (no data), so
   * that the parse is long (it costs per entry) while the test holds little memory.
   */
  firstCheckpoint(entries: number, pages: number): Buffer[] {
    const parts = [this.writer.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 })];
    const data = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < entries; i += 1024) {
      const n = Math.min(1024, entries - i);
      const pfns = Array.from({ length: n }, (_, k) => (i + k) % pages);
      const types = pfns.map((_, k) => ((i + k) % 64 === 0 ? PAGE_TYPE.NOTAB : PAGE_TYPE.XTAB));
      parts.push(...this.writer.pageDataRecords(pfns, () => data, types));
    }
    const regs = Buffer.alloc(64);
    regs.writeInt32LE(1, 8 * 4);
    parts.push(this.writer.vcpuBasic(0, regs), this.writer.checkpoint());
    return parts;
  }

  /** Content frames, then a FULL SEAL that describes them. */
  async checkpoint(epoch: number, frames: Buffer[]): Promise<void> {
    let crc = 0;
    let bytes = 0;
    for (const b of frames) {
      if (!this.ch.send(XLHA_REC.XEN_STREAM, b)) await this.ch.drained();
      crc = zlib.crc32(b, crc);
      bytes += b.length;
    }
    this.ch.send(XLHA_REC.CHECKPOINT_SEAL, encodeSeal({ epoch, flags: SEAL_FLAG.FULL, contentBytes: bytes, contentFrames: frames.length, crc32: crc }));
  }
}

t.test("one domain's large first checkpoint does not hold back another domain's heartbeats in the same backup", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-shared-loop-'));
  const be = new SimBackend({ hostName: 'b', stateDir: dir });
  const sessions: BackupSession[] = [];
  const server = net.createServer((sock) => sessions.push(new BackupSession(be, new Channel(sock), silentLogger(), 'b')));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const s of sessions) s.dispose();
    await new Promise((r) => server.close(r));
    await be.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const port = (server.address() as net.AddressInfo).port;

  // Domain A is replicated already: its backup sends it a heartbeat every HEARTBEAT_MS.
  const a = await Primary.connect(t, port);
  a.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-a', 8)));
  t.equal(decodeHelloAck((await a.next()).body).ok, true);
  await a.checkpoint(1, a.firstCheckpoint(1024, 2048));
  t.equal((await a.next()).type, XLHA_REC.CHECKPOINT_ACK, "A's first checkpoint applied");

  // Domain B's first checkpoint: 384 K page entries (its precopy's passes), whose parse alone
  // takes hundreds of ms.
  const b = await Primary.connect(t, port);
  b.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-b', 8)));
  t.equal(decodeHelloAck((await b.next()).body).ok, true);
  const frames = b.firstCheckpoint(384 * 1024, 2048);
  const sessionB = sessions[1]!;
  await b.checkpoint(1, frames);
  const t0 = performance.now();
  const ack = await b.next(120_000);
  const t1 = performance.now();
  t.equal(ack.type, XLHA_REC.CHECKPOINT_ACK, "B's first checkpoint applied");
  t.equal(sessionB.checkpointsApplied, 1);

  // The longest gap between A's heartbeats while B's checkpoint was parsed and applied.
  const during = [t0, ...a.heartbeatsAt.filter((x) => x > t0 && x < t1), t1];
  let gap = 0;
  for (let i = 1; i < during.length; i++) gap = Math.max(gap, during[i]! - during[i - 1]!);
  t.comment(`B's first checkpoint took ${Math.round(t1 - t0)} ms from its SEAL to its ACK; A's longest heartbeat gap meanwhile: ${Math.round(gap)} ms`);
  t.ok(t1 - t0 > 300, `the checkpoint is large enough to tell (${Math.round(t1 - t0)} ms)`);
  t.ok(gap < Math.max(150, (t1 - t0) / 3), `A's heartbeats kept leaving: longest gap ${Math.round(gap)} ms of ${Math.round(t1 - t0)} ms`);
});
