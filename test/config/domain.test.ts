import t from 'tap';
import { MODE_IDS } from '../../src/engine/modes/ids.js';
import { parseXlCfg, xlCfgFromObject, type XlValue } from '../../src/config/xlcfg.js';
import {
  BOOL_FALSE_WORDS,
  BOOL_TRUE_WORDS,
  ConfigError,
  DEFAULT_REPLICATION_PORT,
  domainConfigFromCfg,
  formatHostPort,
  HA_KEYS,
  HostPortError,
  parseBoolWord,
  parseDiskSpec,
  parseHostPort,
  SIM_KEYS,
  SIM_WORKLOAD_IDS,
  TRANSFER_IDS,
} from '../../src/config/domain.js';

const BASE = { name: 'vm1', memory: 512 } as const;

function fromObj(obj: Record<string, XlValue>) {
  return domainConfigFromCfg(xlCfgFromObject(obj, 'vm.cfg'));
}

/** Validate, expecting a ConfigError; return it. */
function configError(obj: Record<string, XlValue>): ConfigError {
  try {
    fromObj(obj);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(obj)}`);
}

t.test('a minimal config gets the documented defaults and no ha', async (t) => {
  const { domain, ha } = fromObj({ ...BASE });
  t.same(domain, { name: 'vm1', memoryMiB: 512, vcpus: 1, disks: [], vifs: [] });
  t.equal(ha, null);
  t.notOk('sim' in domain, 'sim is absent without sim_ keys');
  t.notOk('uuid' in domain, 'uuid is absent when not set');
});

t.test('a full config from cfg text is converted with every field', async (t) => {
  const text = `
# protected guest
name   = "web-01"
uuid   = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
memory = 2048
vcpus  = 4
kernel = "/boot/vmlinuz"     # unknown to xl-ha: ignored
disk = [ '/srv/web.img,raw,xvda,rw',
         'format=raw, vdev=xvdb, access=ro, target=/srv/data,v2.img', ]
vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:01' ]
ha = "colo"; ha_peer = "[fd00::2]:7800"
ha_colo_max_interval_ms = 400
ha_transfer = "fgbi"
ha_netbuf = "off"
ha_disk = 0
ha_heartbeat_ms = 100
ha_failover_timeout_ms = 450
sim_workload = "memstress"; sim_dirty_mibps = 12.5
sim_service = "127.0.0.1:7000"
sim_seed = 0xdeadbeef
sim_nondeterminism = 0.01
`;
  const { domain, ha } = domainConfigFromCfg(parseXlCfg(text, 'web.cfg'));
  t.same(domain, {
    name: 'web-01',
    uuid: '3f2504e0-4f89-11d3-9a0c-0305e82c3301',
    memoryMiB: 2048,
    vcpus: 4,
    disks: [
      { target: '/srv/web.img', vdev: 'xvda', format: 'raw', access: 'rw' },
      { target: '/srv/data,v2.img', vdev: 'xvdb', format: 'raw', access: 'ro' },
    ],
    vifs: ['bridge=xenbr0,mac=00:16:3e:00:00:01'],
    sim: { workload: 'memstress', dirtyMiBPerSec: 12.5, service: { host: '127.0.0.1', port: 7000 }, seed: 0xdeadbeef, nondeterminism: 0.01 },
  });
  t.same(ha, {
    mode: 'colo',
    peer: { host: 'fd00::2', port: 7800 },
    intervalMs: 25,
    maxIntervalMs: 400,
    transfer: 'fgbi',
    netbuf: false,
    disk: false,
    heartbeatMs: 100,
    failoverTimeoutMs: 450,
  });
});

t.test('ha defaults: port 7720, 25 ms interval, full transfer, buffering on, 50 ms heartbeat, 3x timeout', async (t) => {
  const { ha } = fromObj({ ...BASE, ha: 'remus', ha_peer: 'backup' });
  t.same(ha, {
    mode: 'remus',
    peer: { host: 'backup', port: DEFAULT_REPLICATION_PORT },
    intervalMs: 25,
    transfer: 'full',
    netbuf: true,
    disk: true,
    heartbeatMs: 50,
    failoverTimeoutMs: 150,
  });
});

t.test('the failover timeout defaults to three heartbeats', async (t) => {
  t.equal(fromObj({ ...BASE, ha: 'remus', ha_peer: 'b', ha_heartbeat_ms: 200 }).ha?.failoverTimeoutMs, 600);
});

t.test('the buffer limit and what happens past it are per domain', async (t) => {
  const ha = fromObj({ ...BASE, ha: 'remus', ha_peer: 'b', ha_buffer_limit_mib: 64, ha_on_buffer_full: 'degrade' }).ha;
  t.equal(ha?.bufferLimitMiB, 64);
  t.equal(ha?.onBufferFull, 'degrade');
  const dflt = fromObj({ ...BASE, ha: 'remus', ha_peer: 'b' }).ha;
  t.equal(dflt?.bufferLimitMiB, undefined, 'unset: the engine default (16 MiB, throttle)');
  t.equal(dflt?.onBufferFull, undefined);
});

t.test('every ha mode is accepted', async (t) => {
  for (const mode of MODE_IDS) t.equal(fromObj({ ...BASE, ha: mode, ha_peer: 'b' }).ha?.mode, mode);
});

t.test('every transfer mode and sim workload is accepted', async (t) => {
  for (const tr of TRANSFER_IDS) t.equal(fromObj({ ...BASE, ha: 'remus', ha_peer: 'b', ha_transfer: tr }).ha?.transfer, tr);
  for (const w of SIM_WORKLOAD_IDS) t.equal(fromObj({ ...BASE, sim_workload: w }).domain.sim?.workload, w);
});

t.test('sim settings appear with defaults as soon as one sim_ key is set', async (t) => {
  t.same(fromObj({ ...BASE, sim_seed: 7 }).domain.sim, { workload: 'kv', dirtyMiBPerSec: 0, seed: 7 });
  t.same(fromObj({ ...BASE, sim_workload: 'idle' }).domain.sim, { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 });
});

t.test('integers written as quoted digits are accepted, as xl does', async (t) => {
  const { domain } = fromObj({ name: 'vm1', memory: '256', vcpus: ' 2 ' });
  t.equal(domain.memoryMiB, 256);
  t.equal(domain.vcpus, 2);
});

t.test('unknown keys outside ha_ and sim_ are ignored', async (t) => {
  const { domain } = fromObj({ ...BASE, builder: 'hvm', on_crash: 'restart', maxmem: 4096, hap: 1 });
  t.equal(domain.name, 'vm1');
});

// --- single bad keys -----------------------------------------------------

const BAD_CASES: { title: string; obj: Record<string, XlValue>; key: string; message: string }[] = [
  { title: 'a missing name', obj: { memory: 1 }, key: 'name', message: 'name is required: expected a domain name of 1 to 64 characters' },
  { title: 'a name with a bad character', obj: { ...BASE, name: 'my vm!' }, key: 'name', message: 'name = "my vm!" is not valid: expected a name of 1 to 64 characters from A-Z a-z 0-9 _ . -' },
  { title: 'a name longer than 64 characters', obj: { ...BASE, name: 'a'.repeat(65) }, key: 'name', message: `name = "${'a'.repeat(65)}" is not valid` },
  { title: 'an all-digit name', obj: { ...BASE, name: '42' }, key: 'name', message: 'name = "42" is not valid: a name must not be all digits' },
  { title: 'a numeric name', obj: { ...BASE, name: 5 }, key: 'name', message: 'name = 5 is not valid: expected a quoted string' },
  { title: 'a malformed uuid', obj: { ...BASE, uuid: '1234' }, key: 'uuid', message: 'uuid = "1234" is not valid: expected a UUID in 8-4-4-4-12 hex form' },
  { title: 'zero memory', obj: { ...BASE, memory: 0 }, key: 'memory', message: 'memory = 0 is not valid: expected an integer from 1 to 1048576 (MiB)' },
  { title: 'fractional memory', obj: { ...BASE, memory: 1.5 }, key: 'memory', message: 'memory = 1.5 is not valid: expected an integer from 1 to 1048576 (MiB)' },
  { title: 'memory as a list', obj: { ...BASE, memory: [1] }, key: 'memory', message: 'memory = [1] is not valid' },
  { title: 'too many vcpus', obj: { ...BASE, vcpus: 129 }, key: 'vcpus', message: 'vcpus = 129 is not valid: expected an integer from 1 to 128' },
  { title: 'disk as a string', obj: { ...BASE, disk: '/srv/a.img,raw,xvda,rw' }, key: 'disk', message: `disk = "/srv/a.img,raw,xvda,rw" is not valid: expected a list of disk specs` },
  { title: 'a disk format xl does not know', obj: { ...BASE, disk: ['/srv/a.img,qcow3,xvda,rw'] }, key: 'disk', message: 'disk[0] = "/srv/a.img,qcow3,xvda,rw" is not valid: unknown value "qcow3" for format (did you mean qcow?): expected raw, qcow, qcow2, vhd, qed or empty' },
  { title: 'a disk without vdev', obj: { ...BASE, disk: ['/srv/a.img'] }, key: 'disk', message: 'disk[0] = "/srv/a.img" is not valid: missing vdev' },
  { title: 'a disk with a bad access mode', obj: { ...BASE, disk: ['/srv/a.img,raw,xvda,rx'] }, key: 'disk', message: 'unknown value "rx" for access: expected rw (or w) or ro (or r)' },
  { title: 'a disk with an unknown parameter', obj: { ...BASE, disk: ['vdev=xvda, cache=none, target=/a'] }, key: 'disk', message: 'disk[0] = "vdev=xvda, cache=none, target=/a" is not valid: unknown parameter "cache": the parameters are target, format, vdev, access, devtype' },
  { title: 'two disks on one vdev', obj: { ...BASE, disk: ['/a,raw,xvda', '/b,raw,xvda'] }, key: 'disk', message: 'disk[1] = "/b,raw,xvda" is not valid: vdev xvda is already used by disk[0]' },
  { title: 'a numeric disk entry', obj: { ...BASE, disk: [3] }, key: 'disk', message: 'disk[0] = 3 is not valid: missing vdev (the device the guest sees, e.g. xvda or hdc); a disk spec is' },
  { title: 'a list inside the disk list', obj: { ...BASE, disk: ['/a,,xvda', ['/b,,xvdb'], '/c,,xvdc'] }, key: 'disk', message: 'disk[1] = ["/b,,xvdb"] is not valid: expected a quoted disk spec like \'/srv/vm.img,raw,xvda,rw\', not a list (xl would silently ignore it and every disk after it)' },
  { title: 'the same device twice under two names', obj: { ...BASE, disk: ['/a,,xvda', '/b,,51712'] }, key: 'disk', message: 'disk[1] = "/b,,51712" is not valid: vdev 51712 (the same device as xvda) is already used by disk[0]' },
  { title: 'vif as a string', obj: { ...BASE, vif: 'bridge=xenbr0' }, key: 'vif', message: 'vif = "bridge=xenbr0" is not valid: expected a list of vif specs' },
  { title: 'an unknown ha mode', obj: { ...BASE, ha: 'mirror', ha_peer: 'b' }, key: 'ha', message: 'ha = "mirror" is not valid: expected one of "remus", "kemari", "colo", "llm"' },
  { title: 'ha without ha_peer', obj: { ...BASE, ha: 'remus' }, key: 'ha_peer', message: 'ha_peer is required when ha is set: expected host[:port]' },
  { title: 'an ha_peer with a bad port', obj: { ...BASE, ha: 'remus', ha_peer: 'b:70000' }, key: 'ha_peer', message: 'ha_peer = "b:70000" is not valid: port 70000 is out of range (expected 1 to 65535); expected host[:port]' },
  { title: 'an unbracketed IPv6 peer with a port', obj: { ...BASE, ha: 'remus', ha_peer: 'fe80::1:x:7720' }, key: 'ha_peer', message: 'IPv6 addresses with a port must be written in brackets' },
  { title: 'a word for ha_interval_ms', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_interval_ms: 'fast' }, key: 'ha_interval_ms', message: 'ha_interval_ms = "fast" is not valid: expected an integer from 1 to 60000 (milliseconds)' },
  { title: 'a zero ha_interval_ms', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_interval_ms: 0 }, key: 'ha_interval_ms', message: 'ha_interval_ms = 0 is not valid: expected an integer from 1 to 60000' },
  { title: 'an unknown ha_transfer', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_transfer: 'zip' }, key: 'ha_transfer', message: 'ha_transfer = "zip" is not valid: "zip" is not a transfer; expected full, or a comma list of fgbi and compress (e.g. "fgbi,compress")' },
  { title: 'an ha_group (group protection is not available yet)', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_group: 'web' }, key: 'ha_group', message: 'ha_group = "web" is not valid: group protection (ha_group) is not available yet: remove ha_group' },
  { title: 'an ha_group without ha', obj: { ...BASE, ha_group: 'web' }, key: 'ha_group', message: 'ha_group = "web" is not valid: group protection (ha_group) is not available yet' },
  { title: 'a vif with a bad mac', obj: { ...BASE, vif: ['mac=00:16:3e:zz:00:01,bridge=xenbr0'] }, key: 'vif', message: 'vif[0] = "mac=00:16:3e:zz:00:01,bridge=xenbr0" is not valid: mac "00:16:3e:zz:00:01" is not a MAC address: expected six hex bytes separated by \':\'' },
  { title: 'a vif with a bad rate', obj: { ...BASE, vif: ['rate=10Mbit/s'] }, key: 'vif', message: 'vif[0] = "rate=10Mbit/s" is not valid: invalid rate "10Mbit/s": expected RATE[@INTERVAL]' },
  { title: 'a non-boolean ha_netbuf', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_netbuf: 'maybe' }, key: 'ha_netbuf', message: 'ha_netbuf = "maybe" is not valid: expected on/off, 1/0, true/false or yes/no' },
  { title: 'a non-boolean ha_disk', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_disk: 2 }, key: 'ha_disk', message: 'ha_disk = 2 is not valid: expected on/off' },
  { title: 'a too-small ha_heartbeat_ms', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_heartbeat_ms: 1 }, key: 'ha_heartbeat_ms', message: 'ha_heartbeat_ms = 1 is not valid: expected an integer from 5 to 10000 (milliseconds)' },
  { title: 'a failover timeout not above the heartbeat', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_heartbeat_ms: 100, ha_failover_timeout_ms: 100 }, key: 'ha_failover_timeout_ms', message: 'ha_failover_timeout_ms = 100 is not valid: expected an integer greater than ha_heartbeat_ms (100)' },
  { title: 'a zero ha_buffer_limit_mib', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_buffer_limit_mib: 0 }, key: 'ha_buffer_limit_mib', message: 'ha_buffer_limit_mib = 0 is not valid: expected an integer from 1 to 4096 (MiB)' },
  { title: 'an unknown ha_on_buffer_full', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_on_buffer_full: 'drop' }, key: 'ha_on_buffer_full', message: 'ha_on_buffer_full = "drop" is not valid: expected one of "throttle", "degrade"' },
  { title: 'an ha_ key without ha', obj: { ...BASE, ha_peer: 'b' }, key: 'ha_peer', message: 'ha_peer is set but ha is not' },
  { title: 'an unknown ha_ key', obj: { ...BASE, ha: 'remus', ha_peer: 'b', ha_intervl_ms: 5 }, key: 'ha_intervl_ms', message: `ha_intervl_ms is not a known key (did you mean ha_interval_ms?): the known ha keys are ${HA_KEYS.join(', ')}` },
  { title: 'an unknown sim_ key', obj: { ...BASE, sim_colour: 5 }, key: 'sim_colour', message: `sim_colour is not a known key: the known sim keys are ${SIM_KEYS.join(', ')}` },
  { title: 'an unknown sim_workload', obj: { ...BASE, sim_workload: 'db' }, key: 'sim_workload', message: 'sim_workload = "db" is not valid: expected one of "kv", "memstress", "idle"' },
  { title: 'a too-large sim_dirty_mibps', obj: { ...BASE, sim_dirty_mibps: 5000 }, key: 'sim_dirty_mibps', message: 'sim_dirty_mibps = 5000 is not valid: expected a number from 0 to 4096' },
  { title: 'a sim_service without a port', obj: { ...BASE, sim_service: '127.0.0.1' }, key: 'sim_service', message: 'sim_service = "127.0.0.1" is not valid: missing port; expected host:port, e.g. "127.0.0.1:7000"' },
  { title: 'a negative sim_seed', obj: { ...BASE, sim_seed: -1 }, key: 'sim_seed', message: 'sim_seed = -1 is not valid: expected an integer from 0 to 4294967295' },
];

for (const c of BAD_CASES) {
  t.test(`${c.title} is rejected naming the key, the value and what is accepted`, async (t) => {
    const err = configError(c.obj);
    t.equal(err.errors.length, 1, `exactly one issue (${err.message})`);
    t.equal(err.key, c.key);
    t.equal(err.errors[0]!.key, c.key);
    t.ok(err.message.includes(c.message), `message ${JSON.stringify(err.message)} includes ${JSON.stringify(c.message)}`);
    t.ok(err.message.startsWith('vm.cfg: '), 'message names the source');
  });
}

t.test('the offending value is carried on the error', async (t) => {
  const err = configError({ ...BASE, ha: 'remus', ha_peer: 'b', ha_interval_ms: 'fast' });
  t.equal(err.value, 'fast');
  t.equal(err.errors[0]!.value, 'fast');
});

t.test('all errors are collected into one ConfigError, one per line, with line numbers', async (t) => {
  const text = ['name = "bad name"', 'memory = 0', 'ha_peer = "x"', 'sim_seed = "s"', 'ha_bogus = 1'].join('\n');
  let err: ConfigError | undefined;
  try {
    domainConfigFromCfg(parseXlCfg(text, 'vm.cfg'));
  } catch (e) {
    err = e as ConfigError;
  }
  t.ok(err instanceof ConfigError);
  t.same(
    err!.errors.map((e) => [e.key, e.line]),
    [
      ['name', 1],
      ['memory', 2],
      ['ha_peer', 3],
      ['sim_seed', 4],
      ['ha_bogus', 5],
    ],
  );
  const lines = err!.message.split('\n');
  t.equal(lines[0], 'vm.cfg: 5 configuration errors:');
  t.equal(lines.length, 6);
  t.match(lines[1], /^vm\.cfg:1: name = "bad name" is not valid/);
  t.match(lines[2], /^vm\.cfg:2: memory = 0 is not valid/);
  t.match(lines[3], /^vm\.cfg:3: ha_peer is set but ha is not/);
  t.match(lines[4], /^vm\.cfg:4: sim_seed = "s" is not valid/);
  t.match(lines[5], /^vm\.cfg:5: ha_bogus is not a known key/);
});

t.test('a single error from a file names file:line', async (t) => {
  t.throws(() => domainConfigFromCfg(parseXlCfg('name = "vm1"\nmemory = 64\nha = "remus"\nha_peer = "b"\nha_interval_ms = "fast"', 'vm.cfg')), {
    name: 'ConfigError',
    message: 'vm.cfg:5: ha_interval_ms = "fast" is not valid: expected an integer from 1 to 60000 (milliseconds)',
  });
});

t.test('parseHostPort accepts host, host:port, IPv4 and bracketed or bare IPv6', async (t) => {
  t.same(parseHostPort('backup', 7720), { host: 'backup', port: 7720 });
  t.same(parseHostPort('backup.example.org:9', 7720), { host: 'backup.example.org', port: 9 });
  t.same(parseHostPort('10.0.0.2:65535', 1), { host: '10.0.0.2', port: 65535 });
  t.same(parseHostPort('[::1]', 7720), { host: '::1', port: 7720 });
  t.same(parseHostPort('[fe80::1]:80', 7720), { host: 'fe80::1', port: 80 });
  t.same(parseHostPort('fe80::1', 7720), { host: 'fe80::1', port: 7720 });
  t.same(parseHostPort(' h:1 '), { host: 'h', port: 1 });
});

t.test('parseHostPort rejects malformed addresses with a clear reason', async (t) => {
  const cases: [string, number | undefined, RegExp][] = [
    ['', 7720, /empty address/],
    ['h:0', 7720, /port 0 is out of range \(expected 1 to 65535\)/],
    ['h:65536', 7720, /port 65536 is out of range/],
    ['h:http', 7720, /port "http" is not a number/],
    ['h:', 7720, /port "" is not a number/],
    [':80', 7720, /missing host/],
    ['h', undefined, /^invalid address "h": missing port$/],
    ['[::1', 7720, /missing '\]'/],
    ['[::1]x', 7720, /unexpected "x" after '\]'/],
    ['[nothost]:1', 7720, /"nothost" is not an IPv6 address/],
    ['bad_host:1', 7720, /"bad_host" is not a valid host name or IP address/],
    ['300.1.1.1', 7720, /"300\.1\.1\.1" is not a valid host name/],
    ['a:b:c', 7720, /must be written in brackets/],
  ];
  for (const [input, port, re] of cases) {
    t.throws(() => parseHostPort(input, port), { name: 'HostPortError', message: re }, `rejects ${JSON.stringify(input)}`);
  }
  try {
    parseHostPort('h:0', 1);
  } catch (err) {
    t.ok(err instanceof HostPortError);
    t.equal((err as HostPortError).input, 'h:0');
    t.match((err as HostPortError).message, /^invalid address "h:0": /);
  }
});

t.test('formatHostPort brackets IPv6 hosts', async (t) => {
  t.equal(formatHostPort({ host: 'fe80::1', port: 7720 }), '[fe80::1]:7720');
  t.equal(formatHostPort({ host: 'backup', port: 1 }), 'backup:1');
});

t.test('parseBoolWord understands every documented word in any case', async (t) => {
  for (const w of BOOL_TRUE_WORDS) {
    t.equal(parseBoolWord(w), true, w);
    t.equal(parseBoolWord(w.toUpperCase()), true, w.toUpperCase());
  }
  for (const w of BOOL_FALSE_WORDS) t.equal(parseBoolWord(w), false, w);
  t.equal(parseBoolWord(1), true);
  t.equal(parseBoolWord(0), false);
  t.equal(parseBoolWord(2), undefined);
  t.equal(parseBoolWord('maybe'), undefined);
});

t.test('parseDiskSpec handles positional, keyword, mixed and shorthand forms', async (t) => {
  t.same(parseDiskSpec('/srv/vm.img,raw,xvda,rw'), { target: '/srv/vm.img', vdev: 'xvda', format: 'raw', access: 'rw' });
  t.same(parseDiskSpec('/srv/vm.img,,xvda'), { target: '/srv/vm.img', vdev: 'xvda', format: 'raw', access: 'rw' });
  t.same(parseDiskSpec('/srv/vm.img,raw,hdb,r'), { target: '/srv/vm.img', vdev: 'hdb', format: 'raw', access: 'ro' });
  t.same(parseDiskSpec('/srv/vm.img,raw,xvdc1,w'), { target: '/srv/vm.img', vdev: 'xvdc1', format: 'raw', access: 'rw' });
  t.throws(() => parseDiskSpec('/srv/vm.img,RAW,xvdc1,w'), { message: /unknown value "RAW" for format \(did you mean raw\?\)/ }, 'formats are lower case, as in xl');
  t.same(parseDiskSpec('format=raw, vdev=xvda, access=rw, target=/srv/vm.img'), { target: '/srv/vm.img', vdev: 'xvda', format: 'raw', access: 'rw' });
  t.same(parseDiskSpec('vdev=xvda, target=/srv/a,b.img'), { target: '/srv/a,b.img', vdev: 'xvda', format: 'raw', access: 'rw' });
  t.same(parseDiskSpec(',,xvda,ro,target=/srv/x.img'), { target: '/srv/x.img', vdev: 'xvda', format: 'raw', access: 'ro' });
  t.throws(() => parseDiskSpec('/a,raw,xvda,rw,extra'), { message: /too many positional parameters at "extra"/ });
  t.throws(() => parseDiskSpec('/a,raw,xvda,vdev=xvdb'), { message: /vdev is given twice \("xvda" and "xvdb"\)/ });
  t.throws(() => parseDiskSpec(',raw,xvda'), { message: /empty target: only a cdrom drive may be empty/ });
  t.throws(() => parseDiskSpec('/a,raw,eth0'), { message: /vdev "eth0" is not a virtual device libxl accepts/ });
  t.throws(() => parseDiskSpec('/a,tar,xvda'), { message: /unknown value "tar" for format: expected raw, qcow, qcow2, vhd, qed or empty/ });
});

t.test('a mode option given to another mode is refused, naming the key and the mode', async (t) => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ ha: 'remus', ha_kemari_min_gap_ms: 5 }, 'ha_kemari_min_gap_ms', /ha_kemari_min_gap_ms is used only by ha = "kemari", not by ha = "remus"/],
    [{ ha: 'kemari', ha_colo_max_interval_ms: 500 }, 'ha_colo_max_interval_ms', /ha_colo_max_interval_ms is used only by ha = "colo", not by ha = "kemari"/],
    [{ ha: 'kemari', ha_interval_ms: 30 }, 'ha_interval_ms', /ha_interval_ms is not used by ha = "kemari"/],
    [{ ha: 'colo', ha_interval_ms: 30 }, 'ha_interval_ms', /ha_interval_ms is not used by ha = "colo"/],
    [{ ha: 'colo', ha_colo_max_interval_ms: 5 }, 'ha_colo_max_interval_ms', /ha_colo_max_interval_ms = 5 is not valid: expected an integer from 10 to 600000/],
    [{ ha: 'kemari', ha_kemari_min_gap_ms: -1 }, 'ha_kemari_min_gap_ms', /ha_kemari_min_gap_ms = -1 is not valid/],
  ];
  for (const [keys, key, message] of cases) {
    let err: unknown;
    try {
      fromObj({ ...BASE, ha_peer: 'b', ...keys });
    } catch (e) {
      err = e;
    }
    t.type(err, ConfigError, `${JSON.stringify(keys)} is refused`);
    const issue = (err as ConfigError).errors.find((i) => i.key === key);
    t.ok(issue, `the issue names ${key}`);
    t.match(issue?.message, message);
  }
  t.equal(fromObj({ ...BASE, ha: 'kemari', ha_peer: 'b', ha_kemari_min_gap_ms: 7 }).ha?.minGapMs, 7);
  t.equal(fromObj({ ...BASE, ha: 'kemari', ha_peer: 'b' }).ha?.minGapMs, 2, 'kemari: minimum gap 2 ms by default');
  t.equal(fromObj({ ...BASE, ha: 'colo', ha_peer: 'b' }).ha?.maxIntervalMs, 5000, 'colo: a checkpoint at the latest every 5 s by default');
});

// --- what xl accepts is accepted; what xl only warns about is a warning ---------------

function fromText(text: string) {
  return domainConfigFromCfg(parseXlCfg(text, 'vm.cfg'));
}

t.test('without memory the domain gets maxmem, or libxl\'s 32 MiB, with a warning', async (t) => {
  const none = fromObj({ name: 'vm1' });
  t.equal(none.domain.memoryMiB, 32);
  t.same(none.warnings.map((w) => [w.key, w.message]), [['memory', "memory is not set: the domain gets 32 MiB, libxl's default (set memory = <MiB>)"]]);
  const maxmem = fromText('name = "vm1"\nmaxmem = 1024\n');
  t.equal(maxmem.domain.memoryMiB, 1024);
  t.match(maxmem.warnings[0], { key: 'maxmem', line: 2, message: 'memory is not set: the domain starts with maxmem, 1024 MiB (as in libxl)' });
  t.equal(fromText('name = "vm1"\nmemory = 256\nmaxmem = 1024\n').domain.memoryMiB, 256, 'memory wins over maxmem');
  t.same(fromObj({ ...BASE }).warnings, [], 'a config with memory has no warning');
});

t.test('numbers are read as xl reads them: 0x hex and 0 octal, in strings too', async (t) => {
  t.equal(fromText('name = "vm1"\nmemory = 0x200').domain.memoryMiB, 512);
  t.equal(fromText('name = "vm1"\nmemory = 01000').domain.memoryMiB, 512);
  t.equal(fromText('name = "vm1"\nmemory = "0x200"').domain.memoryMiB, 512);
  t.throws(() => fromText('name = "vm1"\nmemory = 09'), { message: 'vm.cfg:2: memory = "09" is not valid: expected an integer from 1 to 1048576 (MiB)' });
  t.throws(() => fromText('name = "vm1"\nmemory = 12abc'), { message: /memory = "12abc" is not valid/ });
});

t.test('+= for a number is refused, as xl refuses it', async (t) => {
  t.throws(() => fromText('name = "vm1"\nmemory = 256\nmemory += 0'), {
    name: 'ConfigError',
    message: 'vm.cfg:3: memory = "2560" is not valid: xl does not accept += for a number (it would ignore memory): write memory = <number>',
  });
  t.equal(fromText('name = "vm"\nname += "1"\nmemory = 8').domain.name, 'vm1', '+= builds a string');
});

t.test('a key set twice is a warning naming both lines', async (t) => {
  const r = fromText('name = "vm1"\nmemory = 128\nkernel = "/a"\nmemory = 256\n');
  t.equal(r.domain.memoryMiB, 256);
  t.same(r.warnings, [{ key: 'memory', value: 256, line: 4, message: 'memory is set twice, on lines 2 and 4: the later one counts (as in xl)' }]);
});

t.test('unknown vif keys, netdev and accel are warnings (xl ignores them), and the vif is kept', async (t) => {
  const r = fromText("name = 'vm1'\nmemory = 8\nvif = [ 'bridge=xenbr0,vid=10', 'netdev=eth0,accel=x' ]\n");
  t.same(r.domain.vifs, ['bridge=xenbr0,vid=10', 'netdev=eth0,accel=x']);
  t.same(
    r.warnings.map((w) => [w.key, w.line, w.message]),
    [
      ['vif', 3, 'vif[0] = "bridge=xenbr0,vid=10": unknown vif parameter "vid=10": xl warns "unrecognized argument" and ignores it; the vif keys are mac, bridge, gatewaydev, type, model, vifname, script, ip, backend, rate, devid, mtu, netdev, accel and COLO\'s colo_*'],
      ['vif', 3, 'vif[1] = "netdev=eth0,accel=x": netdev=eth0 is deprecated: write gatewaydev=eth0'],
      ['vif', 3, 'vif[1] = "netdev=eth0,accel=x": accel=x is not supported by xl, which ignores it'],
    ],
  );
});

t.test('every disk syntax of xl-disk-configuration(5) is accepted in a cfg', async (t) => {
  const r = fromText(
    [
      'name = "vm1"',
      'memory = 512',
      'disk = [ "phy:/dev/vg/root,xvda,w", "tap:qcow2:/srv/data.qcow2,xvdb,w",',
      '         "format=vhd, vdev=xvdc, access=ro, backendtype=qdisk, target=/srv/c,1.vhd",',
      '         ",hdc:cdrom,r", "/srv/iso/boot.iso,,hdd,cdrom" ]',
    ].join('\n'),
  );
  t.same(
    r.domain.disks.map((d) => [d.vdev, d.target, d.format, d.access, d.devtype ?? '-']),
    [
      ['xvda', '/dev/vg/root', 'raw', 'rw', '-'],
      ['xvdb', '/srv/data.qcow2', 'qcow2', 'rw', '-'],
      ['xvdc', '/srv/c,1.vhd', 'vhd', 'ro', '-'],
      ['hdc', '', 'empty', 'ro', 'cdrom'],
      ['hdd', '/srv/iso/boot.iso', 'raw', 'ro', 'cdrom'],
    ],
  );
});
