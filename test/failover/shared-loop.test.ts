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
import { SimBackend } from '../../src/backend/sim/host.js';
import { BackupSession } from '../../src/failover/backup.js';
import { Channel } from '../../src/transport/channel.js';
import { XLHA_REC, SEAL_FLAG, decodeHelloAck, encodeHello } from '../../src/transport/channel-records.js';
import { PROTOCOL_VERSION } from '../../src/transport/hello.js';
import { silentLogger } from '../../src/util/log.js';
import { CraftedPrimary as Primary } from '../helpers/crafted-primary.js';

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
  const a = await Primary.connect(t, port, { heartbeatMs: HEARTBEAT_MS });
  a.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-a', 8)));
  t.equal(decodeHelloAck((await a.next(30_000)).body).ok, true);
  await a.checkpoint(1, a.firstCheckpoint(1024, 2048), { flags: SEAL_FLAG.FULL });
  t.equal((await a.next(30_000)).type, XLHA_REC.CHECKPOINT_ACK, "A's first checkpoint applied");

  // Domain B's first checkpoint: 384 K page entries (its precopy's passes), whose parse alone
  // takes hundreds of ms.
  const b = await Primary.connect(t, port, { heartbeatMs: HEARTBEAT_MS });
  b.ch.send(XLHA_REC.HELLO, encodeHello(helloBody('vm-b', 8)));
  t.equal(decodeHelloAck((await b.next(30_000)).body).ok, true);
  const frames = b.firstCheckpoint(384 * 1024, 2048);
  const sessionB = sessions[1]!;
  await b.checkpoint(1, frames, { flags: SEAL_FLAG.FULL });
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
