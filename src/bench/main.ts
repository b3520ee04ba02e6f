/**
 * `npm run bench`: each mode against the same kv workload unprotected, measured in one run
 * (`--modes remus,kemari`, default remus). Not a test: it reports figures, as JSON lines (one
 * per run) and a table; `--json` prints one JSON object per mode. Results are also written to
 * bench-results/latest.json and a chart to bench-results/latest.svg. `--quick` shortens every
 * measured window (development; its figures are noisier).
 *
 * What it measures is the product as shipped: the hosts start as the `xl-ha` command does
 * (src/demo/hosts.ts: its entry and the node options of its `#!` line), the clients run at
 * the default priority (nice 0), and the link is the shipped TLS one. On this machine the
 * clients share the cores with both hosts, so the clients' throughput is partly the machine's;
 * `guestProgressRatio` is the guest's own count of the work it did (requests consumed), and
 * `cpuMsPerCheckpoint` the hosts' CPU (the daemons, without the guests' vCPU threads) per
 * checkpoint.
 *
 * Every run checks that protection held through its measured window (src/demo/scenario.ts):
 * engine state `protected` at both ends, no resync, no loss and resumption, the committed
 * count growing, the replica replicating, no client error. A run that fails it reports
 * `protectionHeld: false` and why, its figures are withheld (null; the measured values are
 * kept under `measuredNotAResult` for diagnosis), and the bench exits 1.
 *
 * Runs per mode, each with `--transfer` (full, fgbi, compress, fgbi,compress; default full):
 *  - <mode>-light: 256 MiB guest dirtying 20 MiB/s, 16 clients, 25 ms epochs: the added
 *    latency, then SIGKILL of the primary (failover time).
 *  - <mode>-saturated: the same guest, 2048 clients: the headline pause, bytes and
 *    checkpoints per second, CPU per checkpoint, guest progress and throughput ratio.
 *  - remus-10ms-demo-load: remus at 10 ms epochs under the demo's load (64 closed-loop clients).
 *  - <mode>-1000rps: 16 clients paced at 1000 requests/s in all (open loop).
 *  kemari syncs when the guest emits output (minimum gap 2 ms); colo runs with no induced
 *  divergence (the kv guest is deterministic). remus names its 25 ms runs remus-25ms-….
 *
 * `--scale`: how the cost grows with the work, remus at 25 ms under the demo's load per domain:
 * guest size 256 MiB, 1 GiB, 4 GiB at 20 MiB/s; dirty rate 5 to 200 MiB/s at 256 MiB; 1, 4 and
 * 8 domains protected at once on the one pair of hosts. A point this machine has not the memory
 * for is reported as skipped, with why. Written to bench-results/scale.json and
 * scale-<series>.svg; `--json` prints one JSON object per series. `--scale memory|dirty|domains`
 * (or a comma-separated list of them) runs only those series.
 *
 * `--encryption`: what the link's TLS costs. remus at 10 ms (light) and at 25 ms (saturated),
 * each run with the shipped TLS link and with XLHA_PLAINTEXT_LOOPBACK=1 (no TLS), alternating,
 * `--repeat N` times (default 2); the ratios of the medians.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runScenario, type ScenarioOptions, type ScenarioResult } from '../demo/scenario.js';
import { round } from '../util/samples.js';
import { barChartSvg, chartSvg } from './chart.js';
import { DEFAULT_COLO_MAX_INTERVAL_MS, DEFAULT_KEMARI_MIN_GAP_MS } from '../config/domain.js';
import { enforceToolArgs } from '../util/tool-args.js';

const argv = process.argv.slice(2);
enforceToolArgs('bench', 'usage: npm run bench -- [options]   (each mode against the same kv workload unprotected, in one run)', argv, [
  { name: '--modes', value: 'required', help: 'comma-separated: remus, kemari, colo (default remus)' },
  { name: '--transfer', value: 'required', help: 'full, fgbi, compress or fgbi,compress (default full)' },
  { name: '--scale', value: 'optional', help: 'scaling series: memory, dirty, domains, comma-separated (nothing: all)' },
  { name: '--encryption', value: 'none', help: "what the link's TLS costs: TLS against plaintext loopback, alternating" },
  { name: '--repeat', value: 'required', help: 'runs per case for --encryption (1-20, default 2)' },
  { name: '--json', value: 'none', help: 'one JSON object per run or series on stdout' },
  { name: '--quick', value: 'none', help: 'shorter measured windows (development; noisier figures)' },
]);
const json = argv.includes('--json');
const quick = argv.includes('--quick');
const fail = (msg: string): never => {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
};
/** The value of `--name V` or `--name=V`, or undefined. */
function valueOf(name: string): string | undefined {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return argv[i]!.includes('=') ? argv[i]!.slice(name.length + 1) : (argv[i + 1] ?? '');
}
const BENCH_MODES = ['remus', 'kemari', 'colo'] as const;
type BenchMode = (typeof BENCH_MODES)[number];
function modesArg(): BenchMode[] {
  const v = valueOf('--modes');
  if (v === undefined) return ['remus'];
  const list = v.split(',').filter(Boolean);
  const bad = list.filter((m) => !(BENCH_MODES as readonly string[]).includes(m));
  if (list.length === 0 || bad.length) fail(`--modes ${JSON.stringify(v)} is not valid: expected a comma-separated list of ${BENCH_MODES.join(', ')} (llm is not implemented yet)`);
  return [...new Set(list)] as BenchMode[];
}
const modes = modesArg();
/** How checkpoints travel (`ha_transfer`, docs/transfer.md). */
const BENCH_TRANSFERS = ['full', 'fgbi', 'compress', 'fgbi,compress'] as const;
type BenchTransfer = (typeof BENCH_TRANSFERS)[number];
function transferArg(): BenchTransfer {
  const v = valueOf('--transfer') ?? 'full';
  if (!(BENCH_TRANSFERS as readonly string[]).includes(v)) fail(`--transfer ${JSON.stringify(v)} is not valid: expected one of ${BENCH_TRANSFERS.join(', ')}`);
  return v as BenchTransfer;
}
const transfer = transferArg();
const encryption = argv.includes('--encryption');
const scale = argv.some((a) => a === '--scale' || a.startsWith('--scale='));
/** The scaling series, each named by what it varies. */
const SCALE_SERIES = ['memory', 'dirty', 'domains'] as const;
type ScaleSeries = (typeof SCALE_SERIES)[number];
/**
 * `--scale` runs every series; `--scale memory|dirty|domains` (or a comma-separated list) only
 * those. The word after `--scale` is taken as a series only when it does not start with `--`.
 */
function scaleSeriesArg(): ScaleSeries[] {
  const i = argv.findIndex((a) => a === '--scale' || a.startsWith('--scale='));
  if (i < 0) return [...SCALE_SERIES];
  const v = argv[i]!.includes('=') ? argv[i]!.slice('--scale='.length) : argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--') ? argv[i + 1]! : '';
  if (v === '') return [...SCALE_SERIES];
  const list = v.split(',').filter(Boolean);
  const bad = list.filter((x) => !(SCALE_SERIES as readonly string[]).includes(x));
  if (list.length === 0 || bad.length) fail(`--scale ${JSON.stringify(v)} is not valid: expected a comma-separated list of ${SCALE_SERIES.join(', ')} (or nothing: all)`);
  return SCALE_SERIES.filter((x) => list.includes(x));
}
const scaleSeries = scaleSeriesArg();
function repeatArg(): number {
  const v = valueOf('--repeat');
  if (v === undefined) return 2;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 20) fail(`--repeat ${JSON.stringify(v)} is not valid: expected an integer from 1 to 20`);
  return n;
}
const repeat = repeatArg();
const log = (l: string) => {
  if (!json) process.stderr.write(`  ${l}\n`);
};

/** The figures of a run: what it reports as a result when protection held. */
interface Figures {
  addedLatencyMsP50: number;
  addedLatencyMsP99: number;
  throughputRatio: number;
  /** The guest's own work (requests it consumed per second), protected ÷ unprotected. */
  guestProgressRatio: number;
  /** Its background writer's page writes per second, protected ÷ unprotected (time lost to pauses). */
  guestDirtyRatio: number;
  /** Committed checkpoints per second of the measured window (every domain's, averaged). */
  checkpointsPerSec: number;
  pauseMsP50: number;
  pauseMsP99: number;
  bytesPerCheckpoint: number;
  pagesPerCheckpoint: number;
  /** Each host's CPU (the daemon: the process without its guests' vCPU threads) per committed checkpoint, ms. */
  cpuMsPerCheckpoint: { primary: number; backup: number } | null;
  failoverMs: number | null;
}

/** Figures that a run whose protection did not hold withholds (null). */
type Withheld<T> = { [K in keyof T]: T[K] | null };

interface RunSummary extends Withheld<Figures> {
  run: string;
  mode: BenchMode;
  transfer: BenchTransfer;
  intervalMs: number;
  ratePerSec: number | null;
  memoryMiB: number;
  dirtyMiBPerSec: number;
  clients: number;
  domains: number;
  protectionHeld: boolean;
  protectionFailures?: string[];
  /** A run whose protection did not hold: what it measured, which is not a result. */
  measuredNotAResult?: Figures;
  unprotected: ScenarioResult['unprotected'];
  protected: ScenarioResult['protected'];
  /** The hosts' CPU, ms per second, in each window (daemon and vCPU threads apart). */
  hostCpu: ScenarioResult['cpu'];
  /** Where a pause's time goes: its steps (p50/p99, ms) and the daemons' garbage collection. */
  pauseParts: { suspendMsP50: number; suspendMsP99: number; captureMsP50: number; captureMsP99: number; pauseMsMax: number; ackMsP50: number };
  gc: ScenarioResult['gc'];
  /** Each host's main-thread stalls over the whole run (count, longest, ms): a stall is a silence on every link of that host. */
  loopStalls: { primary: StallSummary | null; backup: StallSummary | null };
  /** With several domains: each one's committed checkpoints per second. */
  checkpointsPerSecByDomain?: number[];
  lostAckedWrites: number;
  /** The first few, when any: the key, what was acknowledged and what was read back. */
  lostDetails?: string[];
  /** Writes the guest applied and no client saw acknowledged (a request that went unanswered). */
  appliedNotAcked: number;
  exactlyOnce: boolean;
  checkpointsTaken: number;
  outputsCompared: number | null;
  divergences: number | null;
  /** The machine's 1-minute load average when the run started (other work on it). */
  loadAvg1m: number;
}

const FIGURE_KEYS: (keyof Figures)[] = ['addedLatencyMsP50', 'addedLatencyMsP99', 'throughputRatio', 'guestProgressRatio', 'guestDirtyRatio', 'checkpointsPerSec', 'pauseMsP50', 'pauseMsP99', 'bytesPerCheckpoint', 'pagesPerCheckpoint', 'cpuMsPerCheckpoint', 'failoverMs'];

interface StallSummary {
  stalls: number;
  stallMs: number;
  maxMs: number;
  /** The longest few, with the GC inside each and the main thread's time on a core and waiting for one. */
  longest: { ms: number; gcMs: number; runMs: number | null; waitMs: number | null }[];
}

function stallSummary(l: ScenarioResult['loop']['primary']): StallSummary | null {
  if (!l) return null;
  const longest = [...l.recent].sort((a, b) => b.ms - a.ms).slice(0, 3).map(({ ms, gcMs, runMs, waitMs }) => ({ ms, gcMs, runMs, waitMs }));
  return { stalls: l.stalls, stallMs: l.stallMs, maxMs: l.maxMs, longest };
}

async function run(name: string, o: Partial<ScenarioOptions> & { intervalMs: number; mode: BenchMode }): Promise<RunSummary> {
  const opts: ScenarioOptions = {
    memoryMiB: 256,
    dirtyMiBPerSec: 20,
    heartbeatMs: 50,
    failoverTimeoutMs: 150,
    clients: 1024,
    connections: 16,
    baselineMs: quick ? 1500 : 4000,
    protectedMs: quick ? 2000 : 6000,
    afterMs: 1000,
    progress: (l) => log(`[${name}] ${l}`),
    transfer,
    ...o,
  };
  const loadAvg1m = round(os.loadavg()[0]!, 2);
  const r = await runScenario(opts);
  const doms = r.domains;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ratio = (get: (d: ScenarioResult['domains'][number], w: 'unprotected' | 'protected') => number) => round(mean(doms.map((d) => get(d, 'protected') / get(d, 'unprotected'))));
  const committed = doms.reduce((n, d) => n + d.checkpointsInWindow, 0);
  const cpuPer = (h: 'primary' | 'backup') => (r.cpu && committed > 0 ? round((r.cpu[h].protected.daemonMsPerSec * r.protectedSecs) / committed, 3) : NaN);
  const p = r.primaryStatus;
  const figures: Figures = {
    addedLatencyMsP50: round(mean(doms.map((d) => d.protected.latencyMsP50 - d.unprotected.latencyMsP50))),
    addedLatencyMsP99: round(mean(doms.map((d) => d.protected.latencyMsP99 - d.unprotected.latencyMsP99))),
    throughputRatio: ratio((d, w) => d[w].requestsPerSec),
    guestProgressRatio: ratio((d, w) => d.guest[w].inputsPerSec),
    guestDirtyRatio: ratio((d, w) => d.guest[w].dirtiedPagesPerSec),
    checkpointsPerSec: round(mean(doms.map((d) => d.checkpointsPerSec)), 2),
    pauseMsP50: Number(p.pauseMsP50),
    pauseMsP99: Number(p.pauseMsP99),
    bytesPerCheckpoint: Number(p.bytesPerCheckpointP50),
    pagesPerCheckpoint: Number(p.pagesPerCheckpointP50),
    cpuMsPerCheckpoint: r.cpu ? { primary: cpuPer('primary'), backup: cpuPer('backup') } : null,
    failoverMs: Number.isFinite(r.failoverMs) ? r.failoverMs : null,
  };
  const held = r.protection.held;
  const s: RunSummary = {
    run: name,
    mode: o.mode,
    transfer,
    intervalMs: opts.intervalMs,
    ratePerSec: opts.ratePerSec ?? null,
    memoryMiB: opts.memoryMiB,
    dirtyMiBPerSec: opts.dirtyMiBPerSec,
    clients: opts.clients,
    domains: doms.length,
    protectionHeld: held,
    ...(held ? figures : { ...(Object.fromEntries(FIGURE_KEYS.map((k) => [k, null])) as Withheld<Figures>), protectionFailures: r.protection.failures, measuredNotAResult: figures }),
    unprotected: r.unprotected,
    protected: r.protected,
    hostCpu: r.cpu,
    pauseParts: { suspendMsP50: Number(p.suspendMsP50), suspendMsP99: Number(p.suspendMsP99), captureMsP50: Number(p.captureMsP50), captureMsP99: Number(p.captureMsP99), pauseMsMax: Number(p.pauseMsMax), ackMsP50: Number(p.ackMsP50) },
    gc: r.gc,
    loopStalls: { primary: stallSummary(r.loop.primary), backup: stallSummary(r.loop.backup) },
    ...(doms.length > 1 ? { checkpointsPerSecByDomain: doms.map((d) => d.checkpointsPerSec) } : {}),
    lostAckedWrites: doms.reduce((n, d) => n + d.lostAckedWrites, 0),
    ...(doms.some((d) => d.lostAckedWrites) ? { lostDetails: doms.flatMap((d) => d.lostDetails).slice(0, 10) } : {}),
    appliedNotAcked: doms.reduce((n, d) => n + d.writesAppliedByGuest - d.ackedWrites, 0),
    exactlyOnce: doms.every((d) => d.writesAppliedByGuest === d.ackedWrites),
    checkpointsTaken: Number(p.checkpointsTaken),
    outputsCompared: p.outputsCompared === undefined ? null : Number(p.outputsCompared),
    divergences: p.divergences === undefined ? null : Number(p.divergences),
    loadAvg1m,
  };
  if (!json) process.stdout.write(JSON.stringify(s) + '\n');
  return s;
}

const runs: RunSummary[] = [];
const machine = () => ({ cpus: os.cpus().length, memGiB: round(os.totalmem() / 2 ** 30, 1), loadAvg: os.loadavg().map((x) => round(x, 2)), node: process.version });
const startedAt = { at: new Date().toISOString(), machine: machine() };
/** Exit status: 1 when a run's protection did not hold or an acknowledged write was lost. */
const exitCode = () => (runs.every((r) => r.protectionHeld && r.lostAckedWrites === 0 && r.exactlyOnce) ? 0 : 1);
const resultsDir = 'bench-results';

/** A table of runs, padded. */
function table(rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((row) => row.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const w = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ')).join('\n') + '\n';
}
const cpuCell = (r: RunSummary) => (r.cpuMsPerCheckpoint ? `${r.cpuMsPerCheckpoint.primary} / ${r.cpuMsPerCheckpoint.backup}` : null);
const heldCell = (r: RunSummary) => (r.protectionHeld ? 'yes' : 'NO');

/** The cost of the link's TLS: the same runs with and without it, alternating. */
async function encryptionCost(): Promise<Record<string, unknown>> {
  const kinds = [
    { name: 'remus-10ms-light', o: { mode: 'remus' as const, intervalMs: 10, noKill: true, clients: 16, connections: 4 } },
    { name: 'remus-25ms-saturated', o: { mode: 'remus' as const, intervalMs: 25, noKill: true, clients: 2048, connections: 16 } },
  ];
  const out: Record<string, unknown> = { repeat };
  for (const k of kinds) {
    const tlsRuns: RunSummary[] = [];
    const plainRuns: RunSummary[] = [];
    for (let i = 0; i < repeat; i++) {
      tlsRuns.push(await run(`${k.name}-tls-${i + 1}`, k.o));
      plainRuns.push(await run(`${k.name}-plaintext-${i + 1}`, { ...k.o, env: () => ({ XLHA_PLAINTEXT_LOOPBACK: '1' }) }));
    }
    runs.push(...tlsRuns, ...plainRuns);
    const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
    const f = (rs: RunSummary[], key: 'checkpointsPerSec' | 'pauseMsP99' | 'throughputRatio') => rs.map((r) => (r[key] as number | null) ?? NaN);
    out[k.name] = {
      tls: { checkpointsPerSec: f(tlsRuns, 'checkpointsPerSec'), pauseMsP99: f(tlsRuns, 'pauseMsP99'), throughputRatio: f(tlsRuns, 'throughputRatio') },
      plaintext: { checkpointsPerSec: f(plainRuns, 'checkpointsPerSec'), pauseMsP99: f(plainRuns, 'pauseMsP99'), throughputRatio: f(plainRuns, 'throughputRatio') },
      checkpointsPerSecRatio: round(med(f(tlsRuns, 'checkpointsPerSec')) / med(f(plainRuns, 'checkpointsPerSec'))),
      pauseMsP99Ratio: round(med(f(tlsRuns, 'pauseMsP99')) / med(f(plainRuns, 'pauseMsP99'))),
      throughputRatioRatio: round(med(f(tlsRuns, 'throughputRatio')) / med(f(plainRuns, 'throughputRatio'))),
      lostAckedWrites: [...tlsRuns, ...plainRuns].reduce((n, r) => n + r.lostAckedWrites, 0),
      protectionHeld: [...tlsRuns, ...plainRuns].every((r) => r.protectionHeld),
    };
  }
  return out;
}

/** The demo's load (src/demo/main.ts): 64 closed-loop clients over 8 connections. */
const DEMO_LOAD = { clients: 64, connections: 8 } as const;

/** One JSON line for a mode: the keys every mode has, from its light, saturated and paced runs, then its own. */
function modeLine(mode: BenchMode, r: { light: RunSummary; sat: RunSummary; paced: RunSummary; all: RunSummary[] }, own: Record<string, unknown>): Record<string, unknown> {
  const { light, sat, paced } = r;
  const failed = r.all.filter((x) => !x.protectionHeld);
  return {
    mode,
    transfer,
    protectionHeld: failed.length === 0,
    ...(failed.length ? { protectionFailures: failed.flatMap((x) => (x.protectionFailures ?? []).map((f) => `${x.run}: ${f}`)) } : {}),
    addedLatencyMsP50: light.addedLatencyMsP50,
    addedLatencyMsP99: light.addedLatencyMsP99,
    throughputRatio: sat.throughputRatio,
    guestProgressRatio: sat.guestProgressRatio,
    guestDirtyRatio: sat.guestDirtyRatio,
    pauseMsP50: sat.pauseMsP50,
    pauseMsP99: sat.pauseMsP99,
    bytesPerCheckpoint: sat.bytesPerCheckpoint,
    checkpointsPerSec: sat.checkpointsPerSec,
    cpuMsPerCheckpoint: sat.cpuMsPerCheckpoint,
    failoverMs: light.failoverMs,
    ...own,
    pauseMsP99Saturated: sat.pauseMsP99,
    bytesPerCheckpointSaturated: sat.bytesPerCheckpoint,
    checkpointsPerSecSaturated: sat.checkpointsPerSec,
    pauseMsP50Light: light.pauseMsP50,
    pauseMsP99Light: light.pauseMsP99,
    bytesPerCheckpointLight: light.bytesPerCheckpoint,
    checkpointsPerSecLight: light.checkpointsPerSec,
    addedLatencyMsP50At1000rps: paced.addedLatencyMsP50,
    addedLatencyMsP99At1000rps: paced.addedLatencyMsP99,
    checkpointsPerSecAt1000rps: paced.checkpointsPerSec,
    checkpointsTaken: sat.checkpointsTaken,
    // colo compares the two copies' outputs; remus and kemari compare none
    outputsCompared: mode === 'colo' ? sat.outputsCompared : null,
    divergences: mode === 'colo' ? sat.divergences : null,
    lostAckedWrites: r.all.reduce((n, x) => n + x.lostAckedWrites, 0),
    exactlyOnce: r.all.every((x) => x.exactlyOnce),
    workload: `kv, ${light.memoryMiB} MiB guest dirtying ${light.dirtyMiBPerSec} MiB/s; 16 clients (light), 2048 (saturated: the headline pause, bytes, checkpoints/s, CPU, progress), 16 paced at 1000 req/s${mode === 'remus' ? `, ${DEMO_LOAD.clients} at 10 ms (the demo's load)` : ''}; clients at nice 0, hosts started as the shipped xl-ha`,
  };
}

/** The modes' runs: the default bench. */
async function modesBench(): Promise<void> {
  const lines: Record<string, unknown>[] = [];
  for (const mode of modes) {
    const tag = mode === 'remus' ? `${mode}-25ms` : mode;
    const light = await run(`${tag}-light`, { mode, intervalMs: 25, clients: 16, connections: 4 });
    const sat = await run(`${tag}-saturated`, { mode, intervalMs: 25, noKill: true, clients: 2048, connections: 16 });
    const r10 = mode === 'remus' ? await run('remus-10ms-demo-load', { mode, intervalMs: 10, noKill: true, ...DEMO_LOAD }) : null;
    const paced = await run(`${tag}-1000rps`, { mode, intervalMs: 25, noKill: true, clients: 16, connections: 4, ratePerSec: 1000 });
    const all = [light, sat, ...(r10 ? [r10] : []), paced];
    runs.push(...all);
    const own = r10
      ? { checkpointsPerSecAt10ms: r10.checkpointsPerSec, pauseMsP50At10ms: r10.pauseMsP50, pauseMsP99At10ms: r10.pauseMsP99, bytesPerCheckpointAt10ms: r10.bytesPerCheckpoint, cpuMsPerCheckpointAt10ms: r10.cpuMsPerCheckpoint }
      : mode === 'kemari'
        ? { minGapMs: DEFAULT_KEMARI_MIN_GAP_MS }
        : { maxIntervalMs: DEFAULT_COLO_MAX_INTERVAL_MS, inducedNondeterminism: 0 };
    lines.push(modeLine(mode, { light, sat, paced, all }, own));
  }

  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'latest.json'), JSON.stringify({ ...startedAt, endedAt: new Date().toISOString(), machineAtEnd: machine(), quick, runs, modes: lines }, null, 2) + '\n');
  fs.writeFileSync(path.join(resultsDir, 'latest.svg'), chartSvg(runs.filter((r) => r.protectionHeld) as Parameters<typeof chartSvg>[0], `xl-ha ${modes.join(', ')} on the sim backend: client latency and guest pause`));

  if (json) {
    for (const l of lines) process.stdout.write(JSON.stringify(l) + '\n');
    return;
  }
  process.stdout.write(
    '\n' +
      table([
        ['run', 'held', 'ckpt/s', 'pause p50', 'pause p99', 'susp/capt p99', 'bytes/ckpt', 'cpu ms/ckpt prim/back', 'gc ms/s prim/back', 'lat p50 unprot→prot', 'lat p99 unprot→prot', 'thr ratio', 'guest ratio', 'failover ms', 'lost', 'load'],
        ...runs.map((r) => [r.run, heldCell(r), r.checkpointsPerSec, r.pauseMsP50, r.pauseMsP99, `${r.pauseParts.suspendMsP99} / ${r.pauseParts.captureMsP99}`, r.bytesPerCheckpoint, cpuCell(r), r.gc ? `${r.gc.primary.protected.gcMsPerSec} / ${r.gc.backup.protected.gcMsPerSec}` : null, `${r.unprotected.latencyMsP50} → ${r.protected.latencyMsP50}`, `${r.unprotected.latencyMsP99} → ${r.protected.latencyMsP99}`, r.throughputRatio, r.guestProgressRatio, r.failoverMs, r.lostAckedWrites, r.loadAvg1m]),
      ]),
  );
  const find = (name: string) => runs.find((r) => r.run === name);
  const r10 = find('remus-10ms-demo-load');
  const light = find('remus-25ms-light');
  const sat = find('remus-25ms-saturated');
  const kemari = find('kemari-1000rps');
  const colo = find('colo-light');
  const out = [''];
  if (r10 && light && sat) {
    out.push(
      `remus targets: pause p99 ≤ 2 ms with ≥ 100 ckpt/s at 10 ms under the demo's load (${DEMO_LOAD.clients} clients); failover < 300 ms with 50 ms heartbeats; throughput ratio ≥ 0.8 at 25 ms, saturated`,
      `reached: pause p99 ${r10.pauseMsP99 ?? '-'} ms at ${r10.checkpointsPerSec ?? '-'} ckpt/s (saturated at 25 ms: ${sat.pauseMsP99 ?? '-'} ms); failover ${light.failoverMs ?? '-'} ms; throughput ratio ${sat.throughputRatio ?? '-'} (guest's own progress ${sat.guestProgressRatio ?? '-'}; ${sat.checkpointsPerSec ?? '-'} ckpt/s)`,
    );
  }
  if (kemari) out.push(`kemari target: added latency p50 < 2 ms at 1000 requests/s; reached ${kemari.addedLatencyMsP50 ?? '-'} ms (${kemari.checkpointsPerSec ?? '-'} syncs/s)`);
  if (colo && light && light.addedLatencyMsP50 !== null && light.addedLatencyMsP50 !== undefined) out.push(`colo target: added latency p50 at most 1/10 of remus's at 25 ms (${round((light.addedLatencyMsP50 as number) / 10)} ms); reached ${colo.addedLatencyMsP50 ?? '-'} ms`);
  const failed = runs.filter((r) => !r.protectionHeld);
  if (failed.length) out.push(`PROTECTION DID NOT HOLD in ${failed.map((r) => r.run).join(', ')}: their figures are not results`, ...failed.flatMap((r) => (r.protectionFailures ?? []).map((f) => `  ${r.run}: ${f}`)));
  out.push('clients share the 2 cores with both hosts at the same priority (nice 0); guest ratio: requests the guest consumed, protected ÷ unprotected', '');
  process.stdout.write(out.join('\n'));
}

/** One point of a scaling series: a run, or why it was not run. */
type ScalePoint = { x: number; skipped: string } | { x: number; run: RunSummary };

/** The memory this machine has for new work (MemAvailable), MiB. */
function availableMiB(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    /* not Linux */
  }
  return os.freemem() / 2 ** 20;
}

/**
 * What a scaling run needs: each domain's memory on each host, with room for the copies the
 * initial transfer makes on the way (a quarter more), and 1 GiB for the processes themselves.
 */
const neededMiB = (memoryMiB: number, domains: number) => 2 * domains * memoryMiB * 1.25 + 1024;

async function scaleBench(): Promise<void> {
  const windows = { baselineMs: quick ? 1000 : 2500, protectedMs: quick ? 2000 : 4000 };
  const base = { mode: 'remus' as const, intervalMs: 25, noKill: true, ...DEMO_LOAD, ...windows, memoryMiB: 256, dirtyMiBPerSec: 20 };
  const point = async (name: string, x: number, o: Partial<ScenarioOptions>): Promise<ScalePoint> => {
    const memoryMiB = o.memoryMiB ?? base.memoryMiB;
    const domains = o.domains ?? 1;
    const need = neededMiB(memoryMiB, domains);
    const have = availableMiB();
    if (have < need) {
      const why = `needs about ${Math.round(need)} MiB (${domains} × ${memoryMiB} MiB on each of 2 hosts, with the initial copy's room) and ${Math.round(have)} MiB are available`;
      log(`[${name}] skipped: ${why}`);
      return { x, skipped: why };
    }
    try {
      const r = await run(name, { ...base, ...o });
      runs.push(r);
      return { x, run: r };
    } catch (err) {
      // a point that could not run here is reported with why, not dropped
      const why = `the run failed: ${(err as Error).message.split('\n', 1)[0]}`;
      log(`[${name}] ${why}\n${(err as Error).message}`);
      return { x, skipped: why };
    }
  };
  const series: { series: string; x: string; unit: string; points: ScalePoint[] }[] = [];
  if (scaleSeries.includes('memory')) {
    const memory: ScalePoint[] = [];
    for (const m of [256, 1024, 4096]) memory.push(await point(`scale-memory-${m}MiB`, m, { memoryMiB: m }));
    series.push({ series: 'memory', x: 'memoryMiB', unit: 'MiB', points: memory });
  }
  if (scaleSeries.includes('dirty')) {
    const dirty: ScalePoint[] = [];
    for (const d of [5, 20, 50, 100, 200]) dirty.push(await point(`scale-dirty-${d}MiBps`, d, { dirtyMiBPerSec: d }));
    series.push({ series: 'dirty', x: 'dirtyMiBPerSec', unit: 'MiB/s', points: dirty });
  }
  if (scaleSeries.includes('domains')) {
    const doms: ScalePoint[] = [];
    for (const n of [1, 4, 8]) doms.push(await point(`scale-domains-${n}`, n, { domains: n }));
    series.push({ series: 'domains', x: 'domains', unit: 'domains', points: doms });
  }

  const pointJson = (x: string, p: ScalePoint) =>
    'skipped' in p
      ? { [x]: p.x, skipped: p.skipped }
      : {
          [x]: p.x,
          protectionHeld: p.run.protectionHeld,
          ...(p.run.protectionHeld ? {} : { protectionFailures: p.run.protectionFailures }),
          pauseMsP50: p.run.pauseMsP50,
          pauseMsP99: p.run.pauseMsP99,
          bytesPerCheckpoint: p.run.bytesPerCheckpoint,
          pagesPerCheckpoint: p.run.pagesPerCheckpoint,
          checkpointsPerSec: p.run.checkpointsPerSec,
          ...(p.run.checkpointsPerSecByDomain ? { checkpointsPerSecByDomain: p.run.checkpointsPerSecByDomain } : {}),
          cpuMsPerCheckpoint: p.run.cpuMsPerCheckpoint,
          guestProgressRatio: p.run.guestProgressRatio,
          throughputRatio: p.run.throughputRatio,
          lostAckedWrites: p.run.lostAckedWrites,
          loopStalls: p.run.loopStalls,
        };
  const lines = series.map((s) => {
    const line: Record<string, unknown> = { series: s.series, transfer, workload: `remus at 25 ms; per domain a kv guest (256 MiB, 20 MiB/s unless the series varies it) under the demo's load (${DEMO_LOAD.clients} closed-loop clients)`, points: s.points.map((p) => pointJson(s.x, p)) };
    if (s.series === 'domains') {
      // the target: each domain's checkpoint rate within 20% of a lone domain's
      const lone = s.points.find((p) => p.x === 1);
      const loneRate = lone && 'run' in lone && lone.run.protectionHeld ? (lone.run.checkpointsPerSec as number) : null;
      line.loneCheckpointsPerSec = loneRate;
      line.worstRatioToLone = Object.fromEntries(
        s.points.filter((p): p is { x: number; run: RunSummary } => 'run' in p && p.x > 1).map((p) => [String(p.x), loneRate && p.run.protectionHeld ? round(Math.min(...(p.run.checkpointsPerSecByDomain ?? [])) / loneRate) : null]),
      );
    }
    return line;
  });

  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'scale.json'), JSON.stringify({ ...startedAt, endedAt: new Date().toISOString(), machineAtEnd: machine(), quick, series: lines, runs }, null, 2) + '\n');
  for (const s of series) {
    const groups = s.points.map((p) => ({
      label: `${p.x} ${s.unit}`,
      sub: 'skipped' in p ? (p.skipped.startsWith('needs') ? 'not run: not enough memory' : 'not run: failed') : p.run.protectionHeld ? `${p.run.checkpointsPerSec} ckpt/s, ${round((p.run.bytesPerCheckpoint as number) / 1024, 0)} KiB/ckpt` : 'protection did not hold',
      bars: 'run' in p && p.run.protectionHeld
        ? [
            { key: 'pause p50 (ms)', value: p.run.pauseMsP50 as number },
            { key: 'pause p99 (ms)', value: p.run.pauseMsP99 as number },
            { key: 'primary CPU per ckpt (ms)', value: p.run.cpuMsPerCheckpoint?.primary ?? NaN },
            { key: 'backup CPU per ckpt (ms)', value: p.run.cpuMsPerCheckpoint?.backup ?? NaN },
          ]
        : [],
    }));
    fs.writeFileSync(path.join(resultsDir, `scale-${s.series}.svg`), barChartSvg(groups, `xl-ha remus 25 ms on the sim backend, by ${s.series}`));
  }

  if (json) {
    for (const l of lines) process.stdout.write(JSON.stringify(l) + '\n');
    return;
  }
  for (const s of series) {
    process.stdout.write(`\nby ${s.series} (${s.x})\n`);
    process.stdout.write(
      table([
        [s.x, 'held', 'ckpt/s', 'pause p50', 'pause p99', 'bytes/ckpt', 'pages/ckpt', 'cpu ms/ckpt prim/back', 'guest ratio', 'thr ratio', ...(s.series === 'domains' ? ['ckpt/s by domain'] : [])],
        ...s.points.map((p) =>
          'skipped' in p
            ? [p.x, 'not run']
            : [p.x, heldCell(p.run), p.run.checkpointsPerSec, p.run.pauseMsP50, p.run.pauseMsP99, p.run.bytesPerCheckpoint, p.run.pagesPerCheckpoint, cpuCell(p.run), p.run.guestProgressRatio, p.run.throughputRatio, ...(s.series === 'domains' ? [(p.run.checkpointsPerSecByDomain ?? [p.run.checkpointsPerSec]).join(' ')] : [])],
        ),
      ]),
    );
    for (const p of s.points) if ('skipped' in p) process.stdout.write(`  ${p.x} ${s.unit} not run: ${p.skipped}\n`);
    for (const p of s.points) if ('run' in p && !p.run.protectionHeld) process.stdout.write(`  ${p.x} ${s.unit}: protection did not hold, its figures are not results: ${(p.run.protectionFailures ?? []).join('; ')}\n`);
  }
  const d = lines.find((l) => l.series === 'domains');
  if (d) process.stdout.write(`\ndomains target: each domain's checkpoint rate within 20% of a lone domain's (${String(d.loneCheckpointsPerSec)} ckpt/s); worst ratio: ${JSON.stringify(d.worstRatioToLone)}\n`);
}

if (encryption) {
  const cost = await encryptionCost();
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(path.join(resultsDir, 'encryption.json'), JSON.stringify({ ...startedAt, runs, cost }, null, 2) + '\n');
  process.stdout.write(JSON.stringify(cost) + '\n');
} else if (scale) {
  await scaleBench();
} else {
  await modesBench();
}
process.exit(exitCode());
