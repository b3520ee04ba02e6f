/**
 * Re-protection after failover, with real host failures (each sim host is its own process):
 * the primary dies, the backup takes the domain over and, with nothing typed, protects it
 * again to the old primary as soon as that host's daemon is back, resynchronised. Status on
 * the new primary tells the whole story: failed over at T, re-protected at T2.
 */
import t from 'tap';
import { untilAsync } from '../helpers/engine-fakes.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, pairSimHosts, SimHostProcess } from '../../src/demo/hosts.js';

type Row = { domain: string; state: string; peer?: string; history?: { at: string; event: string; detail?: string }[]; waiting?: { lastError?: string } };
type Status = { protections: Row[]; replicas: Row[] };

const until = (cond: () => Promise<boolean>, ms: number, what: string) => untilAsync(cond, ms, what, 100);

t.test('the domain that took over is protected again to its old primary once that host is back', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-reprot-'));
  const env = { XLHA_CONF: path.join(dir, 'no-xl-ha.conf') };
  const a = new SimHostProcess('a', dir, await freePort(), env);
  const b = new SimHostProcess('b', dir, await freePort(), env);
  a.extraArgs = ['--watchdog', '0'];
  b.extraArgs = ['--watchdog', '0'];
  pairSimHosts(a, b);
  await Promise.all([a.start(), b.start()]);
  t.teardown(async () => {
    await Promise.all([a.stop(), b.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const cfg = ['name = "svc"', 'memory = 8', 'vcpus = 1', 'sim_workload = "idle"', 'ha = "remus"', `ha_peer = "127.0.0.1:${b.listenPort}"`, 'ha_interval_ms = 20', 'ha_heartbeat_ms = 50', 'ha_failover_timeout_ms = 600', ''].join('\n');
  const created = await a.request<{ protection: Row }>({ cmd: 'create', text: cfg, source: path.join(dir, 'svc.cfg') });
  t.equal(created.protection.state, 'protected', 'a protects svc to b');

  a.kill(); // the primary host dies
  await until(async () => (await b.request<Status>({ cmd: 'status' })).replicas.some((r) => r.domain === 'svc' && r.state === 'active'), 20_000, 'b takes svc over');
  await until(async () => (await b.request<Status>({ cmd: 'status' })).protections.some((p) => p.domain === 'svc' && p.state === 'waiting-for-peer'), 10_000, 'b waits for a to protect svc again');
  const waiting = (await b.request<Status>({ cmd: 'status' })).protections.find((p) => p.domain === 'svc')!;
  t.equal(waiting.peer, `127.0.0.1:${a.listenPort}`, 'towards the old primary, at the address of its pairing');
  t.match(waiting.waiting?.lastError, /ECONNREFUSED|cannot connect/, 'with why it cannot yet');

  await a.start(); // the old primary's host is back (empty: its copy died with it)
  await until(async () => (await b.request<Status>({ cmd: 'status' })).protections.some((p) => p.domain === 'svc' && p.state === 'protected'), 90_000, 'b protects svc to a again');
  const st = await b.request<Status>({ cmd: 'status' });
  const row = st.protections.find((p) => p.domain === 'svc')!;
  const events = row.history!.map((e) => e.event);
  t.same(events.filter((e) => e !== 'waiting for peer'), ['failed over here', 're-protected'], `status tells the story (${events.join(', ')})`);
  const failedAt = Date.parse(row.history![0]!.at);
  const reAt = Date.parse(row.history!.at(-1)!.at);
  t.ok(reAt > failedAt, 're-protected after it failed over');
  t.match(row.history![0]!.detail, /from a/);
  const aStatus = await a.request<Status>({ cmd: 'status' });
  t.same(
    aStatus.replicas.map((r) => [r.domain, r.state]),
    [['svc', 'replicating']],
    'a holds the replica now',
  );
  t.same(aStatus.protections, [], 'and protects nothing itself');
});
