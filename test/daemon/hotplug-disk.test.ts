/**
 * block-ha's requests to the daemon: `xl-ha hotplug vbd add --target PATH` has the backend serve
 * the disk and prints where (socket=, export=, size=, the lines hooks/block-ha reads); status
 * lists the served disk; `remove` drops the export; a backend that serves no disks (sim) refuses
 * by name, and so does a target on anything but vbd add. A domain whose disk cannot be
 * replicated is refused at protect, naming the disk, before anything is connected.
 *
 * The backend here is the sim with the xen backend's disk methods over a real DiskExports: the
 * daemon's side is what is tested, and the export is the one the xen backend uses.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { SimBackend } from '../../src/backend/sim/host.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { controlRequest } from '../../src/daemon/control.js';
import { DiskExports } from '../../src/disk/exports.js';
import { CLI } from '../../src/demo/hosts.js';
import { silentLogger } from '../../src/util/log.js';
import { pairedKeys } from '../helpers/keys.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-hotplug-disk-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const log = silentLogger();

async function daemon(name: string, withDisks: boolean) {
  const d = path.join(dir, name);
  const keys = pairedKeys(d);
  const be = new SimBackend({ hostName: 'p', stateDir: path.join(d, 'sim') });
  const exports = new DiskExports({ dir: path.join(d, 'nbd'), log });
  if (withDisks) {
    Object.assign(be, {
      serveDisk: async (domid: number, devid: number, target: string) => {
        const s = await exports.serve(domid, devid, target);
        return { socket: s.socket, exportName: s.exportName, sizeBytes: s.sizeBytes };
      },
      unserveDisk: (domid: number, devid: number) => exports.drop(domid, devid),
      servedDisks: () => exports.status(),
    });
  }
  const ctl = path.join(d, 'ctl.sock');
  const dm = new Daemon({ backend: be, hostName: 'p', stateDir: d, controlPath: ctl, keys: keys.p!, log, watchdogSec: 0 });
  await dm.start();
  const cli = (...args: string[]) => execa(process.execPath, [CLI, '--control', ctl, 'hotplug', ...args], { reject: false, env: { ...process.env, XLHA_CONF: '/nonexistent' } });
  return { d, ctl, be, exports, cli, close: async () => { await dm.stop(); await exports.dispose(); } };
}

t.test('vbd add --target: the disk is served and the answer says where; status lists it; remove drops it', async (t) => {
  const h = await daemon('serve', true);
  t.teardown(() => h.close());
  const img = path.join(h.d, 'vm.img');
  fs.writeFileSync(img, Buffer.alloc(1 << 20));
  const add = await h.cli('vbd', 'add', '--domid', '4', '--devid', '51712', '--target', img);
  t.equal(add.exitCode, 0, add.stderr);
  t.same(add.stdout.trim().split('\n'), [`socket=${path.join(h.d, 'nbd', '4.51712.sock')}`, 'export=xlha-4-51712', `size=${1 << 20}`]);
  t.ok(fs.statSync(path.join(h.d, 'nbd', '4.51712.sock')).isSocket());
  const st = ((await controlRequest(h.ctl, { cmd: 'status' })) as { result: unknown }).result as { servedDisks: { domid: number; target: string }[]; devices: { kind: string; dev?: string }[] };
  t.same(st.servedDisks.map((s) => [s.domid, s.target]), [[4, img]]);
  t.same(st.devices.map((x) => [x.kind, x.dev]), [['vbd', img]]);
  const again = await h.cli('vbd', 'add', '--domid', '4', '--devid', '51712', '--target', img);
  t.equal(again.exitCode, 0, 'the hook run twice gets the same export');
  const other = await h.cli('vbd', 'add', '--domid', '4', '--devid', '51712', '--target', path.join(h.d, 'other.img'));
  t.equal(other.exitCode, 1);
  t.match(other.stderr, /already served from .*vm\.img/);
  const rm = await h.cli('vbd', 'remove', '--domid', '4', '--devid', '51712');
  t.equal(rm.exitCode, 0, rm.stderr);
  t.notOk(fs.existsSync(path.join(h.d, 'nbd', '4.51712.sock')), 'the export is gone');
  t.same(h.exports.status(), []);
});

t.test('a backend that serves no disks refuses vbd add --target by name; --target on anything else is a usage error', async (t) => {
  const h = await daemon('sim', false);
  t.teardown(() => h.close());
  const add = await h.cli('vbd', 'add', '--domid', '4', '--devid', '1', '--target', '/srv/vm.img');
  t.equal(add.exitCode, 1, 'refused: block-ha then lets block set the disk up');
  t.match(add.stderr, /hotplug: the sim backend serves no disks \(block-ha is for Xen\)/);
  const bad = await h.cli('vif', 'online', '--domid', '4', '--devid', '1', '--target', '/srv/vm.img');
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /option --target is for vbd add only/);
  const rel = await h.cli('vbd', 'add', '--domid', '4', '--devid', '1', '--target', 'vm.img');
  t.equal(rel.exitCode, 2);
  t.match(rel.stderr, /option --target expects an absolute path, got "vm.img"/);
  const r = (await controlRequest(h.ctl, { cmd: 'hotplug', kind: 'vbd', action: 'remove', domid: 4, devid: 1, target: '/x' })) as { error?: string };
  t.match(r.error, /hotplug: target is for vbd add only, not vbd remove/);
});

t.test('protection of a domain with a disk the backend cannot replicate fails at once, naming the disk', async (t) => {
  const h = await daemon('protect', true);
  t.teardown(() => h.close());
  const text = ['name = "web"', 'memory = 8', 'vcpus = 1', 'sim_workload = "idle"', ''].join('\n');
  await controlRequest(h.ctl, { cmd: 'create', text, source: 'web.cfg' });
  Object.assign(h.be, {
    replicatedDiskBytes: async () => {
      throw new Error('disk xvdb (/dev/vg0/data, script block) of domain web is not replicated');
    },
  });
  const t0 = Date.now();
  const r = (await controlRequest(h.ctl, {
    cmd: 'protect',
    options: { domain: 'web', mode: 'remus', peer: { host: '127.0.0.1', port: 9 }, intervalMs: 100, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 1000 },
  })) as { ok: boolean; error?: string };
  t.equal(r.ok, false);
  t.match(r.error, /disk xvdb \(\/dev\/vg0\/data, script block\) of domain web is not replicated/);
  t.ok(Date.now() - t0 < 5000, 'before any connection to the (absent) backup');
});
