/**
 * `npm run chaos -- [--runs N] [--seed S] [--modes remus,kemari,colo] [--faults a,b] [--json]`:
 * a fault campaign on the sim backend. Each run starts two host processes paired with TLS, one
 * etcd witness for the campaign, a kv domain protected in a mode drawn from `--modes`, and
 * clients that record every operation (invocation and answer times, values). Halfway through,
 * one fault drawn from `--faults` (default: all of them):
 *   kill-primary, kill-backup (SIGKILL; the host comes back 1 s later),
 *   stop-primary, stop-backup (SIGSTOP for 0.3 to 3 s),
 *   partition (the replication link cut for 0.3 to 3 s), delay (100 ms each way for 2 s),
 *   corrupt (bytes flipped in flight for 2 s),
 *   loss (2% of the link's chunks dropped, either way, for 2 s),
 *   reorder (5% of the link's chunks sent after the next one, either way, for 2 s),
 *   truncate (2% of the chunks to the backup cut short, the connection closed mid-record, for
 *     2 s): over TLS each of these ends the link (src/chaos/proxy.ts), never applies garbage;
 *   disk-full (the backup's disk takes no writes, ENOSPC, for 0.3 to 3 s: the daemon's sim-disk
 *     command; the backup ends replication of the domain and the primary reconnects),
 *   witness-outage (both hosts lose etcd for 2 s),
 *   restart-backup (its daemon stopped and started again).
 * There is no restart of the primary's daemon apart from kill-primary: on the sim backend the
 * domain lives inside its host's daemon process, so stopping that daemon is the host's crash.
 * Then, from the client-side history:
 *   - lostAckedWrites: keys whose final value is older than their last acknowledged write;
 *   - duplicateWrites: writes the guest applied beyond those the clients issued;
 *   - linearizable: the whole history against a register per key (src/chaos/linearizability.ts);
 *   - splitBrain: samples (every 50 ms) with two running copies of the domain;
 *   - unrecovered: runs whose service did not answer again within 15 s of the fault's end;
 *   - unprotected: runs whose primary kept the domain but did not protect it again within 20 s
 *     of the fault's end (a run that failed over to the backup has no peer left: not counted).
 * `--json` prints {runs, faults, lostAckedWrites, duplicateWrites, linearizable, splitBrain,
 * unrecovered, unprotected, wallSecs} and the per-run details go to chaos-results/latest.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from '../demo/hosts.js';
import { KvClient, KvConnection } from '../client/kv.js';
import { checkLinearizable, type KvOp } from './linearizability.js';
import { startEtcd, type LocalEtcd } from './etcd.js';
import { FaultProxy } from './proxy.js';
import { mulberry32 } from '../util/prng.js';

export const FAULTS = [
  'kill-primary',
  'kill-backup',
  'stop-primary',
  'stop-backup',
  'partition',
  'delay',
  'corrupt',
  'loss',
  'reorder',
  'truncate',
  'disk-full',
  'witness-outage',
  'restart-backup',
] as const;
type Fault = (typeof FAULTS)[number];
const MODES = ['remus', 'kemari', 'colo'] as const;
type Mode = (typeof MODES)[number];

function arg(name: string): string | undefined {
  const argv = process.argv.slice(2);
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return undefined;
  return argv[i]!.includes('=') ? argv[i]!.slice(name.length + 3) : argv[i + 1];
}

function intArg(name: string, dflt: number, min: number, max: number): number {
  const v = arg(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`chaos: --${name} ${JSON.stringify(v)} is not valid: expected an integer from ${min} to ${max}\n`);
    process.exit(2);
  }
  return n;
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A bound on a wait that must not keep the process alive once the wait is over. */
const atMost = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

interface RunResult {
  run: number;
  seed: number;
  mode: Mode;
  fault: Fault;
  faultMs: number;
  ops: number;
  acked: number;
  inDoubt: number;
  lostAckedWrites: number;
  duplicateWrites: number;
  linearizable: boolean;
  splitBrainSamples: number;
  recovered: boolean;
  recoveryMs: number | null;
  /**
   * Protection after the fault: `protected` again (after `reprotectedMs` from the fault's end),
   * `unprotected` (the primary runs it alone still), or `failed-over` (the backup runs it).
   */
  protection: 'protected' | 'unprotected' | 'failed-over' | 'none';
  reprotectedMs: number | null;
  /** What the link's forwarder did (dropped, reordered, truncated chunks, flipped bytes). */
  link?: FaultProxy['stats'];
  note?: string;
}

const KEYS = 24;
const CLIENTS = 8;

/** Clients that record every operation: puts of unique values and gets, on a few shared keys. */
class Recorder {
  readonly history: KvOp[] = [];
  private stop = false;
  private readonly conns: KvConnection[];
  private readonly clients: KvClient[];
  puts = 0;
  lastAnswerAt = 0;

  constructor(port: number, private readonly rand: () => number) {
    this.conns = [0, 1].map(() => new KvConnection({ host: '127.0.0.1', port, retryMs: 300, deadlineMs: 20_000 }));
    this.clients = Array.from({ length: CLIENTS }, (_, i) => new KvClient(this.conns[i % 2]!, 1000 + i));
  }

  run(): Promise<void> {
    return Promise.all(this.clients.map((c, i) => this.loop(c, i))).then(() => {});
  }

  private async loop(c: KvClient, i: number): Promise<void> {
    let n = 0;
    while (!this.stop) {
      const key = `k${Math.floor(this.rand() * KEYS)}`;
      const put = this.rand() < 0.6;
      const value = put ? `c${i}-${++n}` : null;
      const op: KvOp = { client: i, key, kind: put ? 'put' : 'get', value, call: performance.now(), ret: Infinity };
      this.history.push(op);
      if (put) this.puts++;
      try {
        if (put) await c.put(key, value!);
        else op.value = await c.get(key);
        op.ret = performance.now();
        this.lastAnswerAt = op.ret;
      } catch {
        // no answer: in doubt (a put may or may not have taken effect); the client moves on
        if (!put) op.value = null;
      }
      await sleep(2 + this.rand() * 8);
    }
  }

  halt(): void {
    this.stop = true;
  }

  /** Reads every key once more (retrying), appended to the history. */
  async finalReads(): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    const c = this.clients[0]!;
    for (let k = 0; k < KEYS; k++) {
      const key = `k${k}`;
      const op: KvOp = { client: 0, key, kind: 'get', value: null, call: performance.now(), ret: Infinity };
      try {
        op.value = await c.get(key);
        op.ret = performance.now();
        this.history.push(op);
        out.set(key, op.value);
      } catch {
        /* unanswered: the run is unrecovered */
      }
    }
    return out;
  }

  async writesApplied(): Promise<number> {
    return (await this.clients[0]!.stat()).writesApplied;
  }

  close(): void {
    for (const c of this.conns) c.close();
  }
}

/** Keys whose final value cannot follow their last acknowledged write. */
function lostWrites(history: readonly KvOp[], finals: Map<string, string | null>): number {
  let lost = 0;
  for (const [key, final] of finals) {
    const puts = history.filter((o) => o.key === key && o.kind === 'put');
    const acked = puts.filter((o) => o.ret !== Infinity);
    if (!acked.length) continue;
    const last = acked.reduce((a, b) => (b.ret > a.ret ? b : a));
    // values that may legitimately be the last: the last acknowledged one, and any put not
    // over before it was invoked (acknowledged later, concurrent, or in doubt)
    const ok = new Set(puts.filter((o) => o === last || o.ret > last.call).map((o) => o.value));
    if (!ok.has(final)) lost++;
  }
  return lost;
}

async function copiesRunning(hosts: SimHostProcess[], name: string): Promise<number> {
  const states = await Promise.all(
    hosts.map(async (h) => {
      if (h.exited) return false;
      try {
        const l = await h.request<{ name: string; state: string }[]>({ cmd: 'list' }, 300);
        return l.some((d) => d.name === name && d.state === 'running');
      } catch {
        return false; // stopped or dead: nothing of it answers
      }
    }),
  );
  return states.filter(Boolean).length;
}

type PrimaryStatus = { state: string; resumed?: number; reconnect?: { lastError?: string } };

async function primaryStatus(primary: SimHostProcess): Promise<PrimaryStatus | null> {
  try {
    return (await primary.request<{ protections: PrimaryStatus[] }>({ cmd: 'status' }, 1000)).protections[0] ?? null;
  } catch {
    return null;
  }
}

/** The domain's state on `h` ('gone' when it has none, 'down' when the host does not answer). */
async function stateOn(h: SimHostProcess, name: string): Promise<string> {
  if (h.exited) return 'down';
  try {
    return (await h.request<{ name: string; state: string }[]>({ cmd: 'list' }, 1000)).find((d) => d.name === name)?.state ?? 'gone';
  } catch {
    return 'down';
  }
}

/**
 * From the fault's end: where the domain runs and, if the primary kept it, when it is protected
 * again (its supervisor resumed protection: `resumed` went past `resumedBefore`). A protection
 * still in place 1.5 s after the fault, never lost, counts as protected after 0 ms.
 */
async function protectionAfter(
  primary: SimHostProcess,
  backup: SimHostProcess,
  name: string,
  resumedBefore: number,
  faultEnd: number,
): Promise<{ protection: RunResult['protection']; reprotectedMs: number | null; note?: string }> {
  const deadline = faultEnd + 20_000;
  let last = '';
  for (;;) {
    const [p, b] = await Promise.all([stateOn(primary, name), stateOn(backup, name)]);
    const now = performance.now();
    if (p !== 'running' && p !== 'suspended') {
      // (a primary's domain is `suspended` for the moment of a checkpoint)
      if (b === 'running') return { protection: 'failed-over', reprotectedMs: null };
      if (now > deadline) return { protection: 'none', reprotectedMs: null, note: `domain on the primary: ${p}, on the backup: ${b}` };
    } else {
      const s = await primaryStatus(primary);
      last = s ? `${s.state}${s.reconnect?.lastError ? ` (${s.reconnect.lastError})` : ''}` : 'no answer';
      if (s?.state === 'protected' && (s.resumed ?? 0) > resumedBefore) return { protection: 'protected', reprotectedMs: Math.max(0, Math.round(now - faultEnd)) };
      if (s?.state === 'protected' && now > faultEnd + 1500) return { protection: 'protected', reprotectedMs: 0 };
      if (now > deadline) return { protection: 'unprotected', reprotectedMs: null, note: `protection ${last}` };
    }
    await sleep(100);
  }
}

async function oneRun(run: number, seed: number, mode: Mode, fault: Fault, etcd: LocalEtcd, log: (s: string) => void): Promise<RunResult> {
  const rand = mulberry32(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `xlha-chaos-${run}-`));
  const replPort = await freePort();
  const servicePort = await freePort();
  const link = await new FaultProxy(() => replPort, mulberry32(seed ^ 0x5bd1e995)).start();
  const pw = await new FaultProxy(() => etcd.port).start();
  const bw = await new FaultProxy(() => etcd.port).start();
  const backup = new SimHostProcess('backup', dir, replPort);
  const primary = new SimHostProcess('primary', dir);
  backup.extraArgs = ['--witness', `127.0.0.1:${bw.port}`];
  primary.extraArgs = ['--witness', `127.0.0.1:${pw.port}`];
  pairSimHosts(primary, backup);
  const name = `kv-chaos-${run}`;
  let rec: Recorder | null = null;
  let splitBrainSamples = 0;
  let sampling = true;
  try {
    await Promise.all([backup.start(), primary.start()]);
    await primary.request({ cmd: 'create', text: kvCfg({ name, memoryMiB: 16, servicePort, dirtyMiBPerSec: 2, ...(mode === 'colo' ? { extra: 'sim_nondeterminism = 0.01' } : {}) }) });
    await primary.request({
      cmd: 'protect',
      options: { domain: name, mode, peer: { host: '127.0.0.1', port: link.port }, intervalMs: 25, ...(mode === 'kemari' ? { minGapMs: 2 } : {}), ...(mode === 'colo' ? { maxIntervalMs: 2000 } : {}), netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150 },
    });
    rec = new Recorder(servicePort, rand);
    const load = rec.run();
    const sampler = (async () => {
      while (sampling) {
        if ((await copiesRunning([primary, backup], name)) > 1) splitBrainSamples++;
        await sleep(50);
      }
    })();
    await sleep(1000 + rand() * 1500);
    const resumedBefore = (await primaryStatus(primary))?.resumed ?? 0;
    const t0 = performance.now();
    const hold = 300 + rand() * 2700;
    switch (fault) {
      case 'kill-primary':
        primary.kill();
        await sleep(1000);
        break;
      case 'kill-backup':
        backup.kill();
        await sleep(1000);
        await backup.start();
        break;
      case 'stop-primary':
      case 'stop-backup': {
        const h = fault === 'stop-primary' ? primary : backup;
        h.proc.kill('SIGSTOP');
        await sleep(hold);
        h.proc.kill('SIGCONT');
        break;
      }
      case 'partition':
        link.cut();
        await sleep(hold);
        link.heal();
        break;
      case 'delay':
        link.delayMs = 100;
        await sleep(2000);
        link.delayMs = 0;
        break;
      case 'corrupt':
        link.corrupt = 64;
        await sleep(2000);
        link.corrupt = 0;
        break;
      case 'loss':
        link.loss = 0.02;
        await sleep(2000);
        link.loss = 0;
        break;
      case 'reorder':
        link.reorder = 0.05;
        await sleep(2000);
        link.reorder = 0;
        break;
      case 'truncate':
        link.truncate = 0.02;
        await sleep(2000);
        link.truncate = 0;
        break;
      case 'disk-full':
        await backup.request({ cmd: 'sim-disk', full: true });
        await sleep(hold);
        await backup.request({ cmd: 'sim-disk', full: false });
        break;
      case 'witness-outage':
        pw.cut();
        bw.cut();
        await sleep(2000);
        pw.heal();
        bw.heal();
        break;
      case 'restart-backup':
        await backup.stop();
        await backup.start();
        break;
    }
    const faultMs = Math.round(performance.now() - t0);
    const faultEnd = performance.now();
    // recovered: the service answers again within 15 s of the fault's end
    const deadline = faultEnd + 15_000;
    while (rec.lastAnswerAt < faultEnd && performance.now() < deadline) await sleep(50);
    const recovered = rec.lastAnswerAt >= faultEnd;
    const recoveryMs = recovered ? Math.round(rec.lastAnswerAt - faultEnd) : null;
    // protection comes back by itself (the supervisor's backoff) wherever the primary kept the domain
    const after = protectionAfter(primary, backup, name, resumedBefore, faultEnd);
    await sleep(1500);
    const { protection, reprotectedMs, note: protectionNote } = await after;
    rec.halt();
    await Promise.race([load, atMost(25_000)]);
    sampling = false;
    await sampler;
    const finals = recovered ? await rec.finalReads() : new Map<string, string | null>();
    let applied = 0;
    try {
      applied = recovered ? await rec.writesApplied() : 0;
    } catch {
      /* counted as not recovered below */
    }
    const h = rec.history;
    const lin = checkLinearizable(h);
    const acked = h.filter((o) => o.kind === 'put' && o.ret !== Infinity).length;
    const inDoubt = h.filter((o) => o.kind === 'put' && o.ret === Infinity).length;
    const r: RunResult = {
      run,
      seed,
      mode,
      fault,
      faultMs,
      ops: h.length,
      acked,
      inDoubt,
      lostAckedWrites: lostWrites(h, finals),
      duplicateWrites: Math.max(0, applied - rec.puts),
      linearizable: lin.linearizable,
      splitBrainSamples,
      recovered: recovered && finals.size === KEYS,
      recoveryMs,
      protection,
      reprotectedMs,
      link: { ...link.stats },
      ...(lin.counterexample || protectionNote
        ? { note: [lin.counterexample ? `not linearizable on ${lin.counterexample.key}: ${JSON.stringify(lin.counterexample.ops.slice(-6))}` : '', protectionNote ?? ''].filter(Boolean).join('; ') }
        : {}),
    };
    log(`run ${run} (seed ${seed}) ${mode} ${fault} ${faultMs} ms: ${r.ops} ops, ${acked} acked, ${inDoubt} in doubt; lost ${r.lostAckedWrites}, dup ${r.duplicateWrites}, linearizable ${r.linearizable}, split-brain samples ${splitBrainSamples}, ${r.recovered ? `recovered (${r.recoveryMs} ms)` : 'UNRECOVERED'}, ${protection === 'unprotected' ? 'NOT PROTECTED AGAIN' : protection}${reprotectedMs !== null ? ` (${reprotectedMs} ms)` : ''}${r.note ? `; ${r.note}` : ''}`);
    return r;
  } finally {
    sampling = false;
    rec?.halt();
    rec?.close();
    for (const h of [primary, backup]) h.proc?.kill('SIGCONT');
    await Promise.all([primary.stop(), backup.stop()]);
    link.close();
    pw.close();
    bw.close();
    if (!process.env.XLHA_CHAOS_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function campaign(o: { runs: number; seed: number; modes: Mode[]; faults?: Fault[]; log: (s: string) => void }) {
  const t0 = performance.now();
  const etcd = await startEtcd();
  const pick = mulberry32(o.seed);
  const results: RunResult[] = [];
  const faults = o.faults ?? [...FAULTS];
  try {
    for (let i = 1; i <= o.runs; i++) {
      const mode = o.modes[Math.floor(pick() * o.modes.length)]!;
      const fault = faults[Math.floor(pick() * faults.length)]!;
      const seed = Math.floor(pick() * 2 ** 31);
      results.push(await oneRun(i, seed, mode, fault, etcd, o.log));
    }
  } finally {
    await etcd.stop();
  }
  const mix: Record<string, number> = {};
  for (const r of results) mix[`${r.mode}/${r.fault}`] = (mix[`${r.mode}/${r.fault}`] ?? 0) + 1;
  return {
    summary: {
      runs: results.length,
      faults: mix,
      lostAckedWrites: results.reduce((n, r) => n + r.lostAckedWrites, 0),
      duplicateWrites: results.reduce((n, r) => n + r.duplicateWrites, 0),
      linearizable: results.every((r) => r.linearizable),
      splitBrain: results.filter((r) => r.splitBrainSamples > 0).length,
      unrecovered: results.filter((r) => !r.recovered).length,
      unprotected: results.filter((r) => r.protection === 'unprotected').length,
      wallSecs: Math.round((performance.now() - t0) / 1000),
    },
    results,
  };
}

const isMain = process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname);
if (isMain) {
  const json = process.argv.includes('--json');
  const modesText = arg('modes') ?? MODES.join(',');
  const modes = modesText.split(',').filter(Boolean);
  const bad = modes.filter((m) => !(MODES as readonly string[]).includes(m));
  if (!modes.length || bad.length) {
    process.stderr.write(`chaos: --modes ${JSON.stringify(modesText)} is not valid: expected a comma-separated list of ${MODES.join(', ')}\n`);
    process.exit(2);
  }
  const faultsText = arg('faults');
  const faults = faultsText?.split(',').filter(Boolean);
  const badF = faults?.filter((f) => !(FAULTS as readonly string[]).includes(f)) ?? [];
  if (faults && (!faults.length || badF.length)) {
    process.stderr.write(`chaos: --faults ${JSON.stringify(faultsText)} is not valid: expected a comma-separated list of ${FAULTS.join(', ')}\n`);
    process.exit(2);
  }
  const out = await campaign({ runs: intArg('runs', 20, 1, 10_000), seed: intArg('seed', 1, 0, 2 ** 31), modes: modes as Mode[], ...(faults ? { faults: faults as Fault[] } : {}), log: (s) => process.stderr.write(`  ${s}\n`) });
  fs.mkdirSync('chaos-results', { recursive: true });
  fs.writeFileSync(path.join('chaos-results', 'latest.json'), JSON.stringify({ at: new Date().toISOString(), ...out }, null, 2) + '\n');
  process.stdout.write((json ? JSON.stringify(out.summary) : JSON.stringify(out.summary, null, 2)) + '\n');
  const s = out.summary;
  process.exit(s.lostAckedWrites === 0 && s.duplicateWrites === 0 && s.linearizable && s.splitBrain === 0 && s.unrecovered === 0 && s.unprotected === 0 ? 0 : 1);
}
