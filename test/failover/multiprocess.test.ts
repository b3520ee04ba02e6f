import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runScenario } from '../../src/demo/scenario.js';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from '../../src/demo/hosts.js';

/**
 * A SIGKILL of a kv guest's primary with each host recording the digest of every checkpoint it
 * captured and of the memory it activated (XLHA_DEBUG_DIGESTS): checks every acknowledged write
 * and that the backup resumed from a checkpoint the primary captured, no earlier than the last
 * acknowledged one, byte for byte. Returns the scenario's result for the caller's own checks.
 */
async function killWithDigests(t: Test, extra: Partial<Parameters<typeof runScenario>[0]> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-mp-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const digests = (host: string) => path.join(dir, `${host}.digests`);
  const r = await runScenario({
    memoryMiB: 16,
    dirtyMiBPerSec: 2,
    intervalMs: 20,
    heartbeatMs: 50,
    failoverTimeoutMs: 200,
    clients: 32,
    connections: 4,
    baselineMs: 500,
    protectedMs: 1500,
    afterMs: 500,
    dir,
    env: (host) => ({ XLHA_DEBUG_DIGESTS: digests(host) }),
    ...extra,
  });
  t.equal(r.lostAckedWrites, 0, `no acknowledged write lost (${r.keysChecked} keys read back) ${r.lostDetails.join('; ')}`);
  t.ok(r.ackedWrites > 100, `load made progress (${r.ackedWrites} acknowledged writes)`);
  t.equal(r.writesAppliedByGuest, r.ackedWrites, 'every acknowledged write was applied exactly once');
  t.same(r.clientErrors, [], 'no client gave up');
  t.equal(r.backupStatus.state, 'active', 'the backup runs the domain');
  t.ok(r.failoverMs > 0, `failover took ${r.failoverMs} ms`);

  const captured = new Map<number, string>();
  let lastCommitted = 0;
  for (const l of fs.readFileSync(digests('primary'), 'utf8').trim().split('\n')) {
    const [kind, epoch, sha] = l.split(' ');
    if (kind === 'captured') captured.set(Number(epoch), sha!);
    if (kind === 'committed') lastCommitted = Math.max(lastCommitted, Number(epoch));
  }
  const act = fs.readFileSync(digests('backup'), 'utf8').trim().split('\n').find((l) => l.startsWith('activated '));
  t.ok(act, 'the backup recorded its activation');
  const [, epochText, sha] = act!.split(' ');
  const epoch = Number(epochText);
  t.ok(epoch >= lastCommitted, `the backup resumed from checkpoint ${epoch}, not before the last acknowledged one (${lastCommitted})`);
  t.ok(captured.has(epoch), `the primary captured checkpoint ${epoch}`);
  t.equal(sha, captured.get(epoch), `backup memory equals checkpoint ${epoch} byte for byte`);
  return r;
}

t.test('the backup takes over from a SIGKILLed primary with every acknowledged write and the checkpoint memory byte for byte', async (t) => {
  await killWithDigests(t);
});

/**
 * A SIGKILL of the primary under `mode`, checking every acknowledged write: each client writes a
 * new key every time (no client wraps around its 4000 keys in this run; 16384 keys fit in the
 * guest), so reading every acknowledged key back checks every acknowledged write, not only the
 * last value of a key. Returns the result for the mode's own checks.
 */
async function killUnder(t: Test, mode: 'kemari' | 'colo', extra: Partial<Parameters<typeof runScenario>[0]> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `xlha-mp-${mode}-`));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = await runScenario({
    mode,
    memoryMiB: 16,
    dirtyMiBPerSec: 2,
    intervalMs: 20,
    heartbeatMs: 50,
    failoverTimeoutMs: 200,
    clients: 4,
    connections: 2,
    keysPerClient: 4000,
    baselineMs: 300,
    protectedMs: 1200,
    afterMs: 400,
    dir,
    ...extra,
  });
  t.equal(r.keysChecked, r.ackedWrites, `every acknowledged write went to its own key and was read back (${r.ackedWrites})`);
  t.equal(r.lostAckedWrites, 0, `no acknowledged write lost ${r.lostDetails.join('; ')}`);
  t.ok(r.ackedWrites > 100, `load made progress (${r.ackedWrites} acknowledged writes)`);
  t.equal(r.writesAppliedByGuest, r.ackedWrites, 'every acknowledged write was applied exactly once');
  t.same(r.clientErrors, [], 'no client gave up');
  t.equal(r.primaryStatus.mode, mode);
  t.equal(r.backupStatus.state, 'active', 'the backup runs the domain');
  return r;
}

t.test('kemari: the backup takes over from a SIGKILLed primary with every acknowledged write, each read back', async (t) => {
  const r = await killUnder(t, 'kemari');
  t.ok(Number(r.primaryStatus.checkpointsTaken) > 1, `kemari synced on output (${String(r.primaryStatus.checkpointsTaken)} checkpoints)`);
});

t.test('colo: the secondary goes on from where it is when the primary is SIGKILLed, with every acknowledged write, each read back', async (t) => {
  // 1% of PUT responses differ between the copies: both outputs that agree and checkpoints on
  // divergence happen before the kill.
  const r = await killUnder(t, 'colo', { nondeterminism: 0.01 });
  t.ok(Number(r.primaryStatus.outputsCompared) > 0 && Number(r.primaryStatus.releasedOnMatch) > 0, `outputs compared (${String(r.primaryStatus.outputsCompared)}) and released on agreement`);
  t.ok(Number(r.primaryStatus.divergences) > 0, `divergences seen (${String(r.primaryStatus.divergences)}) and checkpointed`);
});

/** Two sim host processes and a kv domain `name` protected by remus at 20 ms; stopped at the end of the test. */
async function remusPair(t: Test, name: string, failoverTimeoutMs: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `xlha-${name}-`));
  const replPort = await freePort();
  const servicePort = await freePort();
  const backup = new SimHostProcess('backup', dir, replPort);
  const primary = new SimHostProcess('primary', dir);
  pairSimHosts(primary, backup);
  t.teardown(async () => {
    backup.proc?.kill('SIGCONT');
    await Promise.all([primary.stop(), backup.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await Promise.all([backup.start(), primary.start()]);
  await primary.request({ cmd: 'create', text: kvCfg({ name, memoryMiB: 8, servicePort }) });
  await primary.request({
    cmd: 'protect',
    options: { domain: name, mode: 'remus', peer: { host: '127.0.0.1', port: replPort }, intervalMs: 20, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs },
  });
  return { primary, backup };
}

t.test('a backup stalled for less than 2 s (SIGSTOP for 600 ms, failover timeout 150 ms) does not end protection: output waits, then flows', async (t) => {
  const { primary, backup } = await remusPair(t, 'kv-hiccup', 150);
  await new Promise((r) => setTimeout(r, 1500)); // past the first checkpoint's settling window
  const status = async () => (await primary.request<{ protections: { state: string; committed: number; backupLossTimeoutMs: number }[] }>({ cmd: 'status' })).protections[0]!;
  t.equal((await status()).backupLossTimeoutMs, 2000, 'the primary waits 2 s for a silent backup');
  backup.proc.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 600));
  const during = await status();
  backup.proc.kill('SIGCONT');
  t.equal(during.state, 'protected', 'still protected while the backup is stopped');
  const c0 = during.committed;
  await new Promise((r) => setTimeout(r, 800));
  const after = await status();
  t.equal(after.state, 'protected', 'and after it woke');
  t.ok(after.committed > c0 + 5, `checkpoints commit again (${c0} -> ${after.committed})`);
  const b = await backup.request<{ replicas: { state: string }[] }>({ cmd: 'status' });
  t.equal(b.replicas[0]?.state, 'replicating', 'the backup did not fail over on waking either');
});

t.test('a backup that was only stalled (SIGSTOP) past the timeout drops its replica when it wakes, and the primary protects again by itself', async (t) => {
  const { primary, backup } = await remusPair(t, 'kv-stall', 300);
  backup.proc.kill('SIGSTOP');
  const status = async () => (await primary.request<{ protections: { state: string; resumed: number; reconnect?: { attempts: number; lastError?: string } }[] }>({ cmd: 'status' })).protections[0]!;
  const deadline = performance.now() + 10_000;
  while ((await status()).state !== 'reconnecting' && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal((await status()).state, 'reconnecting', 'the primary declared the stopped backup dead: it runs unprotected and says it reconnects');
  await new Promise((r) => setTimeout(r, 500)); // well past the backup's own failover timeout
  backup.proc.kill('SIGCONT');
  await new Promise((r) => setTimeout(r, 1500)); // it wakes, reads what waited in its socket
  const b = await backup.request<{ replicas: { state: string; error?: string }[]; daemon: { pid: number; rssMiB: number; maxRssMiB: number } }>({ cmd: 'status' });
  t.equal(b.daemon.pid, backup.proc.pid, "status names the daemon's own process");
  t.ok(b.daemon.rssMiB > 0 && b.daemon.maxRssMiB >= b.daemon.rssMiB, `and its memory: ${b.daemon.rssMiB} MiB resident, peak ${b.daemon.maxRssMiB} MiB`);
  const states = b.replicas.map((r) => r.state);
  t.notOk(states.includes('active'), `the backup did not fail over (replicas: ${JSON.stringify(b.replicas)})`);
  const list = await backup.request<{ name: string; state: string }[]>({ cmd: 'list' });
  t.notOk(
    list.some((d) => d.name === 'kv-stall' && d.state === 'running'),
    `no second running copy of kv-stall on the backup host (${JSON.stringify(list)})`,
  );
  const back = performance.now() + 20_000;
  while ((await status()).state !== 'protected' && performance.now() < back) await new Promise((r) => setTimeout(r, 100));
  const after = await status();
  t.equal(after.state, 'protected', 'protection came back once the backup answered');
  t.equal(after.resumed, 1, 'after one loss');
  const b2 = await backup.request<{ replicas: { state: string }[] }>({ cmd: 'status' });
  t.ok(b2.replicas.some((r) => r.state === 'replicating'), `the backup replicates again (${JSON.stringify(b2.replicas.map((r) => r.state))})`);
});

t.test('a backup host that died and came back is reconnected to with backoff: status says so meanwhile, and replication resumes', async (t) => {
  const { primary, backup } = await remusPair(t, 'kv-return', 150);
  const status = async () => (await primary.request<{ protections: { state: string; resumed: number; committed: number; reconnect?: { attempts: number; lastError?: string; unprotectedForMs: number } }[] }>({ cmd: 'status' })).protections[0]!;
  await new Promise((r) => setTimeout(r, 800));
  backup.kill();
  await backup.proc.catch(() => {});
  const deadline = performance.now() + 10_000;
  let st = await status();
  while (!(st.state === 'reconnecting' && (st.reconnect?.attempts ?? 0) >= 2) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    st = await status();
  }
  t.equal(st.state, 'reconnecting', 'the primary runs unprotected and reconnects');
  t.ok((st.reconnect?.attempts ?? 0) >= 2, `it has tried ${st.reconnect?.attempts} times`);
  t.match(String(st.reconnect?.lastError), /cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/, 'and names why the last attempt failed');
  await backup.start(); // the host is back: same address, same pairing
  const back = performance.now() + 30_000;
  while ((st = await status()).state !== 'protected' && performance.now() < back) await new Promise((r) => setTimeout(r, 100));
  t.equal(st.state, 'protected', 'protection resumed by itself');
  t.equal(st.resumed, 1);
  const c0 = st.committed;
  await new Promise((r) => setTimeout(r, 600));
  t.ok((await status()).committed > c0 + 5, 'and checkpoints commit to the new replica');
  t.match(fs.readFileSync(primary.logPath, 'utf8'), /protection resumed after backup loss: full resynchronisation done/, 'the log says it resumed');
});

for (const transfer of ['fgbi', 'fgbi,compress'] as const) {
  t.test(`a kv guest protected with ${transfer} fails over with every acknowledged write and the checkpoint memory byte for byte`, async (t) => {
    const r = await killWithDigests(t, { transfer });
    const tr = r.primaryStatus.transfer as Record<string, number>;
    t.equal(tr.id as unknown, transfer, `the primary sent with ${transfer}`);
    if (transfer === 'fgbi,compress') t.ok(tr.compressOut! < tr.compressIn! / 4, `and compressed what fgbi left (${tr.compressIn} -> ${tr.compressOut})`);
    t.ok(tr.deltaPages! > 0, `pages went as blocks (${tr.deltaPages})`);
    t.ok(Number(r.primaryStatus.bytesPerCheckpointP50) < Number(r.primaryStatus.capturedBytesPerCheckpointP50), `fewer bytes sent than captured (${String(r.primaryStatus.bytesPerCheckpointP50)} < ${String(r.primaryStatus.capturedBytesPerCheckpointP50)})`);
  });
}
