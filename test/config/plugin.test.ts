/** /etc/xen/xl-ha.conf: schema, errors, and [defaults] under the domains' own keys. */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  applyHaDefaults,
  builtinPluginConfig,
  DAEMON_DEFAULTS,
  defaultPluginConfigPath,
  domainConfigWithDefaults,
  loadPluginConfig,
  parsePluginConfig,
  PluginConfigError,
  type PluginConfig,
} from '../../src/config/plugin.js';
import { ConfigError, domainConfigFromCfg } from '../../src/config/domain.js';
import { parseXlCfg } from '../../src/config/xlcfg.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test/config
const repo = path.resolve(here, '..', '..', '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-plugin-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const CONF = 'xl-ha.conf';

function problems(text: string): string[] {
  try {
    parsePluginConfig(text, CONF);
  } catch (err) {
    if (!(err instanceof PluginConfigError)) throw err;
    return err.message.split('\n').filter((l) => l.startsWith(`${CONF}:`));
  }
  throw new Error(`accepted: ${text}`);
}

t.test('a missing file means the built-in settings', async (t) => {
  const missing = path.join(dir, 'none.conf');
  const c = loadPluginConfig(missing);
  t.equal(c.found, false);
  t.equal(c.source, missing);
  t.same(c.daemon, DAEMON_DEFAULTS);
  t.same(c.daemon, { logLevel: 'info', log: { kind: 'stderr' }, stateDir: '/var/lib/xl-ha', configDirs: ['/etc/xen', '/etc/xen/auto'], watchdogSec: 30 });
  t.equal(c.defaults.size, 0);
  t.same(builtinPluginConfig(missing), c);
});

t.test('a file named on the command line must exist; an unreadable one is an error', async (t) => {
  const missing = path.join(dir, 'none.conf');
  t.throws(() => loadPluginConfig(missing, { mustExist: true }), { name: 'PluginConfigError', message: `${missing}: cannot read the xl-ha configuration: no such file` });
  t.throws(() => loadPluginConfig(dir), { name: 'PluginConfigError', message: `${dir}: cannot read the xl-ha configuration: it is a directory` });
});

t.test('the default path is /etc/xen/xl-ha.conf unless XLHA_CONF says otherwise', async (t) => {
  const saved = process.env.XLHA_CONF;
  t.teardown(() => (saved === undefined ? delete process.env.XLHA_CONF : (process.env.XLHA_CONF = saved)));
  delete process.env.XLHA_CONF;
  t.equal(defaultPluginConfigPath(), '/etc/xen/xl-ha.conf');
  process.env.XLHA_CONF = '/tmp/x.conf';
  t.equal(defaultPluginConfigPath(), '/tmp/x.conf');
});

t.test('every [daemon] key and every [defaults] key is read', async (t) => {
  const c = parsePluginConfig(
    [
      '; xl-ha.conf',
      '# both comment styles',
      '[daemon]',
      'listen = [::]:7800',
      'log_level = debug',
      'log_file = /var/log/xl-ha.log',
      'state_dir = /srv/xl-ha/',
      'config_dirs = /etc/xen, /etc/xen/auto ,/srv/cfgs',
      'metrics_listen = 127.0.0.1:9772',
      'witness = etcd1:2379,https://etcd2:2379',
      'fence_command = "/usr/local/sbin/fence --node $XLHA_PEER; logger fenced"',
      'watchdog = 60',
      '',
      '[defaults]',
      'ha_peer = backup.example.org',
      'ha_interval_ms = 40 ; comment after a value',
      'ha_kemari_min_gap_ms = 3',
      'ha_colo_max_interval_ms = 800',
      'ha_transfer = full',
      'ha_netbuf = on',
      'ha_disk = no',
      'ha_heartbeat_ms = 100',
      'ha_failover_timeout_ms = 400',
      'ha_buffer_limit_mib = 32',
      "ha_on_buffer_full = 'degrade'",
    ].join('\r\n'),
    CONF,
  );
  t.equal(c.found, true);
  t.same(c.daemon, {
    listen: { host: '::', port: 7800 },
    logLevel: 'debug',
    log: { kind: 'file', path: '/var/log/xl-ha.log' },
    stateDir: '/srv/xl-ha/',
    configDirs: ['/etc/xen', '/etc/xen/auto', '/srv/cfgs'],
    metricsListen: { host: '127.0.0.1', port: 9772 },
    witness: ['http://etcd1:2379', 'https://etcd2:2379'],
    fenceCommand: '/usr/local/sbin/fence --node $XLHA_PEER; logger fenced',
    watchdogSec: 60,
  });
  t.same(Object.fromEntries([...c.defaults].map(([k, v]) => [k, v.value])), {
    ha_peer: 'backup.example.org',
    ha_interval_ms: 40,
    ha_kemari_min_gap_ms: 3,
    ha_colo_max_interval_ms: 800,
    ha_transfer: 'full',
    ha_netbuf: 'on',
    ha_disk: 'no',
    ha_heartbeat_ms: 100,
    ha_failover_timeout_ms: 400,
    ha_buffer_limit_mib: 32,
    ha_on_buffer_full: 'degrade',
  });
  t.equal(c.defaults.get('ha_peer')?.line, 15);
  t.same(c.set.get('daemon.watchdog'), { section: 'daemon', key: 'watchdog', raw: '60', line: 12 });
});

t.test('quoting: "..." is a JSON string, \'...\' is literal, \\; escapes a comment character', async (t) => {
  const c = parsePluginConfig(`[daemon]\nfence_command = 'a; "b" # c' ; a comment\nlog_file = "/var/log/x;1.log"\n[defaults]\nha_peer = "back\\u0075p" # comment\n`, CONF);
  t.equal(c.daemon.fenceCommand, 'a; "b" # c');
  t.same(c.daemon.log, { kind: 'file', path: '/var/log/x;1.log' });
  t.equal(c.defaults.get('ha_peer')?.value, 'backup');
  t.same(problems("[daemon]\nconfig_dirs = '[1]'"), ['xl-ha.conf:2: [daemon] config_dirs = "[1]" is not valid: "[1]" is not an absolute directory: expected absolute directories separated by commas, e.g. /etc/xen,/etc/xen/auto']);
  t.equal(parsePluginConfig('[daemon]\nfence_command = /bin/fence \\; echo \\#1', CONF).daemon.fenceCommand, '/bin/fence ; echo #1');
});

t.test('off, journal, syslog and 0 are accepted where documented', async (t) => {
  const c = parsePluginConfig('[daemon]\nlisten = off\nmetrics_listen = off\nwitness = off\nwatchdog = off\nlog_file = journal\n', CONF);
  t.same(c.daemon, { ...DAEMON_DEFAULTS, log: { kind: 'journal' }, watchdogSec: 0 });
  t.equal(parsePluginConfig('[daemon]\nwatchdog = 0\nlog_file = syslog', CONF).daemon.watchdogSec, 0);
  t.same(parsePluginConfig('[daemon]\nlog_file = syslog', CONF).daemon.log, { kind: 'syslog' });
  t.same(parsePluginConfig('[daemon]\nlisten = 10.0.0.1', CONF).daemon.listen, { host: '10.0.0.1', port: 7720 }, 'the port defaults to 7720');
  t.same(parsePluginConfig('', CONF).daemon, DAEMON_DEFAULTS, 'an empty file is the built-in settings');
  t.same(parsePluginConfig('[daemon]\n[defaults]\n[daemon]\nlog_level = warn', CONF).daemon.logLevel, 'warn', 'a section may appear again');
});

const BAD_VALUES: [string, string][] = [
  ['[daemon]\nlisten = backup:0', 'xl-ha.conf:2: [daemon] listen = "backup:0" is not valid: port 0 is out of range (expected 1 to 65535); expected ADDR[:PORT] (port defaults to 7720) to accept replication streams on, e.g. 0.0.0.0 or [::]:7720, or off'],
  ['[daemon]\nlog_level = loud', 'xl-ha.conf:2: [daemon] log_level = "loud" is not valid: expected one of error, warn, info, http, verbose, debug, silly'],
  ['[daemon]\nlog_file = xl-ha.log', 'xl-ha.conf:2: [daemon] log_file = "xl-ha.log" is not valid: expected stderr, journal, syslog or the absolute path of a log file, e.g. /var/log/xl-ha.log'],
  ['[daemon]\nstate_dir = var/lib', 'xl-ha.conf:2: [daemon] state_dir = "var/lib" is not valid: expected an absolute path (the directory of the daemon\'s records), e.g. /var/lib/xl-ha'],
  ['[daemon]\nconfig_dirs = /etc/xen,,/etc/xen/auto', 'xl-ha.conf:2: [daemon] config_dirs = "/etc/xen,,/etc/xen/auto" is not valid: an empty entry is not an absolute directory: expected absolute directories separated by commas, e.g. /etc/xen,/etc/xen/auto'],
  ['[daemon]\nconfig_dirs = /etc/xen,auto', 'xl-ha.conf:2: [daemon] config_dirs = "/etc/xen,auto" is not valid: "auto" is not an absolute directory: expected absolute directories separated by commas, e.g. /etc/xen,/etc/xen/auto'],
  ['[daemon]\nmetrics_listen = 127.0.0.1', 'xl-ha.conf:2: [daemon] metrics_listen = "127.0.0.1" is not valid: missing port; expected HOST:PORT to serve metrics on, e.g. 127.0.0.1:9772, or off'],
  ['[daemon]\nwitness = etcd1', 'xl-ha.conf:2: [daemon] witness = "etcd1" is not valid: witness endpoint "etcd1" is not host:port (or http[s]://host:port); expected etcd endpoints HOST:PORT (or http[s]://HOST:PORT) separated by commas, or off'],
  ['[daemon]\nfence_command = " "', 'xl-ha.conf:2: [daemon] fence_command = " " is not valid: expected a shell command'],
  ['[daemon]\nwatchdog = 2', 'xl-ha.conf:2: [daemon] watchdog = "2" is not valid: expected 0 or off (no watchdog), or an integer from 5 to 3600 (seconds)'],
  ['[daemon]\nwatchdog = 1h', 'xl-ha.conf:2: [daemon] watchdog = "1h" is not valid: expected 0 or off (no watchdog), or an integer from 5 to 3600 (seconds)'],
  ['[daemon]\nlisten =', 'xl-ha.conf:2: [daemon] listen = "" is not valid: the value is empty; remove the line for the built-in default'],
  ['[defaults]\nha_peer = backup:http', 'xl-ha.conf:2: [defaults] ha_peer = "backup:http" is not valid: port "http" is not a number (expected 1 to 65535); expected host[:port] (port defaults to 7720), e.g. "backup-host:7720"'],
  ['[defaults]\nha_interval_ms = fast', 'xl-ha.conf:2: [defaults] ha_interval_ms = "fast" is not valid: expected an integer from 1 to 60000 (milliseconds)'],
  ['[defaults]\nha_kemari_min_gap_ms = -1', 'xl-ha.conf:2: [defaults] ha_kemari_min_gap_ms = "-1" is not valid: expected an integer from 0 to 10000 (milliseconds)'],
  ['[defaults]\nha_colo_max_interval_ms = 5', 'xl-ha.conf:2: [defaults] ha_colo_max_interval_ms = "5" is not valid: expected an integer from 10 to 600000 (milliseconds)'],
  ['[defaults]\nha_transfer = zip', 'xl-ha.conf:2: [defaults] ha_transfer = "zip" is not valid: "zip" is not a transfer; expected full, or a comma list of fgbi and compress (e.g. "fgbi,compress")'],
  ['[defaults]\nha_netbuf = maybe', 'xl-ha.conf:2: [defaults] ha_netbuf = "maybe" is not valid: expected on/off, 1/0, true/false or yes/no'],
  ['[defaults]\nha_disk = 2', 'xl-ha.conf:2: [defaults] ha_disk = "2" is not valid: expected on/off, 1/0, true/false or yes/no'],
  ['[defaults]\nha_heartbeat_ms = 1', 'xl-ha.conf:2: [defaults] ha_heartbeat_ms = "1" is not valid: expected an integer from 5 to 10000 (milliseconds)'],
  ['[defaults]\nha_failover_timeout_ms = 0', 'xl-ha.conf:2: [defaults] ha_failover_timeout_ms = "0" is not valid: expected an integer from 1 to 600000 (milliseconds)'],
  ['[defaults]\nha_failover_timeout_ms = 40', 'xl-ha.conf:2: [defaults] ha_failover_timeout_ms = "40" is not valid: expected more than the heartbeat, 50 ms (built-in)'],
  ['[defaults]\nha_heartbeat_ms = 200\nha_failover_timeout_ms = 150', 'xl-ha.conf:3: [defaults] ha_failover_timeout_ms = "150" is not valid: expected more than the heartbeat, 200 ms ([defaults] ha_heartbeat_ms, line 2)'],
  ['[defaults]\nha_buffer_limit_mib = 5000', 'xl-ha.conf:2: [defaults] ha_buffer_limit_mib = "5000" is not valid: expected an integer from 1 to 4096 (MiB)'],
  ['[defaults]\nha_on_buffer_full = drop', 'xl-ha.conf:2: [defaults] ha_on_buffer_full = "drop" is not valid: expected one of "throttle", "degrade"'],
];

t.test('each bad value names the file, line, section, key, value and what is accepted', async (t) => {
  for (const [text, want] of BAD_VALUES) t.same(problems(text), [want], text);
});

const BAD_SHAPES: [string, string][] = [
  ['[deamon]\nlisten = 0.0.0.0', 'xl-ha.conf:1: unknown section [deamon] (did you mean [daemon]?): the sections are [daemon] and [defaults]'],
  ['[Defaults]', 'xl-ha.conf:1: unknown section [Defaults] (did you mean [defaults]?): the sections are [daemon] and [defaults]'],
  ['[peer backup]\nkey = x', 'xl-ha.conf:1: [peer backup] is not a section of xl-ha.conf: pairings with peers live in key files (xl-ha keygen, xl-ha pair), not here; the sections are [daemon] and [defaults]'],
  ['listen = 0.0.0.0', 'xl-ha.conf:1: listen = "0.0.0.0" comes before any section: put it under [daemon] or [defaults]'],
  ['[daemon]\nlistn = 0.0.0.0', 'xl-ha.conf:2: [daemon] listn is not a known key (did you mean listen?): the [daemon] keys are listen, log_level, log_file, state_dir, config_dirs, metrics_listen, witness, fence_command, watchdog'],
  ['[daemon]\nhost_name = h', 'xl-ha.conf:2: [daemon] host_name is not a known key: the [daemon] keys are listen, log_level, log_file, state_dir, config_dirs, metrics_listen, witness, fence_command, watchdog'],
  ['[defaults]\nha_intervall_ms = 25', 'xl-ha.conf:2: [defaults] ha_intervall_ms is not a known key (did you mean ha_interval_ms?): the [defaults] keys are ha_peer, ha_interval_ms, ha_kemari_min_gap_ms, ha_colo_max_interval_ms, ha_transfer, ha_fgbi_block_bytes, ha_fgbi_shadow_mib, ha_netbuf, ha_disk, ha_heartbeat_ms, ha_failover_timeout_ms, ha_buffer_limit_mib, ha_on_buffer_full'],
  ['[defaults]\nha = remus', 'xl-ha.conf:2: [defaults] ha cannot have a default: protection is asked for per domain, with ha = "<mode>" in its cfg'],
  ['[defaults]\nha_group = tier1', 'xl-ha.conf:2: [defaults] ha_group: group protection (ha_group) is not available yet: remove ha_group (each domain is protected on its own for now)'],
  ['[defaults]\nwatchdog = 30', 'xl-ha.conf:2: [defaults] watchdog belongs in [daemon], not [defaults]'],
  ['[daemon]\nha_peer = b', "xl-ha.conf:2: [daemon] ha_peer belongs in [defaults], not [daemon]: it is a default for the domains' ha keys"],
  ['[daemon]\nlisten = a\nlisten = b', 'xl-ha.conf:3: [daemon] listen is given twice, on lines 2 and 3: keep one'],
  ['[daemon]\njust words', 'xl-ha.conf:2: "just words" is neither a [section] nor a key = value line'],
];

t.test('unknown sections and keys, and malformed lines, are errors', async (t) => {
  for (const [text, want] of BAD_SHAPES) t.same(problems(text), [want], text);
});

t.test('every problem is listed, in line order, in one error', async (t) => {
  let err: PluginConfigError | undefined;
  try {
    parsePluginConfig('[daemon]\nlog_level = loud\nwatchdog = 1\n[bogus]\nx = 1\n[defaults]\nha_interval_ms = 0\n', CONF);
  } catch (e) {
    err = e as PluginConfigError;
  }
  t.type(err, PluginConfigError);
  t.equal(err!.issues.length, 4, 'the keys of an unknown section are not reported again');
  t.same(
    err!.issues.map((i) => [i.line, i.section, i.key]),
    [
      [2, 'daemon', 'log_level'],
      [3, 'daemon', 'watchdog'],
      [4, 'bogus', undefined],
      [7, 'defaults', 'ha_interval_ms'],
    ],
  );
  t.match(err!.message, /^xl-ha\.conf: 4 configuration errors:\nxl-ha\.conf:2: /);
});

// --- [defaults] under the domains' own keys --------------------------------------

const conf = (defaults: string): PluginConfig => parsePluginConfig(`[defaults]\n${defaults}`, '/etc/xen/xl-ha.conf');
const cfg = (text: string) => parseXlCfg(text, 'vm.cfg');

t.test('a cfg key overrides [defaults], which overrides the built-in default', async (t) => {
  const c = conf('ha_peer = backup\nha_interval_ms = 40\nha_netbuf = off\nha_buffer_limit_mib = 32');
  const { ha } = domainConfigWithDefaults(cfg('name = "a"\nmemory = 64\nha = "remus"\nha_interval_ms = 10\n'), c);
  t.same(ha, { mode: 'remus', peer: { host: 'backup', port: 7720 }, intervalMs: 10, transfer: 'full', netbuf: false, disk: true, heartbeatMs: 50, failoverTimeoutMs: 150, bufferLimitMiB: 32 });
});

t.test('a cfg without ha gets no defaults: protection is asked for per domain', async (t) => {
  const c = conf('ha_peer = backup');
  const plain = cfg('name = "a"\nmemory = 64\n');
  t.equal(applyHaDefaults(plain, c), plain, 'the same cfg comes back');
  t.equal(domainConfigWithDefaults(plain, c).ha, null);
});

t.test('without a plugin config the result is exactly domainConfigFromCfg', async (t) => {
  const text = 'name = "a"\nmemory = 64\nha = "remus"\nha_peer = "b"\n';
  t.equal(applyHaDefaults(cfg(text), undefined).entries.size, 4);
  t.same(domainConfigWithDefaults(cfg(text)), domainConfigFromCfg(cfg(text)));
  t.same(domainConfigWithDefaults(cfg(text), builtinPluginConfig()), domainConfigFromCfg(cfg(text)), 'nor does an empty one change anything');
  t.throws(() => domainConfigWithDefaults(cfg('name = "a"\nmemory = 64\nha = "remus"\n')), { message: /ha_peer is required/ });
});

t.test("a default for a key the domain's mode does not use is left out", async (t) => {
  const c = conf('ha_peer = b\nha_interval_ms = 40\nha_kemari_min_gap_ms = 7\nha_colo_max_interval_ms = 900');
  const base = 'name = "a"\nmemory = 64\n';
  t.has(domainConfigWithDefaults(cfg(`${base}ha = "remus"`), c).ha, { intervalMs: 40, minGapMs: undefined, maxIntervalMs: undefined });
  t.has(domainConfigWithDefaults(cfg(`${base}ha = "kemari"`), c).ha, { intervalMs: 25, minGapMs: 7 });
  t.has(domainConfigWithDefaults(cfg(`${base}ha = "colo"`), c).ha, { intervalMs: 25, maxIntervalMs: 900 });
  t.throws(() => domainConfigWithDefaults(cfg(`${base}ha = "mirror"`), c), { message: /^vm\.cfg:3: ha = "mirror" is not valid/ }, 'a bad mode is reported, not hidden by defaults');
});

t.test('the heartbeat and the failover timeout come as a pair', async (t) => {
  const c = conf('ha_peer = b\nha_heartbeat_ms = 100\nha_failover_timeout_ms = 350');
  const base = 'name = "a"\nmemory = 64\nha = "remus"\n';
  t.has(domainConfigWithDefaults(cfg(base), c).ha, { heartbeatMs: 100, failoverTimeoutMs: 350 }, 'both from [defaults]');
  t.has(domainConfigWithDefaults(cfg(`${base}ha_heartbeat_ms = 200`), c).ha, { heartbeatMs: 200, failoverTimeoutMs: 600 }, 'a cfg heartbeat: 3 x it, not the default timeout');
  t.has(domainConfigWithDefaults(cfg(`${base}ha_failover_timeout_ms = 90`), c).ha, { heartbeatMs: 50, failoverTimeoutMs: 90 }, 'a cfg timeout: the built-in heartbeat');
  t.has(domainConfigWithDefaults(cfg(base), conf('ha_peer = b\nha_heartbeat_ms = 20')).ha, { heartbeatMs: 20, failoverTimeoutMs: 60 });
});

t.test('a value from [defaults] carries its origin, and a problem with it names that origin', async (t) => {
  const c = conf('ha_peer = b\nha_heartbeat_ms = 100');
  const entries = applyHaDefaults(cfg('name = "a"\nmemory = 64\nha = "remus"\n'), c).entries;
  t.same(entries.get('ha_peer'), { value: 'b', line: 0, origin: '/etc/xen/xl-ha.conf:2 [defaults]' });
  t.same(entries.get('ha_heartbeat_ms'), { value: 100, line: 0, origin: '/etc/xen/xl-ha.conf:3 [defaults]' });
  // [defaults] are checked when read, and the heartbeat pairs with the timeout, so a problem
  // with a default-derived value needs a hand-built cfg.
  const mixed = cfg('name = "a"\nmemory = 64\nha = "remus"\nha_peer = "b"\nha_failover_timeout_ms = 80\n');
  mixed.entries.set('ha_heartbeat_ms', { value: 100, line: 0, origin: '/etc/xen/xl-ha.conf:3 [defaults]' });
  t.throws(() => domainConfigFromCfg(mixed), {
    name: 'ConfigError',
    message: 'vm.cfg:5: ha_failover_timeout_ms = 80 is not valid: expected an integer greater than ha_heartbeat_ms (100, from /etc/xen/xl-ha.conf:3 [defaults]) and at most 600000 (milliseconds)',
  });
  mixed.entries.set('ha_netbuf', { value: 'maybe', line: 0, origin: '/etc/xen/xl-ha.conf:9 [defaults]' });
  const err = (() => {
    try {
      domainConfigFromCfg(mixed);
    } catch (e) {
      return e as ConfigError;
    }
    throw new Error('accepted');
  })();
  t.type(err, ConfigError);
  t.same(
    err.message.split('\n').slice(1),
    [
      'vm.cfg:5: ha_failover_timeout_ms = 80 is not valid: expected an integer greater than ha_heartbeat_ms (100, from /etc/xen/xl-ha.conf:3 [defaults]) and at most 600000 (milliseconds)',
      'vm.cfg: ha_netbuf = "maybe" (from /etc/xen/xl-ha.conf:9 [defaults]) is not valid: expected on/off, 1/0, true/false or yes/no',
    ],
    'an issue without a cfg line sorts last',
  );
});

t.test('the sample etc/xl-ha.conf is valid and changes nothing until edited', async (t) => {
  const sample = path.join(repo, 'etc', 'xl-ha.conf');
  const c = loadPluginConfig(sample, { mustExist: true });
  t.equal(c.found, true);
  t.same(c.daemon, DAEMON_DEFAULTS, 'every setting is commented out: the built-in values');
  t.equal(c.defaults.size, 0);
  // Uncommenting every example line must give a valid file too.
  const uncommented = fs
    .readFileSync(sample, 'utf8')
    .split('\n')
    .map((l) => l.replace(/^;(\s*[a-z_]+\s*=)/, '$1'))
    .join('\n');
  const all = parsePluginConfig(uncommented, sample);
  t.ok(all.set.size >= 15, `${all.set.size} example settings`);
});

t.test('the example of docs/config.md is valid', async (t) => {
  const md = fs.readFileSync(path.join(repo, 'docs', 'config.md'), 'utf8');
  const m = /```ini\n([\s\S]*?)```/.exec(md);
  t.ok(m, 'docs/config.md has an ini example');
  const c = parsePluginConfig(m![1]!, 'docs/config.md');
  t.ok(c.set.size > 0);
});
