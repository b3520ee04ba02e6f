/**
 * The failover scenario behind `npm run demo`, the benchmark and the multi-process test:
 * a primary and a backup host as separate processes, a `kv` domain under client load,
 * unprotected first (the baseline), then protected (remus or kemari), then the primary is SIGKILLed
 * under load and the clients carry on against the backup. Everything acknowledged is read
 * back at the end.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KvClient, KvConnection, KvLoad } from '../client/kv.js';
import { Samples, round } from '../util/samples.js';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from './hosts.js';
import { DEFAULT_COLO_MAX_INTERVAL_MS, DEFAULT_KEMARI_MIN_GAP_MS } from '../config/domain.js';

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
  clients: number;
  connections: number;
  /** Open-loop pacing of the whole load, requests per second (default: closed loop). */
  ratePerSec?: number;
  /** Keys each client writes (the guest holds 16384 keys in all). */
  keysPerClient?: number;
  baselineMs: number;
  protectedMs: number;
  afterMs: number;
  /** Nice value for the client load (this process), set after the hosts are started. */
  clientNice?: number;
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

export interface ScenarioResult {
  unprotected: PhaseResult;
  protected: PhaseResult;
  primaryStatus: Record<string, unknown>;
  backupStatus: Record<string, unknown>;
  failoverMs: number;
  ackedWrites: number;
  keysChecked: number;
  lostAckedWrites: number;
  lostDetails: string[];
  writesAppliedByGuest: number;
  clientErrors: string[];
  dir: string;
}

async function measure(load: KvLoad, ms: number): Promise<PhaseResult> {
  load.resetSamples();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const elapsed = (performance.now() - t0) / 1000;
  const s = new Samples(1e7);
  for (const v of load.latenciesMs) s.add(v);
  return { latencyMsP50: round(s.percentile(50)), latencyMsP99: round(s.percentile(99)), requestsPerSec: round(load.requests / elapsed, 1) };
}

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const say = o.progress ?? (() => {});
  const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'xl-ha-demo-'));
  const replPort = await freePort();
  const servicePort = await freePort();
  const backup = new SimHostProcess('backup', dir, replPort, o.env?.('backup'));
  const primary = new SimHostProcess('primary', dir, undefined, o.env?.('primary'));
  pairSimHosts(primary, backup);
  let load: KvLoad | null = null;
  try {
    await Promise.all([backup.start(), primary.start()]);
    if (o.clientNice) {
      // Clients normally run on other machines; here they share 2 cores with both hosts. At a
      // lower priority they take only the CPU the hosts leave, roughly as remote clients would.
      os.setPriority(0, o.clientNice);
    }
    say(`hosts up: primary (pid ${primary.proc.pid}), backup (pid ${backup.proc.pid}) listening on 127.0.0.1:${replPort}`);
    const cfgPath = path.join(dir, 'kv-demo.cfg');
    fs.writeFileSync(cfgPath, kvCfg({ name: 'kv-demo', memoryMiB: o.memoryMiB, servicePort, dirtyMiBPerSec: o.dirtyMiBPerSec, ...(o.nondeterminism ? { extra: `sim_nondeterminism = ${o.nondeterminism}` } : {}) }));
    await primary.request({ cmd: 'create', text: fs.readFileSync(cfgPath, 'utf8'), source: cfgPath });
    say(`domain kv-demo booted on primary: ${o.memoryMiB} MiB, kv service on 127.0.0.1:${servicePort}, dirtying ${o.dirtyMiBPerSec} MiB/s`);

    load = new KvLoad({ host: '127.0.0.1', port: servicePort, clients: o.clients, connections: o.connections, keysPerClient: o.keysPerClient ?? 4, retryMs: 1000, ...(o.ratePerSec ? { ratePerSec: o.ratePerSec } : {}) });
    let running = true;
    const loadDone = load.run(() => !running);
    await new Promise((r) => setTimeout(r, Math.min(1000, o.baselineMs / 3))); // warm-up
    const unprotected = await measure(load, o.baselineMs);
    say(`unprotected: p50 ${unprotected.latencyMsP50} ms, p99 ${unprotected.latencyMsP99} ms, ${unprotected.requestsPerSec} req/s`);

    await primary.request({
      cmd: 'protect',
      options: {
        domain: 'kv-demo',
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
    });
    const m = o.mode ?? 'remus';
    const how =
      m === 'kemari'
        ? `kemari: sync on output, minimum gap ${o.minGapMs ?? DEFAULT_KEMARI_MIN_GAP_MS} ms`
        : m === 'colo'
          ? `colo: outputs compared, checkpoint on divergence or every ${o.maxIntervalMs ?? DEFAULT_COLO_MAX_INTERVAL_MS} ms`
          : `remus: interval ${o.intervalMs} ms`;
    say(`protected by ${how}, transfer ${o.transfer ?? 'full'}, heartbeat ${o.heartbeatMs} ms, failover timeout ${o.failoverTimeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
    const prot = await measure(load, o.protectedMs);
    const primaryStatus = ((await primary.request<{ protections: Record<string, unknown>[] }>({ cmd: 'status' })).protections[0] ?? {}) as Record<string, unknown>;
    say(`protected: p50 ${prot.latencyMsP50} ms, p99 ${prot.latencyMsP99} ms, ${prot.requestsPerSec} req/s; ${String(primaryStatus.checkpointsPerSec)} checkpoints/s, pause p99 ${String(primaryStatus.pauseMsP99)} ms`);

    let failoverMs = NaN;
    if (!o.noKill) {
      load.watchNewConnections();
      const killedAt = performance.now();
      primary.kill();
      say('primary host SIGKILLed under load');
      // Failover time as a client sees it: from the kill to the first answer from the backup
      // (the first answer over a connection opened after the kill).
      while (load.firstAnswerOnNewConnectionAt === 0) {
        if (performance.now() - killedAt > 30000) throw new Error(`no answer from the backup within 30 s of the kill; see ${backup.logPath}`);
        await new Promise((r) => setTimeout(r, 1));
      }
      failoverMs = round(load.firstAnswerOnNewConnectionAt - killedAt, 1);
      say(`backup answering ${failoverMs} ms after the kill`);
      await new Promise((r) => setTimeout(r, o.afterMs));
    }
    running = false;
    await loadDone;
    const { checked, lost } = await load.verify();
    const stat = await new KvClient(load.conns[0]!).stat();
    const backupStatus = ((await backup.request<{ replicas: Record<string, unknown>[] }>({ cmd: 'status' })).replicas[0] ?? {}) as Record<string, unknown>;
    say(`read back ${checked} acknowledged keys: ${lost.length} lost; guest applied ${stat.writesApplied} writes, clients had ${load.puts} acknowledged`);
    return {
      unprotected,
      protected: prot,
      primaryStatus,
      backupStatus,
      failoverMs,
      ackedWrites: load.puts,
      keysChecked: checked,
      lostAckedWrites: lost.length,
      lostDetails: lost.slice(0, 10),
      writesAppliedByGuest: stat.writesApplied,
      clientErrors: load.errors.slice(0, 10),
      dir,
    };
  } catch (err) {
    const e = err as Error;
    e.message += `\n--- primary log (${primary.logPath}) ---\n${primary.tail()}\n--- backup log (${backup.logPath}) ---\n${backup.tail()}`;
    throw e;
  } finally {
    load?.close();
    await Promise.all([primary.stop().catch(() => {}), backup.stop().catch(() => {})]);
  }
}

export { KvConnection };
