/**
 * install.sh, always into a temporary --prefix (never into /, and needing no root): every
 * file in its place with its mode and the prefix's paths written in; a second run changes
 * nothing (tree snapshot with modes, sizes, mtimes and hashes); a damaged install is repaired;
 * --dry-run changes nothing; --uninstall leaves the prefix as it was before (a file of the
 * admin's survives), keeping an xl-ha.conf changed since install and never one it did not
 * install; the prerequisite errors and the usage errors; the lock-file fallback when npm ls
 * fails; and the installed command runs a sim daemon that answers `list`.
 */
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { shippedNodeFlags } from '../../src/demo/hosts.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const INSTALL = path.join(ROOT, 'install.sh');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-install-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * The shim to install (XLHA_SRC_SHIM): a stand-in file, not libxl-shim/libxlha.so, which the
 * shim's own test may be building while this one runs; one test installs without a shim.
 */
const SHIM = path.join(dir, 'libxlha.so');
fs.writeFileSync(SHIM, 'not really an ELF shared object\n', { mode: 0o755 });
const NO_SHIM = { XLHA_SRC_SHIM: '' };

/**
 * The source tree the tests install from (XLHA_SRC): a copy of dist/src and of install.sh's
 * own files, taken now, with node_modules a link to the project's. In a working tree shared
 * with others a build may rewrite dist/ while this test runs; the copy stays as it was.
 */
const SRC = path.join(dir, 'src');
fs.cpSync(path.join(ROOT, 'dist/src'), path.join(SRC, 'dist/src'), { recursive: true });
for (const f of ['install.sh', 'package.json', 'package-lock.json', 'etc/xl-ha.conf', 'etc/xl-ha.service', 'hooks/vif-ha', 'hooks/block-ha', 'udev/xl-ha.rules']) {
  fs.mkdirSync(path.dirname(path.join(SRC, f)), { recursive: true });
  fs.copyFileSync(path.join(ROOT, f), path.join(SRC, f));
}
fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(SRC, 'node_modules'));

/** Fake systemctl and udevadm: install.sh must not call them for a prefix other than /. */
const FAKEBIN = path.join(dir, 'fakebin');
const CALLS = path.join(dir, 'system-calls.log');
fs.mkdirSync(FAKEBIN);
for (const tool of ['systemctl', 'udevadm']) {
  fs.writeFileSync(path.join(FAKEBIN, tool), `#!/bin/sh\necho "${tool} $*" >> "${CALLS}"\nexit 0\n`, { mode: 0o755 });
}

type Env = Record<string, string>;
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function baseEnv(extra: Env = {}): Env {
  return {
    PATH: `${FAKEBIN}:${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: dir,
    TMPDIR: dir,
    LANG: 'C',
    XLHA_SRC: SRC,
    XLHA_SRC_SHIM: SHIM,
    ...extra,
  };
}

function run(cmd: string, args: string[], env: Env = baseEnv(), timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const install = (args: string[], env?: Env) => run(INSTALL, args, env);
const show = (r: Run) => `exit ${r.code}; stdout: ${r.stdout.slice(-1500)}; stderr: ${r.stderr.slice(-1500)}`;

interface Entry {
  type: 'file' | 'dir' | 'link';
  mode: number;
  size: number;
  mtimeMs: number;
  sha256?: string;
  target?: string;
}

/** Every entry under a directory: type, permission bits, size, mtime, sha256 or link target. */
function snapshot(root: string, opts: { dirMtimes?: boolean } = {}): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    const base = { mode: st.mode & 0o7777, size: st.size, mtimeMs: st.mtimeMs };
    if (st.isSymbolicLink()) out.set(rel, { type: 'link', ...base, target: fs.readlinkSync(p) });
    else if (st.isDirectory()) {
      if (rel) out.set(rel, { type: 'dir', ...base, size: 0, mtimeMs: opts.dirMtimes ? st.mtimeMs : 0 });
      for (const name of fs.readdirSync(p).sort()) walk(path.join(rel, name));
    } else out.set(rel, { type: 'file', ...base, sha256: sha256(p) });
  };
  if (fs.existsSync(root)) walk('');
  return out;
}

const sha256 = (p: string) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

/** The differences of two snapshots, for a readable failure. */
function diff(a: Map<string, Entry>, b: Map<string, Entry>): string[] {
  const d: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) d.push(`- ${k}`);
    else if (JSON.stringify(v) !== JSON.stringify(w)) d.push(`~ ${k}: ${JSON.stringify(v)} -> ${JSON.stringify(w)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) d.push(`+ ${k}`);
  return d.slice(0, 30);
}

/** The node_modules files of a manifest, with their hashes. */
const modules = (m: ManifestLine[]) =>
  m
    .filter((l) => l.kind === 'f' && l.path.startsWith('/usr/lib/xl-ha/node_modules/'))
    .map((l) => `${l.path} ${l.sha}`)
    .sort();
/** Those of the first install, whose packages npm ls chose. */
let npmLsModules: string[] = [];

const mode = (p: string) => fs.statSync(p).mode & 0o7777;
const calls = () => (fs.existsSync(CALLS) ? fs.readFileSync(CALLS, 'utf8') : '');

interface ManifestLine {
  kind: string;
  sha: string;
  mode: string;
  path: string;
}
function manifest(prefix: string): ManifestLine[] {
  return fs
    .readFileSync(path.join(prefix, 'usr/lib/xl-ha/install-manifest'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [kind, sha, m, p] = l.split('\t');
      return { kind: kind!, sha: sha!, mode: m!, path: p! };
    });
}

/** A source tree of install.sh's own files, with what a test leaves out. */
function fakeSource(name: string, omit: string[]): string {
  const src = path.join(dir, name);
  for (const f of ['install.sh', 'package.json', 'etc/xl-ha.conf', 'etc/xl-ha.service', 'hooks/vif-ha', 'hooks/block-ha', 'udev/xl-ha.rules']) {
    if (omit.includes(f)) continue;
    fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(src, f));
  }
  if (!omit.includes('node_modules')) fs.mkdirSync(path.join(src, 'node_modules'), { recursive: true });
  return src;
}

/**
 * A small built tree: install.sh's files, a stub dist/ and no dependencies, for the tests of
 * the config's handling, which need no real daemon (and a full install's 3000 files cost
 * seconds each on a slow disk).
 */
function miniSource(name: string): string {
  const src = fakeSource(name, []);
  fs.mkdirSync(path.join(src, 'dist/src/cli'), { recursive: true });
  fs.writeFileSync(path.join(src, 'dist/src/cli/xl-ha.cjs'), '// stub\n');
  fs.writeFileSync(path.join(src, 'package.json'), JSON.stringify({ name: 'xl-ha', version: '0.0.0', type: 'module' }));
  return src;
}

// ---------------------------------------------------------------------------------------------

const P = path.join(dir, 'prefix');
/** An admin's file in a directory the install also uses: it must survive everything. */
const UNRELATED = path.join(P, 'etc/xen/vm1.cfg');
let before: Map<string, Entry>;
let installed: Map<string, Entry>;

t.test('install into a temporary prefix puts every file in its place, with its mode and the prefix paths', async (t) => {
  fs.mkdirSync(path.dirname(UNRELATED), { recursive: true });
  fs.writeFileSync(UNRELATED, 'name = "vm1"\n');
  fs.chmodSync(path.join(P, 'etc'), 0o755);
  fs.chmodSync(path.join(P, 'etc/xen'), 0o755);
  before = snapshot(P);
  const r = await install(['--prefix', P]);
  t.equal(r.code, 0, show(r));
  const files: [string, number][] = [
    ['usr/sbin/xl-ha', 0o755],
    ['usr/lib/xl-ha/package.json', 0o644],
    ['usr/lib/xl-ha/dist/src/cli/xl-ha.cjs', 0o644],
    ['usr/lib/xl-ha/dist/src/cli/main.js', 0o644],
    ['usr/lib/xl-ha/node_modules/winston/package.json', 0o644],
    ['usr/lib/xl-ha/node_modules/ini/package.json', 0o644],
    ['usr/lib/xl-ha/install-manifest', 0o644],
    ['etc/xen/scripts/vif-ha', 0o755],
    ['etc/xen/scripts/block-ha', 0o755],
    ['etc/udev/rules.d/65-xl-ha.rules', 0o644],
    ['etc/systemd/system/xl-ha.service', 0o644],
    ['etc/xen/xl-ha.conf', 0o644],
  ];
  for (const [f, m] of files) {
    const p = path.join(P, f);
    t.ok(fs.existsSync(p) && fs.statSync(p).isFile(), `${f} installed`);
    if (fs.existsSync(p)) t.equal(mode(p).toString(8), m.toString(8), `${f} has mode ${m.toString(8)}`);
  }
  t.equal(mode(path.join(P, 'var/lib/xl-ha')).toString(8), '700', 'state directory is 0700');
  t.equal(mode(path.join(P, 'usr/lib/xl-ha')).toString(8), '755');
  const so = path.join(P, 'usr/lib/xl-ha/libxlha.so');
  t.equal(fs.existsSync(so) && mode(so).toString(8), '644', 'the built shim is installed, mode 644');
  t.equal(fs.existsSync(so) && sha256(so), sha256(SHIM));
  // Production packages only, and only dist/src.
  t.notOk(fs.existsSync(path.join(P, 'usr/lib/xl-ha/node_modules/tap')), 'no dev dependency (tap)');
  t.notOk(fs.existsSync(path.join(P, 'usr/lib/xl-ha/node_modules/typescript')), 'no dev dependency (typescript)');
  t.notOk(fs.existsSync(path.join(P, 'usr/lib/xl-ha/dist/test')), 'no compiled tests');
  t.equal(fs.readFileSync(path.join(P, 'etc/xen/xl-ha.conf'), 'utf8'), fs.readFileSync(path.join(SRC, 'etc/xl-ha.conf'), 'utf8'), 'the config template');

  // The prefix's own paths written into what runs.
  const wrapper = fs.readFileSync(path.join(P, 'usr/sbin/xl-ha'), 'utf8');
  // node with the entry's own options (its #! line), as the demo's and the bench's hosts start
  const flags = shippedNodeFlags(path.join(SRC, 'dist/src/cli/xl-ha.cjs'));
  t.ok(flags.includes('--max-semi-space-size=64'), `the entry's #! line carries the daemon's node options (${flags.join(' ')})`);
  t.match(wrapper, new RegExp(`^exec \\S*node${flags.map((f) => ` ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`).join('')} ${P}/usr/lib/xl-ha/dist/src/cli/xl-ha\\.cjs "\\$@"$`, 'm'));
  t.match(wrapper, `XLHA_CONF:=${P}/etc/xen/xl-ha.conf`);
  t.match(wrapper, `XLHA_SHIM:=${P}/usr/lib/xl-ha/libxlha.so`, 'the shim under the prefix is found');
  const unit = fs.readFileSync(path.join(P, 'etc/systemd/system/xl-ha.service'), 'utf8');
  t.match(unit, new RegExp(`^ExecStart=${P}/usr/sbin/xl-ha daemon$`, 'm'));
  t.match(unit, /^After=xenstored\.service xen-init-dom0\.service network-online\.target$/m);
  t.match(unit, /^Wants=network-online\.target$/m);
  t.match(unit, /^Restart=on-failure$/m);
  const rules = fs.readFileSync(path.join(P, 'etc/udev/rules.d/65-xl-ha.rules'), 'utf8');
  t.match(rules, `RUN+="${P}/etc/xen/scripts/vif-ha online type_if=vif"`);
  t.match(rules, `RUN+="${P}/etc/xen/scripts/block-ha $env{ACTION}"`);
  t.notMatch(rules.replace(/^#.*$/gm, ''), /"\/etc\/xen\/scripts/, 'no unprefixed script path in a rule');
  for (const h of ['vif-ha', 'block-ha']) {
    t.match(fs.readFileSync(path.join(P, 'etc/xen/scripts', h), 'utf8'), `XLHA_BIN=\${XLHA_BIN:-${P}/usr/sbin/xl-ha}`, `${h} runs the prefix's xl-ha`);
  }

  // The manifest: every file installed, each with its hash and mode; the prefix's own
  // directories (etc, etc/xen existed before) are not the install's.
  const m = manifest(P);
  const listed = new Map(m.map((l) => [l.path, l]));
  const after = snapshot(P);
  for (const [rel, e] of after) {
    if (rel === 'usr/lib/xl-ha/install-manifest' || before.has(rel)) continue;
    const l = listed.get('/' + rel);
    if (!l) {
      t.fail(`${rel} is not in the manifest`);
      continue;
    }
    if (e.type === 'file') {
      if (l.sha !== e.sha256 || l.mode !== e.mode.toString(8)) t.fail(`${rel}: manifest ${l.sha} ${l.mode}, file ${e.sha256} ${e.mode.toString(8)}`);
    } else if (l.kind !== 'd') t.fail(`${rel} is a directory, listed as ${l.kind}`);
  }
  t.notOk(listed.has('/etc') || listed.has('/etc/xen'), 'directories that existed before are not listed');
  t.equal(listed.get('/etc/xen/xl-ha.conf')?.kind, 'c', 'the config is listed as a config');
  t.ok(m.length > 1000, `${m.length} manifest lines`);
  t.match(r.stdout, /from npm ls --omit=dev/);
  npmLsModules = modules(m);

  t.match(r.stdout, /systemctl enable --now xl-ha/, 'ends with how to start it');
  t.match(r.stdout, /not calling systemctl or udevadm/);
  t.equal(calls(), '', 'neither systemctl nor udevadm was run for a prefix');

  // The installed command works from the prefix.
  const help = await run(path.join(P, 'usr/sbin/xl-ha'), ['help']);
  t.equal(help.code, 0, show(help));
  t.match(help.stdout, /^Usage: xl-ha/);
  const check = await run(path.join(P, 'usr/sbin/xl-ha'), ['check-config', '--conf', path.join(P, 'etc/xen/xl-ha.conf')]);
  t.equal(check.code, 0, show(check));
  t.match(check.stdout, `${P}/etc/xen/xl-ha.conf: valid`, 'the installed template is a valid xl-ha.conf');
  installed = snapshot(P, { dirMtimes: true });
});

t.test('a second run is idempotent: no file, mode or mtime changes, and it says so', async (t) => {
  const r = await install(['--prefix', P]);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, /nothing to change/);
  t.same(diff(installed, snapshot(P, { dirMtimes: true })), [], 'tree unchanged, directory mtimes included');
});

t.test('a run repairs an installed file that was changed, chmodded or removed, and removes one no longer installed', async (t) => {
  const wrapper = path.join(P, 'usr/sbin/xl-ha');
  fs.appendFileSync(wrapper, '# edited\n');
  fs.chmodSync(path.join(P, 'etc/xen/scripts/vif-ha'), 0o600);
  fs.rmSync(path.join(P, 'usr/lib/xl-ha/node_modules/ini/package.json'));
  // A file an earlier version installed (it is in the manifest) and this one no longer does.
  const old = path.join(P, 'usr/lib/xl-ha/dist/src/removed-module.js');
  fs.writeFileSync(old, 'export {};\n');
  fs.appendFileSync(path.join(P, 'usr/lib/xl-ha/install-manifest'), `f\t${sha256(old)}\t644\t/usr/lib/xl-ha/dist/src/removed-module.js\n`);
  const r = await install(['--prefix', P]);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, `remove ${old} (no longer installed)`);
  t.notOk(fs.existsSync(old), 'the stale file is removed');
  t.match(r.stdout, `update ${wrapper}`);
  t.match(r.stdout, `chmod 755 ${P}/etc/xen/scripts/vif-ha`);
  t.match(r.stdout, /1 new, 1 updated, 1 mode changes/);
  const now = snapshot(P);
  const strip = (s: Map<string, Entry>) => new Map([...s].map(([k, v]) => [k, { ...v, mtimeMs: 0 }]));
  t.same(diff(strip(installed), strip(now)), [], 'contents and modes as installed');
  installed = snapshot(P, { dirMtimes: true });
});

t.test('--dry-run changes nothing and prints each action', async (t) => {
  // On an installed prefix, with one file damaged so that there is an action to print.
  const hook = path.join(P, 'etc/xen/scripts/block-ha');
  const saved = fs.readFileSync(hook);
  const savedStat = fs.statSync(hook);
  fs.writeFileSync(hook, '#!/bin/sh\nexit 0\n');
  fs.utimesSync(hook, savedStat.atime, savedStat.mtime);
  const damaged = snapshot(P, { dirMtimes: true });
  let r = await install(['--prefix', P, '--dry-run']);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, `would update ${hook}`);
  t.same(diff(damaged, snapshot(P, { dirMtimes: true })), [], 'installed prefix unchanged');
  fs.writeFileSync(hook, saved);
  fs.utimesSync(hook, savedStat.atime, savedStat.mtime);
  t.same(diff(installed, snapshot(P, { dirMtimes: true })), []);

  // Into an empty prefix: each file and directory, and not even the prefix made.
  const fresh = path.join(dir, 'never-made');
  r = await install(['--prefix', fresh, '-n']);
  t.equal(r.code, 0, show(r));
  t.notOk(fs.existsSync(fresh), 'the prefix was not created');
  t.match(r.stdout, `would create directory ${fresh}/var/lib/xl-ha (mode 700)`);
  t.match(r.stdout, `would install ${fresh}/usr/sbin/xl-ha (mode 755)`);
  t.match(r.stdout, `would install ${fresh}/usr/lib/xl-ha/dist/src/cli/xl-ha.cjs (mode 644)`);
  t.match(r.stdout, `would install ${fresh}/etc/xen/xl-ha.conf (mode 644)`);
  t.match(r.stdout, `would write ${fresh}/usr/lib/xl-ha/install-manifest`);
  t.equal(calls(), '');

  // The default prefix / in a dry run: only reads /, and names systemctl without running it.
  r = await install(['--dry-run']);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, /systemctl enable --now xl-ha/);
  if (!fs.existsSync('/usr/lib/xl-ha')) t.match(r.stdout, /would run: systemctl daemon-reload/);
  t.equal(calls(), '', 'systemctl and udevadm not run by a dry run');
});

t.test('--uninstall --dry-run changes nothing; --uninstall leaves the prefix as it was before install', async (t) => {
  let r = await install(['--prefix', P, '--uninstall', '--dry-run']);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, `would remove ${P}/usr/sbin/xl-ha`);
  t.match(r.stdout, `would remove ${P}/etc/xen/xl-ha.conf`);
  t.same(diff(installed, snapshot(P, { dirMtimes: true })), [], 'dry run: nothing removed');

  r = await install(['--prefix', P, '--uninstall']);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, /xl-ha uninstalled from/);
  t.same(diff(before, snapshot(P)), [], 'the prefix as it was before install');
  t.equal(fs.readFileSync(UNRELATED, 'utf8'), 'name = "vm1"\n', "the admin's file survives");
  t.equal(calls(), '');

  r = await install(['--prefix', P, '--uninstall']);
  t.equal(r.code, 1, 'a second uninstall has no manifest');
  t.match(r.stderr, /nothing to uninstall under .*: no install manifest/);
});

t.test('an xl-ha.conf the admin changed survives --uninstall, with a message', async (t) => {
  const p = path.join(dir, 'edited');
  const env = baseEnv({ XLHA_SRC: miniSource('mini-edited') });
  let r = await install(['--prefix', p], env);
  t.equal(r.code, 0, show(r));
  const conf = path.join(p, 'etc/xen/xl-ha.conf');
  fs.appendFileSync(conf, '\n[daemon]\nlisten = 0.0.0.0\n');
  const edited = fs.readFileSync(conf, 'utf8');
  r = await install(['--prefix', p], env); // a re-run keeps it too
  t.equal(r.code, 0, show(r));
  t.equal(fs.readFileSync(conf, 'utf8'), edited, 'a re-install does not overwrite it');
  r = await install(['--prefix', p, '--uninstall'], env);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, `keeping ${conf}: changed since it was installed`);
  t.match(r.stdout, `keeping directory ${p}/etc/xen: not empty`);
  t.equal(fs.readFileSync(conf, 'utf8'), edited);
  t.same([...snapshot(p).keys()], ['etc', 'etc/xen', 'etc/xen/xl-ha.conf'], 'everything else removed');
});

t.test('an xl-ha.conf that was there before is never overwritten nor removed', async (t) => {
  const p = path.join(dir, 'preexisting');
  const conf = path.join(p, 'etc/xen/xl-ha.conf');
  fs.mkdirSync(path.dirname(conf), { recursive: true });
  fs.writeFileSync(conf, '[daemon]\nlog_level = debug\n');
  const pre = snapshot(p);
  const env = baseEnv({ XLHA_SRC: miniSource('mini-preexisting'), ...NO_SHIM });
  let r = await install(['--prefix', p], env);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, `keeping ${conf} as it is`);
  // Installed without a shim, with a word about what that means.
  t.match(r.stderr, /libxlha\.so is not built .*installing without it; the xen backend will not load, the sim backend still works/);
  t.notOk(fs.existsSync(path.join(p, 'usr/lib/xl-ha/libxlha.so')));
  t.notMatch(fs.readFileSync(path.join(p, 'usr/sbin/xl-ha'), 'utf8'), /XLHA_SHIM/);
  t.equal(fs.readFileSync(conf, 'utf8'), '[daemon]\nlog_level = debug\n');
  t.notOk(manifest(p).some((l) => l.path === '/etc/xen/xl-ha.conf'), 'not in the manifest');
  r = await install(['--prefix', p, '--uninstall'], env);
  t.equal(r.code, 0, show(r));
  t.same(diff(pre, snapshot(p)), []);
});

t.test('without a usable npm ls it takes the production packages from package-lock.json, and the install runs a sim daemon', async (t) => {
  const bin = path.join(dir, 'npm-fails');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'npm'), '#!/bin/sh\necho "npm: broken" >&2\nexit 1\n', { mode: 0o755 });
  const env = baseEnv({ PATH: `${bin}:${baseEnv().PATH}`, ...NO_SHIM });
  const p = path.join(dir, 'lockfile');
  const r = await install(['--prefix', p], env);
  t.equal(r.code, 0, show(r));
  t.match(r.stdout, /from package-lock\.json/);
  t.same(modules(manifest(p)), npmLsModules, 'the lock file gives the production tree npm ls gave');

  // The installed daemon starts on the sim backend and answers on its control socket.
  const run0 = path.join(dir, 'run');
  fs.mkdirSync(run0, { mode: 0o700 });
  const denv = { ...baseEnv(), XLHA_CONTROL: path.join(run0, 'control.sock'), XLHA_KEYS: path.join(run0, 'keys') };
  const xlha = path.join(p, 'usr/sbin/xl-ha');
  const daemon = spawn(xlha, ['--backend', 'sim', 'daemon'], { env: denv, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  daemon.stdout.on('data', (b) => (log += b));
  daemon.stderr.on('data', (b) => (log += b));
  t.teardown(() => {
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
  });
  let list: Run = { code: null, stdout: '', stderr: '' };
  for (let i = 0; i < 100; i++) {
    list = await run(xlha, ['list'], denv);
    if (list.code === 0) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  t.equal(list.code, 0, `${show(list)}; daemon log: ${log.slice(-1500)}`);
  t.match(list.stdout, /^Name\s+ID/);
  t.ok(fs.existsSync(path.join(p, 'var/lib/xl-ha', 'sim')), 'and keeps its state in the prefix');
  const exited = new Promise((res) => daemon.once('exit', res));
  daemon.kill('SIGTERM');
  await exited;
});

t.test('a missing prerequisite is named exactly, and nothing is installed', async (t) => {
  const p = path.join(dir, 'not-made');
  // No dist/ (XLHA_SRC names the source tree).
  let src = fakeSource('no-dist', []);
  let r = await install(['--prefix', p], baseEnv({ XLHA_SRC: src }));
  t.equal(r.code, 1, show(r));
  t.match(r.stderr, `install.sh: missing prerequisite: a built dist/ in ${src} (dist/src/cli/xl-ha.cjs): run npm ci && npm run build first`);
  // The same from a copy of the script run in its own directory, without XLHA_SRC.
  const { XLHA_SRC: _, ...noSrc } = baseEnv();
  r = await run(path.join(src, 'install.sh'), ['--prefix', p], noSrc);
  t.equal(r.code, 1, show(r));
  t.match(r.stderr, `missing prerequisite: a built dist/ in ${src} (dist/src/cli/xl-ha.cjs): run npm ci && npm run build first`);
  // No node_modules either: both named.
  src = fakeSource('nothing', ['node_modules', 'udev/xl-ha.rules']);
  r = await install(['--prefix', p], baseEnv({ XLHA_SRC: src }));
  t.equal(r.code, 1, show(r));
  t.match(r.stderr, `missing prerequisite: node_modules in ${src}: run npm ci && npm run build first`);
  t.match(r.stderr, `missing prerequisite: ${src}/udev/xl-ha.rules`);
  // Without npm ls, a lock-file package that is not in node_modules.
  src = fakeSource('half-installed', []);
  fs.mkdirSync(path.join(src, 'dist/src/cli'), { recursive: true });
  fs.writeFileSync(path.join(src, 'dist/src/cli/xl-ha.cjs'), '');
  fs.writeFileSync(path.join(src, 'package-lock.json'), JSON.stringify({ lockfileVersion: 3, packages: { '': {}, 'node_modules/ini': { version: '6.0.0' }, 'node_modules/tap': { dev: true } } }));
  const noNpm = path.join(dir, 'no-npm');
  fs.mkdirSync(noNpm);
  fs.writeFileSync(path.join(noNpm, 'npm'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  r = await install(['--prefix', p], baseEnv({ XLHA_SRC: src, PATH: `${noNpm}:${baseEnv().PATH}` }));
  t.equal(r.code, 1, show(r));
  t.match(r.stderr, `install.sh: node_modules in ${src} lacks packages of package-lock.json (node_modules/ini): run npm ci && npm run build first`);
  // A node older than 20.15.
  const old = path.join(dir, 'old-node');
  fs.mkdirSync(old);
  fs.writeFileSync(path.join(old, 'node'), '#!/bin/sh\necho 20.14.0\n', { mode: 0o755 });
  r = await install(['--prefix', p], baseEnv({ PATH: `${old}:${baseEnv().PATH}` }));
  t.equal(r.code, 1, show(r));
  t.match(r.stderr, `missing prerequisite: node >= 20.15 (${old}/node is 20.14.0)`);
  t.notOk(fs.existsSync(p), 'nothing installed');
});

t.test('usage: --help, unknown options and a missing --prefix argument', async (t) => {
  let r = await install(['--help']);
  t.equal(r.code, 0);
  t.match(r.stdout, /^Usage: install\.sh \[--prefix DIR\] \[--dry-run\] \[--uninstall\]/);
  r = await install(['--prefix', path.join(dir, 'x'), '--bogus']);
  t.equal(r.code, 2, show(r));
  t.match(r.stderr, /install\.sh: unknown option: --bogus/);
  t.notOk(fs.existsSync(path.join(dir, 'x')));
  r = await install(['--prefix']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--prefix needs a directory/);
  r = await install(['stray']);
  t.equal(r.code, 2);
  t.match(r.stderr, /unexpected argument: stray/);
  r = await install(['--prefix', path.join(dir, 'has space')]);
  t.equal(r.code, 1);
  t.match(r.stderr, /use only letters, digits/);
});
