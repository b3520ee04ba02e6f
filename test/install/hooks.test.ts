/**
 * The hotplug scripts hooks/vif-ha and hooks/block-ha, run as libxl runs them (the action and
 * type_if= as arguments, XENBUS_PATH and vif in the environment) with a fake vif-bridge / block,
 * a fake xl-ha on PATH and a fake logger, each appending its argv and the variables it reads to
 * one log, so that the order of the calls is checked too. Also: the syntax of every script of
 * the install (sh -n, bash -n, shellcheck when installed) and the shape of the udev rules and
 * of the systemd unit.
 *
 * Decided here, and documented in the scripts' headers and docs/install.md: a daemon that is
 * not running (xl-ha exits 3), refuses (exits 1), is missing or does not answer in time never
 * fails the device; only the wrapped Xen script's failure does.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const VIF_HA = path.join(ROOT, 'hooks/vif-ha');
const BLOCK_HA = path.join(ROOT, 'hooks/block-ha');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-hooks-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const BIN = path.join(dir, 'bin');
const LOG = path.join(dir, 'calls.log');
fs.mkdirSync(BIN);

/** A fake command: logs "name argv | vars", then sleeps/prints/exits as FAKE_<NAME>_* say. */
function fake(name: string, vars: string[]) {
  const up = name.toUpperCase().replace(/[^A-Z]/g, '_');
  const shown = vars.map((v) => `${v}=\${${v}-<unset>}`).join(' ');
  fs.writeFileSync(
    path.join(BIN, name),
    `#!/bin/sh
printf '%s\\n' "${name} $* | ${shown}" >> "${LOG}"
[ -z "\${FAKE_${up}_MSG:-}" ] || echo "\$FAKE_${up}_MSG" >&2
[ -z "\${FAKE_${up}_SLEEP:-}" ] || exec sleep "\$FAKE_${up}_SLEEP"
exit "\${FAKE_${up}_RC:-0}"
`,
    { mode: 0o755 },
  );
}
fake('vif-bridge', ['vif', 'XENBUS_PATH', 'bridge']);
fake('block', ['XENBUS_PATH', 'params']);
fake('xl-ha', []);
fake('logger', []);

type Env = Record<string, string>;
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  calls: string[];
  ms: number;
}

function env(extra: Env = {}): Env {
  return {
    PATH: `${BIN}:/usr/bin:/bin`,
    XLHA_VIF_BRIDGE: path.join(BIN, 'vif-bridge'),
    XLHA_BLOCK: path.join(BIN, 'block'),
    ...extra,
  };
}

function hook(script: string, args: string[], e: Env): Promise<Run> {
  fs.writeFileSync(LOG, '');
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(script, args, { env: e, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      const calls = fs.readFileSync(LOG, 'utf8').split('\n').filter(Boolean);
      resolve({ code, stdout, stderr, calls, ms: Date.now() - t0 });
    });
  });
}

const vifEnv = (extra: Env = {}) => env({ XENBUS_PATH: 'backend/vif/5/0', vif: 'vif5.0', bridge: 'xenbr0', ...extra });
const bridge = (action: string) => `vif-bridge ${action} type_if=vif | vif=vif5.0 XENBUS_PATH=backend/vif/5/0 bridge=xenbr0`;
const show = (r: Run) => `exit ${r.code}; calls: ${JSON.stringify(r.calls)}; stderr: ${r.stderr.trim()}`;

t.test('vif-ha online runs vif-bridge, then registers the vif with the daemon', async (t) => {
  const r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv());
  t.equal(r.code, 0, show(r));
  t.same(r.calls, [bridge('online'), 'xl-ha hotplug vif online --domid 5 --devid 0 --dev vif5.0 | '], 'vif-bridge first, with its arguments and environment');
  t.equal(r.stderr, '', 'no warning');
});

t.test('vif-ha offline deregisters first, then runs vif-bridge', async (t) => {
  const r = await hook(VIF_HA, ['offline', 'type_if=vif'], vifEnv());
  t.equal(r.code, 0, show(r));
  t.same(r.calls, ['xl-ha hotplug vif offline --domid 5 --devid 0 --dev vif5.0 | ', bridge('offline')]);
});

t.test('vif-ha reads domid and devid from an absolute XENBUS_PATH, and the vifname from the store', async (t) => {
  let r = await hook(VIF_HA, ['online'], vifEnv({ XENBUS_PATH: '/local/domain/0/backend/vif/12/3/', vif: 'vif12.3' }));
  t.equal(r.code, 0, show(r));
  t.equal(r.calls[1], 'xl-ha hotplug vif online --domid 12 --devid 3 --dev vif12.3 | ');
  // A vifname in the store is the name the vif has after vif-bridge renamed it.
  const store = path.join(dir, 'store');
  fs.mkdirSync(store);
  fs.writeFileSync(
    path.join(store, 'xenstore-read'),
    `#!/bin/sh\n[ "$1" = backend/vif/5/0/vifname ] && { echo web0; exit 0; }\nexit 1\n`,
    { mode: 0o755 },
  );
  r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ PATH: `${store}:${BIN}:/usr/bin:/bin` }));
  t.equal(r.code, 0, show(r));
  t.equal(r.calls[1], 'xl-ha hotplug vif online --domid 5 --devid 0 --dev web0 | ');
});

t.test('vif-bridge failing fails the hook, and xl-ha is not called on online', async (t) => {
  let r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ FAKE_VIF_BRIDGE_RC: '1' }));
  t.equal(r.code, 1, show(r));
  t.same(r.calls, [bridge('online')], 'no registration of a vif that is not up');
  t.match(r.stderr, /vif-bridge online failed \(exit 1\)/);
  // Its exit status is the hook's.
  r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ FAKE_VIF_BRIDGE_RC: '7' }));
  t.equal(r.code, 7, show(r));
  // On offline the deregistration has happened; the failure is still the hook's.
  r = await hook(VIF_HA, ['offline', 'type_if=vif'], vifEnv({ FAKE_VIF_BRIDGE_RC: '1' }));
  t.equal(r.code, 1, show(r));
  t.same(r.calls, ['xl-ha hotplug vif offline --domid 5 --devid 0 --dev vif5.0 | ', bridge('offline')]);
});

t.test('no daemon running (xl-ha exits 3): the vif still comes up, with a warning to syslog and stderr', async (t) => {
  const r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ FAKE_XL_HA_RC: '3', FAKE_XL_HA_MSG: 'xl-ha: no daemon' }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /vif-ha: warning: no xl-ha daemon is running: vif5\.0 \(domain 5\) not registered/);
  const logged = r.calls.filter((c) => c.startsWith('logger '));
  t.equal(logged.length, 1, 'one syslog line');
  t.match(logged[0], /^logger -t xl-ha-hotplug -p daemon\.warning -- no xl-ha daemon is running/);
  t.same(r.calls.slice(0, 2), [bridge('online'), 'xl-ha hotplug vif online --domid 5 --devid 0 --dev vif5.0 | ']);
});

t.test('a daemon that refuses (xl-ha exits 1) does not break the network either: warning with its message', async (t) => {
  const r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ FAKE_XL_HA_RC: '1', FAKE_XL_HA_MSG: 'xl-ha: domain 5 is not protected' }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /warning: xl-ha refused vif5\.0 \(domain 5\), exit 1: xl-ha: domain 5 is not protected/);
  const off = await hook(VIF_HA, ['offline', 'type_if=vif'], vifEnv({ FAKE_XL_HA_RC: '1', FAKE_XL_HA_MSG: 'no such vif' }));
  t.equal(off.code, 0, show(off));
  t.same(off.calls.filter((c) => !c.startsWith('logger ')), ['xl-ha hotplug vif offline --domid 5 --devid 0 --dev vif5.0 | ', bridge('offline')], 'vif-bridge still runs');
});

t.test('a daemon that does not answer is given up after XLHA_HOTPLUG_TIMEOUT seconds', async (t) => {
  const r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ FAKE_XL_HA_SLEEP: '20', XLHA_HOTPLUG_TIMEOUT: '1' }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /did not answer within 1 s/);
  t.ok(r.ms < 10_000, `returned after ${r.ms} ms`);
});

t.test('xl-ha not installed, or a XENBUS_PATH that names no vif: a warning, the vif still up', async (t) => {
  let r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ XLHA_BIN: path.join(dir, 'no-such-xl-ha') }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /xl-ha command not found/);
  t.same(r.calls.filter((c) => !c.startsWith('logger ')), [bridge('online')]);
  r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ XENBUS_PATH: 'backend/vif/x/0' }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /cannot tell domid\/devid from XENBUS_PATH='backend\/vif\/x\/0'/);
  t.notOk(r.calls.some((c) => c.startsWith('xl-ha ')));
  r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ XENBUS_PATH: 'backend/vbd/5/0' }));
  t.match(r.stderr, /is not a vif backend/);
  t.notOk(r.calls.some((c) => c.startsWith('xl-ha ')));
});

t.test('XLHA_BIN names the xl-ha to run', async (t) => {
  const r = await hook(VIF_HA, ['online', 'type_if=vif'], vifEnv({ XLHA_BIN: path.join(BIN, 'xl-ha'), PATH: '/usr/bin:/bin' }));
  t.equal(r.code, 0, show(r));
  t.match(r.calls[1], /^xl-ha hotplug vif online /);
});

t.test('the tap twin of an HVM nic and vif add/remove run vif-bridge alone, as vif-common.sh does', async (t) => {
  let r = await hook(VIF_HA, ['add', 'type_if=tap'], vifEnv({ INTERFACE: 'vif5.0-emu' }));
  t.equal(r.code, 0, show(r));
  t.same(r.calls, ['vif-bridge add type_if=tap | vif=vif5.0 XENBUS_PATH=backend/vif/5/0 bridge=xenbr0']);
  r = await hook(VIF_HA, ['add'], vifEnv());
  t.same(r.calls, ['vif-bridge add | vif=vif5.0 XENBUS_PATH=backend/vif/5/0 bridge=xenbr0'], 'add with type_if=vif: no registration');
  r = await hook(VIF_HA, ['remove', 'type_if=vif'], vifEnv());
  t.same(r.calls, [bridge('remove')]);
  // An unknown command: vif-bridge's own error and status.
  r = await hook(VIF_HA, ['frob'], vifEnv({ FAKE_VIF_BRIDGE_RC: '1' }));
  t.equal(r.code, 1);
  t.same(r.calls, ['vif-bridge frob | vif=vif5.0 XENBUS_PATH=backend/vif/5/0 bridge=xenbr0']);
});

// ---------------------------------------------------------------------------------------------

// block-ha's own fakes, on PATH before BIN for its tests only: the store (one file per node
// under STORE, xenstore-read logs what it was asked), nbd-client, modprobe; and a sysfs and /dev
// with nbd0 in use and nbd1 free.
const BLOCK_BIN = path.join(dir, 'block-bin');
const STORE = path.join(dir, 'xenstore');
const SYS = path.join(dir, 'sys-block');
const DEV = path.join(dir, 'dev');
for (const d of [BLOCK_BIN, STORE, DEV, path.join(SYS, 'nbd0'), path.join(SYS, 'nbd1')]) fs.mkdirSync(d, { recursive: true });
fs.writeFileSync(path.join(SYS, 'nbd0', 'size'), '2048\n');
fs.writeFileSync(path.join(SYS, 'nbd0', 'pid'), '77\n');
fs.writeFileSync(path.join(SYS, 'nbd1', 'size'), '0\n');
for (const n of ['nbd0', 'nbd1']) fs.writeFileSync(path.join(DEV, n), '');
const nodeFile = (p: string) => path.join(STORE, p.replace(/\//g, '_'));
fs.writeFileSync(
  path.join(BLOCK_BIN, 'xenstore-read'),
  `#!/bin/sh\nprintf '%s\\n' "xenstore-read $*" >> "${LOG}"\nf="${STORE}/$(printf '%s' "$1" | tr / _)"\n[ -f "$f" ] || exit 1\ncat "$f"\n`,
  { mode: 0o755 },
);
fs.writeFileSync(path.join(BLOCK_BIN, 'xenstore-write'), `#!/bin/sh\nprintf '%s\\n' "xenstore-write $*" >> "${LOG}"\n`, { mode: 0o755 });
for (const name of ['nbd-client', 'modprobe']) {
  const up = name.toUpperCase().replace(/[^A-Z]/g, '_');
  fs.writeFileSync(path.join(BLOCK_BIN, name), `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> "${LOG}"\n[ -z "\${FAKE_${up}_MSG:-}" ] || echo "$FAKE_${up}_MSG" >&2\nexit "\${FAKE_${up}_RC:-0}"\n`, { mode: 0o755 });
}
// xl-ha's answer to vbd add --target: where the export is (src/cli/main.ts prints these lines)
fs.writeFileSync(
  path.join(BIN, 'xl-ha-served'),
  `#!/bin/sh\nprintf '%s\\n' "xl-ha $* | " >> "${LOG}"\ncase "$*" in *--target*) printf 'socket=/run/xl-ha/nbd/5.51712.sock\\nexport=xlha-5-51712\\nsize=8388608\\n' ;; esac\nexit "\${FAKE_XL_HA_RC:-0}"\n`,
  { mode: 0o755 },
);

/** The store holds `nodes` (relative to backend/vbd/5/51712) and nothing else. */
function store(nodes: Record<string, string>) {
  for (const f of fs.readdirSync(STORE)) fs.unlinkSync(path.join(STORE, f));
  for (const [k, v] of Object.entries(nodes)) fs.writeFileSync(nodeFile(`backend/vbd/5/51712/${k}`), v);
}

const XB = 'backend/vbd/5/51712';
const blockEnv = (extra: Env = {}) =>
  env({
    PATH: `${BLOCK_BIN}:${BIN}:/usr/bin:/bin`,
    XENBUS_PATH: XB,
    params: '/dev/vg0/vm1',
    XLHA_BIN: path.join(BIN, 'xl-ha-served'),
    XLHA_SYS_BLOCK: SYS,
    XLHA_DEV_DIR: DEV,
    ...extra,
  });
const block = (action: string) => `block ${action} | XENBUS_PATH=${XB} params=/dev/vg0/vm1`;
const served = `xl-ha hotplug vbd add --domid 5 --devid 51712 --target /dev/vg0/vm1 | `;
const deregister = 'xl-ha hotplug vbd remove --domid 5 --devid 51712 | ';

t.test('block-ha add: the daemon serves the disk, nbd-client connects a free /dev/nbdN, which becomes the physical device; block does not run', async (t) => {
  store({ params: '/dev/vg0/vm1' });
  const r = await hook(BLOCK_HA, ['add'], blockEnv());
  t.equal(r.code, 0, show(r));
  t.same(r.calls, [
    `xenstore-read ${XB}/physical-device`,
    `xenstore-read ${XB}/params`,
    served,
    'modprobe nbd',
    `nbd-client -unix /run/xl-ha/nbd/5.51712.sock -N xlha-5-51712 ${DEV}/nbd1`,
    `xenstore-write ${XB}/physical-device 0:0 ${XB}/physical-device-path ${DEV}/nbd1 ${XB}/hotplug-status connected`,
  ], 'nbd0 is in use (its size and pid in sysfs): nbd1 is taken; block never runs');
  t.equal(r.stderr, '');
});

t.test('block-ha remove of an NBD disk: the client disconnects before the daemon drops the export; block does not run', async (t) => {
  store({ params: '/dev/vg0/vm1', 'physical-device-path': `${DEV}/nbd1` });
  const r = await hook(BLOCK_HA, ['remove'], blockEnv());
  t.equal(r.code, 0, show(r));
  t.same(r.calls, [`xenstore-read ${XB}/physical-device-path`, `nbd-client -d ${DEV}/nbd1`, deregister]);
  // a failing disconnect is a warning, and the export still goes
  const f = await hook(BLOCK_HA, ['remove'], blockEnv({ FAKE_NBD_CLIENT_RC: '1' }));
  t.equal(f.code, 0, show(f));
  t.same(f.calls.slice(1).filter((c) => !c.startsWith('logger ')), [`nbd-client -d ${DEV}/nbd1`, deregister]);
  t.match(f.stderr, /block-ha: warning: nbd-client -d .*nbd1 failed/);
});

t.test('block-ha falls back to block when nbd-client fails: the export is dropped again, the disk comes up unreplicated', async (t) => {
  store({ params: '/dev/vg0/vm1' });
  const r = await hook(BLOCK_HA, ['add'], blockEnv({ FAKE_NBD_CLIENT_RC: '1', FAKE_NBD_CLIENT_MSG: 'Socket failed: Connection refused' }));
  t.equal(r.code, 0, show(r));
  const i = r.calls.indexOf(deregister);
  t.ok(i > r.calls.indexOf(served), 'the export is dropped after the failed connects');
  t.equal(r.calls.at(-1), block('add'), 'then block sets the disk up');
  t.notOk(r.calls.some((c) => c.startsWith('xenstore-write')), 'block-ha wrote nothing itself');
  t.match(r.stderr, /nbd-client -unix .* failed: Socket failed: Connection refused/);
  t.match(r.stderr, /goes to block, NOT replicated/);
  // block's failure is then the hook's
  const b = await hook(BLOCK_HA, ['add'], blockEnv({ FAKE_NBD_CLIENT_RC: '1', FAKE_BLOCK_RC: '4' }));
  t.equal(b.code, 4, show(b));
});

t.test('block-ha with no free nbd device, or no params in the store: block sets the disk up, with a warning', async (t) => {
  store({ params: '/dev/vg0/vm1' });
  const r = await hook(BLOCK_HA, ['add'], blockEnv({ XLHA_DEV_DIR: path.join(dir, 'no-dev') }));
  t.equal(r.code, 0, show(r));
  t.notOk(r.calls.some((c) => c.startsWith('nbd-client')), 'no device to connect');
  t.ok(r.calls.includes(deregister));
  t.equal(r.calls.at(-1), block('add'));
  t.match(r.stderr, /no NBD device connected for disk 51712 of domain 5/);
  store({});
  const n = await hook(BLOCK_HA, ['add'], blockEnv());
  t.equal(n.code, 0, show(n));
  t.same(n.calls.filter((c) => !c.startsWith('logger ')), [`xenstore-read ${XB}/physical-device`, `xenstore-read ${XB}/params`, block('add')], 'the daemon is not asked without a target');
  t.match(n.stderr, /no params in backend\/vbd\/5\/51712/);
});

t.test('block-ha when the daemon does not serve the disk: block alone, and the daemon never fails the disk', async (t) => {
  store({ params: '/dev/vg0/vm1' });
  let r = await hook(BLOCK_HA, ['add'], blockEnv({ FAKE_XL_HA_RC: '3' }));
  t.equal(r.code, 0, show(r));
  t.same(r.calls.filter((c) => !c.startsWith('logger ')), [`xenstore-read ${XB}/physical-device`, `xenstore-read ${XB}/params`, served, block('add')]);
  t.match(r.stderr, /block-ha: warning: no xl-ha daemon is running: disk 51712 of domain 5 not registered/);
  t.match(r.stderr, /NOT replicated/);
  t.ok(r.calls.some((c) => c.startsWith('logger -t xl-ha-hotplug ')), 'to syslog too');
  r = await hook(BLOCK_HA, ['add'], blockEnv({ XLHA_BIN: path.join(BIN, 'xl-ha'), FAKE_XL_HA_RC: '1', FAKE_XL_HA_MSG: 'refused' }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /xl-ha refused disk 51712 of domain 5, exit 1: refused/);
  t.equal(r.calls.at(-1), block('add'));
  // an answer without an export (an xl-ha that serves no disks): block, and the registration goes
  r = await hook(BLOCK_HA, ['add'], blockEnv({ XLHA_BIN: path.join(BIN, 'xl-ha') }));
  t.equal(r.code, 0, show(r));
  t.match(r.stderr, /gave no NBD export/);
  t.same(r.calls.slice(-2), ['xl-ha hotplug vbd remove --domid 5 --devid 51712 | ', block('add')]);
  r = await hook(BLOCK_HA, ['add'], blockEnv({ XENBUS_PATH: 'backend/vif/5/0' }));
  t.equal(r.code, 0);
  t.match(r.stderr, /is not a vbd backend/);
});

t.test('block-ha add run a second time (libxl and udev both) changes nothing', async (t) => {
  store({ params: '/dev/vg0/vm1', 'physical-device': '2b:10', 'physical-device-path': `${DEV}/nbd1` });
  const r = await hook(BLOCK_HA, ['add'], blockEnv());
  t.equal(r.code, 0, show(r));
  t.same(r.calls, [`xenstore-read ${XB}/physical-device`], 'no second export, no second client, no block');
});

t.test('block-ha remove of a disk block set up: deregisters, then block; block failing fails the hook', async (t) => {
  store({ params: '/dev/vg0/vm1', 'physical-device-path': '/dev/loop3' });
  let r = await hook(BLOCK_HA, ['remove'], blockEnv());
  t.equal(r.code, 0, show(r));
  t.same(r.calls, [`xenstore-read ${XB}/physical-device-path`, deregister, block('remove')]);
  r = await hook(BLOCK_HA, ['remove'], blockEnv({ FAKE_BLOCK_RC: '2' }));
  t.equal(r.code, 2, show(r));
  t.same(r.calls.slice(-2), [deregister, block('remove')]);
});

t.test('block-ha says in its header what it runs and writes', async (t) => {
  const head = fs.readFileSync(BLOCK_HA, 'utf8').split('\n#====')[1] ?? '';
  for (const w of ['nbd-client -unix SOCKET -N EXPORT /dev/nbdN', 'nbd-client -d /dev/nbdN', 'modprobe nbd', 'physical-device ', 'physical-device-path', 'hotplug-status', 'XLHA_NBD_CLIENT', 'docs/disk-replication.md']) {
    t.ok(head.includes(w), `header names ${w}`);
  }
  for (const f of [VIF_HA, BLOCK_HA]) {
    const text = fs.readFileSync(f, 'utf8');
    for (const section of ['Usage:', 'Environment vars:', 'Writes:']) t.match(text, new RegExp(`^# ${section}`, 'm'), `${path.basename(f)}: ${section}`);
  }
});

// ---------------------------------------------------------------------------------------------

t.test('every script parses (sh -n / bash -n) and is shellcheck-clean', async (t) => {
  const scripts: [string, string][] = [
    [VIF_HA, 'sh'],
    [BLOCK_HA, 'sh'],
    [path.join(ROOT, 'install.sh'), 'bash'],
  ];
  for (const [f, sh] of scripts) {
    t.doesNotThrow(() => execFileSync(sh, ['-n', f], { stdio: 'pipe' }), `${sh} -n ${path.relative(ROOT, f)}`);
    t.ok(fs.statSync(f).mode & 0o100, `${path.relative(ROOT, f)} is executable`);
  }
  if (fs.existsSync('/bin/dash')) for (const f of [VIF_HA, BLOCK_HA]) t.doesNotThrow(() => execFileSync('/bin/dash', ['-n', f]), `dash -n ${path.basename(f)}`);
  let shellcheck = true;
  try {
    execFileSync('shellcheck', ['--version'], { stdio: 'pipe' });
  } catch {
    shellcheck = false;
  }
  if (!shellcheck) {
    t.pass('shellcheck is not installed (apt-get install shellcheck): not run', { skip: true });
    return;
  }
  for (const [f] of scripts) {
    let out = '';
    try {
      execFileSync('shellcheck', [f], { stdio: 'pipe' });
    } catch (err) {
      out = String((err as { stdout?: Buffer }).stdout ?? err);
    }
    t.equal(out, '', `shellcheck ${path.relative(ROOT, f)}`);
  }
});

t.test('the udev rules run the hooks for vif online/offline and vbd add/remove of xen-backend only', async (t) => {
  const text = fs.readFileSync(path.join(ROOT, 'udev/xl-ha.rules'), 'utf8');
  t.match(text, /run_hotplug_scripts=0/, 'says when to use them');
  t.match(text.replace(/\n# /g, ' '), /would run it a second time/, 'and why');
  const rules = text.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  t.equal(rules.length, 3);
  for (const r of rules) {
    t.match(r, /^SUBSYSTEM=="xen-backend", /);
    const run = /RUN\+="(\S+)/.exec(r);
    t.ok(run && fs.existsSync(path.join(ROOT, 'hooks', path.basename(run[1]!))), `runs a hook of hooks/: ${r}`);
    t.match(r, /RUN\+="\/etc\/xen\/scripts\//);
  }
  t.match(rules[0], /KERNEL=="vif-\*", ACTION=="online".*vif-ha online type_if=vif"/);
  t.match(rules[1], /KERNEL=="vif-\*", ACTION=="offline".*vif-ha offline type_if=vif"/);
  t.match(rules[2], /KERNEL=="vbd-\*", ACTION=="add\|remove".*block-ha \$env\{ACTION\}"/);
});

t.test('the systemd unit', async (t) => {
  const unit = fs.readFileSync(path.join(ROOT, 'etc/xl-ha.service'), 'utf8');
  for (const line of [
    '[Unit]',
    'After=xenstored.service xen-init-dom0.service network-online.target',
    'Wants=network-online.target',
    '[Service]',
    'ExecStart=/usr/sbin/xl-ha daemon',
    'Restart=on-failure',
    '[Install]',
    'WantedBy=multi-user.target',
  ]) {
    t.ok(unit.split('\n').includes(line), line);
  }
  t.match(unit, /^# /, 'opens with a comment');
});
