/**
 * DiskExports, the daemon's block-ha disks served over NBD: one unix socket per disk under the
 * runtime directory, private to root; the export's writes reach the image and the NbdDisk (the
 * save session's tap) records them; a second add of the same disk is the same export, another
 * target for it is refused naming both; remove closes the socket; bad targets are named.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DiskExports, exportNameOf } from '../../src/disk/exports.js';
import { silentLogger } from '../../src/util/log.js';
import { missingTool, RawClient } from '../helpers/nbd.js';
import { recordingLogger } from '../helpers/log.js';

const run = promisify(execFile);
const noQemu = missingTool('qemu-io', 'qemu-utils');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-exports-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function image(name: string, bytes = 1 << 20): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, Buffer.alloc(bytes));
  return f;
}

t.test('a served disk: its socket under the directory, mode 0600, named by domid and devid; the export by both', async (t) => {
  const ex = new DiskExports({ dir: path.join(dir, 'run', 'nbd'), log: silentLogger() });
  t.teardown(() => ex.dispose());
  const img = image('a.img', 2 << 20);
  const s = await ex.serve(5, 51712, img);
  t.equal(s.socket, path.join(dir, 'run', 'nbd', '5.51712.sock'));
  t.equal(s.exportName, exportNameOf(5, 51712));
  t.equal(s.exportName, 'xlha-5-51712');
  t.equal(s.sizeBytes, 2 << 20);
  const st = fs.statSync(s.socket);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o600, 'only root (the daemon\'s user) may connect');
  t.equal(fs.statSync(path.dirname(s.socket)).mode & 0o777, 0o700);
  t.equal(await ex.serve(5, 51712, img), s, 'the hook run again gets the same export');
  await t.rejects(ex.serve(5, 51712, image('b.img')), /disk 51712 of domain 5 is already served from .*a\.img, not .*b\.img: remove it first/);
  t.same(ex.status().map((x) => [x.domid, x.devid, x.exportName, x.connections]), [[5, 51712, 'xlha-5-51712', 0]]);
  const c = await RawClient.connect(s.socket);
  await c.go('xlha-5-51712');
  t.equal(s.server.openConnections, 1, 'an NBD client reaches the export over the socket');
  c.sock.destroy();
});

t.test('writes through the export reach the image and the tap records them once protection starts it', { skip: noQemu }, async (t) => {
  const ex = new DiskExports({ dir: path.join(dir, 'run2'), log: silentLogger() });
  t.teardown(() => ex.dispose());
  const img = image('c.img');
  const s = await ex.serve(7, 0, img);
  const uri = `nbd+unix:///${s.exportName}?socket=${s.socket}`;
  await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 1 0 4096']);
  t.same(fs.readFileSync(img).subarray(0, 4096), Buffer.alloc(4096, 1), 'unprotected: the write is on the image');
  t.equal(s.disk.drain().length, 0, 'and nothing is recorded before start');
  s.disk.start();
  await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 2 8192 4096', '-c', 'flush']);
  const d = s.disk.drainEpoch(1);
  s.disk.resumed();
  t.same(d.writes.map((w) => [w.offset, w.data.length, w.data[0]]), [[8192, 4096, 2]]);
  s.disk.stop();
});

t.test('drop closes the socket and the image; dropDomain drops every disk of a domain', async (t) => {
  const ex = new DiskExports({ dir: path.join(dir, 'run3'), log: silentLogger() });
  const a = await ex.serve(9, 1, image('d.img'));
  const b = await ex.serve(9, 2, image('e.img'));
  await ex.serve(10, 1, image('f.img'));
  t.equal(await ex.drop(9, 1), true);
  t.notOk(fs.existsSync(a.socket), 'socket removed');
  t.equal(await ex.drop(9, 1), false, 'a second remove finds nothing');
  await ex.dropDomain(9);
  t.notOk(fs.existsSync(b.socket));
  t.same(ex.status().map((x) => x.domid), [10]);
  await ex.dispose();
  t.same(ex.status(), []);
});

t.test('a target that is not an absolute path, is missing, or is a directory is refused, naming it', async (t) => {
  const ex = new DiskExports({ dir: path.join(dir, 'run4'), log: silentLogger() });
  t.teardown(() => ex.dispose());
  await t.rejects(ex.serve(1, 2, 'vm.img'), /disk 2 of domain 1: target "vm.img" is not an absolute path without "\.\."/);
  await t.rejects(ex.serve(1, 2, '/srv/../etc/passwd'), /not an absolute path without "\.\."/);
  await t.rejects(ex.serve(1, 2, path.join(dir, 'missing.img')), /disk 2 of domain 1: cannot serve .*missing\.img: ENOENT/);
  await t.rejects(ex.serve(1, 2, dir), /is neither a regular file nor a block device/);
  t.same(ex.status(), [], 'nothing half-served');
});

t.test('the daemon stopping with a disk in use says loudly which guests lose their disk', async (t) => {
  const { log, lines } = recordingLogger();
  const ex = new DiskExports({ dir: path.join(dir, 'run5'), log });
  const img = image('g.img');
  const s = await ex.serve(11, 51712, img);
  await ex.serve(12, 51712, image('h.img')); // served, no client: not in the alert
  const c = await RawClient.connect(s.socket);
  await c.go(s.exportName);
  await ex.dispose();
  const alert = lines.filter((l) => l.level === 'error' && /DISK I\/O WILL FAIL/.test(l.message));
  t.equal(alert.length, 1, 'one alert');
  t.equal(alert[0]!.disks, `domain 11 disk 51712 (${img})`, 'naming the disk in use, and only it');
  c.sock.destroy();
  const quiet = recordingLogger();
  const ex2 = new DiskExports({ dir: path.join(dir, 'run6'), log: quiet.log });
  await ex2.serve(13, 1, image('i.img'));
  await ex2.dispose();
  t.notOk(quiet.lines.some((l) => /WILL FAIL/.test(l.message)), 'no alert when no disk is in use');
});
