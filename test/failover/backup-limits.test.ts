/**
 * The backup's bound on what it holds of one checkpoint before its SEAL: what the HELLO's guest
 * can need (maxSealContentBytes: 6 x memory + 1% + 2 x disk + 64 MiB, a peer past it breaks the protocol) and what this
 * host can hold (the `maxPendingBytes` option, by default half its memory). Driven with crafted
 * frames, as test/failover/backup.test.ts does.
 */
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { SimBackend } from '../../src/backend/sim/host.js';
import { BackupSession, MAX_PENDING_MEMORY_SHARE, type BackupEvents } from '../../src/failover/backup.js';
import { Channel } from '../../src/transport/channel.js';
import { XLHA_REC, SEAL_FLAG, decodeAck, decodeHelloAck, decodeNack, encodeHello, encodeSeal } from '../../src/transport/channel-records.js';
import { maxSealContentBytes, PROTOCOL_VERSION } from '../../src/transport/hello.js';
import { silentLogger } from '../../src/util/log.js';
import { sleep, until, type TT } from '../helpers/engine-fakes.js';
import { CraftedPrimary as Primary } from '../helpers/crafted-primary.js';

const PAGE = 4096;
const MiB = 1 << 20;

function helloBody(name: string, memoryMiB: number): Record<string, unknown> {
  return {
    protocol: PROTOCOL_VERSION,
    host: 'primary-host',
    mode: 'remus',
    uuid: crypto.randomUUID(),
    domain: { name, memoryMiB, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } },
    intervalMs: 25,
    heartbeatMs: 50,
    failoverTimeoutMs: 2000,
    transfer: 'full',
    netbuf: false,
    disk: false,
  };
}

async function backupHost(t: TT, name: string, events: BackupEvents = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `xlha-limits-${name}-`));
  const be = new SimBackend({ hostName: 'b', stateDir: dir });
  const sessions: BackupSession[] = [];
  const server = net.createServer((sock) => sessions.push(new BackupSession(be, new Channel(sock), silentLogger(), 'b', { graceTimeoutMs: 10_000, ...events })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const s of sessions) s.dispose();
    await new Promise((r) => server.close(r));
    await be.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { be, port: (server.address() as net.AddressInfo).port, session: () => sessions[sessions.length - 1]! };
}

const digestOf = (fills: [number, number][], memoryMiB: number) => {
  const m = Buffer.alloc(memoryMiB * MiB);
  for (const [pfn, fill] of fills) m.fill(fill, pfn * PAGE, (pfn + 1) * PAGE);
  return crypto.createHash('sha256').update(m).digest('hex');
};

t.test("a guest whose memory this host cannot hold is refused at HELLO, naming the limit, before anything is built", async (t) => {
  const h = await backupHost(t, 'hello', { maxPendingBytes: 4 * MiB });
  const p = await Primary.connect(t, h.port, { heartbeatMs: 20 });
  p.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-big', 8)));
  const ack = decodeHelloAck((await p.next()).body);
  t.equal(ack.ok, false, 'refused');
  t.match(ack.error, /domain vm-big has 8 MiB of memory: its first checkpoint cannot fit .* 4194304 bytes \(the backup's maxPendingBytes, 4 MiB\)/);
  await until('the session to fail', () => h.session().state === 'failed');
  t.same(await h.be.listDomains(), [], 'no replica was built');
});

t.test('by default the limit is a share of this host\'s memory: a peer declaring 1 TiB is refused without allocating it', async (t) => {
  const h = await backupHost(t, 'tib');
  const p = await Primary.connect(t, h.port, { heartbeatMs: 20 });
  const rss0 = process.memoryUsage().rss;
  p.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-tib', 1 << 20)));
  const ack = decodeHelloAck((await p.next()).body);
  t.equal(ack.ok, false, 'refused');
  const total = Math.round((os.totalmem() / MiB) * 10) / 10;
  t.match(ack.error, `${MAX_PENDING_MEMORY_SHARE * 100}% of this host's ${total} MiB of memory`, `the error names the default limit: ${ack.error}`);
  t.ok(process.memoryUsage().rss - rss0 < 256 * MiB, 'nothing of the declared memory was allocated');
  t.same(await h.be.listDomains(), []);
});

t.test('a checkpoint past the limit is discarded as it arrives and refused; the replica keeps its last checkpoint and replication goes on', async (t) => {
  const memoryMiB = 8;
  const limit = 10 * MiB;
  const h = await backupHost(t, 'over', { maxPendingBytes: limit });
  const p = await Primary.connect(t, h.port, { heartbeatMs: 20 });
  p.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-over', memoryMiB)));
  t.equal(decodeHelloAck((await p.next()).body).ok, true, 'an 8 MiB guest fits a 10 MiB limit');
  const s = h.session();
  const cp1: [number, number][] = [[1, 0x11], [9, 0x12]];
  await p.checkpoint(1, [p.checkpointBytes(cp1)], { flags: SEAL_FLAG.FULL });
  let f = await p.next();
  t.equal(f.type, XLHA_REC.CHECKPOINT_ACK, 'checkpoint 1 applied');
  t.equal(decodeAck(f.body).epoch, 1);

  // Checkpoint 2: 14 MiB of content in 1 MiB frames (what it is does not matter: it is never parsed).
  const frames = Array.from({ length: 14 }, (_, i) => Buffer.alloc(MiB, i));
  for (const b of frames) if (!p.ch.send(XLHA_REC.XEN_STREAM, b)) await p.ch.drained();
  await until('the backup to read it all', () => (s as unknown as { pendingBytes: number }).pendingBytes >= 14 * MiB, 10_000);
  const held = (s as unknown as { xen: Buffer[] }).xen.reduce((n, b) => n + b.length, 0);
  t.ok(held <= limit, `what the backup holds of it stays within the limit (${held} bytes)`);
  let crc = 0;
  for (const b of frames) crc = zlib.crc32(b, crc);
  p.ch.send(XLHA_REC.CHECKPOINT_SEAL, encodeSeal({ epoch: 2, flags: 0, contentBytes: 14 * MiB, contentFrames: 14, crc32: crc }));
  f = await p.next();
  t.equal(f.type, XLHA_REC.CHECKPOINT_NACK, 'checkpoint 2 refused');
  const nack = decodeNack(f.body);
  t.equal(nack.epoch, 2);
  t.match(nack.reason, /checkpoint 2 is too large for this backup: its content went past 10485760 bytes before its SEAL.*maxPendingBytes, 10 MiB.*the replica keeps checkpoint 1/);
  t.equal(s.state, 'replicating', 'replication goes on');
  t.equal(s.replica?.lastEpoch, 1);
  t.equal(await s.replica?.memoryDigest(), digestOf(cp1, memoryMiB), 'the replica is checkpoint 1');
  t.notOk(p.closed, 'the link stays up');

  const cp3: [number, number][] = [[2, 0x33]];
  await p.checkpoint(3, [p.checkpointBytes(cp3)], { flags: SEAL_FLAG.FULL });
  f = await p.next();
  t.equal(f.type, XLHA_REC.CHECKPOINT_ACK, 'a full checkpoint within the limit is applied');
  t.equal(await s.replica?.memoryDigest(), digestOf([...cp1, ...cp3], memoryMiB));
});

t.test('a peer past what its own HELLO allows breaks the protocol: the backup halts and keeps its last checkpoint', async (t) => {
  const memoryMiB = 8;
  const h = await backupHost(t, 'peer');
  const p = await Primary.connect(t, h.port, { heartbeatMs: 20 });
  p.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-peer', memoryMiB)));
  t.equal(decodeHelloAck((await p.next()).body).ok, true);
  const s = h.session();
  const cp1: [number, number][] = [[3, 0x31]];
  await p.checkpoint(1, [p.checkpointBytes(cp1)], { flags: SEAL_FLAG.FULL });
  t.equal((await p.next()).type, XLHA_REC.CHECKPOINT_ACK);
  const allowed = maxSealContentBytes(memoryMiB);
  t.equal(allowed, Math.ceil(6 * 8 * MiB * 1.01) + 64 * MiB, 'the bound: the precopy\'s 5 passes and the final copy, 1% for records, 64 MiB');
  const chunk = Buffer.alloc(4 * MiB, 0x5a);
  for (let sent = 0; sent <= allowed && !p.closed; sent += chunk.length) {
    if (!p.ch.send(XLHA_REC.XEN_STREAM, chunk)) await p.ch.drained().catch(() => {});
  }
  await until('the backup to halt', () => s.state !== 'replicating', 10_000);
  t.equal(s.state, 'halted');
  t.match(s.error, /checkpoint content exceeds 117943829 bytes without a SEAL \(at most 6 x memory \(\+1%\) \+ 2 x disk \+ 64 MiB for the HELLO's 8 MiB guest\).*replica kept at checkpoint 1/);
  t.equal(s.replica?.lastEpoch, 1);
  t.equal(await s.replica?.memoryDigest(), digestOf(cp1, memoryMiB), 'with its checkpoint');
});

t.test('a connection that ends while the replica is being built leaves no replica behind (it would block the next HELLO)', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-limits-gone-'));
  let built = false;
  class SlowBackend extends SimBackend {
    override async createReplica(spec: Parameters<SimBackend['createReplica']>[0]) {
      await gate;
      const r = await super.createReplica(spec);
      built = true;
      return r;
    }
  }
  const be = new SlowBackend({ hostName: 'b', stateDir: dir });
  const states: string[] = [];
  let session: BackupSession | null = null;
  const server = net.createServer((sock) => {
    session = new BackupSession(be, new Channel(sock), silentLogger(), 'b', { onState: (s) => states.push(s.state) });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    session?.dispose();
    await new Promise((r) => server.close(r));
    await be.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const p = await Primary.connect(t, (server.address() as net.AddressInfo).port, { heartbeatMs: 20 });
  p.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-gone', 8)));
  await until('the HELLO to be taken', () => session !== null);
  await sleep(50);
  p.ch.dispose(); // the link dies while the backup builds the replica
  await until('the session to see it', () => states.includes('failed'));
  release();
  await until('the replica to be built', () => built);
  await sleep(200);
  t.equal(session!.state, 'failed', 'the session stays failed');
  t.same(await be.listDomains(), [], 'the replica built meanwhile is dropped');
});
