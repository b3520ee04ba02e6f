/**
 * `npm run bench`: each mode against the same kv workload unprotected, measured in one run
 * (`--modes remus,kemari`, default remus).
 * Not a test: it reports figures, as JSON lines (one per run) and a table; `--json` prints
 * one JSON object per mode. Results are also written to bench-results/latest.json and a
 * chart to bench-results/latest.svg.
 *
 * Runs:
 *  - remus-25ms: 256 MiB guest dirtying 20 MiB/s, many concurrent clients (throughput and
 *    latency against the unprotected baseline measured just before), then SIGKILL (failover).
 *  - remus-10ms: the same guest at 10 ms epochs (sustained checkpoints per second, pause).
 *  - remus-25ms-1000rps: 16 clients paced at 1000 requests/s in all (open loop).
 *  - kemari-light, kemari-saturated, kemari-1000rps: the same loads under kemari (a sync when
 *    the guest emits output, minimum gap 2 ms); the light run ends with the SIGKILL.
 *  - colo-light, colo-saturated, colo-1000rps: the same loads under colo, with no induced
 *    divergence (the kv guest is deterministic); the light run ends with the SIGKILL.
 *  - `--encryption`: what the link's TLS costs. remus at 10 ms (light) and at 25 ms (saturated),
 *    each run with the shipped TLS link and with XLHA_PLAINTEXT_LOOPBACK=1 (no TLS), alternating,
 *    `--repeat N` times (default 2); the ratios of the medians.
 */
import fs from 'node:fs';
import path from 'node:path';
import { runScenario, type ScenarioOptions, type ScenarioResult } from '../demo/scenario.js';
import { round } from '../util/samples.js';
import { chartSvg } from './chart.js';
import { DEFAULT_COLO_MAX_INTERVAL_MS, DEFAULT_KEMARI_MIN_GAP_MS } from '../config/domain.js';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const BENCH_MODES = ['remus', 'kemari', 'colo'] as const;
type BenchMode = (typeof BENCH_MODES)[number];
function modesArg(): BenchMode[] {
  const argv = process.argv.slice(2);
  const i = argv.findIndex((a) => a === '--modes' || a.startsWith('--modes='));
  if (i < 0) return ['remus'];
  const v = argv[i]!.includes('=') ? argv[i]!.slice('--modes='.length) : (argv[i + 1] ?? '');
  const list = v.split(',').filter(Boolean);
  const bad = list.filter((m) => !(BENCH_MODES as readonly string[]).includes(m));
  if (list.length === 0 || bad.length) {
    process.stderr.write(`bench: --modes ${JSON.stringify(v)} is not valid: expected a comma-separated list of ${BENCH_MODES.join(', ')} (llm is not implemented yet)\n`);
    process.exit(2);
  }
  return [...new Set(list)] as BenchMode[];
}
const modes = modesArg();
const encryption = process.argv.includes('--encryption');
function repeatArg(): number {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--repeat');
  if (i < 0) return 2;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 20) {
    process.stderr.write(`bench: --repeat ${JSON.stringify(argv[i + 1])} is not valid: expected an integer from 1 to 20\n`);
    process.exit(2);
  }
  return n;
}
const repeat = repeatArg();
const log = (l: string) => {
  if (!json) process.stderr.write(`  ${l}\n`);
};

interface RunSummary {
  run: string;
  mode: BenchMode;
  intervalMs: number;
  ratePerSec: number | null;
  memoryMiB: number;
  dirtyMiBPerSec: number;
  clients: number;
  unprotected: ScenarioResult['unprotected'];
  protected: ScenarioResult['protected'];
  addedLatencyMsP50: number;
  addedLatencyMsP99: number;
  throughputRatio: number;
  checkpointsPerSec: number;
  pauseMsP50: number;
  pauseMsP99: number;
  bytesPerCheckpoint: number;
  pagesPerCheckpoint: number;
  failoverMs: number | null;
  lostAckedWrites: number;
  exactlyOnce: boolean;
  checkpointsTaken: number;
  outputsCompared: number | null;
  divergences: number | null;
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
    clientNice: 10,
    ...o,
  };
  const r = await runScenario(opts);
  const p = r.primaryStatus;
  const s: RunSummary = {
    run: name,
    mode: o.mode,
    intervalMs: opts.intervalMs,
    ratePerSec: opts.ratePerSec ?? null,
    memoryMiB: opts.memoryMiB,
    dirtyMiBPerSec: opts.dirtyMiBPerSec,
    clients: opts.clients,
    unprotected: r.unprotected,
    protected: r.protected,
    addedLatencyMsP50: round(r.protected.latencyMsP50 - r.unprotected.latencyMsP50),
    addedLatencyMsP99: round(r.protected.latencyMsP99 - r.unprotected.latencyMsP99),
    throughputRatio: round(r.protected.requestsPerSec / r.unprotected.requestsPerSec),
    checkpointsPerSec: Number(p.checkpointsPerSec),
    pauseMsP50: Number(p.pauseMsP50),
    pauseMsP99: Number(p.pauseMsP99),
    bytesPerCheckpoint: Number(p.bytesPerCheckpointP50),
    pagesPerCheckpoint: Number(p.pagesPerCheckpointP50),
    failoverMs: Number.isFinite(r.failoverMs) ? r.failoverMs : null,
    lostAckedWrites: r.lostAckedWrites,
    exactlyOnce: r.writesAppliedByGuest === r.ackedWrites,
    checkpointsTaken: Number(p.checkpointsTaken),
    outputsCompared: p.outputsCompared === undefined ? null : Number(p.outputsCompared),
    divergences: p.divergences === undefined ? null : Number(p.divergences),
  };
  if (!json) process.stdout.write(JSON.stringify(s) + '\n');
  return s;
}

// Latency is measured at light load (16 clients): there it is the cost of output commit.
// Throughput is measured at saturation (2048 clients): with fewer closed-loop clients the
// ratio only restates the added latency, not the capacity protection costs.
const runs: RunSummary[] = [];
const lines: Record<string, unknown>[] = [];

/** One JSON line for a mode: the keys every mode has, from its light, saturated and paced runs, then its own. */
function modeLine(mode: BenchMode, r: { light: RunSummary; sat: RunSummary; paced: RunSummary; all: RunSummary[] }, own: Record<string, unknown>): Record<string, unknown> {
  const { light, sat, paced } = r;
  return {
    mode,
    addedLatencyMsP50: light.addedLatencyMsP50,
    addedLatencyMsP99: light.addedLatencyMsP99,
    throughputRatio: sat.throughputRatio,
    pauseMsP50: light.pauseMsP50,
    pauseMsP99: light.pauseMsP99,
    bytesPerCheckpoint: light.bytesPerCheckpoint,
    checkpointsPerSec: light.checkpointsPerSec,
    failoverMs: light.failoverMs,
    ...own,
    pauseMsP99Saturated: sat.pauseMsP99,
    bytesPerCheckpointSaturated: sat.bytesPerCheckpoint,
    checkpointsPerSecSaturated: sat.checkpointsPerSec,
    addedLatencyMsP50At1000rps: paced.addedLatencyMsP50,
    addedLatencyMsP99At1000rps: paced.addedLatencyMsP99,
    checkpointsPerSecAt1000rps: paced.checkpointsPerSec,
    checkpointsTaken: light.checkpointsTaken,
    // colo compares the two copies' outputs; remus and kemari compare none
    outputsCompared: mode === 'colo' ? light.outputsCompared : null,
    divergences: mode === 'colo' ? light.divergences : null,
    lostAckedWrites: r.all.reduce((n, x) => n + x.lostAckedWrites, 0),
    exactlyOnce: r.all.every((x) => x.exactlyOnce),
    workload: `kv, ${light.memoryMiB} MiB guest dirtying ${light.dirtyMiBPerSec} MiB/s; 16 clients (light), 2048 (saturated), 16 paced at 1000 req/s; clients at nice 10`,
  };
}

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
    const f = (rs: RunSummary[], key: 'checkpointsPerSec' | 'pauseMsP99' | 'throughputRatio') => rs.map((r) => r[key]);
    out[k.name] = {
      tls: { checkpointsPerSec: f(tlsRuns, 'checkpointsPerSec'), pauseMsP99: f(tlsRuns, 'pauseMsP99'), throughputRatio: f(tlsRuns, 'throughputRatio') },
      plaintext: { checkpointsPerSec: f(plainRuns, 'checkpointsPerSec'), pauseMsP99: f(plainRuns, 'pauseMsP99'), throughputRatio: f(plainRuns, 'throughputRatio') },
      checkpointsPerSecRatio: round(med(f(tlsRuns, 'checkpointsPerSec')) / med(f(plainRuns, 'checkpointsPerSec'))),
      pauseMsP99Ratio: round(med(f(tlsRuns, 'pauseMsP99')) / med(f(plainRuns, 'pauseMsP99'))),
      throughputRatioRatio: round(med(f(tlsRuns, 'throughputRatio')) / med(f(plainRuns, 'throughputRatio'))),
      lostAckedWrites: [...tlsRuns, ...plainRuns].reduce((n, r) => n + r.lostAckedWrites, 0),
    };
  }
  return out;
}

if (encryption) {
  const cost = await encryptionCost();
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync(path.join('bench-results', 'encryption.json'), JSON.stringify({ at: new Date().toISOString(), runs, cost }, null, 2) + '\n');
  process.stdout.write(JSON.stringify(cost) + '\n');
  process.exit(0);
}

for (const mode of modes) {
  const light = await run(`${mode}${mode === 'remus' ? '-25ms' : ''}-light`, { mode, intervalMs: 25, clients: 16, connections: 4 });
  const sat = await run(`${mode}${mode === 'remus' ? '-25ms' : ''}-saturated`, { mode, intervalMs: 25, noKill: true, clients: 2048, connections: 16 });
  const r10 = mode === 'remus' ? await run('remus-10ms-light', { mode, intervalMs: 10, noKill: true, clients: 16, connections: 4 }) : null;
  const paced = await run(`${mode}${mode === 'remus' ? '-25ms' : ''}-1000rps`, { mode, intervalMs: 25, noKill: true, clients: 16, connections: 4, ratePerSec: 1000 });
  const all = [light, sat, ...(r10 ? [r10] : []), paced];
  runs.push(...all);
  const own = r10
    ? { checkpointsPerSecAt10ms: r10.checkpointsPerSec, pauseMsP50At10ms: r10.pauseMsP50, pauseMsP99At10ms: r10.pauseMsP99, bytesPerCheckpointAt10ms: r10.bytesPerCheckpoint }
    : mode === 'kemari'
      ? { minGapMs: DEFAULT_KEMARI_MIN_GAP_MS }
      : { maxIntervalMs: DEFAULT_COLO_MAX_INTERVAL_MS, inducedNondeterminism: 0 };
  lines.push(modeLine(mode, { light, sat, paced, all }, own));
}

fs.mkdirSync('bench-results', { recursive: true });
fs.writeFileSync(path.join('bench-results', 'latest.json'), JSON.stringify({ at: new Date().toISOString(), runs, modes: lines }, null, 2) + '\n');
fs.writeFileSync(path.join('bench-results', 'latest.svg'), chartSvg(runs, `xl-ha ${modes.join(', ')} on the sim backend: client latency and guest pause`));

if (json) {
  for (const l of lines) process.stdout.write(JSON.stringify(l) + '\n');
} else {
  const rows = [
    ['run', 'ckpt/s', 'ckpts', 'pause p50', 'pause p99', 'bytes/ckpt', 'lat p50 unprot→prot', 'lat p99 unprot→prot', 'thr ratio', 'failover ms', 'lost'],
    ...runs.map((r) => [
      r.run,
      r.checkpointsPerSec,
      r.checkpointsTaken,
      r.pauseMsP50,
      r.pauseMsP99,
      r.bytesPerCheckpoint,
      `${r.unprotected.latencyMsP50} → ${r.protected.latencyMsP50}`,
      `${r.unprotected.latencyMsP99} → ${r.protected.latencyMsP99}`,
      r.throughputRatio,
      r.failoverMs ?? '-',
      r.lostAckedWrites,
    ]),
  ].map((row) => row.map(String));
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  process.stdout.write('\n' + rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ')).join('\n') + '\n');
  const find = (name: string) => runs.find((r) => r.run === name);
  const r10 = find('remus-10ms-light');
  const light = find('remus-25ms-light');
  const sat = find('remus-25ms-saturated');
  const kemari = find('kemari-1000rps');
  const colo = find('colo-light');
  const out = [''];
  if (r10 && light && sat) {
    out.push(
      'remus targets: 100 ckpt/s at 10 ms with 256 MiB dirtying 20 MiB/s; pause p99 < 2 ms there; failover < 300 ms with 50 ms heartbeats; throughput ratio ≥ 0.8 at 40 ckpt/s',
      `reached: ${r10.checkpointsPerSec} ckpt/s; pause p99 ${r10.pauseMsP99} ms; failover ${light.failoverMs} ms; throughput ratio ${sat.throughputRatio} (saturated, ${sat.checkpointsPerSec} ckpt/s)`,
    );
  }
  if (kemari) out.push(`kemari target: added latency p50 < 2 ms at 1000 requests/s; reached ${kemari.addedLatencyMsP50} ms (${kemari.checkpointsPerSec} syncs/s)`);
  if (colo && light) out.push(`colo target: added latency p50 at most 1/10 of remus's at 25 ms (${round(light.addedLatencyMsP50 / 10)} ms); reached ${colo.addedLatencyMsP50} ms`);
  out.push('clients share the 2 cores with both hosts, at nice 10 (they stand in for remote machines)', '');
  process.stdout.write(out.join('\n'));
}
