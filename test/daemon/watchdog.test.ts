/**
 * Self-fencing through the hypervisor's watchdog: the sim's stand-in resets (SIGKILLs) a host
 * process whose event loop stops kicking, and the daemon keeps it armed exactly while it is the
 * primary of a domain. (On Xen the same calls reach SCHEDOP_watchdog: the lab's `watchdog`
 * scenario.)
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { SimBackend } from '../../src/backend/sim/host.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { controlRequest } from '../../src/daemon/control.js';
import { freePort } from '../../src/demo/hosts.js';
import { silentLogger } from '../../src/util/log.js';
import { pairedKeys } from '../helpers/keys.js';
import { parseArgs } from '../../src/cli/args.js';

const simWatchdog = new URL('../../src/backend/sim/watchdog.js', import.meta.url).href;

/** Runs `body` in a fresh node process that has `armSimWatchdog` in scope. */
function child(body: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-wdc-'));
  const file = path.join(dir, 'host.mjs');
  fs.writeFileSync(file, `import { armSimWatchdog } from ${JSON.stringify(simWatchdog)};\n${body}\n`);
  return execa('node', [file], { reject: false, timeout: 20_000 }).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
}

t.test('a host process whose event loop stops kicking is reset by the watchdog', async (t) => {
  const start = performance.now();
  const r = await child(`const dog = armSimWatchdog(1); console.log('armed', dog.id); const end = Date.now() + 5000; while (Date.now() < end) {} console.log('survived');`);
  const ms = performance.now() - start;
  t.equal(r.signal, 'SIGKILL', 'the process was killed');
  t.notMatch(r.stdout, /survived/, 'before its hang ended');
  t.match(r.stderr, /watchdog 1 fired: not kicked for 1000 ms; resetting the host/);
  t.ok(ms < 4500, `within about the timeout (${Math.round(ms)} ms including node's start)`);
});

t.test('a process that kicks in time, then disarms, is left alone', async (t) => {
  const r = await child(`const dog = armSimWatchdog(1); const k = setInterval(() => dog.kick(), 300); setTimeout(() => { clearInterval(k); dog.disarm(); }, 2500); setTimeout(() => console.log('alive'), 4000);`);
  t.equal(r.exitCode, 0, `exited normally (${r.signal ?? ''} ${r.stderr})`);
  t.match(r.stdout, /alive/, 'alive 1.5 s after the disarm, 2.5 s of kicks every 300 ms before it');
});

t.test('the host has two watchdogs, as Xen gives each domain', async (t) => {
  const r = await child(`armSimWatchdog(60).disarm(); const a = armSimWatchdog(60); const b = armSimWatchdog(60); try { armSimWatchdog(60); } catch (e) { console.log(e.message); } a.disarm(); b.disarm(); armSimWatchdog(60).disarm(); console.log('ok'); process.exit(0);`);
  t.match(r.stdout, /arming the sim watchdog failed: both of this host's 2 watchdogs are taken/);
  t.match(r.stdout, /ok/, 'a disarmed one is free again');
});

t.test('--watchdog: seconds, or 0 for off; anything else is refused by name', async (t) => {
  const d = parseArgs(['daemon', '--watchdog', '10']) as { watchdogSec?: number };
  t.equal(d.watchdogSec, 10);
  t.equal((parseArgs(['daemon', '--watchdog', '0']) as { watchdogSec?: number }).watchdogSec, 0);
  t.equal((parseArgs(['daemon']) as { watchdogSec?: number }).watchdogSec, undefined, 'unset: the default (30 s)');
  t.throws(() => parseArgs(['daemon', '--watchdog', '2']), /option --watchdog expects an integer from 5 to 3600 \(seconds, or 0 for off\), got "2"/);
  t.throws(() => parseArgs(['receive', '--watchdog', 'soon']), /option --watchdog expects a positive integer/);
});

t.test('the daemon keeps the watchdog armed exactly while it is the primary of a domain', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-wd-'));
  const keys = pairedKeys(dir);
  const log = silentLogger();
  const replPort = await freePort();
  const pbe = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  const bbe = new SimBackend({ hostName: 'b', stateDir: path.join(dir, 'b') });
  const pctl = path.join(dir, 'p.sock');
  const primary = new Daemon({ backend: pbe, hostName: 'p', stateDir: path.join(dir, 'p'), controlPath: pctl, keys: keys.p!, log, watchdogSec: 5 });
  const backup = new Daemon({ backend: bbe, hostName: 'b', stateDir: path.join(dir, 'b'), controlPath: path.join(dir, 'b.sock'), listen: { host: '127.0.0.1', port: replPort }, keys: keys.b!, log });
  await primary.start();
  await backup.start();
  t.teardown(async () => {
    await primary.stop();
    await backup.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const wd = async () => {
    const r = await controlRequest(pctl, { cmd: 'status' });
    return (r as { ok: true; result: { watchdog: Record<string, unknown> } }).result.watchdog;
  };
  t.equal((await wd()).armed, false, 'not armed while nothing is protected');
  const dom = await pbe.createDomain({ name: 'wd1', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 5 } });
  const opts = { domain: dom.domid, mode: 'remus', peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 500 };
  const pr = await controlRequest(pctl, { cmd: 'protect', options: opts });
  t.equal(pr.ok, true, JSON.stringify(pr));
  const armed = await wd();
  t.equal(armed.armed, true, 'armed once the domain is protected');
  t.equal(armed.timeoutSec, 5);
  t.type(armed.id, 'number');
  const sr = await controlRequest(pctl, { cmd: 'stop', domain: 'wd1' });
  t.equal(sr.ok, true);
  t.equal((await wd()).armed, false, 'disarmed when the last protection stops');
});

t.test('a daemon asked for a watchdog its backend does not have does not start', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-wd-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = pairedKeys(dir);
  const be = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  t.teardown(() => be.dispose());
  const noDog = Object.assign(Object.create(be) as SimBackend, { armWatchdog: undefined });
  const d = new Daemon({ backend: noDog, hostName: 'p', stateDir: path.join(dir, 'p'), controlPath: path.join(dir, 'p.sock'), keys: keys.p!, log: silentLogger(), watchdogSec: 30 });
  await t.rejects(d.start(), /the sim backend has no hypervisor watchdog: run the daemon with --watchdog 0/);
});
