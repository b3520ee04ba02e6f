/** check-config in process: the report, its JSON shape and its text (the CLI is in test/cli/main.test.ts). */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkConfig, runCheckConfig } from '../../src/config/check.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-check-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
};

const saved = process.env.XLHA_CONF;
process.env.XLHA_CONF = path.join(dir, 'no-such.conf'); // never the host's /etc/xen/xl-ha.conf
t.teardown(() => (saved === undefined ? delete process.env.XLHA_CONF : (process.env.XLHA_CONF = saved)));

const conf = file('xl-ha.conf', '[daemon]\nlisten = 0.0.0.0\nwatchdog = 0\n\n[defaults]\nha_peer = backup.example.org\nha_heartbeat_ms = 100\n');
const web = file(
  'web.cfg',
  [
    'name = "web"',
    'memory = 512',
    "disk = [ 'phy:/dev/vg/web,xvda,w', ',hdc:cdrom,r' ]",
    "vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', 'bridge=xenbr1,vid=3' ]",
    'ha = "remus"',
    'ha_interval_ms = 40',
    '',
  ].join('\n'),
);

t.test('a valid cfg: the domain, the effective ha settings and where each comes from', async (t) => {
  const r = checkConfig({ cfgFile: web, conf, json: true });
  t.equal(r.valid, true);
  t.same(r.cfg, { file: web, valid: true });
  t.same(r.conf, { file: conf, found: true, valid: true });
  t.has(r.domain, { name: 'web', memoryMiB: 512, vcpus: 1 });
  t.same(r.domain!.disks.map((d) => d.vdev), ['xvda', 'hdc']);
  t.same(r.domain!.vifs, [
    { spec: 'mac=00:16:3e:00:00:01,bridge=xenbr0', vif: { mac: '00:16:3e:00:00:01', bridge: 'xenbr0' } },
    { spec: 'bridge=xenbr1,vid=3', vif: { bridge: 'xenbr1' } },
  ]);
  t.has(r.ha, { mode: 'remus', peer: { host: 'backup.example.org', port: 7720 }, peerAddress: 'backup.example.org:7720', intervalMs: 40, heartbeatMs: 100, failoverTimeoutMs: 300 });
  t.same(r.haSettings, [
    { key: 'ha', value: 'remus', origin: { from: 'cfg', file: web, line: 5 } },
    { key: 'ha_peer', value: 'backup.example.org:7720', origin: { from: 'conf', file: conf, line: 6 } },
    { key: 'ha_interval_ms', value: 40, origin: { from: 'cfg', file: web, line: 6 } },
    { key: 'ha_transfer', value: 'full', origin: { from: 'built-in' } },
    { key: 'ha_netbuf', value: true, origin: { from: 'built-in' } },
    { key: 'ha_disk', value: true, origin: { from: 'built-in' } },
    { key: 'ha_heartbeat_ms', value: 100, origin: { from: 'conf', file: conf, line: 7 } },
    { key: 'ha_failover_timeout_ms', value: 300, origin: { from: 'built-in', note: '3 x heartbeat' } },
    { key: 'ha_buffer_limit_mib', value: 16, origin: { from: 'built-in' } },
    { key: 'ha_on_buffer_full', value: 'throttle', origin: { from: 'built-in' } },
  ]);
  t.equal(r.warnings.length, 1, 'the unknown vif key is a warning');
  t.match(r.warnings[0], { file: web, line: 4, key: 'vif', text: new RegExp(`^${web}:4: vif\\[1\\] = "bridge=xenbr1,vid=3": unknown vif parameter "vid=3"`) });
  t.same(r.errors, []);
  t.has(r.daemon, { listen: { host: '0.0.0.0', port: 7720 }, watchdogSec: 0 }, '--conf given: its settings are shown');
  t.same(r.defaults, { ha_peer: 'backup.example.org', ha_heartbeat_ms: 100 });
});

t.test('--json prints one object with a stable key order, and exits 0', async (t) => {
  const r = runCheckConfig({ cfgFile: web, conf, json: true });
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  const o = JSON.parse(r.stdout) as Record<string, unknown>;
  t.same(Object.keys(o), ['valid', 'cfg', 'conf', 'domain', 'ha', 'haSettings', 'daemon', 'daemonSettings', 'defaults', 'warnings', 'errors']);
  t.equal(r.stdout.split('\n').length, 2, 'one line');
});

t.test('the text output: the settings on stdout, warnings on stderr', async (t) => {
  const r = runCheckConfig({ cfgFile: web, conf, json: false });
  t.equal(r.code, 0);
  const lines = r.stdout.split('\n');
  t.equal(lines[0], `${web}: valid`);
  t.equal(lines[1], 'domain web: 512 MiB, 1 vCPU');
  t.equal(lines[2], '  disk[0] xvda: /dev/vg/web (raw, rw)');
  t.equal(lines[3], '  disk[1] hdc: (empty) (empty, ro, cdrom)');
  t.equal(lines[4], '  vif[0] mac=00:16:3e:00:00:01 bridge=xenbr0');
  t.equal(lines[6], 'high availability: remus, backup backup.example.org:7720');
  t.match(r.stdout, new RegExp(`\\n  ha_peer +backup\\.example\\.org:7720 +${conf.replace(/[.]/g, '\\.')}:6 \\[defaults\\]\\n`));
  t.match(r.stdout, /\n {2}ha_failover_timeout_ms +300 +built-in \(3 x heartbeat\)\n/);
  t.match(r.stdout, /\n\[daemon\]\n {2}listen +0\.0\.0\.0:7720 +line 2\n/);
  t.match(r.stdout, /\n {2}watchdog +off +line 3\n/);
  t.match(r.stdout, /\n\[defaults\]\n {2}ha_peer +backup\.example\.org\n {2}ha_heartbeat_ms +100\n$/);
  t.match(r.stderr, new RegExp(`^${web}:4: warning: vif\\[1\\]`));
});

t.test('without --conf the defaults come from XLHA_CONF if it exists, and are not shown', async (t) => {
  const none = runCheckConfig({ cfgFile: web, json: false });
  t.equal(none.code, 1, 'no conf, no ha_peer: not valid');
  t.match(none.stderr, new RegExp(`${web}: ha_peer is required when ha is set`));
  process.env.XLHA_CONF = conf;
  t.teardown(() => (process.env.XLHA_CONF = path.join(dir, 'no-such.conf')));
  const r = runCheckConfig({ cfgFile: web, json: false });
  t.equal(r.code, 0);
  t.notMatch(r.stdout, /\[daemon\]/);
  t.match(r.stdout, new RegExp(`\\ndefaults: ${conf.replace(/[.]/g, '\\.')}\\n$`));
});

t.test('a cfg without ha: protection off', async (t) => {
  const plain = file('plain.cfg', 'name = "plain"\nmemory = 64\n');
  const r = checkConfig({ cfgFile: plain, json: true });
  t.equal(r.valid, true);
  t.equal(r.ha, null);
  t.equal(r.haSettings, undefined);
  t.same(r.conf, { file: path.join(dir, 'no-such.conf'), found: false, valid: true });
  t.match(runCheckConfig({ cfgFile: plain, json: false }).stdout, /\nhigh availability: off \(the cfg has no ha key\)\ndefaults: .*no-such\.conf \(not found: built-in settings\)\n$/);
});

t.test('an invalid cfg: exit 1, every problem with file:line, key, value and what is accepted', async (t) => {
  const bad = file('bad.cfg', 'name = "bad"\nmemory = 0\nha = "remus"\nha_peer = "b:0"\nha_group = "g"\ndisk = [ "/a,qcow3,xvda" ]\n');
  const r = checkConfig({ cfgFile: bad, conf, json: true });
  t.equal(r.valid, false);
  t.same(r.cfg, { file: bad, valid: false });
  t.equal(r.domain, undefined);
  t.same(
    r.errors.map((e) => [e.line, e.key, e.value]),
    [
      [2, 'memory', 0],
      [4, 'ha_peer', 'b:0'],
      [5, 'ha_group', 'g'],
      [6, 'disk', '/a,qcow3,xvda'],
    ],
  );
  t.equal(r.errors[2]!.text, `${bad}:5: ha_group = "g" is not valid: group protection (ha_group) is not available yet: remove ha_group (each domain is protected on its own for now)`);
  const text = runCheckConfig({ cfgFile: bad, conf, json: false });
  t.equal(text.code, 1);
  const err = text.stderr.trimEnd().split('\n');
  t.equal(err.length, 5);
  t.match(err[0], new RegExp(`^${bad}:2: memory = 0 is not valid: expected an integer from 1 to 1048576 \\(MiB\\)$`));
  t.equal(err[4], `${bad}: not valid (4 problems)`);
  t.notMatch(text.stdout, /bad\.cfg: valid/);
});

t.test('a syntax error, a missing file', async (t) => {
  const syn = file('syntax.cfg', 'name = vm1\n');
  const r = checkConfig({ cfgFile: syn, json: true });
  t.same(r.errors, [
    {
      file: syn,
      line: 1,
      message: 'expected a quoted string, a number or a [list] for key "name", got bare word "vm1" (strings must be quoted)',
      text: `${syn}:1:8: expected a quoted string, a number or a [list] for key "name", got bare word "vm1" (strings must be quoted)`,
    },
  ]);
  const missing = path.join(dir, 'missing.cfg');
  const m = runCheckConfig({ cfgFile: missing, json: false });
  t.equal(m.code, 1);
  t.equal(m.stderr, `${missing}: cannot read the domain config: no such file\n${missing}: not valid (1 problem)\n`);
});

t.test('--conf alone checks xl-ha.conf and shows its effective settings', async (t) => {
  const r = checkConfig({ conf, json: true });
  t.equal(r.valid, true);
  t.equal(r.cfg, undefined);
  t.same(r.daemonSettings!.map((s) => [s.key, s.value, s.origin.from]), [
    ['listen', '0.0.0.0:7720', 'conf'],
    ['log_level', 'info', 'built-in'],
    ['log_file', 'stderr', 'built-in'],
    ['state_dir', '/var/lib/xl-ha', 'built-in'],
    ['config_dirs', '/etc/xen,/etc/xen/auto', 'built-in'],
    ['metrics_listen', 'off', 'built-in'],
    ['witness', 'off', 'built-in'],
    ['fence_command', '(none)', 'built-in'],
    ['watchdog', 'off', 'conf'],
  ]);
  const text = runCheckConfig({ conf, json: false });
  t.equal(text.code, 0);
  t.match(text.stdout, new RegExp(`^${conf.replace(/[.]/g, '\\.')}: valid\\n\\[daemon\\]\\n`));
});

t.test('a bad xl-ha.conf: exit 1 naming file, line, section, key and value, the cfg still checked', async (t) => {
  const badConf = file('bad.conf', '[daemon]\nwatchdog = 2\n[defaults]\nha_peer = backup\nha_intervl_ms = 5\n[peer x]\n');
  const r = checkConfig({ cfgFile: web, conf: badConf, json: true });
  t.equal(r.valid, false);
  t.same(r.conf, { file: badConf, found: true, valid: false });
  t.same(
    r.errors.map((e) => [e.file, e.line, e.key]),
    [
      [badConf, 2, '[daemon] watchdog'],
      [badConf, 5, '[defaults] ha_intervl_ms'],
      [badConf, 6, undefined],
      [web, undefined, 'ha_peer'],
    ],
    'its defaults are not applied: the cfg then lacks ha_peer',
  );
  t.equal(r.errors[0]!.text, `${badConf}:2: [daemon] watchdog = "2" is not valid: expected 0 or off (no watchdog), or an integer from 5 to 3600 (seconds)`);
  const text = runCheckConfig({ conf: badConf, json: false });
  t.equal(text.code, 1);
  t.equal(text.stdout, '');
  t.match(text.stderr, new RegExp(`\\n${badConf.replace(/[.]/g, '\\.')}: not valid \\(3 problems\\)\\n$`));
  const missing = runCheckConfig({ conf: path.join(dir, 'nope.conf'), json: false });
  t.equal(missing.code, 1, 'a --conf that does not exist is an error');
  t.match(missing.stderr, /nope\.conf: cannot read the xl-ha configuration: no such file/);
});

t.test('what this release cannot run yet is a warning, not an error', async (t) => {
  const llm = file('llm.cfg', 'name = "l"\nmemory = 64\nha = "llm"\nha_peer = "b"\nha_transfer = "compress"\n');
  const r = checkConfig({ cfgFile: llm, json: true });
  t.equal(r.valid, true);
  t.same(
    r.warnings.map((w) => w.text),
    [
      `${llm}:3: ha = "llm" is not implemented yet in this release: the daemon will refuse to protect the domain (use remus, kemari or colo)`,
    ],
    'compress runs in this release: no warning for it',
  );
});
