/**
 * After a failover, the copy that took over belongs to the new host. Once it is gone (xl-ha
 * destroy there), its name is free again: the old primary can protect a domain of that name
 * towards the same backup (failing back), instead of being refused until the backup restarts.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimBackend } from '../../src/backend/sim/host.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { controlRequest } from '../../src/daemon/control.js';
import { freePort } from '../../src/demo/hosts.js';
import { silentLogger } from '../../src/util/log.js';
import { pairedKeys } from '../helpers/keys.js';

t.test('once the failed-over copy is destroyed, its old primary can protect the name again', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-fb-'));
  const keys = pairedKeys(dir);
  const log = silentLogger();
  const replPort = await freePort();
  const pbe = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  const bbe = new SimBackend({ hostName: 'b', stateDir: path.join(dir, 'b') });
  const pctl = path.join(dir, 'p.sock');
  const bctl = path.join(dir, 'b.sock');
  const primary = new Daemon({ backend: pbe, hostName: 'p', stateDir: path.join(dir, 'p'), controlPath: pctl, keys: keys.p!, log, watchdogSec: 0 });
  const backup = new Daemon({ backend: bbe, hostName: 'b', stateDir: path.join(dir, 'b'), controlPath: bctl, listen: { host: '127.0.0.1', port: replPort }, keys: keys.b!, log });
  await primary.start();
  await backup.start();
  t.teardown(async () => {
    await primary.stop();
    await backup.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const ask = async (ctl: string, req: { cmd: string; [k: string]: unknown }) => {
    const r = await controlRequest(ctl, req);
    if (!r.ok) throw new Error(r.error);
    return r.result as Record<string, unknown>;
  };
  const cfg = { name: 'fb', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle' as const, dirtyMiBPerSec: 0, seed: 4 } };
  const opts = (domid: number) => ({ domain: domid, mode: 'remus', peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 500 });

  const first = await pbe.createDomain(cfg);
  await ask(pctl, { cmd: 'protect', options: opts(first.domid) });
  // the administrator moves the domain: the backup takes over, the old copy goes
  await ask(pctl, { cmd: 'stop', domain: 'fb' }).catch(() => {}); // may race the takeover; either way protection ends
  await pbe.destroyDomain(first.domid);
  const again = await pbe.createDomain(cfg);
  const before = await ask(pctl, { cmd: 'protect', options: opts(again.domid) });
  t.equal(before.state, 'protected', 'a clean stop leaves the name free (the replica was dropped)');
  await ask(bctl, { cmd: 'failover', domain: 'fb', force: true });
  const bst = await ask(bctl, { cmd: 'status' });
  t.equal((bst.replicas as { state: string }[])[0]?.state, 'active', 'the backup runs the domain now');
  await ask(pctl, { cmd: 'stop', domain: 'fb' }).catch(() => {});
  await pbe.destroyDomain(again.domid);

  const third = await pbe.createDomain(cfg);
  await t.rejects(ask(pctl, { cmd: 'protect', options: opts(third.domid) }), /domain fb already runs on host b \(it failed over here\)/, 'refused while the failed-over copy runs there');
  await ask(bctl, { cmd: 'destroy', domain: 'fb' });
  const after = await ask(pctl, { cmd: 'protect', options: opts(third.domid) });
  t.equal(after.state, 'protected', 'once it is destroyed there, the name is protected towards that host again');
  const replicas = (await ask(bctl, { cmd: 'status' })).replicas as { state: string }[];
  t.same(
    replicas.map((r) => r.state),
    ['replicating'],
    'the backup holds one session for the name: the new replica',
  );
});
