/**
 * Pairing hosts (src/security/peers.ts, `xl-ha keygen` / `xl-ha pair`) and the backup's
 * admission of what an authenticated peer asks for: key files private to their owner, the
 * allow-list, and a HELLO that must speak for the host that authenticated.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PeerKeys, PeerKeyError, allows, parsePeerFile, pairLocally } from '../../src/security/peers.js';
import { Daemon, admitHello } from '../../src/daemon/daemon.js';
import { startProtection } from '../../src/daemon/protect.js';
import { SimBackend } from '../../src/backend/sim/host.js';
import { freePort } from '../../src/demo/hosts.js';
import { silentLogger } from '../../src/util/log.js';
import { recordingLogger } from '../helpers/log.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-peers-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function xlha(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, XLHA_CONTROL: path.join(dir, 'none.sock'), XLHA_KEYS: path.join(dir, 'default-keys') };
  delete env.NODE_OPTIONS;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

t.test('xl-ha keygen on one host and xl-ha pair on the other give both the same key, in 0600 files', async (t) => {
  const ka = path.join(dir, 'cli-a');
  const kb = path.join(dir, 'cli-b');
  const g = await xlha(['--keys', ka, 'keygen', '--host-name', 'hostA', '--address', '10.0.0.2:8003', '--allow', 'web,db-*', 'hostB']);
  t.equal(g.code, 0, g.stderr);
  t.match(g.stdout, /xl-ha pair hostA <copied-file>/, 'it prints the one command to run on the peer');
  const fileA = path.join(ka, 'hostB.key');
  t.equal(fs.statSync(fileA).mode & 0o777, 0o600, 'the key file is private');
  t.equal(fs.statSync(ka).mode & 0o777, 0o700, 'and so is its directory');
  const copy = path.join(dir, 'copied.key');
  fs.copyFileSync(fileA, copy);
  const p = await xlha(['--keys', kb, 'pair', '--host-name', 'hostB', '--allow', '*', 'hostA', copy]);
  t.equal(p.code, 0, p.stderr);
  t.match(p.stdout, /Delete the copy/);
  const a = new PeerKeys(ka, 'hostA').load('hostB');
  const b = new PeerKeys(kb, 'hostB').load('hostA');
  t.ok(a.key.equals(b.key), 'the same 256-bit key on both');
  t.same(a.allow, ['web', 'db-*'], "hostA's own policy");
  t.same(b.allow, ['*'], "hostB's own policy");
  t.same(a.address, { host: '10.0.0.2', port: 8003 });

  const again = await xlha(['--keys', ka, 'keygen', '--host-name', 'hostA', 'hostB']);
  t.equal(again.code, 1, 'keygen does not replace a pairing silently');
  t.match(again.stderr, /already paired with hostB.*--force/);
  const wrongHost = await xlha(['--keys', path.join(dir, 'cli-c'), 'pair', '--host-name', 'hostC', 'hostA', copy]);
  t.equal(wrongHost.code, 1);
  t.match(wrongHost.stderr, /pairs hostA with host hostB, but this host is hostC/, 'a key file meant for another host is refused');
  const wrongPeer = await xlha(['--keys', path.join(dir, 'cli-c'), 'pair', '--host-name', 'hostB', 'hostZ', copy]);
  t.match(wrongPeer.stderr, /was written on host hostA, not hostZ/);
  const bad = await xlha(['--keys', ka, 'keygen', '--host-name', 'hostA', '--allow', 'a;rm', 'hostQ']);
  t.equal(bad.code, 2, 'a bad --allow is a usage error');
  t.match(bad.stderr, /--allow expects domain names or patterns/);
});

t.test('a key file others can read, or that another user could swap, stops the daemon from starting', async (t) => {
  const keys = new PeerKeys(path.join(dir, 'perm'), 'a');
  const other = new PeerKeys(path.join(dir, 'perm-b'), 'b');
  pairLocally(keys, other);
  t.equal(keys.checkAll().length, 1);
  fs.chmodSync(keys.fileOf('b'), 0o644);
  t.throws(() => keys.checkAll(), /key file .*b\.key has mode 0644: a pre-shared key must be readable by its owner only \(chmod 600 /);
  const d = new Daemon({ backend: new SimBackend({ hostName: 'a', stateDir: path.join(dir, 'perm-state') }), hostName: 'a', stateDir: path.join(dir, 'perm-state'), controlPath: path.join(dir, 'perm.sock'), keys, log: silentLogger() });
  await t.rejects(d.start(), /has mode 0644/, 'the daemon refuses to start');
  const r = await xlha(['--backend', 'sim', '--keys', keys.dir, '--control', path.join(dir, 'perm2.sock'), 'daemon', '--host-name', 'a', '--state-dir', path.join(dir, 'perm-state2')]);
  t.equal(r.code, 1, 'and so does xl-ha daemon');
  t.match(r.stderr, /chmod 600/);
  fs.chmodSync(keys.fileOf('b'), 0o600);
  fs.chmodSync(keys.dir, 0o777);
  t.throws(() => keys.checkAll(), /keys directory .* has mode 0777: others could replace its keys/);
  fs.chmodSync(keys.dir, 0o700);
  fs.symlinkSync(keys.fileOf('b'), path.join(keys.dir, 'c.key'));
  t.throws(() => keys.checkAll(), /c\.key is a symbolic link: refused/);
  fs.unlinkSync(path.join(keys.dir, 'c.key'));
  t.equal(keys.checkAll().length, 1, 'fixed, it is accepted again');
});

t.test('a key file is checked field by field', async (t) => {
  const good = 'host = a\npeer = b\nkey = ' + 'ab'.repeat(32) + '\nallow = web\n';
  t.equal(parsePeerFile('f', good).peer, 'b');
  t.throws(() => parsePeerFile('f', good.replace(/key = .*/, 'key = abcd')), /key must be 64 hex digits/);
  t.throws(() => parsePeerFile('f', good.replace('peer = b', 'peer = ../etc')), /peer = "\.\.\/etc" is not a host name/);
  t.throws(() => parsePeerFile('f', good + 'colour = blue\n'), /unknown setting "colour"/);
  t.throws(() => parsePeerFile('f', good.replace('host = a\n', '')), /"host" is missing/);
  t.throws(() => parsePeerFile('f', good.replace('allow = web', 'allow = we$b')), /"we\$b" is not a domain name or pattern/);
  t.throws(() => new PeerKeys(dir, 'a').load('../../etc/passwd'), PeerKeyError, 'a peer name never becomes a path');
});

t.test('the primary picks the key by the backup address, then by name, then the only one', async (t) => {
  const a = new PeerKeys(path.join(dir, 'pick'), 'a');
  pairLocally(a, new PeerKeys(path.join(dir, 'pick-b'), 'b'), { bAddress: { host: '10.0.0.2', port: 8003 } });
  t.equal(a.forAddress({ host: '10.0.0.2', port: 8003 }).peer, 'b');
  t.equal(a.forAddress({ host: '10.0.0.2', port: 9000 }).peer, 'b', 'same host, other port');
  t.throws(() => a.forAddress({ host: '10.0.0.9', port: 8003 }), /no key file .* is for 10\.0\.0\.9:8003 \(paired: b at 10\.0\.0\.2:8003\)/);
  pairLocally(a, new PeerKeys(path.join(dir, 'pick-c'), 'c'));
  t.equal(a.forAddress({ host: 'c', port: 8003 }).peer, 'c', 'by name when the address is the host name');
});

t.test('the allow-list: names and patterns; none when empty', async (t) => {
  const e = { file: 'f', host: 'a', peer: 'b', key: Buffer.alloc(32), allow: ['web', 'db-*', 'app?'], disks: [], bridges: ['*'] };
  t.ok(allows(e, 'web'));
  t.notOk(allows(e, 'web2'));
  t.ok(allows(e, 'db-east'));
  t.ok(allows(e, 'app1'));
  t.notOk(allows(e, 'app12'));
  t.notOk(allows(e, 'dbXeast'), 'a dot or dash is literal');
  t.notOk(allows({ ...e, allow: [] }, 'web'));
  t.throws(() => admitHello(e, 'c', 'web'), /HELLO says it comes from host c, but the connection authenticated as b/);
  t.throws(() => admitHello(e, 'b', 'mail'), /domain mail from b is not allowed on this host \(allow = web, db-\*, app\? in f\)/);
  t.doesNotThrow(() => admitHello(e, 'b', 'web'));
});

t.test('a backup builds no replica for a domain its allow-list does not name, and says why on both sides', async (t) => {
  const d = path.join(dir, 'admit');
  const ka = new PeerKeys(path.join(d, 'p-peers'), 'p');
  const kb = new PeerKeys(path.join(d, 'b-peers'), 'b');
  pairLocally(ka, kb, { allow: ['web*'] });
  const { log, lines } = recordingLogger();
  const replPort = await freePort();
  const backupBe = new SimBackend({ hostName: 'b', stateDir: path.join(d, 'b') });
  const backup = new Daemon({ backend: backupBe, hostName: 'b', stateDir: path.join(d, 'b'), controlPath: path.join(d, 'b.sock'), listen: { host: '127.0.0.1', port: replPort }, keys: kb, log });
  await backup.start();
  const primary = new SimBackend({ hostName: 'p', stateDir: path.join(d, 'p') });
  t.teardown(async () => {
    await backup.stop();
    await primary.dispose();
  });
  const opts = { mode: 'remus' as const, peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150 };
  const db = await primary.createDomain({ name: 'db1', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } });
  await t.rejects(startProtection(primary, { ...opts, domain: db.domid }, silentLogger(), ka), /domain db1 from p is not allowed on this host \(allow = web\*/);
  t.equal((await backupBe.listDomains()).length, 0, 'no replica was built');
  t.ok(lines.some((l) => /not allowed/.test(JSON.stringify(l))), 'the backup logs the refusal');
  const web = await primary.createDomain({ name: 'web1', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } });
  const p = await startProtection(primary, { ...opts, domain: web.domid }, silentLogger(), ka);
  t.equal(p.status().state, 'protected', 'an allowed domain is protected');
  await p.stop();
});
