import t from 'tap';
import { COMMAND_NAMES, parseArgs, usage, type Command } from '../../src/cli/args.js';

import { DEFAULT_GLOBALS, usageError } from '../helpers/cli.js';

function narrow<C extends Command['cmd']>(c: Command, cmd: C): Extract<Command, { cmd: C }> {
  if (c.cmd !== cmd) throw new Error(`expected ${cmd}, got ${c.cmd}`);
  return c as Extract<Command, { cmd: C }>;
}

t.test('remus with no options gets the documented defaults', async (t) => {
  t.same(parseArgs(['remus', 'vm1', 'backup']), {
    cmd: 'remus',
    mode: 'remus',
    domain: 'vm1',
    peer: { host: 'backup', port: 7720 },
    intervalMs: 25,
    netbuf: true,
    disk: true,
    blackhole: false,
    heartbeatMs: 50,
    failoverTimeoutMs: 150,
    allowUnsafe: false,
    globals: DEFAULT_GLOBALS,
  });
});

t.test('remus accepts combined flags and an attached value in one cluster', async (t) => {
  const c = narrow(parseArgs(['remus', '-ndbFi40', 'vm1', 'backup:9000']), 'remus');
  t.equal(c.netbuf, false);
  t.equal(c.disk, false);
  t.equal(c.blackhole, true);
  t.equal(c.allowUnsafe, true);
  t.equal(c.intervalMs, 40);
  t.same(c.peer, { host: 'backup', port: 9000 });
});

t.test('option values may be attached or separate, short or long', async (t) => {
  for (const argv of [
    ['remus', '-i25', 'vm1', 'b'],
    ['remus', '-i', '25', 'vm1', 'b'],
    ['remus', '--interval=25', 'vm1', 'b'],
    ['remus', '--interval', '25', 'vm1', 'b'],
  ]) {
    t.equal(narrow(parseArgs(argv), 'remus').intervalMs, 25, argv.join(' '));
  }
});

t.test('options may follow the positionals and the last repeat wins', async (t) => {
  const c = narrow(parseArgs(['remus', 'vm1', 'b', '-i', '10', '-i', '30', '--heartbeat-ms=20']), 'remus');
  t.equal(c.intervalMs, 30);
  t.equal(c.heartbeatMs, 20);
  t.equal(c.failoverTimeoutMs, 60, 'the failover timeout defaults to three heartbeats');
});

t.test('--in-flight sets how many checkpoints may travel unacknowledged', async (t) => {
  t.equal(narrow(parseArgs(['remus', '--in-flight', '1', 'vm1', 'b']), 'remus').inFlight, 1);
  t.equal(narrow(parseArgs(['remus', 'vm1', 'b']), 'remus').inFlight, undefined, 'unset: the backend decides');
  t.throws(() => parseArgs(['remus', '--in-flight', '0', 'vm1', 'b']), /option --in-flight expects an integer from 1 to 16 \(checkpoints\), got "0"/);
});

t.test('--buffer-limit and --on-buffer-full say how far the backup may fall behind and what then', async (t) => {
  const c = narrow(parseArgs(['remus', '--buffer-limit', '64', '--on-buffer-full', 'degrade', 'vm1', 'b']), 'remus');
  t.equal(c.bufferLimitMiB, 64);
  t.equal(c.onBufferFull, 'degrade');
  const d = narrow(parseArgs(['kemari', 'vm1', 'b']), 'remus');
  t.equal(d.bufferLimitMiB, undefined, 'unset: the engine default');
  t.throws(() => parseArgs(['remus', '--buffer-limit', '0', 'vm1', 'b']), /option --buffer-limit expects an integer from 1 to 4096 \(MiB\), got "0"/);
  t.throws(() => parseArgs(['colo', '--on-buffer-full', 'drop', 'vm1', 'b']), /option --on-buffer-full expects throttle or degrade, got "drop"/);
});

t.test('heartbeat and failover timeout can both be set', async (t) => {
  const c = narrow(parseArgs(['remus', '--heartbeat-ms', '100', '--failover-timeout-ms', '101', 'vm1', 'b']), 'remus');
  t.equal(c.heartbeatMs, 100);
  t.equal(c.failoverTimeoutMs, 101);
});

t.test('-- ends the options so later words are positionals', async (t) => {
  const c = narrow(parseArgs(['remus', '-n', '--', '7', 'b']), 'remus');
  t.equal(c.domain, 7, 'a numeric domain is a domid');
  t.equal(c.netbuf, false);
  const e = usageError(['remus', '--', '-n', 'b']);
  t.match(e.message, /^remus: <Domain> argument "-n" is not valid/);
});

t.test('kemari, colo and llm share the remus options and set the mode', async (t) => {
  for (const mode of ['kemari', 'colo', 'llm'] as const) {
    const c = narrow(parseArgs([mode, '-d', 'vm1', '[fd00::1]:7721']), 'remus');
    t.equal(c.mode, mode);
    t.equal(c.disk, false);
    t.same(c.peer, { host: 'fd00::1', port: 7721 });
  }
});

t.test("each mode takes its own option: kemari --min-gap, colo --max-interval; -i is remus's", async (t) => {
  const k = narrow(parseArgs(['kemari', '--min-gap', '5', 'vm1', 'b']), 'remus');
  t.equal(k.minGapMs, 5);
  t.equal(narrow(parseArgs(['kemari', 'vm1', 'b']), 'remus').minGapMs, 2, 'kemari: 2 ms by default');
  const c = narrow(parseArgs(['colo', '--max-interval=800', 'vm1', 'b']), 'remus');
  t.equal(c.maxIntervalMs, 800);
  t.equal(narrow(parseArgs(['colo', 'vm1', 'b']), 'remus').maxIntervalMs, 5000, 'colo: 5000 ms by default');
  t.equal(narrow(parseArgs(['remus', 'vm1', 'b']), 'remus').minGapMs, undefined, 'remus has no minimum gap');
  t.match(usageError(['kemari', '-i', '20', 'vm1', 'b']).message, /unknown option -i/, '-i is not a kemari option');
  t.match(usageError(['colo', '-i', '20', 'vm1', 'b']).message, /unknown option -i/, 'nor a colo one');
  t.match(usageError(['remus', '--min-gap', '3', 'vm1', 'b']).message, /unknown option --min-gap/, '--min-gap is kemari\'s alone');
  t.match(usageError(['kemari', '--min-gap', '-1', 'vm1', 'b']).message, /--min-gap/);
  t.match(usageError(['colo', '--max-interval', '5', 'vm1', 'b']).message, /--max-interval/);
  t.match(usage('kemari'), /--min-gap MS/);
  t.match(usage('colo'), /--max-interval MS/);
});

t.test('global options before the command are returned on every command', async (t) => {
  const c = parseArgs(['-vv', '--backend', 'sim', '--control=/run/xl-ha.sock', '-v', 'status', '--json']);
  t.same(c, { cmd: 'status', json: true, globals: { backend: 'sim', control: '/run/xl-ha.sock', verbose: 3 } });
  t.same(parseArgs(['--backend=xen', 'list']), { cmd: 'list', json: false, globals: { backend: 'xen', verbose: 0 } });
  t.same(parseArgs(['--verbose', 'stop', 'vm1']), { cmd: 'stop', domain: 'vm1', globals: { backend: 'auto', verbose: 1 } });
});

t.test('receive listens on 0.0.0.0:7720 unless -l is given', async (t) => {
  t.same(parseArgs(['receive']), { cmd: 'receive', listen: { host: '0.0.0.0', port: 7720 }, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['receive', '-l10.0.0.1', '--host-name', 'node-b', '--state-dir=/var/lib/xl-ha']), {
    cmd: 'receive',
    listen: { host: '10.0.0.1', port: 7720 },
    hostName: 'node-b',
    stateDir: '/var/lib/xl-ha',
    globals: DEFAULT_GLOBALS,
  });
  t.same(narrow(parseArgs(['receive', '--listen', '[::]:9000']), 'receive').listen, { host: '::', port: 9000 });
});

t.test('daemon without -l is primary-only and has no listen address', async (t) => {
  t.same(parseArgs(['daemon']), { cmd: 'daemon', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['daemon', '-l', '0.0.0.0:7000', '--state-dir', '/tmp/s']), {
    cmd: 'daemon',
    listen: { host: '0.0.0.0', port: 7000 },
    stateDir: '/tmp/s',
    globals: DEFAULT_GLOBALS,
  });
});

t.test('status and list take --json', async (t) => {
  t.same(parseArgs(['status']), { cmd: 'status', json: false, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['list', '--json']), { cmd: 'list', json: true, globals: DEFAULT_GLOBALS });
});

t.test('failover, stop and destroy take a domain name or a domid', async (t) => {
  t.same(parseArgs(['failover', '--force', 'vm1']), { cmd: 'failover', domain: 'vm1', force: true, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['failover', '12']), { cmd: 'failover', domain: 12, force: false, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['stop', 'web.01']), { cmd: 'stop', domain: 'web.01', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['destroy', '3']), { cmd: 'destroy', domain: 3, globals: DEFAULT_GLOBALS });
});

t.test('create takes a config file path', async (t) => {
  t.same(parseArgs(['create', '/etc/xen/vm1.cfg']), { cmd: 'create', cfgFile: '/etc/xen/vm1.cfg', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['create', '--', '-odd.cfg']), { cmd: 'create', cfgFile: '-odd.cfg', globals: DEFAULT_GLOBALS });
});

t.test('check-config takes a cfg file, --conf FILE, or both, and --json', async (t) => {
  t.same(parseArgs(['check-config', 'vm.cfg']), { cmd: 'check-config', cfgFile: 'vm.cfg', json: false, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['check-config', '--json', 'vm.cfg', '--conf', '/etc/xen/xl-ha.conf']), { cmd: 'check-config', cfgFile: 'vm.cfg', conf: '/etc/xen/xl-ha.conf', json: true, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['check-config', '--conf=/tmp/x.conf']), { cmd: 'check-config', conf: '/tmp/x.conf', json: false, globals: DEFAULT_GLOBALS }, '--conf alone checks xl-ha.conf');
  t.same(parseArgs(['check-config', '--', '-odd.cfg']), { cmd: 'check-config', cfgFile: '-odd.cfg', json: false, globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['check-config', '-h']), { cmd: 'help', topic: 'check-config', globals: DEFAULT_GLOBALS });
  t.match(usage('check-config'), /Usage: xl-ha \[global options\] check-config \[--json\] \[--conf FILE\] \[<cfg-file>\]/);
  t.match(usage('check-config'), /--conf FILE +The xl-ha\.conf whose \[defaults\] apply/);
  t.match(usage(), /\n {2}check-config +Check a domain config/);
});

t.test('help, -h and --help give general or per-command help', async (t) => {
  t.same(parseArgs(['help']), { cmd: 'help', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['help', 'remus']), { cmd: 'help', topic: 'remus', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['-h']), { cmd: 'help', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['--help', 'receive']), { cmd: 'help', topic: 'receive', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['remus', '-h']), { cmd: 'help', topic: 'remus', globals: DEFAULT_GLOBALS });
  t.same(parseArgs(['colo', 'vm1', '--help']), { cmd: 'help', topic: 'colo', globals: DEFAULT_GLOBALS });
});

// --- errors -----------------------------------------------------------------

const ERRORS: { argv: string[]; command?: string; message: string }[] = [
  { argv: [], message: 'missing command: expected one of remus, kemari, colo, llm, receive, daemon, status, list, failover, stop, destroy, create, check-config, keygen, pair, help' },
  { argv: ['frob'], message: `unknown command "frob": expected one of ${COMMAND_NAMES.join(', ')}` },
  { argv: ['-x', 'status'], message: 'unknown option -x (before the command)' },
  { argv: ['--backend', 'kvm', 'list'], message: 'option --backend expects one of sim, xen, auto, got "kvm"' },
  { argv: ['--backend'], message: 'option --backend expects a value (sim|xen|auto)' },
  { argv: ['--control=', 'list'], message: 'option --control expects a non-empty path' },
  { argv: ['remus', '-x', 'vm1', 'b'], command: 'remus', message: 'remus: unknown option -x' },
  { argv: ['remus', '-nxd', 'vm1', 'b'], command: 'remus', message: 'remus: unknown option -x in "-nxd"' },
  { argv: ['remus', '--fast', 'vm1', 'b'], command: 'remus', message: 'remus: unknown option --fast' },
  { argv: ['status', '-v'], command: 'status', message: 'status: unknown option -v (global options such as -v go before the command)' },
  { argv: ['remus', '-i', 'abc', 'vm1', 'b'], command: 'remus', message: 'remus: option -i expects a positive integer (milliseconds), got "abc"' },
  { argv: ['remus', '-i0', 'vm1', 'b'], command: 'remus', message: 'remus: option -i expects an integer from 1 to 60000 (milliseconds), got "0"' },
  { argv: ['remus', '-i', '-5', 'vm1', 'b'], command: 'remus', message: 'remus: option -i expects a positive integer (milliseconds), got "-5"' },
  { argv: ['remus', '--interval=60001', 'vm1', 'b'], command: 'remus', message: 'remus: option --interval expects an integer from 1 to 60000 (milliseconds), got "60001"' },
  { argv: ['remus', 'vm1', 'b', '-i'], command: 'remus', message: 'remus: option -i expects a value (MS)' },
  { argv: ['remus', '--heartbeat-ms', '4', 'vm1', 'b'], command: 'remus', message: 'remus: option --heartbeat-ms expects an integer from 5 to 10000 (milliseconds), got "4"' },
  { argv: ['remus', '--failover-timeout-ms', '50', 'vm1', 'b'], command: 'remus', message: 'remus: option --failover-timeout-ms must be greater than the heartbeat interval (50 ms), got "50"' },
  { argv: ['remus', '--heartbeat-ms=200', '--failover-timeout-ms=150', 'vm1', 'b'], command: 'remus', message: 'remus: option --failover-timeout-ms must be greater than the heartbeat interval (200 ms), got "150"' },
  { argv: ['remus', '--unsafe=yes', 'vm1', 'b'], command: 'remus', message: 'remus: option --unsafe does not take a value (got "yes")' },
  { argv: ['remus'], command: 'remus', message: 'remus: missing <Domain> and <host[:port]> arguments' },
  { argv: ['remus', 'vm1'], command: 'remus', message: 'remus: missing <host[:port]> argument' },
  { argv: ['remus', 'vm1', 'b', 'c'], command: 'remus', message: 'remus: unexpected extra argument "c"' },
  { argv: ['remus', 'vm1', 'b:0'], command: 'remus', message: 'remus: <host[:port]> argument "b:0" is not valid: port 0 is out of range (expected 1 to 65535)' },
  { argv: ['remus', 'vm1', 'b:70000'], command: 'remus', message: 'remus: <host[:port]> argument "b:70000" is not valid: port 70000 is out of range (expected 1 to 65535)' },
  { argv: ['kemari', 'vm1', 'fe80::1:7720x'], command: 'kemari', message: 'kemari: <host[:port]> argument "fe80::1:7720x" is not valid: IPv6 addresses with a port must be written in brackets' },
  { argv: ['remus', 'my vm', 'b'], command: 'remus', message: 'remus: <Domain> argument "my vm" is not valid: expected a domain name' },
  { argv: ['remus', '99999', 'b'], command: 'remus', message: 'remus: <Domain> argument "99999" is not valid: domid 99999 is out of range (0 to 32751)' },
  { argv: ['remus', '0', 'b'], command: 'remus', message: 'remus: <Domain> argument "0" is not valid: Domain-0 (domid 0) cannot be managed by xl-ha' },
  { argv: ['receive', '-l', 'h:99999'], command: 'receive', message: 'receive: option -l expects ADDR[:PORT], got "h:99999": port 99999 is out of range (expected 1 to 65535)' },
  { argv: ['receive', 'extra'], command: 'receive', message: 'receive: unexpected extra argument "extra"' },
  { argv: ['daemon', '--host-name', '-bad'], command: 'daemon', message: 'daemon: option --host-name expects a host name of 1 to 64 characters' },
  { argv: ['daemon', '--state-dir='], command: 'daemon', message: 'daemon: option --state-dir expects a non-empty path' },
  { argv: ['status', 'now'], command: 'status', message: 'status: unexpected extra argument "now"' },
  { argv: ['list', '--json=1'], command: 'list', message: 'list: option --json does not take a value (got "1")' },
  { argv: ['failover'], command: 'failover', message: 'failover: missing <Domain> argument' },
  { argv: ['failover', '-f', 'vm1'], command: 'failover', message: 'failover: unknown option -f' },
  { argv: ['stop', 'a', 'b'], command: 'stop', message: 'stop: unexpected extra argument "b"' },
  { argv: ['destroy', 'Domain-0'], command: 'destroy', message: 'destroy: <Domain> argument "Domain-0" is not valid: Domain-0 (domid 0) cannot be destroyed' },
  { argv: ['create'], command: 'create', message: 'create: missing <cfg-file> argument' },
  { argv: ['create', ''], command: 'create', message: 'create: <cfg-file> argument must not be empty' },
  { argv: ['check-config'], command: 'check-config', message: 'check-config: missing <cfg-file> argument, or --conf FILE to check xl-ha.conf alone (usage: xl-ha check-config [--json] [--conf FILE] [<cfg-file>])' },
  { argv: ['check-config', 'a.cfg', 'b.cfg'], command: 'check-config', message: 'check-config: unexpected extra argument "b.cfg"' },
  { argv: ['check-config', ''], command: 'check-config', message: 'check-config: <cfg-file> argument must not be empty' },
  { argv: ['check-config', '--conf'], command: 'check-config', message: 'check-config: option --conf expects a value (FILE)' },
  { argv: ['check-config', '--conf=', 'vm.cfg'], command: 'check-config', message: 'check-config: option --conf expects a non-empty path' },
  { argv: ['check-config', '--yaml', 'vm.cfg'], command: 'check-config', message: 'check-config: unknown option --yaml' },
  { argv: ['help', 'frob'], command: 'help', message: `help: unknown command "frob": expected one of ${COMMAND_NAMES.join(', ')}` },
  { argv: ['help', 'remus', 'colo'], command: 'help', message: 'help: unexpected extra argument "colo"' },
];

for (const c of ERRORS) {
  t.test(`"xl-ha ${c.argv.join(' ')}" is a usage error naming the bad argument`, async (t) => {
    const err = usageError(c.argv);
    t.ok(err.message.startsWith(c.message), `message ${JSON.stringify(err.message)} starts with ${JSON.stringify(c.message)}`);
    t.equal(err.command, c.command, 'command is set once known');
    t.equal(err.name, 'UsageError');
  });
}

t.test('usage errors record the argument at fault', async (t) => {
  t.equal(usageError(['remus', '-i', 'abc', 'vm1', 'b']).argument, '-i');
  t.equal(usageError(['remus', 'vm1', 'b:0']).argument, 'b:0');
  t.equal(usageError(['frob']).argument, 'frob');
  t.equal(usageError(['remus', '-nxd', 'vm1', 'b']).argument, '-nxd');
});

t.test('general usage lists the global options and every command', async (t) => {
  const text = usage();
  t.match(text, /^Usage: xl-ha \[global options\] <command> \[args\]/);
  for (const opt of ['--backend sim|xen|auto', '--control PATH', '-v, --verbose', '-h, --help']) t.ok(text.includes(opt), opt);
  for (const cmd of COMMAND_NAMES) t.match(text, new RegExp(`^  ${cmd} `, 'm'), cmd);
  t.equal(usage('no-such-command'), text, 'an unknown command gets the general usage');
});

t.test('per-command usage shows the synopsis and every option', async (t) => {
  const remus = usage('remus');
  t.match(remus, /Usage: xl-ha \[global options\] remus \[options\] <Domain> <host\[:port\]>/);
  for (const opt of ['-i, --interval MS', '-n, --no-netbuf', '-d, --no-disk', '-b, --blackhole', '--heartbeat-ms MS', '--failover-timeout-ms MS', '--in-flight N', '-F, --unsafe']) {
    t.ok(remus.includes(opt), opt);
  }
  t.match(usage('kemari'), /kemari \[options\] <Domain> <host\[:port\]>/);
  t.match(usage('receive'), /-l, --listen ADDR\[:PORT\].*default 0\.0\.0\.0:7720/);
  t.match(usage('status'), /--json/);
  t.match(usage('failover'), /--force/);
  t.match(usage('create'), /create <cfg-file>/);
});
