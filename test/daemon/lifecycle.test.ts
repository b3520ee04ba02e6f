/**
 * The xl lifecycle on the sim: a domain whose cfg asks for ha ends protected with no further
 * command, whichever way it was created (xl-ha create; stock xl create, found through xl's
 * userdata or the cfg search path); a peer that is down is waited for; a daemon restart
 * resumes protection; xl-ha stop and the domain going end it with no replica left behind; the
 * ambiguous and mismatched cfgs leave the domain unprotected with an alert that says why.
 */
import t from 'tap';
import { untilAsync } from '../helpers/engine-fakes.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimBackend } from '../../src/backend/sim/host.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { controlRequest } from '../../src/daemon/control.js';
import { freePort } from '../../src/demo/hosts.js';
import { silentLogger } from '../../src/util/log.js';
import { pairedKeys } from '../helpers/keys.js';
import { DomainRecords } from '../../src/daemon/records.js';
import { execa } from 'execa';
import { CLI } from '../../src/demo/hosts.js';

type Row = { domain: string; state: string; peer?: string; source?: string; waiting?: { attempts: number; lastError?: string }; history?: { event: string; detail?: string }[] };
type Status = { protections: Row[]; replicas: Row[]; unprotected: { domain: string; reason: string }[] };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-life-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const log = silentLogger();

const cfgText = (name: string, port: number, extra: string[] = []) =>
  [`name = "${name}"`, 'memory = 8', 'vcpus = 1', 'sim_workload = "idle"', 'ha = "remus"', `ha_peer = "127.0.0.1:${port}"`, 'ha_interval_ms = 20', 'ha_heartbeat_ms = 50', 'ha_failover_timeout_ms = 2000', ...extra, ''].join('\n');

async function ask<T = Record<string, unknown>>(ctl: string, req: { cmd: string; [k: string]: unknown }): Promise<T> {
  const r = await controlRequest(ctl, req, 60_000);
  if (!r.ok) throw new Error(r.error);
  return r.result as T;
}
const until = untilAsync;
const status = (ctl: string) => ask<Status>(ctl, { cmd: 'status' });

/** A pair of in-process hosts: p (primary) and b (backup, listening). */
async function pair(name: string, o: { configDirs?: string[]; startBackup?: boolean } = {}) {
  const d = path.join(dir, name);
  const keys = pairedKeys(d);
  const port = await freePort();
  const pbe = new SimBackend({ hostName: 'p', stateDir: path.join(d, 'p', 'sim') });
  const bbe = new SimBackend({ hostName: 'b', stateDir: path.join(d, 'b', 'sim') });
  const pctl = path.join(d, 'p.sock');
  const bctl = path.join(d, 'b.sock');
  const mkPrimary = () => new Daemon({ backend: pbe, hostName: 'p', stateDir: path.join(d, 'p'), controlPath: pctl, keys: keys.p!, log, watchdogSec: 0, configDirs: o.configDirs ?? [], ownsBackend: false });
  const mkBackup = () => new Daemon({ backend: bbe, hostName: 'b', stateDir: path.join(d, 'b'), controlPath: bctl, listen: { host: '127.0.0.1', port }, keys: keys.b!, log, watchdogSec: 0, ownsBackend: false });
  let primary = mkPrimary();
  let backup: Daemon | null = null;
  await primary.start();
  if (o.startBackup !== false) {
    backup = mkBackup();
    await backup.start();
  }
  return {
    port,
    pbe,
    bbe,
    pctl,
    bctl,
    stateDir: path.join(d, 'p'),
    get primary() {
      return primary;
    },
    async stopBackup() {
      await backup?.stop();
      backup = null;
    },
    async startBackup() {
      backup = mkBackup();
      await backup.start();
    },
    async stopPrimary() {
      await primary.stop();
    },
    async startPrimary() {
      primary = mkPrimary();
      await primary.start();
    },
    /** A daemon restart over the same host (`systemctl restart xl-ha` on Xen): domains keep running. */
    async restartPrimary() {
      await primary.stop();
      primary = mkPrimary();
      await primary.start();
    },
    async close() {
      await primary.stop();
      await backup?.stop();
      await pbe.dispose();
      await bbe.dispose();
    },
  };
}

t.test('xl-ha create of a cfg with ha="remus" ends protected; a daemon restart resumes it; xl-ha stop ends it for good', async (t) => {
  const h = await pair('create');
  t.teardown(() => h.close());
  const r = await ask<{ domain: { name: string; uuid: string }; protection: Row }>(h.pctl, { cmd: 'create', text: cfgText('web', h.port), source: '/etc/xen/web.cfg' });
  t.equal(r.protection.state, 'protected', 'protected when create returns, nothing else typed');
  t.same(
    r.protection.history?.map((e) => e.event),
    ['protected'],
    'its history says so',
  );
  const records = new DomainRecords(h.stateDir);
  t.same(records.get(r.domain.uuid)?.source, '/etc/xen/web.cfg', 'the daemon keeps its own record, by uuid, naming the cfg');
  t.equal((await status(h.bctl)).replicas[0]?.state, 'replicating', 'the backup replicates it');

  await h.restartPrimary();
  await until(async () => (await status(h.pctl)).protections.some((p) => p.domain === 'web' && p.state === 'protected'), 20_000, 'protection resumes after the restart');
  const after = (await status(h.pctl)).protections.find((p) => p.domain === 'web')!;
  t.match(after.history?.[0]?.event, 'protected', 'resumed from the record');
  await until(async () => (await status(h.bctl)).replicas.filter((x) => x.state === 'replicating').length === 1, 10_000, 'the backup replicates it again');

  const stopped = await ask<{ state: string }>(h.pctl, { cmd: 'stop', domain: 'web' });
  t.equal(stopped.state, 'stopped');
  t.equal(records.get(r.domain.uuid), null, 'a stop on purpose removes the record');
  await until(async () => (await status(h.bctl)).replicas.length === 0, 10_000, 'and the backup drops its replica');
  await h.restartPrimary();
  await new Promise((r) => setTimeout(r, 500));
  t.same((await status(h.pctl)).protections, [], 'a stopped domain is not protected again after a restart');
  t.same((await h.pbe.listDomains()).map((d) => d.name), ['web'], 'and it kept running throughout');
});

t.test('a peer that is down is waited for, with backoff, and protection starts when it answers', async (t) => {
  const h = await pair('wait', { startBackup: false });
  t.teardown(() => h.close());
  const r = await ask<{ protection: Row }>(h.pctl, { cmd: 'create', text: cfgText('db', h.port), source: 'db.cfg' });
  t.equal(r.protection.state, 'waiting-for-peer', 'create returns at once: waiting for the peer');
  t.match(r.protection.waiting?.lastError, /ECONNREFUSED|cannot connect/, 'with the last error');
  const s = await status(h.pctl);
  t.equal(s.protections[0]?.state, 'waiting-for-peer', 'status shows it');
  t.same((await h.pbe.listDomains()).map((d) => d.state), ['running'], 'the domain runs meanwhile');
  await h.startBackup();
  await until(async () => (await status(h.pctl)).protections.some((p) => p.domain === 'db' && p.state === 'protected'), 30_000, 'protected once the peer is up');
  const row = (await status(h.pctl)).protections.find((p) => p.domain === 'db')!;
  t.same(
    row.history?.map((e) => e.event),
    ['waiting for peer', 'protected'],
    'the history tells it',
  );
  t.match(row.history?.[1]?.detail, /after \d+ attempts/);
});

t.test('stock xl create: the daemon finds the ha keys in xl userdata or in config_dirs, and alerts on an ambiguous or a mismatched cfg', async (t) => {
  const cfgDir = path.join(dir, 'etc-xen');
  const autoDir = path.join(cfgDir, 'auto');
  fs.mkdirSync(autoDir, { recursive: true });
  const h = await pair('stock', { configDirs: [cfgDir, autoDir] });
  t.teardown(() => h.close());
  const file = path.join(cfgDir, 'app.cfg');
  fs.writeFileSync(file, cfgText('app', h.port));
  fs.symlinkSync(file, path.join(autoDir, 'app.cfg')); // as xendomains sets it up: one cfg, not two
  fs.writeFileSync(path.join(cfgDir, 'xl.conf'), 'autoballoon = "off"\n'); // not a domain cfg
  fs.writeFileSync(path.join(cfgDir, 'plain.cfg'), 'name = "plain"\nmemory = 8\nsim_workload = "idle"\n');
  fs.writeFileSync(path.join(cfgDir, 'twin-a.cfg'), cfgText('twin', h.port));
  fs.writeFileSync(path.join(cfgDir, 'twin-b.cfg'), cfgText('twin', h.port));
  fs.writeFileSync(path.join(cfgDir, 'big.cfg'), cfgText('big', h.port).replace('memory = 8', 'memory = 16'));
  fs.writeFileSync(path.join(cfgDir, 'badha.cfg'), cfgText('badha', h.port, ['ha_interval_ms = "fast"']));

  // xl create reads the cfg given on its command line; xl-ha is told nothing
  const xlCreate = (text: string, userdata = false) => ask(h.pctl, { cmd: 'sim-xl-create', text, source: 'xl create', userdata });
  await xlCreate(fs.readFileSync(file, 'utf8'));
  await xlCreate(fs.readFileSync(path.join(cfgDir, 'plain.cfg'), 'utf8'));
  await xlCreate(cfgText('twin', h.port));
  await xlCreate(cfgText('big', h.port)); // created with 8 MiB, the cfg in config_dirs says 16
  await xlCreate(cfgText('badha', h.port).replace('badha', 'badha'));
  await xlCreate(cfgText('kept', h.port), true); // as after xl config-update: not in config_dirs at all

  await until(async () => (await status(h.pctl)).protections.filter((p) => p.state === 'protected').length === 2, 30_000, 'app and kept are protected');
  const s = await status(h.pctl);
  const app = s.protections.find((p) => p.domain === 'app');
  t.ok(app, 'app: found through config_dirs');
  t.ok(
    s.protections.find((p) => p.domain === 'kept'),
    'kept: found through xl userdata',
  );
  const alerts = Object.fromEntries(s.unprotected.map((a) => [a.domain, a.reason]));
  t.match(alerts.twin, /2 cfgs are named twin: .*twin-a\.cfg, .*twin-b\.cfg; which one created the domain is unknown/, 'two cfgs named twin: an alert naming both');
  t.match(alerts.big, /big\.cfg does not describe the running domain big: memory = 16 in the cfg, 8 MiB in libxl/, 'a cfg whose memory differs: an alert naming both values');
  t.match(alerts.badha, /badha\.cfg:\d+: ha_interval_ms = "fast" is not valid/, 'a bad ha value: the cfg parser\'s own message');
  t.notOk(alerts.plain, 'a domain that asks for no ha: no alert');
  t.notOk(
    s.protections.some((p) => ['plain', 'twin', 'big', 'badha'].includes(p.domain)),
    'and none of those four is protected',
  );
  t.equal((await h.pbe.listDomains()).filter((d) => d.state === 'running').length, 6, 'every domain runs');

  // the domain going ends its protection cleanly: no replica is left on the backup
  const appInfo = (await h.pbe.listDomains()).find((d) => d.name === 'app')!;
  await h.pbe.destroyDomain(appInfo.domid); // xl destroy: the daemon only sees @releaseDomain
  await until(async () => !(await status(h.pctl)).protections.some((p) => p.domain === 'app'), 10_000, 'app\'s protection ends with it');
  await until(async () => !(await status(h.bctl)).replicas.some((r) => r.domain === 'app'), 10_000, 'and the backup drops app\'s replica');
});

t.test('a domain still paused when the daemon starts (an xl create under way) is protected once it runs, not alerted on', async (t) => {
  const cfgDir = path.join(dir, 'etc-xen-paused');
  fs.mkdirSync(cfgDir, { recursive: true });
  const h = await pair('paused', { configDirs: [cfgDir] });
  t.teardown(() => h.close());
  fs.writeFileSync(path.join(cfgDir, 'late.cfg'), cfgText('late', h.port));
  await h.stopPrimary();
  // libxl introduces the domain paused and unpauses it once its devices are up; the daemon
  // starts in between (a restart racing xl create)
  const dom = await h.pbe.createDomain({ name: 'late', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 5 } });
  await h.pbe.pause(dom.domid);
  await h.startPrimary();
  await new Promise((r) => setTimeout(r, 1500));
  let s = await status(h.pctl);
  t.same(s.unprotected, [], 'no alert while it is paused');
  t.notOk(s.protections.some((p) => p.domain === 'late'), 'and not protected yet');
  await h.pbe.unpause(dom.domid);
  await until(async () => (await status(h.pctl)).protections.some((p) => p.domain === 'late' && p.state === 'protected'), 30_000, 'late is protected once it runs');
  s = await status(h.pctl);
  t.same(s.unprotected, [], 'and was never alerted on');
});

t.test('a backup daemon that stops drops its replicas: none is left half-built for the next one', async (t) => {
  const cfgDir = path.join(dir, 'etc-xen-bstop');
  fs.mkdirSync(cfgDir, { recursive: true });
  const h = await pair('bstop', { configDirs: [cfgDir] });
  t.teardown(() => h.close());
  fs.writeFileSync(path.join(cfgDir, 'kept.cfg'), cfgText('kept', h.port));
  await ask(h.pctl, { cmd: 'sim-xl-create', text: cfgText('kept', h.port), source: 'xl create' });
  await until(async () => (await status(h.pctl)).protections.some((p) => p.domain === 'kept' && p.state === 'protected'), 30_000, 'kept is protected');
  t.equal((await h.bbe.listDomains()).filter((d) => d.state === 'replica').length, 1, 'the backup holds its replica');
  await h.stopBackup();
  t.same((await h.bbe.listDomains()).filter((d) => d.state === 'replica'), [], 'the stopped backup daemon left no replica');
  await h.startBackup();
  await until(async () => (await status(h.pctl)).protections.some((p) => p.domain === 'kept' && p.state === 'protected' && (p as { resumed?: number }).resumed! >= 1), 60_000, 'the primary reconnects and protects again');
  t.equal((await h.bbe.listDomains()).filter((d) => d.state === 'replica').length, 1, 'to one new replica');
});

t.test('hotplug: a vif that comes online in a protected domain restarts its protection; bad requests are named; no daemon is exit 3', async (t) => {
  const h = await pair('hotplug');
  t.teardown(() => h.close());
  const r = await ask<{ domain: { domid: number }; protection: Row }>(h.pctl, { cmd: 'create', text: cfgText('nic', h.port), source: 'nic.cfg' });
  t.equal(r.protection.state, 'protected');
  const cli = (...args: string[]) => execa(process.execPath, [CLI, '--control', h.pctl, 'hotplug', ...args], { reject: false, env: { ...process.env, XLHA_CONF: '/nonexistent' } });
  const on = await cli('vif', 'online', '--domid', String(r.domain.domid), '--devid', '1', '--dev', `vif${r.domain.domid}.1`);
  t.equal(on.exitCode, 0, `registered (${on.stderr})`);
  t.match(on.stdout, /came online in protected domain nic: its protection restarts so that it is buffered too/);
  await until(async () => (await status(h.pctl)).protections.some((p) => p.domain === 'nic' && p.state === 'protected' && (p.history ?? []).some((e) => e.event === 'protection restarts')), 20_000, 'protected again');
  const st = (await status(h.pctl)) as Status & { devices: { dev?: string }[] };
  t.same(
    st.devices.map((d) => d.dev),
    [`vif${r.domain.domid}.1`],
    'status lists the registered vif',
  );
  const off = await cli('vif', 'offline', '--domid', String(r.domain.domid), '--devid', '1');
  t.equal(off.exitCode, 0);
  t.same(((await status(h.pctl)) as Status & { devices: unknown[] }).devices, [], 'offline deregisters it');
  await t.rejects(ask(h.pctl, { cmd: 'hotplug', kind: 'pci', action: 'online', domid: 1, devid: 0 }), /hotplug: kind "pci" is not valid: expected vif or vbd/);
  await t.rejects(ask(h.pctl, { cmd: 'hotplug', kind: 'vif', action: 'online', domid: -1, devid: 0 }), /hotplug: domid -1 is not valid/);
  const bad = await cli('vif', 'up', '--domid', '1', '--devid', '0');
  t.equal(bad.exitCode, 2, 'a bad action: usage error');
  t.match(bad.stderr, /action "up" is not valid: expected add, remove, online, offline/);
  const none = await execa(process.execPath, [CLI, '--control', path.join(dir, 'nobody.sock'), 'hotplug', 'vif', 'online', '--domid', '1', '--devid', '0'], { reject: false });
  t.equal(none.exitCode, 3, 'no daemon: exit 3 (the hook warns and lets the vif up)');
  t.match(none.stderr, /no xl-ha daemon is running/);
});
