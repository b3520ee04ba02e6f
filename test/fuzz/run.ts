/**
 * Coverage-guided fuzzing of the parsers that take outside input, with Jazzer.js (libFuzzer).
 *
 *   npm run fuzz -- <target|all|list> [--time SECONDS] [--timeout MS] [--max-len BYTES]
 *                   [--coverage] [--skip-known] [--verbose] [-- libFuzzer flags...]
 *
 * Each target (test/fuzz/targets/<target>.ts) runs for --time seconds (default 60), one after
 * another, starting from its seed corpus (test/fuzz/corpus/<target>/), the regression inputs
 * (test/fuzz/regressions/<target>/) and what earlier runs found (dist/fuzz/<target>/corpus/,
 * where new inputs go: the committed corpus is never written). A crash, a hang (--timeout per
 * input, default 3000 ms) or running out of memory is a finding: its input is saved as
 * dist/fuzz/<target>/crash-* (timeout-*, oom-*), printed, and the run exits 1.
 * --coverage then replays the target's whole corpus under c8 and prints the line and branch
 * coverage of the parser's source files. Output of each run: dist/fuzz/<target>/fuzz.log; a
 * summary of all: dist/fuzz/summary.json. --skip-known lets the targets pass over the known open
 * bugs (test/fuzz/regressions/<target>/*.open) so that a long run can explore past them.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chooseAddon } from './jazzer-addon.js';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test/fuzz
const root = path.resolve(here, '..', '..', '..');
const rel = (p: string) => path.relative(root, p) || '.';

/** The targets: compiled modules in dist/test/fuzz/targets (helpers start with "_"). */
export function listTargets(): string[] {
  return fs
    .readdirSync(path.join(here, 'targets'))
    .filter((f) => f.endsWith('.js') && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort();
}

/** The source files each target is about, for --coverage. */
const SOURCES: Record<string, string[]> = {
  'frame-reader': ['src/transport/reader.ts', 'src/transport/framing.ts'],
  'channel-records': ['src/transport/channel-records.ts', 'src/transport/colo-records.ts'],
  'xen-stream': ['src/transport/xenstream.ts', 'src/transport/xen-records.ts'],
  'xen-records': ['src/transport/xen-records.ts'],
  hello: ['src/transport/hello.ts', 'src/transport/channel-records.ts'],
  xlcfg: ['src/config/xlcfg.ts', 'src/config/domain.ts'],
  'peer-file': ['src/security/peers.ts'],
  control: ['src/daemon/daemon.ts', 'src/daemon/protect.ts'],
  'replica-config': ['src/backend/xen/replica-policy.ts'],
};
/** Larger inputs where the seeds are larger (a checkpoint with pages is 4 KiB a page). */
const MAX_LEN: Record<string, number> = { 'xen-stream': 32768, 'frame-reader': 32768, 'channel-records': 16384, 'xen-records': 16384 };

interface Options {
  targets: string[];
  time: number;
  timeoutMs: number;
  maxLen?: number;
  coverage: boolean;
  verbose: boolean;
  skipKnown: boolean;
  extra: string[];
}

function usage(msg?: string): never {
  if (msg) console.error(`fuzz: ${msg}`);
  console.error(`usage: npm run fuzz -- <target|all|list> [--time SECONDS] [--timeout MS] [--max-len BYTES] [--coverage] [--skip-known] [--verbose] [-- libFuzzer flags]\ntargets: ${listTargets().join(', ')}`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const dash = argv.indexOf('--');
  const extra = dash >= 0 ? argv.slice(dash + 1) : [];
  const args = dash >= 0 ? argv.slice(0, dash) : argv;
  const o: Options = { targets: [], time: 60, timeoutMs: 3000, coverage: false, verbose: false, skipKnown: false, extra };
  const num = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) usage(`${flag} needs an integer of at least ${min}, got ${v}`);
    return n;
  };
  const all = listTargets();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--time') o.time = num(a, args[++i], 1);
    else if (a === '--timeout') o.timeoutMs = num(a, args[++i], 100);
    else if (a === '--max-len') o.maxLen = num(a, args[++i], 1);
    else if (a === '--coverage') o.coverage = true;
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--skip-known') o.skipKnown = true;
    else if (a === 'all') o.targets.push(...all);
    else if (a === 'list') {
      for (const t of all) console.log(t);
      process.exit(0);
    } else if (all.includes(a)) o.targets.push(a);
    else usage(`unknown target or option ${a}`);
  }
  if (o.targets.length === 0) usage('name a target, or all');
  o.targets = [...new Set(o.targets)];
  return o;
}

export interface RunResult {
  target: string;
  seconds: number;
  executions: number;
  execPerSec: number;
  /** libFuzzer's coverage counters: edges (cov) and features (ft) reached. */
  cov: number;
  ft: number;
  corpusUnits: number;
  corpusBytes: number;
  newUnits: number;
  peakRssMb: number;
  exitCode: number | null;
  findings: string[];
  coverage?: Record<string, { lines: string; branches: string }>;
}

/** Numbers from libFuzzer's output: the last status line and the final stats. */
function stats(log: string): Pick<RunResult, 'executions' | 'execPerSec' | 'cov' | 'ft' | 'corpusUnits' | 'corpusBytes' | 'newUnits' | 'peakRssMb'> {
  const status = [...log.matchAll(/^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)\/(\d+)(b|Kb|Mb)/gm)].at(-1);
  const stat = (k: string) => Number(new RegExp(`^stat::${k}:\\s+(\\d+)`, 'm').exec(log)?.[1] ?? NaN);
  const done = /^Done (\d+) runs in (\d+) second/m.exec(log);
  const unit = { b: 1, Kb: 1024, Mb: 1048576 }[(status?.[6] ?? 'b') as 'b'];
  const executions = stat('number_of_executed_units') || Number(done?.[1] ?? status?.[1] ?? 0);
  return {
    executions,
    execPerSec: stat('average_exec_per_sec') || (done ? Math.round(Number(done[1]) / Math.max(1, Number(done[2]))) : 0),
    cov: Number(status?.[2] ?? 0),
    ft: Number(status?.[3] ?? 0),
    corpusUnits: Number(status?.[4] ?? 0),
    corpusBytes: Number(status?.[5] ?? 0) * unit,
    newUnits: stat('new_units_added') || 0,
    peakRssMb: stat('peak_rss_mb') || 0,
  };
}

/** Artifacts (crash-*, timeout-*, oom-*, leak-*) in `dir` newer than `since`. */
function artifacts(dir: string, since: number): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^(crash|timeout|oom|leak|slow-unit)-/.test(f))
    .map((f) => path.join(dir, f))
    .filter((f) => fs.statSync(f).mtimeMs >= since - 1000);
}

function preview(file: string): string {
  const b = fs.readFileSync(file);
  const text = b.toString('utf8');
  const printable = /^[\t\n\r\x20-\x7e\u00a0-\uffff]*$/.test(text) && !text.includes('\ufffd');
  return printable ? JSON.stringify(text.length > 300 ? text.slice(0, 300) + '...' : text) : `base64 ${b.toString('base64').slice(0, 400)}${b.length > 300 ? '...' : ''}`;
}

async function fuzzOne(target: string, o: Options, hook: string | null, replacement: string | null): Promise<RunResult> {
  const work = path.join(root, 'dist', 'fuzz', target);
  const corpus = path.join(work, 'corpus');
  fs.mkdirSync(corpus, { recursive: true });
  const seeds = path.join(root, 'test', 'fuzz', 'corpus', target);
  const regressions = path.join(root, 'test', 'fuzz', 'regressions', target);
  const dict = path.join(root, 'test', 'fuzz', 'corpus', `${target}.dict`);
  const mod = (await import(pathToFileURL(path.join(here, 'targets', `${target}.js`)).href)) as { sync?: boolean };
  const cli = require.resolve('@jazzer.js/core/dist/cli.js');
  const dirs = [corpus, seeds, ...(fs.existsSync(regressions) ? [regressions] : [])].filter((d) => fs.existsSync(d));
  const args = [
    ...(hook ? ['--import', pathToFileURL(hook).href] : []),
    cli,
    rel(path.join(here, 'targets', `${target}.js`)),
    ...dirs.map(rel),
    ...(mod.sync === false ? [] : ['--sync']),
    '--timeout',
    String(o.timeoutMs),
    '--includes',
    'dist/src/',
    '--',
    `-max_total_time=${o.time}`,
    `-max_len=${o.maxLen ?? MAX_LEN[target] ?? 4096}`,
    `-artifact_prefix=${rel(work)}/`,
    '-print_final_stats=1',
    '-rss_limit_mb=2048',
    ...(fs.existsSync(dict) ? [`-dict=${rel(dict)}`] : []),
    ...o.extra,
  ];
  // The output goes to a file, not a pipe: libFuzzer writes its reports straight to a stderr
  // that Node made non-blocking, and what a full pipe refuses is lost.
  const logFile = path.join(work, 'fuzz.log');
  const fd = fs.openSync(logFile, 'w');
  const started = Date.now();
  console.log(`\n== ${target}: ${o.time} s, corpus ${dirs.map(rel).join(' ')}`);
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', fd, fd], env: { ...process.env, ...(replacement ? { XLHA_JAZZER_ADDON: replacement } : {}), ...(o.skipKnown ? { XLHA_FUZZ_SKIP_KNOWN: '1' } : {}) } });
  fs.closeSync(fd);
  let shown = 0;
  let tail = '';
  const show = () => {
    const size = fs.statSync(logFile).size;
    if (size <= shown) return;
    const rfd = fs.openSync(logFile, 'r');
    const buf = Buffer.alloc(size - shown);
    fs.readSync(rfd, buf, 0, buf.length, shown);
    fs.closeSync(rfd);
    shown = size;
    tail += buf.toString('utf8');
    let nl: number;
    while ((nl = tail.indexOf('\n')) >= 0) {
      const line = tail.slice(0, nl);
      tail = tail.slice(nl + 1);
      const status = line.startsWith('#');
      if (o.verbose || (status ? /INITED|pulse/.test(line) : /^Done|Uncaught|==\d+==|ERROR|deadly|Timeout|timeout|artifact|MS: |^0x|Base64|^\s+at |Finding|caused by|^WARN|^Error|^fuzz: /.test(line))) console.log(`  ${line}`);
    }
  };
  const ticker = setInterval(show, 1000);
  // a hang of the whole run (not of one input) is cut off well after its time
  const killer = setTimeout(() => child.kill('SIGKILL'), (o.time + 120) * 1000);
  const exitCode = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  clearTimeout(killer);
  clearInterval(ticker);
  show();
  const all = fs.readFileSync(logFile, 'utf8');
  const found = artifacts(work, started);
  const result: RunResult = { target, seconds: Math.round((Date.now() - started) / 100) / 10, exitCode, findings: found.map(rel), ...stats(all) };
  for (const f of found) console.log(`  FINDING ${rel(f)} (${fs.statSync(f).size} bytes): ${preview(f)}\n    replay: node dist/test/fuzz/replay.js ${target} ${rel(f)}`);
  if (exitCode !== 0 && found.length === 0) result.findings.push(`jazzer exited with ${exitCode} (see ${rel(logFile)})`);
  if (o.coverage) result.coverage = coverage(target, [corpus, seeds, ...(fs.existsSync(regressions) ? [regressions] : [])], o.skipKnown);
  return result;
}

/** Line and branch coverage of the target's sources when its whole corpus is replayed (c8). */
function coverage(target: string, dirs: string[], skipKnown: boolean): Record<string, { lines: string; branches: string }> | undefined {
  let c8: string;
  try {
    c8 = require.resolve('c8/bin/c8.js');
  } catch {
    console.log('  (no c8 installed: no coverage report)');
    return undefined;
  }
  const reportDir = path.join(root, 'dist', 'fuzz', target, 'coverage');
  fs.rmSync(reportDir, { recursive: true, force: true });
  const tmp = path.join(root, 'dist', 'fuzz', target, 'coverage-tmp');
  const srcs = SOURCES[target] ?? [];
  const r = spawnSync(
    process.execPath,
    [c8, '--reporter=json-summary', '--reports-dir', reportDir, '--temp-directory', tmp, ...srcs.flatMap((s) => ['--include', s, '--include', path.join('dist', s.replace(/\.ts$/, '.js'))]), process.execPath, path.join(here, 'replay.js'), '--quiet', target, ...dirs],
    { cwd: root, encoding: 'utf8', env: { ...process.env, ...(skipKnown ? { XLHA_FUZZ_SKIP_KNOWN: '1' } : {}) } },
  );
  if (r.status !== 0) console.log(`  coverage replay exited ${r.status}: ${(r.stderr || r.stdout).slice(-500)}`);
  const file = path.join(reportDir, 'coverage-summary.json');
  if (!fs.existsSync(file)) return undefined;
  const sum = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, { lines: { pct: number; covered: number; total: number }; branches: { pct: number; covered: number; total: number } }>;
  const out: Record<string, { lines: string; branches: string }> = {};
  for (const [f, s] of Object.entries(sum)) {
    if (f === 'total') continue;
    out[path.relative(root, f)] = { lines: `${s.lines.pct}% (${s.lines.covered}/${s.lines.total})`, branches: `${s.branches.pct}% (${s.branches.covered}/${s.branches.total})` };
  }
  for (const [f, s] of Object.entries(out)) console.log(`  coverage ${f}: lines ${s.lines}, branches ${s.branches}`);
  return out;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  let replacement: string | null = null;
  try {
    const choice = chooseAddon(root);
    replacement = choice.replacement;
    for (const n of choice.notes) console.log(`fuzz: ${n}`);
  } catch (err) {
    console.error(`fuzz: Jazzer.js cannot run here: ${(err as Error).message}`);
    process.exit(3);
  }
  const hook = replacement ? path.join(here, 'jazzer-hook.js') : null;
  const results: RunResult[] = [];
  for (const t of o.targets) results.push(await fuzzOne(t, o, hook, replacement));
  fs.writeFileSync(path.join(root, 'dist', 'fuzz', 'summary.json'), JSON.stringify({ at: new Date().toISOString(), timePerTarget: o.time, results }, null, 2) + '\n');
  console.log('\n== summary');
  console.log('target'.padEnd(16) + 'seconds'.padStart(8) + 'execs'.padStart(11) + 'exec/s'.padStart(8) + 'cov'.padStart(7) + 'ft'.padStart(7) + 'corpus'.padStart(8) + '  findings');
  for (const r of results) {
    console.log(r.target.padEnd(16) + String(r.seconds).padStart(8) + String(r.executions).padStart(11) + String(r.execPerSec).padStart(8) + String(r.cov).padStart(7) + String(r.ft).padStart(7) + String(r.corpusUnits).padStart(8) + '  ' + (r.findings.length ? r.findings.join(', ') : 'none'));
  }
  const bad = results.filter((r) => r.findings.length > 0);
  if (bad.length) {
    console.log(`\n${bad.length} target(s) with findings: reproduce with node dist/test/fuzz/replay.js <target> <file>; add a minimal input to test/fuzz/regressions/<target>/`);
    process.exit(1);
  }
}

await main();
