/**
 * The fencing decision table (docs/fencing.md), row by row, with two sim host processes, a real
 * etcd as the witness, and partitions we control: the replication link and each host's path
 * to the witness go through forwarders the test can cut.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from '../../src/demo/hosts.js';
import { startEtcd } from '../helpers/etcd.js';
import { partitionable } from '../helpers/proxy.js';

type PrimaryStatus = { state: string; resumed?: number; committed: number; reconnect?: { attempts: number; lastError?: string } };
type ReplicaStatus = { state: string; fencingToken?: number; waitingForWitness?: string; epoch: number };

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = performance.now() + ms;
  let v = await what();
  while (!ok(v) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 25));
    v = await what();
  }
  return v;
}

/** A kv domain protected by remus through a cuttable link, both hosts on one etcd through cuttable paths. */
async function fencedPair(t: Test, name: string, backupArgs: string[] = []) {
  const etcd = await startEtcd(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `xlha-${name}-`));
  const replPort = await freePort();
  const link = await partitionable(t, () => replPort);
  const pWitness = await partitionable(t, () => etcd.port);
  const bWitness = await partitionable(t, () => etcd.port);
  const backup = new SimHostProcess('backup', dir, replPort);
  const primary = new SimHostProcess('primary', dir);
  backup.extraArgs = ['--witness', `127.0.0.1:${bWitness.port}`, ...backupArgs];
  primary.extraArgs = ['--witness', `127.0.0.1:${pWitness.port}`];
  pairSimHosts(primary, backup);
  t.teardown(async () => {
    for (const h of [primary, backup]) h.proc?.kill('SIGCONT');
    await Promise.all([primary.stop(), backup.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await Promise.all([backup.start(), primary.start()]);
  await primary.request({ cmd: 'create', text: kvCfg({ name, memoryMiB: 8, servicePort: await freePort() }) });
  await primary.request({
    cmd: 'protect',
    options: { domain: name, mode: 'remus', peer: { host: '127.0.0.1', port: link.port }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150 },
  });
  await new Promise((r) => setTimeout(r, 2500)); // past the first checkpoint's settling window and the detector's warm-up
  const pStatus = async () => (await primary.request<{ protections: PrimaryStatus[] }>({ cmd: 'status' })).protections[0]!;
  const bStatus = async () => (await backup.request<{ replicas: ReplicaStatus[] }>({ cmd: 'status' })).replicas;
  const domState = async (h: SimHostProcess) => (await h.request<{ name: string; state: string }[]>({ cmd: 'list' })).find((d) => d.name === name)?.state;
  return { etcd, link, pWitness, bWitness, primary, backup, pStatus, bStatus, domState };
}

t.test('row 1: the primary dies, the backup reaches the witness: it fails over with a fencing token, well under a second', async (t) => {
  const f = await fencedPair(t, 'kv-row1');
  const t0 = performance.now();
  f.primary.kill();
  const r = await until(f.bStatus, (rs) => rs.some((x) => x.state === 'active'), 5000);
  const ms = performance.now() - t0;
  const active = r.find((x) => x.state === 'active');
  t.ok(active, `the backup activated (${JSON.stringify(r)})`);
  t.ok(Number(active?.fencingToken) > 0, `with fencing token ${active?.fencingToken}`);
  t.ok(ms < 1000, `${Math.round(ms)} ms from the kill to the active replica`);
  t.equal(await f.domState(f.backup), 'running');
});

t.test('row 2: only the link breaks, both reach the witness: the backup does not fail over; the primary runs on and protects again once the link heals', async (t) => {
  const f = await fencedPair(t, 'kv-row2');
  f.link.cut();
  await new Promise((r) => setTimeout(r, 1000)); // many failover timeouts of the backup
  t.notOk((await f.bStatus()).some((x) => x.state === 'active'), 'no failover while the primary beats on the witness');
  const p = await until(f.pStatus, (s) => s.state === 'reconnecting', 6000);
  t.equal(p.state, 'reconnecting', 'the primary gave up on the backup, kept the domain on the witness, and reconnects');
  t.equal(await f.domState(f.primary), 'running', 'its domain runs (unprotected, loudly)');
  const b = await until(f.bStatus, (rs) => rs.every((x) => x.state === 'stopped') || rs.length === 0, 3000);
  t.notOk(b.some((x) => x.state === 'active'), `the backup dropped or kept its replica, never activated it (${JSON.stringify(b.map((x) => x.state))})`);
  f.link.heal();
  const back = await until(f.pStatus, (s) => s.state === 'protected', 20_000);
  t.equal(back.state, 'protected', 'protection came back by itself');
  t.equal(back.resumed, 1);
});

t.test('row 3: the primary is cut off from both: the backup takes over; the primary pauses, and once it hears the witness again it stays paused, fenced', async (t) => {
  const f = await fencedPair(t, 'kv-row3');
  f.pWitness.cut();
  f.link.cut();
  const r = await until(f.bStatus, (rs) => rs.some((x) => x.state === 'active'), 5000);
  t.ok(r.some((x) => x.state === 'active' && Number(x.fencingToken) > 0), `the backup won the domain on the witness and runs it (${JSON.stringify(r)})`);
  const paused = await until(() => f.domState(f.primary), (s) => s === 'paused', 6000);
  t.equal(paused, 'paused', 'the isolated primary paused its domain: it lost both the backup and the witness');
  f.pWitness.heal();
  const p = await until(f.pStatus, (s) => s.state === 'fenced', 5000);
  t.equal(p.state, 'fenced', 'told by the witness that the backup took over, it is fenced');
  t.equal(await f.domState(f.primary), 'paused', `and its copy stays paused: one running copy\n${f.primary.tail(12)}`);
  f.link.heal();
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await f.domState(f.primary), 'paused', 'even after the link heals');
});

t.test('row 4: the primary dies while the backup cannot reach the witness: no failover until the witness answers, then it takes over', async (t) => {
  const f = await fencedPair(t, 'kv-row4');
  f.bWitness.cut();
  f.primary.kill();
  const w = await until(f.bStatus, (rs) => rs.some((x) => x.waitingForWitness), 5000);
  t.ok(w.some((x) => x.state === 'replicating' && x.waitingForWitness), `the backup keeps its replica and says why (${JSON.stringify(w)})`);
  t.not(await f.domState(f.backup), 'running', 'it did not activate what it cannot prove');
  f.bWitness.heal();
  const r = await until(f.bStatus, (rs) => rs.some((x) => x.state === 'active'), 5000);
  t.ok(r.some((x) => x.state === 'active' && Number(x.fencingToken) > 0), 'once the witness answers it fails over with a token');
});

t.test('row 5: the backup dies, the primary reaches the witness: it runs on unprotected and reconnects', async (t) => {
  const f = await fencedPair(t, 'kv-row5');
  f.backup.kill();
  const p = await until(f.pStatus, (s) => s.state === 'reconnecting', 6000);
  t.equal(p.state, 'reconnecting');
  t.equal(await f.domState(f.primary), 'running', 'the domain was not paused: the witness confirmed it is this host\'s');
});

t.test('row 6: the witness is down, both hosts and the link are fine: protection goes on', async (t) => {
  const f = await fencedPair(t, 'kv-row6');
  await f.etcd.stop();
  const c0 = (await f.pStatus()).committed;
  await new Promise((r) => setTimeout(r, 1500));
  const s = await f.pStatus();
  t.equal(s.state, 'protected');
  t.ok(s.committed > c0 + 20, `checkpoints still commit (${c0} -> ${s.committed})`);
  t.notOk((await f.bStatus()).some((x) => x.state === 'active'));
});

t.test('the fence command runs with the decision before the replica activates; when it fails, the replica stays halted', async (t) => {
  const out = path.join(os.tmpdir(), `xlha-fence-${process.pid}.env`);
  t.teardown(() => fs.rmSync(out, { force: true }));
  const f = await fencedPair(t, 'kv-fence', ['--fence-command', `env | grep ^XLHA_ | sort > ${out}`]);
  f.primary.kill();
  const r = await until(f.bStatus, (rs) => rs.some((x) => x.state === 'active'), 5000);
  const active = r.find((x) => x.state === 'active');
  t.ok(active, 'activated after the fence command');
  const env = fs.readFileSync(out, 'utf8');
  t.match(env, /XLHA_EVENT=activate/);
  t.match(env, new RegExp(`XLHA_FENCING_TOKEN=${active?.fencingToken}\\b`), 'with the token the witness gave');
  t.match(env, /XLHA_DOMAIN=kv-fence/);
  t.match(env, /XLHA_PEER=primary/);

  const g = await fencedPair(t, 'kv-nofence', ['--fence-command', 'echo "ipmi: no route to host" >&2; exit 3']);
  g.primary.kill();
  const h = await until(g.bStatus, (rs) => rs.some((x) => x.state === 'halted'), 5000);
  const halted = h.find((x) => x.state === 'halted') as (ReplicaStatus & { error?: string }) | undefined;
  t.ok(halted, 'a failed fence keeps the replica halted');
  t.match(String(halted?.error), /fence command .* exited with 3: ipmi: no route to host/, 'naming why');
  t.not(await g.domState(g.backup), 'running');
});
