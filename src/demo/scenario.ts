/**
 * The failover scenario behind `npm run demo`, the benchmark and the multi-process test:
 * a primary and a backup host as separate processes (started as the shipped `xl-ha` starts),
 * one or more `kv` domains under client load, unprotected first (the baseline), then
 * protected (remus, kemari or colo), then the primary is SIGKILLed under load and the clients
 * carry on against the backup. Everything acknowledged is read back at the end.
 *
 * Each measured window is bracketed by probes of both hosts: their CPU time (/proc), the
 * guests' own counters (`sim-guest`) and, while protected, each protection's status. From
 * these the scenario says whether protection held through the window (`protection`): a run in
 * which the engine ran unprotected, resynced, or committed nothing, or in which a client saw
 * an error, has figures that describe something else than protection.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KvClient, KvConnection, KvLoad } from '../client/kv.js';
import { Samples, round } from '../util/samples.js';
import { SimHostProcess, freePort, hostCpu, kvCfg, pairSimHosts, type HostCpuMs } from './hosts.js';
import { DEFAULT_COLO_MAX_INTERVAL_MS, DEFAULT_KEMARI_MIN_GAP_MS } from '../config/domain.js';
import type { SimGuestCounters } from '../backend/sim/host.js';
import type { DaemonStatusJson, ProtectionStatusJson, ReplicaStatusJson } from '../daemon/status-types.js';
import { STALL_MS } from '../daemon/loop-stalls.js';

export interface ScenarioOptions {
  /** Replication mode (default remus). */
  mode?: 'remus' | 'kemari' | 'colo';
  /** kemari: output events within this gap coalesce into one sync (default: the mode's). */
  minGapMs?: number;
  /** colo: the fallback checkpoint interval (default: the mode's). */
  maxIntervalMs?: number;
  /** Checkpoint transfer (`--transfer`: full, fgbi, compress, fgbi,compress; default full). */
  transfer?: 'full' | 'fgbi' | 'compress' | 'fgbi,compress';
  /** fgbi's block size (default 64). */
  fgbiBlockBytes?: number;
  /** sim_nondeterminism of the guest: the fraction of PUT responses that differ between copies. */
  nondeterminism?: number;
  memoryMiB: number;
  dirtyMiBPerSec: number;
  intervalMs: number;
  heartbeatMs: number;
  failoverTimeoutMs: number;
  /** Clients of each domain. */
  clients: number;
  /** Connections of each domain's clients. */
  connections: number;
  /** Open-loop pacing of each domain's load, requests per second (default: closed loop). */
  ratePerSec?: number;
  /** Keys each client writes (the guest holds 16384 keys in all). */
  keysPerClient?: number;
  /**
   * Domains protected at once on the one pair of hosts, each with its own kv service and
   * load (default 1). With more than one, the run measures the steady state only (`noKill`).
   */
  domains?: number;
  baselineMs: number;
  protectedMs: number;
  afterMs: number;
  /** Skip the kill (benchmarks of the steady state only). */
  noKill?: boolean;
  dir?: string;
  progress?: (line: string) => void;
  /** Extra environment for each host process, by host name. */
  env?: (host: 'primary' | 'backup') => Record<string, string>;
}

export interface PhaseResult {
  latencyMsP50: number;
  latencyMsP99: number;
  requestsPerSec: number;
}

/** The guest's own work in a window, from its vCPU registers. */
export interface GuestRates {
  /** kv requests the guest consumed per second. */
  inputsPerSec: number;
  /** Page writes of its background writer per second (a paused guest does not catch up). */
  dirtiedPagesPerSec: number;
}

/** A host's CPU in a window, ms per second of wall time: the host's own (daemon) and its guests' vCPUs. */
export interface HostCpuRates {
  daemonMsPerSec: number;
  vcpuMsPerSec: number;
}

export interface DomainResult {
  name: string;
  unprotected: PhaseResult;
  protected: PhaseResult;
  guest: { unprotected: GuestRates; protected: GuestRates };
  /** Committed checkpoints in the protected window, and per second of it. */
  checkpointsInWindow: number;
  checkpointsPerSec: number;
  /** The protection's status at the end of the protected window. */
  primaryStatus: Record<string, unknown>;
  /** The replica's status at the end of the run. */
  backupStatus: Record<string, unknown>;
  ackedWrites: number;
  keysChecked: number;
  lostAckedWrites: number;
  lostDetails: string[];
  writesAppliedByGuest: number;
  clientErrors: string[];
}

/** The first domain's figures, then every domain's and the run's own. */
export interface ScenarioResult extends DomainResult {
  domains: DomainResult[];
  failoverMs: number;
  /** Whether every domain stayed protected through the protected window, and if not why. */
  protection: { held: boolean; failures: string[] };
  /** Both hosts' CPU in each window (null off Linux). */
  cpu: { primary: { unprotected: HostCpuRates; protected: HostCpuRates }; backup: { unprotected: HostCpuRates; protected: HostCpuRates } } | null;
  /** Both hosts' garbage collection in each window (the daemons' main threads). */
  gc: { primary: { unprotected: GcRates; protected: GcRates }; backup: { unprotected: GcRates; protected: GcRates } } | null;
  /** Each host's main-thread stalls over the whole run, protection's start included (src/daemon/loop-stalls.ts). */
  loop: { primary: Loop | null; backup: Loop | null };
  /** The protected window's length, s. */
  protectedSecs: number;
  dir: string;
}

type Gc = NonNullable<NonNullable<DaemonStatusJson['daemon']>['gc']>;
const STALL_NOTE = `${STALL_MS} ms or more`;
type Loop = NonNullable<NonNullable<DaemonStatusJson['daemon']>['loop']>;

/** What both hosts say at one instant: CPU, garbage collection, guests, protections. */
interface Probe {
  at: number;
  cpu: { primary: HostCpuMs | null; backup: HostCpuMs | null };
  gc: { primary: Gc | null; backup: Gc | null };
  loop: { primary: Loop | null; backup: Loop | null };
  guests: Map<string, SimGuestCounters>;
  protections: Map<string, ProtectionStatusJson>;
}

async function probe(primary: SimHostProcess, backup: SimHostProcess): Promise<Probe> {
  const at = performance.now();
  const cpu = { primary: hostCpu(primary.proc.pid!), backup: hostCpu(backup.proc.pid!) };
  const [g, ps, bs] = await Promise.all([
    primary.request<{ guests: SimGuestCounters[] }>({ cmd: 'sim-guest' }),
    primary.request<DaemonStatusJson>({ cmd: 'status' }),
    backup.request<DaemonStatusJson>({ cmd: 'status' }),
  ]);
  return {
    at,
    cpu,
    gc: { primary: ps.daemon?.gc ?? null, backup: bs.daemon?.gc ?? null },
    loop: { primary: ps.daemon?.loop ?? null, backup: bs.daemon?.loop ?? null },
    guests: new Map(g.guests.map((x) => [x.name, x])),
    protections: new Map(ps.protections.map((p) => [p.domain, p])),
  };
}

/** A host's garbage collections in a window: ms of them per second, how many per second, the longest since start. */
export interface GcRates {
  gcMsPerSec: number;
  scavengesPerSec: number;
  fullGcsPerSec: number;
  maxMs: number;
}

function gcRates(a: Gc | null, b: Gc | null, secs: number): GcRates | null {
  if (!a || !b) return null;
  return { gcMsPerSec: round((b.minorMs + b.majorMs - a.minorMs - a.majorMs) / secs, 2), scavengesPerSec: round((b.minor - a.minor) / secs, 2), fullGcsPerSec: round((b.major - a.major) / secs, 2), maxMs: b.maxMs };
}

function cpuRates(a: HostCpuMs | null, b: HostCpuMs | null, secs: number): HostCpuRates | null {
  if (!a || !b) return null;
  const vcpu = b.vcpuMs - a.vcpuMs;
  return { daemonMsPerSec: round((b.totalMs - a.totalMs - vcpu) / secs, 1), vcpuMsPerSec: round(vcpu / secs, 1) };
}

function guestRates(a: SimGuestCounters | undefined, b: SimGuestCounters | undefined, secs: number): GuestRates {
  if (!a || !b) return { inputsPerSec: NaN, dirtiedPagesPerSec: NaN };
  return { inputsPerSec: round((b.inputsHandled - a.inputsHandled) / secs, 1), dirtiedPagesPerSec: round((b.dirtiedPages - a.dirtiedPages) / secs, 1) };
}

/** Client latency and rate over `ms`, every load at once. */
async function measure(loads: KvLoad[], ms: number): Promise<PhaseResult[]> {
  for (const l of loads) l.resetSamples();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const elapsed = (performance.now() - t0) / 1000;
  return loads.map((load) => {
    const s = new Samples(1e7);
    for (const v of load.latenciesMs) s.add(v);
    return { latencyMsP50: round(s.percentile(50)), latencyMsP99: round(s.percentile(99)), requestsPerSec: round(load.requests / elapsed, 1) };
  });
}

/** Why a domain's protection did not hold from `a` to `b` (empty: it held). */
export function protectionFailures(name: string, a: ProtectionStatusJson | undefined, b: ProtectionStatusJson | undefined): string[] {
  if (!a || !b) return [`${name}: no protection in the primary's status ${a ? 'at the end' : 'at the start'} of the protected window`];
  const out: string[] = [];
  if (a.state !== 'protected') out.push(`${name}: engine state ${a.state} at the start of the protected window${a.error ? ` (${a.error})` : ''}`);
  if (b.state !== 'protected') out.push(`${name}: engine state ${b.state} at the end of the protected window${b.error ? ` (${b.error})` : ''}`);
  if ((b.resyncs ?? 0) > 0) out.push(`${name}: ${b.resyncs} full resync(s)`);
  if ((b.resumed ?? 0) > 0) out.push(`${name}: protection was lost and resumed ${b.resumed} time(s)`);
  if (!((b.committed ?? 0) > (a.committed ?? 0))) out.push(`${name}: the committed count did not grow (${a.committed} → ${b.committed})`);
  return out;
}

/** Checkpoints committed after the initial copy before the protected window opens. */
const SETTLE_CHECKPOINTS = 10;

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const say = o.progress ?? (() => {});
  const n = o.domains ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new Error(`domains ${JSON.stringify(o.domains)} is not valid: expected an integer from 1`);
  if (n > 1 && !o.noKill) throw new Error(`domains ${n}: a run of more than one domain measures the steady state only; set noKill`);
  const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'xl-ha-demo-'));
  const replPort = await freePort();
  const backup = new SimHostProcess('backup', dir, replPort, o.env?.('backup'));
  const primary = new SimHostProcess('primary', dir, undefined, o.env?.('primary'));
  pairSimHosts(primary, backup);
  const loads: KvLoad[] = [];
  try {
    await Promise.all([backup.start(), primary.start()]);
    say(`hosts up: primary (pid ${primary.proc.pid}), backup (pid ${backup.proc.pid}) listening on 127.0.0.1:${replPort}`);
    const names = n === 1 ? ['kv-demo'] : Array.from({ length: n }, (_, i) => `kv-demo-${i + 1}`);
    for (const name of names) {
      const servicePort = await freePort();
      const cfgPath = path.join(dir, `${name}.cfg`);
      fs.writeFileSync(cfgPath, kvCfg({ name, memoryMiB: o.memoryMiB, servicePort, dirtyMiBPerSec: o.dirtyMiBPerSec, ...(o.nondeterminism ? { extra: `sim_nondeterminism = ${o.nondeterminism}` } : {}) }));
      await primary.request({ cmd: 'create', text: fs.readFileSync(cfgPath, 'utf8'), source: cfgPath });
      say(`domain ${name} booted on primary: ${o.memoryMiB} MiB, kv service on 127.0.0.1:${servicePort}, dirtying ${o.dirtyMiBPerSec} MiB/s`);
      loads.push(new KvLoad({ host: '127.0.0.1', port: servicePort, clients: o.clients, connections: o.connections, keysPerClient: o.keysPerClient ?? 4, retryMs: 1000, ...(o.ratePerSec ? { ratePerSec: o.ratePerSec } : {}) }));
    }

    let running = true;
    const loadsDone = Promise.all(loads.map((l) => l.run(() => !running)));
    await new Promise((r) => setTimeout(r, Math.min(1000, o.baselineMs / 3))); // warm-up
    const u0 = await probe(primary, backup);
    const unprotected = await measure(loads, o.baselineMs);
    const u1 = await probe(primary, backup);
    const uSecs = (u1.at - u0.at) / 1000;
    say(`unprotected: p50 ${unprotected[0]!.latencyMsP50} ms, p99 ${unprotected[0]!.latencyMsP99} ms, ${unprotected[0]!.requestsPerSec} req/s${n > 1 ? ' (first domain)' : ''}`);

    for (const name of names) {
      await primary.request({
        cmd: 'protect',
        options: {
          domain: name,
          mode: o.mode ?? 'remus',
          peer: { host: '127.0.0.1', port: replPort },
          intervalMs: o.intervalMs,
          ...(o.minGapMs !== undefined ? { minGapMs: o.minGapMs } : {}),
          ...(o.maxIntervalMs !== undefined ? { maxIntervalMs: o.maxIntervalMs } : {}),
          netbuf: true,
          disk: true,
          blackhole: false,
          heartbeatMs: o.heartbeatMs,
          failoverTimeoutMs: o.failoverTimeoutMs,
          ...(o.transfer && o.transfer !== 'full' ? { transfer: o.transfer } : {}),
          ...(o.fgbiBlockBytes !== undefined ? { fgbiBlockBytes: o.fgbiBlockBytes } : {}),
        },
      }, 600000); // it answers after the initial copy: a 4 GiB guest's takes a while
    }
    // Measured from when every protection is `protected` (the initial copies are over).
    for (const deadline = performance.now() + 120000; ; ) {
      const st = (await primary.request<{ protections: ProtectionStatusJson[] }>({ cmd: 'status' })).protections;
      if (names.every((name) => st.find((p) => p.domain === name)?.state === 'protected')) break;
      if (performance.now() > deadline) break; // the probes below report which one is not
      await new Promise((r) => setTimeout(r, 50));
    }
    const m = o.mode ?? 'remus';
    const how =
      m === 'kemari'
        ? `kemari: sync on output, minimum gap ${o.minGapMs ?? DEFAULT_KEMARI_MIN_GAP_MS} ms`
        : m === 'colo'
          ? `colo: outputs compared, checkpoint on divergence or every ${o.maxIntervalMs ?? DEFAULT_COLO_MAX_INTERVAL_MS} ms`
          : `remus: interval ${o.intervalMs} ms`;
    say(`protected${n > 1 ? ` (${n} domains)` : ''} by ${how}, transfer ${o.transfer ?? 'full'}, heartbeat ${o.heartbeatMs} ms, failover timeout ${o.failoverTimeoutMs} ms`);
    // The first checkpoints after the initial copy carry what the guest dirtied during it (a
    // 4 GiB guest's copy takes seconds): the window measures the steady state after them.
    await new Promise((r) => setTimeout(r, 300));
    for (const deadline = performance.now() + 60000; performance.now() < deadline; ) {
      const st = (await primary.request<{ protections: ProtectionStatusJson[] }>({ cmd: 'status' })).protections;
      if (names.every((name) => (st.find((p) => p.domain === name)?.committed ?? 0) >= SETTLE_CHECKPOINTS)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const p0 = await probe(primary, backup);
    const prot = await measure(loads, o.protectedMs);
    const p1 = await probe(primary, backup);
    const pSecs = (p1.at - p0.at) / 1000;
    const failures = names.flatMap((name) => protectionFailures(name, p0.protections.get(name), p1.protections.get(name)));
    const st0 = p1.protections.get(names[0]!);
    say(`protected: p50 ${prot[0]!.latencyMsP50} ms, p99 ${prot[0]!.latencyMsP99} ms, ${prot[0]!.requestsPerSec} req/s; ${String(st0?.checkpointsPerSec)} checkpoints/s, pause p99 ${String(st0?.pauseMsP99)} ms${n > 1 ? ' (first domain)' : ''}`);

    let failoverMs = NaN;
    const load0 = loads[0]!;
    if (!o.noKill) {
      load0.watchNewConnections();
      const killedAt = performance.now();
      primary.kill();
      say('primary host SIGKILLed under load');
      // Failover time as a client sees it: from the kill to the first answer from the backup
      // (the first answer over a connection opened after the kill).
      while (load0.firstAnswerOnNewConnectionAt === 0) {
        if (performance.now() - killedAt > 30000) throw new Error(`no answer from the backup within 30 s of the kill; see ${backup.logPath}`);
        await new Promise((r) => setTimeout(r, 1));
      }
      failoverMs = round(load0.firstAnswerOnNewConnectionAt - killedAt, 1);
      say(`backup answering ${failoverMs} ms after the kill`);
      await new Promise((r) => setTimeout(r, o.afterMs));
    }
    running = false;
    await loadsDone;
    const replicas = (await backup.request<{ replicas: ReplicaStatusJson[] }>({ cmd: 'status' })).replicas;
    const domains: DomainResult[] = [];
    for (const [i, name] of names.entries()) {
      const load = loads[i]!;
      const { checked, lost, inDoubtApplied } = await load.verify();
      const stat = await new KvClient(load.conns[0]!).stat();
      const backupStatus = (replicas.find((r) => r.domain === name) ?? {}) as Record<string, unknown>;
      if (o.noKill && backupStatus.state !== 'replicating') failures.push(`${name}: the backup's replica is ${String(backupStatus.state ?? 'missing')} at the end, not replicating`);
      if (load.errors.length) failures.push(`${name}: ${load.errors.length} client error(s), first: ${load.errors[0]}`);
      const a = p0.protections.get(name);
      const b = p1.protections.get(name);
      const committed = (b?.committed ?? 0) - (a?.committed ?? 0);
      say(`${name}: read back ${checked} acknowledged keys: ${lost.length} lost${inDoubtApplied ? ` (${inDoubtApplied} read back as the client's unanswered write after it: applied, not lost)` : ''}; guest applied ${stat.writesApplied} writes, clients had ${load.puts} acknowledged`);
      domains.push({
        name,
        unprotected: unprotected[i]!,
        protected: prot[i]!,
        guest: { unprotected: guestRates(u0.guests.get(name), u1.guests.get(name), uSecs), protected: guestRates(p0.guests.get(name), p1.guests.get(name), pSecs) },
        checkpointsInWindow: committed,
        checkpointsPerSec: round(committed / pSecs, 2),
        primaryStatus: (b ?? {}) as Record<string, unknown>,
        backupStatus,
        ackedWrites: load.puts,
        keysChecked: checked,
        lostAckedWrites: lost.length,
        lostDetails: lost.slice(0, 10),
        writesAppliedByGuest: stat.writesApplied,
        clientErrors: load.errors.slice(0, 10),
      });
    }
    const rates = (h: 'primary' | 'backup') => {
      const u = cpuRates(u0.cpu[h], u1.cpu[h], uSecs);
      const p = cpuRates(p0.cpu[h], p1.cpu[h], pSecs);
      return u && p ? { unprotected: u, protected: p } : null;
    };
    const gcs = (h: 'primary' | 'backup') => {
      const u = gcRates(u0.gc[h], u1.gc[h], uSecs);
      const p = gcRates(p0.gc[h], p1.gc[h], pSecs);
      return u && p ? { unprotected: u, protected: p } : null;
    };
    const gp = gcs('primary');
    const gb = gcs('backup');
    const cp = rates('primary');
    const cb = rates('backup');
    if (failures.length) {
      say(`PROTECTION DID NOT HOLD: ${failures.join('; ')}`);
      for (const h of ['primary', 'backup'] as const) {
        const l = p1.loop[h];
        if (l?.stalls) say(`  ${h}'s main thread: ${l.stalls} stall(s) of ${STALL_NOTE}, longest ${l.maxMs} ms; last: ${l.recent.map((x) => `${x.ms} ms (GC ${x.gcMs}, on a core ${x.runMs ?? '?'}, waiting ${x.waitMs ?? '?'}) at ${x.at}`).join(', ')}`);
      }
    }
    return {
      ...domains[0]!,
      domains,
      failoverMs,
      protection: { held: failures.length === 0, failures },
      cpu: cp && cb ? { primary: cp, backup: cb } : null,
      gc: gp && gb ? { primary: gp, backup: gb } : null,
      loop: p1.loop,
      protectedSecs: round(pSecs, 2),
      dir,
    };
  } catch (err) {
    const e = err as Error;
    e.message += `\n--- primary log (${primary.logPath}) ---\n${primary.tail()}\n--- backup log (${backup.logPath}) ---\n${backup.tail()}`;
    throw e;
  } finally {
    for (const l of loads) l.close();
    await Promise.all([primary.stop().catch(() => {}), backup.stop().catch(() => {})]);
  }
}

export { KvConnection };
