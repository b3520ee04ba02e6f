import t from 'tap';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { SimBackend } from '../../src/backend/sim/host.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../../src/util/log.js';
import { startProtection, type Protection } from '../../src/daemon/protect.js';
import { freePort } from '../../src/demo/hosts.js';
import { pairedKeys } from '../helpers/keys.js';
import { KvLoad } from '../../src/client/kv.js';
import { KV_OP } from '../../src/backend/sim/kvproto.js';
import { rawConn, sleep, until, type TT } from '../helpers/engine-fakes.js';

const log = silentLogger();
let nextClient = 9000;

/** A primary sim host and a backup daemon in this process, a kv domain protected by colo. */
async function coloPair(t: TT, o: { nondeterminism?: number; maxIntervalMs?: number; dirtyMiBPerSec?: number } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-colo-'));
  const keys = pairedKeys(dir);
  const primary = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
  const backupBe = new SimBackend({ hostName: 'b', stateDir: path.join(dir, 'b') });
  const replPort = await freePort();
  const servicePort = await freePort();
  const backup = new Daemon({ backend: backupBe, hostName: 'b', stateDir: path.join(dir, 'b'), controlPath: path.join(dir, 'b.sock'), listen: { host: '127.0.0.1', port: replPort }, keys: keys.b!, log });
  await backup.start();
  let p: Protection | null = null;
  const loads: KvLoad[] = [];
  t.teardown(async () => {
    for (const l of loads) l.close();
    await p?.stop().catch(() => {});
    await backup.stop();
    await primary.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const dom = await primary.createDomain({
    name: 'kv-colo',
    memoryMiB: 16,
    vcpus: 1,
    disks: [],
    vifs: [],
    sim: { workload: 'kv', dirtyMiBPerSec: o.dirtyMiBPerSec ?? 2, seed: 11, service: { host: '127.0.0.1', port: servicePort }, ...(o.nondeterminism ? { nondeterminism: o.nondeterminism } : {}) },
  });
  const gate = primary.outputGate(dom.domid)!;
  gate.log = [];
  p = await startProtection(
    primary,
    { domain: dom.domid, mode: 'colo', peer: { host: '127.0.0.1', port: replPort }, intervalMs: 25, maxIntervalMs: o.maxIntervalMs ?? 60_000, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 500 },
    log,
    keys.p!,
  );
  const prot = p;
  /** `clients` kv clients against the domain for `ms`; the load, stopped, for its figures. */
  const loadFor = async (clients: number, ms: number) => {
    const l = new KvLoad({ host: '127.0.0.1', port: servicePort, clients, connections: 2, keysPerClient: 8, retryMs: 1000 });
    loads.push(l);
    let running = true;
    const done = l.run(() => !running);
    await sleep(ms);
    running = false;
    await done;
    return l;
  };
  const backupStatus = () => (backup as unknown as { backups: Set<{ status(): Record<string, unknown> }> }).backups.values().next().value!.status();
  return { p: prot, gate, servicePort, loadFor, backupStatus };
}

t.test('colo releases identical outputs at once, without a checkpoint', async (t) => {
  const c = await coloPair(t);
  t.equal(c.p.status().state, 'protected');
  t.equal(c.p.status().phaseOrder, 'ack-then-resume');
  t.equal(c.p.status().outputRule, 'when-secondary-agrees');
  const taken = Number(c.p.status().checkpointsTaken);
  const l = await c.loadFor(8, 1200);
  const st = c.p.status();
  t.same(l.errors, [], 'no client error');
  t.ok(l.requests > 200, `${l.requests} requests answered`);
  t.equal(Number(st.divergences), 0, 'no divergence: the guest is deterministic');
  t.equal(Number(st.checkpointsTaken), taken, `no checkpoint beyond the first (${taken}) while outputs agreed`);
  t.ok(Number(st.outputsCompared) >= l.requests, `${String(st.outputsCompared)} outputs compared`);
  t.ok(Number(st.releasedOnMatch) >= l.requests, 'every answer left because the secondary produced the same');
  const { checked, lost } = await l.verify();
  t.same(lost, [], `every acknowledged key reads back (${checked})`);
});

t.test('colo checkpoints on the first divergence and lets the held output go after its ack', async (t) => {
  const c = await coloPair(t, { nondeterminism: 0.05 });
  const taken = Number(c.p.status().checkpointsTaken);
  const l = await c.loadFor(8, 1500);
  const st = c.p.status();
  t.same(l.errors, [], 'no client error');
  t.ok(Number(st.divergences) > 0, `${String(st.divergences)} divergences seen`);
  t.ok(Number(st.checkpointsOnDivergence) > 0, `${String(st.checkpointsOnDivergence)} checkpoints taken on divergence`);
  t.ok(Number(st.checkpointsTaken) > taken, 'checkpoints were taken');
  t.ok(Number(st.releasedAtCommit) > 0, `${String(st.releasedAtCommit)} outputs left after the ack of the checkpoint that covers them`);
  t.ok(Number(st.releasedOnMatch) > 0, `and ${String(st.releasedOnMatch)} at once, when the secondary agreed again after a checkpoint`);
  t.equal(st.state, 'protected');
  const { lost } = await l.verify();
  t.same(lost, [], 'every acknowledged key reads back');
});

t.test('colo takes the fallback checkpoint when outputs agree for the maximum interval', async (t) => {
  const c = await coloPair(t, { maxIntervalMs: 250 });
  const taken = Number(c.p.status().checkpointsTaken);
  await sleep(1100);
  const st = c.p.status();
  const n = Number(st.checkpointsTaken) - taken;
  t.ok(n >= 3 && n <= 5, `${n} checkpoints in 1.1 s at a 250 ms maximum interval`);
  t.equal(Number(st.checkpointsPeriodic), n, 'all of them periodic');
  t.equal(Number(st.divergences), 0);
});

t.test("the secondary's outputs never reach a client: each request is answered once, by the primary", async (t) => {
  const c = await coloPair(t);
  const conn = await rawConn(t, c.servicePort);
  const ids = Array.from({ length: 40 }, () => nextClient++);
  for (const id of ids) {
    conn.send(id, 1, KV_OP.PUT, `k${id}`, `v${id}`);
    await sleep(2);
  }
  await conn.waitFor(ids.length, 5000);
  await sleep(300); // time for a second answer, if any could come
  t.equal(conn.responses.length, ids.length, 'one answer per request, no more');
  t.same(conn.responses.map((r) => r.clientId).sort(), ids, 'one for each request');
  await until('the secondary to have answered too', () => Number(c.backupStatus().secondaryOutputs) >= ids.length, 3000);
  const b = c.backupStatus();
  t.equal(b.plays, 'secondary', 'the backup runs the secondary');
  t.ok(Number(b.secondaryOutputs) >= ids.length, `the secondary produced ${String(b.secondaryOutputs)} outputs, all sent to the primary only`);
  const emitted = c.gate.log!.filter((x) => x.emitted);
  t.ok(emitted.length >= ids.length, "the primary's gate let each answer out");
});
