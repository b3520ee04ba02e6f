/**
 * ForeignSaveWatch: a libxl save helper of the protected domain is found by its command line
 * (libxl_save_callout.c's argv), a helper of another domain or a restore helper is not, and a
 * process is read once, then forgotten when it goes. Driven by a fake /proc.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ForeignSaveWatch, RECHECK_MS } from '../../src/backend/xen/foreign-save.js';

const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-proc-'));
t.teardown(() => fs.rmSync(proc, { recursive: true, force: true }));
function spawnFake(pid: number, argv: string[]): void {
  fs.mkdirSync(path.join(proc, String(pid)), { recursive: true });
  fs.writeFileSync(path.join(proc, String(pid), 'cmdline'), argv.length ? argv.join('\0') + '\0' : '');
}
const kill = (pid: number) => fs.rmSync(path.join(proc, String(pid)), { recursive: true, force: true });
const helper = (domid: number, mode = '--save-domain') => ['/usr/lib/xen-4.17/bin/libxl-save-helper', mode, '17', '18', String(domid), '0', '0', '1', '0', '15', '0'];

t.test('the save helper of the protected domain is found, others are not', async (t) => {
  fs.mkdirSync(path.join(proc, 'self'), { recursive: true }); // not a pid
  spawnFake(1, ['/sbin/init']);
  spawnFake(2, []); // a kernel thread: empty cmdline
  spawnFake(300, ['xl', 'save', 'domu1', '/var/tmp/x']);
  spawnFake(301, helper(12)); // another domain's save
  spawnFake(302, helper(7, '--restore-domain')); // a restore helper: the backup's own libxl restore
  const w = new ForeignSaveWatch(7, proc);
  t.equal(w.find(), null, 'nothing saves domain 7');
  spawnFake(303, helper(7));
  t.equal(w.find(), 303, 'xl save of domain 7: its libxl-save-helper is found');
  kill(303);
  t.equal(w.find(), null, 'gone with it');
  spawnFake(303, helper(17)); // the pid reused for another domain's helper
  t.equal(w.find(), null, 'a reused pid is read again');
  spawnFake(410, ['libxl-save-helper', '--save-domain', '3', '4', '7']); // no path: still the helper
  t.equal(w.find(), 410);
});

t.test('a young process is read again until it has had time to exec; an old one is read once', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-proc2-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let clock = 0;
  const w = new ForeignSaveWatch(9, dir, () => clock);
  fs.mkdirSync(path.join(dir, '55'));
  fs.writeFileSync(path.join(dir, '55', 'cmdline'), 'xl\0migrate\0domu1\0'); // forked by xl, not yet exec'd
  t.equal(w.find(), null);
  clock = 100;
  fs.writeFileSync(path.join(dir, '55', 'cmdline'), helper(9).join('\0')); // the exec
  t.equal(w.find(), 55, 'the fork that became the helper is found');
  fs.mkdirSync(path.join(dir, '56'));
  fs.writeFileSync(path.join(dir, '56', 'cmdline'), 'bash\0');
  t.equal(w.find(), 55);
  clock = 100 + RECHECK_MS + 1;
  t.equal(w.find(), 55);
  fs.writeFileSync(path.join(dir, '56', 'cmdline'), helper(9).join('\0'));
  clock += 10;
  t.equal(w.find(), 55, 'an old process is not read again (a process does not turn into the helper after seconds)');
  t.equal(new ForeignSaveWatch(9, path.join(dir, 'missing')).find(), null, 'no /proc: nothing to tell, no throw');
});
