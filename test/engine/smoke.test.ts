import t from 'tap';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { SimBackend } from '../../src/backend/sim/host.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { silentLogger, createLogger } from '../../src/util/log.js';
import { HELLO_SILENCE_MS, startProtection } from '../../src/daemon/protect.js';
import { freePort } from '../../src/demo/hosts.js';
import { pairedKeys } from '../helpers/keys.js';

t.test('remus protects a kv domain in process', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-smoke-'));
  const keys = pairedKeys(dir);
  const log = process.env.XLHA_TEST_LOG ? createLogger() : silentLogger();
  const primary = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  const replPort = await freePort();
  const servicePort = await freePort();
  const backupBe = new SimBackend({ hostName: 'b', stateDir: path.join(dir, 'b') });
  const backup = new Daemon({ backend: backupBe, hostName: 'b', stateDir: path.join(dir, 'b'), controlPath: path.join(dir, 'b.sock'), listen: { host: '127.0.0.1', port: replPort }, keys: keys.b!, log });
  await backup.start();
  const dom = await primary.createDomain({ name: 'kv1', memoryMiB: 16, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 4, seed: 7, service: { host: '127.0.0.1', port: servicePort } } });
  const p = await startProtection(primary, { domain: dom.domid, mode: 'remus', peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150 }, log, keys.p!);
  await new Promise((r) => setTimeout(r, 1000));
  const st = p.status();
  t.ok(Number(st.committed) > 20, `committed ${st.committed}`);
  t.equal(st.state, 'protected');
  await p.stop();
  await backup.stop();
  await primary.dispose();
});

t.test('protecting again right after a stop waits until the old replica is gone, however long that takes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-restart-'));
  const keys = pairedKeys(dir);
  const log = silentLogger();
  const events: string[] = [];
  // A backup whose replicas take a while to go away, as a libxl restore does on Xen.
  class SlowDropSim extends SimBackend {
    override async createReplica(spec: Parameters<SimBackend['createReplica']>[0]) {
      events.push('create');
      const r = await super.createReplica(spec);
      const destroy = r.destroy.bind(r);
      const slow = events.length === 1; // the first replica: longer than the primary tolerates silence
      r.destroy = async () => {
        events.push('destroy-start');
        if (slow) await new Promise((res) => setTimeout(res, HELLO_SILENCE_MS + 1500));
        await destroy();
        events.push('destroy-end');
      };
      return r;
    }
  }
  const primary = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  const backupBe = new SlowDropSim({ hostName: 'b', stateDir: path.join(dir, 'b') });
  const replPort = await freePort();
  const backup = new Daemon({ backend: backupBe, hostName: 'b', stateDir: path.join(dir, 'b'), controlPath: path.join(dir, 'b.sock'), listen: { host: '127.0.0.1', port: replPort }, keys: keys.b!, log });
  await backup.start();
  t.teardown(async () => {
    await backup.stop();
    await primary.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const dom = await primary.createDomain({ name: 'vm-again', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 3 } });
  const opts = { domain: dom.domid, mode: 'remus' as const, peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 1000 };
  const p1 = await startProtection(primary, opts, log, keys.p!);
  await p1.stop();
  const p2 = await startProtection(primary, opts, log, keys.p!);
  t.teardown(() => p2.stop());
  await new Promise((r) => setTimeout(r, 300));
  t.same(events.slice(0, 4), ['create', 'destroy-start', 'destroy-end', 'create'], 'the second replica is built only after the first is destroyed');
  t.ok(opts.failoverTimeoutMs < HELLO_SILENCE_MS, 'the backup\'s heartbeats kept the primary waiting longer than it tolerates silence');
  t.equal(p2.status().state, 'protected');
  t.ok(Number(p2.status().committed) > 0, 'and the new protection commits checkpoints');
});

t.test('checkpoints in flight: a bad value from a control client is refused by name', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-inflight-'));
  const keys = pairedKeys(dir);
  const primary = new SimBackend({ hostName: 'p', stateDir: dir });
  t.teardown(async () => {
    await primary.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const dom = await primary.createDomain({ name: 'vm-if', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } });
  for (const bad of [0, 17, 2.5]) {
    await t.rejects(
      startProtection(primary, { domain: dom.domid, mode: 'remus', peer: { host: '127.0.0.1', port: 1 }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150, inFlight: bad }, silentLogger(), keys.p!),
      new RegExp(`checkpoints in flight must be an integer from 1 to 16, got ${bad}`),
    );
  }
  const p = await startProtection(primary, { domain: dom.domid, mode: 'remus', peer: { host: '127.0.0.1', port: 1 }, intervalMs: 20, netbuf: true, disk: true, blackhole: true, heartbeatMs: 50, failoverTimeoutMs: 150, inFlight: 1, allowUnsafe: true }, silentLogger(), keys.p!);
  t.equal(p.status().inFlight, 1, 'the status shows the depth in use');
  await p.stop();
});
