import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../../src/daemon/daemon.js';
import { freePort } from '../../src/demo/hosts.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * The CLI's environment: no default control socket or state directory of the user's, and
 * without the test runner's NODE_OPTIONS loaders (they make every start several times slower).
 */
function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XLHA_CONTROL: path.join(dir, 'default-control.sock'), XLHA_STATE_DIR: path.join(dir, 'default-state'), XLHA_KEYS: path.join(dir, 'default-keys') };
  delete env.NODE_OPTIONS;
  return env;
}

/** Runs the built CLI to completion. The environment cannot point it at a real daemon. */
function xlha(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = cliEnv();
    execFile(process.execPath, [CLI, ...args], { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}


t.test('bad arguments exit with code 2 and a usage text naming the bad argument', async (t) => {
  const cases: [string[], RegExp, RegExp][] = [
    [[], /missing command/, /Usage: xl-ha \[global options\] <command>/],
    [['frobnicate'], /unknown command "frobnicate"/, /Usage: xl-ha \[global options\] <command>/],
    [['list', '--bogus'], /unknown option --bogus/, /Usage: xl-ha \[global options\] list/],
    [['--backend', 'vmware', 'list'], /--backend expects one of sim, xen, auto, got "vmware"/, /Usage:/],
    [['remus', '-i', 'soon', 'vm1', 'backup'], /option -i expects a positive integer/, /Usage: xl-ha \[global options\] remus/],
    [['destroy', 'vm1', 'vm2'], /unexpected extra argument "vm2"/, /Usage: xl-ha \[global options\] destroy/],
  ];
  const results = await Promise.all(cases.map(([args]) => xlha(args)));
  for (const [i, [args, why, usage]] of cases.entries()) {
    const r = results[i]!;
    const what = `xl-ha ${args.join(' ')}`;
    t.equal(r.code, 2, `${what}: exit code 2`);
    t.match(r.stderr, why, `${what}: names the problem`);
    t.match(r.stderr, usage, `${what}: prints the usage`);
    t.equal(r.stdout, '', `${what}: nothing on stdout`);
  }
});

t.test('help exits 0 and prints the usage on stdout', async (t) => {
  const [r, one, opt] = await Promise.all([xlha(['help']), xlha(['help', 'create']), xlha(['list', '--help'])]);
  t.equal(r.code, 0);
  t.match(r.stdout, /Usage: xl-ha \[global options\] <command>/);
  for (const c of ['remus', 'receive', 'daemon', 'create', 'destroy', 'failover']) t.match(r.stdout, new RegExp(`\\n  ${c}\\b`), `lists ${c}`);
  t.equal(one.code, 0);
  t.match(one.stdout, /Usage: xl-ha \[global options\] create <cfg-file>/);
  t.equal(opt.code, 0, 'a command with --help');
  t.match(opt.stdout, /Usage: xl-ha \[global options\] list/);
});

t.test('check-config needs no daemon: exit 0 valid, 1 not valid, 2 usage; --json is one object', async (t) => {
  const conf = path.join(dir, 'xl-ha.conf');
  fs.writeFileSync(conf, '[defaults]\nha_peer = backup.example.org\n');
  const good = path.join(dir, 'check-good.cfg');
  fs.writeFileSync(good, 'name = "web"\nmemory = 256\ndisk = [ "phy:/dev/vg/web,xvda,w" ]\nha = "remus"\n');
  const bad = path.join(dir, 'check-bad.cfg');
  fs.writeFileSync(bad, 'name = "web"\nmemory = 256\nha = "remus"\nha_interval_ms = "fast"\nha_group = "g"\n');
  const [ok, json, notOk, alone, usage] = await Promise.all([
    xlha(['--control', path.join(dir, 'nobody', 'c.sock'), 'check-config', good, '--conf', conf]),
    xlha(['check-config', '--json', '--conf', conf, good]),
    xlha(['check-config', bad, '--conf', conf]),
    xlha(['check-config', '--conf', conf]),
    xlha(['check-config']),
  ]);
  t.equal(ok.code, 0, `valid: ${ok.stderr}`);
  t.match(ok.stdout, new RegExp(`^${good}: valid\\n`));
  t.match(ok.stdout, /\n {2}ha_peer +backup\.example\.org:7720 +.*xl-ha\.conf:2 \[defaults\]\n/);
  t.equal(json.code, 0);
  const o = JSON.parse(json.stdout) as { valid: boolean; ha: { mode: string; peerAddress: string }; errors: unknown[] };
  t.equal(o.valid, true);
  t.has(o.ha, { mode: 'remus', peerAddress: 'backup.example.org:7720' });
  t.same(o.errors, []);
  t.equal(notOk.code, 1, 'not valid: exit 1');
  t.notMatch(notOk.stdout, /check-bad\.cfg: valid/, 'the cfg is not said to be valid (the valid --conf is still shown)');
  t.match(notOk.stderr, new RegExp(`${bad}:4: ha_interval_ms = "fast" is not valid: expected an integer from 1 to 60000 \\(milliseconds\\)\\n`));
  t.match(notOk.stderr, new RegExp(`${bad}:5: ha_group = "g" is not valid: group protection \\(ha_group\\) is not available yet`));
  t.match(notOk.stderr, new RegExp(`${bad}: not valid \\(2 problems\\)\\n$`));
  t.equal(alone.code, 0, '--conf alone');
  t.match(alone.stdout, /\n\[defaults\]\n {2}ha_peer +backup\.example\.org\n$/);
  t.equal(usage.code, 2, 'no file: a usage error');
  t.match(usage.stderr, /check-config: missing <cfg-file> argument, or --conf FILE/);
});

t.test('a command without a running daemon exits 1 saying no daemon is running', async (t) => {
  const sock = path.join(dir, 'nobody-home', 'control.sock');
  const commands = [['list'], ['destroy', 'vm1']];
  const results = await Promise.all(commands.map((args) => xlha(['--control', sock, ...args])));
  for (const [i, args] of commands.entries()) {
    const r = results[i]!;
    t.equal(r.code, 1, `${args[0]}: exit code 1`);
    t.match(r.stderr, /no xl-ha daemon is running/);
    t.match(r.stderr, sock, 'names the control socket');
  }
});

t.test('a daemon creates, lists and destroys sim domains from config files', async (t) => {
  const control = path.join(dir, 'p.sock');
  const stateDir = path.join(dir, 'p');
  const logFd = fs.openSync(path.join(dir, 'daemon.log'), 'a');
  const daemon = spawn(process.execPath, [CLI, '--backend', 'sim', '--control', control, 'daemon', '--state-dir', stateDir, '--host-name', 'p'], {
    stdio: ['ignore', logFd, logFd],
    env: cliEnv(),
  });
  fs.closeSync(logFd);
  let exited: number | null | undefined;
  const exitP = new Promise<number | null>((resolve) =>
    daemon.once('exit', (code) => {
      exited = code;
      resolve(code);
    }),
  );
  t.teardown(async () => {
    if (exited === undefined) {
      daemon.kill('SIGKILL');
      await exitP;
    }
  });
  const log = () => fs.readFileSync(path.join(dir, 'daemon.log'), 'utf8');

  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await controlRequest(control, { cmd: 'ping' }, 1000).catch(() => null);
    if (r?.ok) break;
    if (exited !== undefined) throw new Error(`the daemon exited with ${exited}:\n${log()}`);
    if (Date.now() > deadline) throw new Error(`the daemon did not start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const cli = (...args: string[]) => xlha(['--control', control, ...args]);
  const names = async () => {
    const r = await controlRequest(control, { cmd: 'list' });
    if (!r.ok) throw new Error(r.error);
    return (r.result as { name: string }[]).map((d) => d.name);
  };

  const port = await freePort();
  const good = path.join(dir, 'vm1.cfg');
  fs.writeFileSync(
    good,
    ['name = "vm1"', 'memory = 8', 'vcpus = 1', 'sim_workload = "kv"', 'sim_dirty_mibps = 0', `sim_service = "127.0.0.1:${port}"`, ''].join('\n'),
  );
  const created = await cli('create', good);
  t.equal(created.code, 0, `create: ${created.stderr}`);
  t.match(created.stdout, /domain vm1 created \(domid \d+\)/);

  const list = await cli('list');
  t.equal(list.code, 0);
  t.match(list.stdout, /^Name\s+ID\s+Mem\s+VCPUs\s+State/);
  t.match(list.stdout, /\nvm1\s+\d+\s+8\s+1\s+running/, 'vm1 runs, with 8 MiB and 1 vCPU');

  const svc = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    svc.once('connect', resolve);
    svc.once('error', reject);
  });
  svc.destroy();
  t.pass('the domain serves on its sim_service address');

  const badInterval = path.join(dir, 'vm2.cfg');
  fs.writeFileSync(badInterval, ['name = "vm2"', 'memory = 8', 'sim_workload = "idle"', 'ha = "remus"', 'ha_peer = "127.0.0.1:9"', 'ha_interval_ms = "fast"', ''].join('\n'));
  const badMemory = path.join(dir, 'vm3.cfg');
  fs.writeFileSync(badMemory, ['name = "vm3"', 'memory = -1', ''].join('\n'));
  const [interval, memory, again] = await Promise.all([cli('create', badInterval), cli('create', badMemory), cli('create', good)]);
  t.equal(interval.code, 1, 'a bad ha_interval_ms: exit code 1');
  t.match(interval.stderr, /vm2\.cfg:6: ha_interval_ms = "fast" is not valid/, 'names the key, its line and its value');
  t.equal(memory.code, 1, 'memory = -1: exit code 1');
  t.match(memory.stderr, /vm3\.cfg:2: memory = -1 is not valid/);
  t.equal(again.code, 1, 'a second vm1: exit code 1');
  t.match(again.stderr, /vm1 already exists/);

  t.same(await names(), ['vm1'], 'none of the refused configs created a domain');

  let r = await cli('destroy', 'vm1');
  t.equal(r.code, 0, `destroy: ${r.stderr}`);
  t.match(r.stdout, /domain vm1 destroyed/);
  t.same(await names(), [], 'vm1 is gone');
  const refused = await new Promise<boolean>((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(false);
    });
    c.once('error', () => resolve(true));
  });
  t.ok(refused, 'and its service address is closed');
  r = await cli('destroy', 'vm1');
  t.equal(r.code, 1, 'destroying it again fails');
  t.match(r.stderr, /domain "vm1" does not exist/);

  daemon.kill('SIGTERM');
  t.equal(await exitP, 0, 'the daemon stops cleanly on SIGTERM');
  t.notOk(fs.existsSync(control), 'and removes its control socket');
});

t.test('the installed command (xl-ha.cjs) gives the daemon a thread pool of 64 unless UV_THREADPOOL_SIZE says otherwise', async (t) => {
  const ENTRY = fileURLToPath(new URL('../../src/cli/xl-ha.cjs', import.meta.url));
  const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { bin: Record<string, string> };
  t.equal(pkg.bin['xl-ha'], 'dist/src/cli/xl-ha.cjs', 'package.json installs xl-ha.cjs as the xl-ha command');
  for (const [entry, envPool, want] of [
    [ENTRY, undefined, 64],
    [ENTRY, '7', 7],
    [CLI, undefined, 4], // main.js run directly: node's default
  ] as const) {
    const control = path.join(dir, `pool-${want}.sock`);
    const env = cliEnv();
    delete env.UV_THREADPOOL_SIZE;
    if (envPool) env.UV_THREADPOOL_SIZE = envPool;
    const daemon = spawn(process.execPath, [entry, '--backend', 'sim', '--control', control, 'daemon', '--state-dir', path.join(dir, `pool-${want}`)], { stdio: 'ignore', env });
    const exitP = new Promise((r) => daemon.once('exit', r));
    try {
      const deadline = Date.now() + 15_000;
      type St = { daemon: { pid: number; threadPool: number } };
      let st = null as St | null;
      while (!st && Date.now() < deadline) {
        const r = await controlRequest(control, { cmd: 'status' }, 1000).catch(() => null);
        if (r?.ok) st = r.result as St;
        else await new Promise((res) => setTimeout(res, 50));
      }
      t.ok(st, `${path.basename(entry)}: the daemon answers`);
      t.equal(st?.daemon.pid, daemon.pid, 'status is the daemon process itself');
      t.equal(st?.daemon.threadPool, want, `${path.basename(entry)}${envPool ? ` with UV_THREADPOOL_SIZE=${envPool}` : ''}: ${want} pool threads`);
      if (entry === ENTRY && !envPool) {
        const out = await new Promise<string>((resolve) =>
          execFile(process.execPath, [ENTRY, '--control', control, 'status'], { env: cliEnv() }, (_e, stdout) => resolve(stdout)),
        );
        t.match(out, new RegExp(`daemon pid ${daemon.pid}, up \\d+ s, [\\d.]+ MiB resident \\(peak [\\d.]+\\), 64 pool threads`), 'xl-ha status shows it');
      }
    } finally {
      daemon.kill('SIGTERM');
      await exitP;
    }
  }
});
