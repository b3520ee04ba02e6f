/**
 * `npm run test:xen`: xl-ha on real Xen 4.17, booted under QEMU's software emulator (TCG).
 *
 *  1. checks the prerequisites (root, disk space, apt-get or an installed qemu) and says why the
 *     lab cannot start when they are not met;
 *  2. runs the one-time lab set-up (setup.sh, cached in $XENLAB_DIR, default /var/tmp/xenlab);
 *  3. builds libxl-shim (when it has a Makefile), stages xl-ha, the shim and the host's node into
 *     the dom0 root filesystem and rebuilds dom0.img (stage-xlha.sh, build-images.sh);
 *  4. boots Xen + dom0 (run.sh); dom0 runs files/run-scenarios.sh, which prints one
 *     `XLHA-SCENARIO <name> <ok|fail|skipped> <json>` line per scenario;
 *  5. reads the results (from dom0.img with debugfs, the serial log as a fallback) and prints ONE
 *     JSON summary line on stdout. Progress goes to stderr.
 *
 * `--smoke` (`npm run test:xen:smoke`, what `.ci/run` calls): only the smoke scenarios of
 * select.ts (shim, remus, failover, xl-create-ha), QEMU's limit 1800 s unless XENLAB_TIMEOUT says.
 *
 * Exit status: 0 only when every selected scenario passed; 1 otherwise (a failed or skipped
 * scenario, or a lab that could not start: the JSON line's `reason` says why). Scenarios left
 * out by --smoke or XENLAB_SCENARIOS are listed in `notSelected` and do not count.
 *
 * Environment: XENLAB_DIR (work dir), XENLAB_REMUS_SECS (seconds each protection is measured,
 * default 20), XENLAB_TIMEOUT (seconds QEMU may run, default 3000, 1800 with --smoke), XENLAB_SCENARIOS (comma list to
 * run only some scenarios), XENLAB_XLHA_OPTS (extra options for the lab's `xl-ha remus`, e.g.
 * "--heartbeat-ms=500 --failover-timeout-ms=5000": TCG is 10-50x slower than hardware),
 * XENLAB_QEMU_CPU (QEMU -cpu, default max,rdtscp=off,xsave=off: see run.sh for why xsave=off),
 * XENLAB_DAEMON_PROF=1 (V8 CPU profiles of both daemons, in last-run/out/prof), XENLAB_DAEMON_STRACE=1
 * (after xl-ha's window, strace -c of both daemons for 10 s, if the rootfs has strace), XENLAB_DAEMON_PERF=1
 * (the same window, perf record of both daemons, if the rootfs has perf: set-up with XENLAB_WITH_PERF=1),
 * XENLAB_DAEMON_ENV
 * (NAME=VALUE pairs for the daemons' environment, for experiments), XENLAB_DAEMON_NODE_FLAGS (node
 * options for the daemons, e.g. V8 flags NODE_OPTIONS refuses), XENLAB_BOOT_STALL_SECS.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { SCENARIOS, SMOKE_TIMEOUT_SECS, SelectionError, selectScenarios, verdict, type Selection, type Status } from './select.js';

/** Xen's words when dom0's watchdog fires (4.17; later releases name the timer: "Watchdog timer 1 fired for d0"). */
const WATCHDOG_FIRED = /Watchdog timer (?:\d+ )?fired for (?:domain 0|d0)\b/;
const WATCHDOG_WAIT = /XLHA-WATCHDOG-WAIT (\{.*\})\s*$/;
const MIN_FREE_BYTES = 4 * 1024 ** 3;
const MARKER = /XLHA-SCENARIO (\S+) (ok|fail|skipped) (\{.*\})\s*$/;

type Details = Record<string, unknown> & { status: 'ok' | 'fail' | 'skipped'; reason?: string };

const t0 = performance.now();
const secsSince = (t: number) => Math.round((performance.now() - t) / 100) / 10;
const progress = (msg: string) => process.stderr.write(`[xen-lab ${secsSince(t0).toFixed(0).padStart(4)}s] ${msg}\n`);

/** Root of the project: dist/test/xen-lab/run.js -> ../../.. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const LAB_SRC = path.join(ROOT, 'test', 'xen-lab');
const L = process.env.XENLAB_DIR ?? '/var/tmp/xenlab';
let REMUS_SECS = 20;
let QEMU_TIMEOUT = 3000;
let SELECTION: Selection = { only: null, source: 'all' };

class LabError extends Error {}

function intEnv(name: string, dflt: number, min: number, max: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new LabError(`${name}=${JSON.stringify(v)}: expected an integer from ${min} to ${max}`);
  return n;
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin')
    .split(':')
    .concat(['/usr/sbin', '/sbin'])
    .some((d) => {
      try {
        fs.accessSync(path.join(d, cmd), fs.constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}

function tailOf(file: string, n = 15): string {
  try {
    return fs.readFileSync(file, 'latin1').split('\n').filter(Boolean).slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** Step 1: why the lab cannot start, or undefined when it can. */
function prerequisiteProblem(): string | undefined {
  if (process.platform !== 'linux') return `the Xen lab needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) {
    return 'not root: the lab set-up installs packages, debootstraps a dom0 and builds its disk with root-owned files (run as root)';
  }
  try {
    fs.mkdirSync(L, { recursive: true });
  } catch (err) {
    return `cannot create the lab directory ${L}: ${(err as Error).message}`;
  }
  const st = fs.statfsSync(L);
  // the old dom0.img is replaced, so its space counts as free
  let reclaim = 0;
  try {
    reclaim = fs.statSync(path.join(L, 'dom0.img')).blocks * 512;
  } catch {
    /* none yet */
  }
  const free = st.bavail * st.bsize + reclaim;
  if (free < MIN_FREE_BYTES) {
    return `no disk space: ${(free / 1024 ** 3).toFixed(1)} GiB free in ${L}'s filesystem, the lab needs at least 4 GiB (set XENLAB_DIR elsewhere)`;
  }
  if (!onPath('qemu-system-x86_64') && !onPath('apt-get')) {
    return 'qemu-system-x86_64 is not installed and there is no apt-get to install it (the lab needs a Debian/Ubuntu host)';
  }
  if (!onPath('apt-get') && !onPath('dpkg-query')) return 'no apt-get/dpkg on this host: the lab set-up needs Debian packages';
  for (const f of ['setup.sh', 'build-xen-shadow.sh', 'stage-xlha.sh', 'build-images.sh', 'run.sh', 'files/run-scenarios.sh', 'files/init']) {
    if (!fs.existsSync(path.join(LAB_SRC, f))) return `lab script ${path.join(LAB_SRC, f)} is missing`;
  }
  return undefined;
}

/** Runs a lab script, its output appended to `log`; throws LabError with the log's tail on failure. */
async function script(what: string, file: string, args: string[], log: string, env: Record<string, string> = {}): Promise<void> {
  const t = performance.now();
  progress(`${what} (log: ${log})`);
  fs.appendFileSync(log, `\n===== ${new Date().toISOString()} ${file} ${args.join(' ')}\n`);
  const r = await execa('bash', [file, ...args], {
    cwd: ROOT,
    env: { XENLAB_DIR: L, ...env },
    stdin: 'ignore',
    stdout: { file: log, append: true },
    stderr: { file: log, append: true },
    reject: false,
  });
  if (r.exitCode !== 0) {
    throw new LabError(`${what} failed (${r.exitCode === undefined ? String(r.signal) : `exit ${r.exitCode}`}), see ${log}: ${tailOf(log, 8)}`);
  }
  progress(`${what}: done in ${secsSince(t)} s`);
}

function checkSetupOutputs(): void {
  const need = [path.join(L, 'rootfs/usr/sbin/xl'), path.join(L, 'xen-4.17-shadow')];
  for (const f of need) if (!fs.existsSync(f)) throw new LabError(`lab set-up finished but ${f} is missing (see ${L}/setup.log)`);
  if (!fs.readdirSync('/boot').some((f) => /^vmlinuz-.*-amd64$/.test(f))) throw new LabError('no /boot/vmlinuz-*-amd64 kernel for dom0 (package linux-image-amd64)');
  if (!onPath('qemu-system-x86_64')) throw new LabError('qemu-system-x86_64 still missing after the set-up');
  if (!onPath('debugfs') || !onPath('mkfs.ext4')) throw new LabError('debugfs/mkfs.ext4 missing (package e2fsprogs)');
}

/** Step 3a: build libxl-shim when it has a Makefile. Returns what happened, for the summary. */
async function buildShim(log: string): Promise<Record<string, unknown>> {
  const dir = path.join(ROOT, 'libxl-shim');
  if (!fs.existsSync(path.join(dir, 'Makefile'))) return { built: false, reason: 'libxl-shim/Makefile not present' };
  progress('building libxl-shim (make -C libxl-shim)');
  fs.appendFileSync(log, `\n===== ${new Date().toISOString()} make -C libxl-shim\n`);
  const r = await execa('make', ['-C', 'libxl-shim'], {
    cwd: ROOT,
    stdin: 'ignore',
    stdout: { file: log, append: true },
    stderr: { file: log, append: true },
    reject: false,
  });
  const so = fs.existsSync(path.join(dir, 'libxlha.so'));
  if (r.exitCode !== 0) {
    progress(`libxl-shim build failed (exit ${String(r.exitCode)}); continuing, the shim scenario will show it`);
    return { built: false, reason: `make -C libxl-shim failed (exit ${String(r.exitCode)}): ${tailOf(log, 6)}`, staleSoStaged: so };
  }
  return { built: so, ...(so ? {} : { reason: 'make succeeded but libxl-shim/libxlha.so is absent' }) };
}

interface BootResult {
  exitCode: number | undefined;
  signal: string | undefined;
  timedOut: boolean;
  bootSecs: number | null;
  done: boolean;
  serial: string;
  /** The watchdog scenario: host seconds from the daemon's hang to Xen's reset, when both were seen. */
  watchdog: { waitSeenAt: number | null; firedAt: number | null; waitInfo: Record<string, unknown> | null; line: string | null };
  /** The boot printed nothing for BOOT_STALL_SECS before Xen's userspace came up: the last line. */
  stalledAt: string | null;
}

/**
 * A dom0 kernel that prints nothing for this long before Xen's userspace is up has hung in its
 * boot under TCG (seen once in ~15 boots, after "IP idents hash table entries"). Nothing of
 * xl-ha has run yet then, so the harness boots once more and says so in the summary.
 */
const BOOT_STALL_SECS = Number(process.env.XENLAB_BOOT_STALL_SECS ?? 300);

/** How the boot ended. The watchdog scenario runs last and ends it: Xen resets dom0, which never prints XENLAB-DONE. */
function labEndOf(done: boolean, watchdogFired: boolean): string {
  return done ? 'dom0 finished' : watchdogFired ? "Xen's watchdog reset dom0 (the watchdog scenario)" : 'dom0 did not finish';
}

/** Step 4: boot the lab and follow its serial log until QEMU exits. */
async function boot(serialLog: string, qemuLog: string): Promise<BootResult> {
  const args = [`xenlab.remus_secs=${REMUS_SECS}`, `xenlab.budget=${Math.max(120, QEMU_TIMEOUT - 120)}`];
  // lists are joined with '+': QEMU's -initrd splits its argument at commas
  if (SELECTION.only) args.push(`xenlab.scenarios=${SELECTION.only.join('+')}`);
  if (process.env.XENLAB_DAEMON_PROF === '1') args.push('xenlab.daemon_prof=1'); // V8 profiles of both daemons in out/prof
  if (process.env.XENLAB_DAEMON_PERF === '1') args.push('xenlab.daemon_perf=1'); // CPU profile (perf) of both daemons in out/perf-*.txt
  if (process.env.XENLAB_DAEMON_STRACE === '1') args.push('xenlab.daemon_strace=1'); // system calls of both daemons in out/strace-*.txt
  if (process.env.XENLAB_DAEMON_NODE_FLAGS) args.push(`xenlab.daemon_node_flags=${process.env.XENLAB_DAEMON_NODE_FLAGS.trim().split(/\s+/).join('+')}`);
  if (process.env.XENLAB_DAEMON_ENV) args.push(`xenlab.daemon_env=${process.env.XENLAB_DAEMON_ENV.trim().split(/\s+/).join('+')}`);
  if (process.env.XENLAB_XLHA_OPTS) args.push(`xenlab.xlha_opts=${process.env.XENLAB_XLHA_OPTS.trim().split(/\s+/).join('+')}`);
  for (const a of args) if (/[,\s]/.test(a)) throw new LabError(`dom0 argument ${JSON.stringify(a)} may not contain commas or blanks`);
  fs.writeFileSync(serialLog, '');
  fs.writeFileSync(qemuLog, '');
  progress(`booting Xen + dom0 under QEMU TCG (timeout ${QEMU_TIMEOUT} s; serial log ${serialLog})`);
  const tBoot = performance.now();
  const child: ResultPromise = execa('bash', [path.join(LAB_SRC, 'run.sh'), serialLog, ...args], {
    env: { XENLAB_DIR: L, TIMEOUT: String(QEMU_TIMEOUT), ...(process.env.XENLAB_QEMU_CPU ? { QEMU_CPU: process.env.XENLAB_QEMU_CPU } : {}) },
    stdin: 'ignore',
    stdout: { file: qemuLog, append: true },
    stderr: { file: qemuLog, append: true },
    reject: false,
    forceKillAfterDelay: 10_000,
  });
  const onSignal = () => {
    child.kill('SIGTERM');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let bootSecs: number | null = null;
  let done = false;
  let offset = 0;
  let partial = '';
  let exited = false;
  let grewAt = performance.now();
  let stalledAt: string | null = null;
  let lastLine = '';
  const seen = new Set<string>();
  const watchdog: BootResult['watchdog'] = { waitSeenAt: null, firedAt: null, waitInfo: null, line: null };
  const follow = () => {
    let fd: number;
    try {
      fd = fs.openSync(serialLog, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(1 << 16);
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        grewAt = performance.now();
        partial += buf.subarray(0, n).toString('latin1');
      }
    } finally {
      fs.closeSync(fd);
    }
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const raw of lines) {
      const line = raw.replace(/\r/g, '');
      if (line.trim()) lastLine = line.trim();
      if (line.includes('XENLAB-DOM0-INIT') && !seen.has('init')) {
        seen.add('init');
        progress(`dom0 init started (${secsSince(tBoot)} s after QEMU start)`);
      }
      if (line.includes('XENLAB-XEN-USERSPACE-UP') && bootSecs === null) {
        bootSecs = secsSince(tBoot);
        progress(`Xen userspace up in dom0: boot took ${bootSecs} s`);
      }
      if (line.includes('=== SCENARIO ')) progress(line.slice(line.indexOf('=== SCENARIO ')));
      const m = MARKER.exec(line);
      if (m) progress(`scenario ${m[1]}: ${m[2]}${m[2] === 'ok' ? '' : ` (${m[3]!.slice(0, 300)})`}`);
      if (line.includes('XENLAB-DONE')) done = true;
      const w = WATCHDOG_WAIT.exec(line);
      if (w && watchdog.waitSeenAt === null) {
        watchdog.waitSeenAt = performance.now();
        try {
          watchdog.waitInfo = JSON.parse(w[1]!) as Record<string, unknown>;
        } catch {
          watchdog.waitInfo = null;
        }
      }
      if (WATCHDOG_FIRED.test(line) && watchdog.firedAt === null) {
        watchdog.firedAt = performance.now();
        watchdog.line = line.trim();
        progress(`Xen: ${line.trim()}`);
      }
    }
    if (bootSecs === null && stalledAt === null && !exited && (performance.now() - grewAt) / 1000 > BOOT_STALL_SECS) {
      stalledAt = lastLine.slice(0, 300);
      progress(`the boot printed nothing for ${BOOT_STALL_SECS} s (last line: ${stalledAt}): stopping QEMU`);
      child.kill('SIGTERM');
    }
  };
  const timer = setInterval(follow, 500);
  const r = await child;
  exited = true;
  clearInterval(timer);
  follow();
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  const timedOut = r.exitCode === 124 || (!done && exited && secsSince(tBoot) >= QEMU_TIMEOUT - 1);
  progress(`QEMU exited (${r.exitCode === undefined ? `signal ${String(r.signal)}` : `exit ${r.exitCode}`}) after ${secsSince(tBoot)} s: ${labEndOf(done, watchdog.firedAt !== null)}`);
  return { exitCode: r.exitCode, signal: r.signal, timedOut, bootSecs, done, serial: fs.readFileSync(serialLog, 'latin1'), stalledAt, watchdog };
}

function parseMarkers(text: string, into: Map<string, Details>, source: string): void {
  for (const raw of text.split('\n')) {
    const m = MARKER.exec(raw.replace(/\r/g, ''));
    if (!m || into.has(m[1]!)) continue;
    try {
      const d = JSON.parse(m[3]!) as Record<string, unknown>;
      into.set(m[1]!, { status: m[2] as Details['status'], ...d });
    } catch (err) {
      into.set(m[1]!, { status: 'fail', reason: `unparsable result line in ${source}: ${(err as Error).message}: ${m[3]!.slice(0, 300)}` });
    }
  }
}

/** Step 5: results out of dom0.img (debugfs) and the serial log. */
async function collect(img: string, serial: string, outDir: string): Promise<Map<string, Details>> {
  const res = new Map<string, Details>();
  const cat = await execa('debugfs', ['-R', 'cat /xenlab/scenarios.txt', img], { reject: false, stdin: 'ignore' });
  if (cat.exitCode === 0) parseMarkers(String(cat.stdout), res, 'dom0.img:/xenlab/scenarios.txt');
  parseMarkers(serial, res, 'the serial log');
  // rdump /xenlab/out DIR creates DIR/out
  fs.rmSync(outDir, { recursive: true, force: true });
  await execa('debugfs', ['-R', `rdump /xenlab/out ${path.dirname(outDir)}`, img], { reject: false, stdin: 'ignore' });
  fs.mkdirSync(outDir, { recursive: true });
  const results = await execa('debugfs', ['-R', 'cat /xenlab/results.txt', img], { reject: false, stdin: 'ignore' });
  if (results.exitCode === 0) fs.writeFileSync(path.join(outDir, 'results.txt'), String(results.stdout));
  return res;
}

/**
 * Reports of processes that died of a signal in dom0, by the shell and the kernel, from the
 * console (one crash can give two lines). Under TCG, dom0 userspace (node above all) has crashed
 * at random while a domU ran, much more often during Remus: a failure next to these is suspect.
 */
/** The boot's speed, as run-scenarios.sh measured it before the scenarios (XLHA-SPEED line). */
function bootSpeed(serial: string): Record<string, unknown> | null {
  const m = /XLHA-SPEED (\{.*\})\s*$/m.exec(serial.replace(/\r/g, ''));
  if (!m) return null;
  try {
    return JSON.parse(m[1]!) as Record<string, unknown>;
  } catch {
    return null;
  }
}

function dom0Crashes(serial: string): { reports: number; examples: string[] } {
  const hits = serial
    .split('\n')
    .map((l) => l.replace(/\r/g, ''))
    .filter((l) => !l.startsWith('(XEN)') && !l.startsWith('XLHA-SCENARIO') && /Segmentation fault|Trace\/breakpoint trap|Illegal instruction|Bus error|Aborted|\btraps: |segfault at/.test(l));
  return { reports: hits.length, examples: hits.slice(0, 4).map((l) => l.slice(0, 200)) };
}

/** a / b to two decimals, or null when either is not a number. */
/**
 * The transfer scenario's runs beside full (its own full run, else xlha-remus-figures): per
 * transfer, its figures and the ratios of checkpoints/s, bytes per checkpoint and mean tick gap
 * to full's.
 */
function transfersSideBySide(transfer: Details | undefined, remusFull: Details | undefined): Record<string, unknown> | null {
  const runs = transfer?.['transfers'];
  if (!runs || typeof runs !== 'object') return null;
  // full as measured back to back with the others, else the remus scenario's
  const full = ((runs as Record<string, Details>)['full'] ?? remusFull) as Details | undefined;
  const out: Record<string, unknown> = { fullFrom: (runs as Record<string, Details>)['full'] ? 'transfer' : 'xlha-remus-figures' };
  for (const [id, r] of Object.entries(runs as Record<string, Record<string, unknown>>)) {
    out[id] = {
      ...figures(r as Details, ['checkpointsPerSec', 'bytesPerCheckpointP50', 'pagesPerCheckpointP50', 'pauseMsP50', 'tickGapMsMean', 'firstCheckpointAfterSecs', 'daemonPeakRssMiB', 'yardstickMs']),
      checkpointsPerSecToFull: ratio(r['checkpointsPerSec'], full?.['checkpointsPerSec']),
      bytesPerCheckpointToFull: ratio(r['bytesPerCheckpointP50'], full?.['bytesPerCheckpointP50']),
      tickGapMsMeanToFull: ratio(r['tickGapMsMean'], full?.['tickGapMsMean']),
    };
  }
  return out;
}

function ratio(a: unknown, b: unknown): number | null {
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? Math.round((a / b) * 100) / 100 : null;
}

/**
 * xl-ha's figure against stock's on either side of it in the boot (the geometric mean of the
 * two ratios): a boot drifts (it slows down as it goes, 10-15% by its end in the boots
 * measured with yardstickMs), and bracketing cancels a steady drift.
 */
function bracketed(x: unknown, before: unknown, after: unknown): number | null {
  return typeof before === 'number' && typeof after === 'number' ? ratio(x, Math.sqrt(before * after)) : null;
}

function figures(d: Details | undefined, keys: string[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const k of keys) o[k] = d && d[k] !== undefined && (typeof d[k] === 'number' || typeof d[k] === 'object') ? d[k] : null;
  return o;
}

function finish(summary: Record<string, unknown>, code: number): never {
  process.stdout.write(JSON.stringify({ ...summary, totalSecs: secsSince(t0) }) + '\n');
  process.exit(code);
}

/** One harness run at a time per lab directory (they would rebuild the same rootfs and dom0.img). */
function lock(): void {
  const file = path.join(L, '.xlha-lab.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      process.on('exit', () => fs.rmSync(file, { force: true }));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(file, 'utf8'));
      let alive = false;
      try {
        alive = pid > 0 && process.kill(pid, 0);
      } catch {
        alive = false;
      }
      if (alive) throw new LabError(`another xen-lab run (pid ${pid}) is using ${L} (lock ${file})`);
      fs.rmSync(file, { force: true });
    }
  }
  throw new LabError(`cannot take the lab lock ${file}`);
}

async function main(): Promise<void> {
  try {
    SELECTION = selectScenarios(process.argv.slice(2), process.env.XENLAB_SCENARIOS);
    REMUS_SECS = intEnv('XENLAB_REMUS_SECS', 20, 5, 300);
    QEMU_TIMEOUT = intEnv('XENLAB_TIMEOUT', SELECTION.source === 'smoke' ? SMOKE_TIMEOUT_SECS : 3000, 120, 7200);
    if (SELECTION.only) progress(`scenarios (${SELECTION.source === 'smoke' ? '--smoke' : 'XENLAB_SCENARIOS'}): ${SELECTION.only.join(', ')}`);
  } catch (err) {
    if (!(err instanceof SelectionError || err instanceof LabError)) throw err;
    finish({ ok: false, reason: (err as Error).message }, 1);
  }
  const problem = prerequisiteProblem();
  if (problem) finish({ ok: false, reason: problem }, 1);
  try {
    lock();
  } catch (err) {
    finish({ ok: false, reason: (err as Error).message }, 1);
  }
  const setupLog = path.join(L, 'setup.log');
  const runDir = path.join(L, 'last-run');
  fs.mkdirSync(runDir, { recursive: true });
  const buildLog = path.join(runDir, 'build.log');
  fs.writeFileSync(buildLog, '');

  let shim: Record<string, unknown>;
  try {
    await script('lab set-up (cached)', path.join(LAB_SRC, 'setup.sh'), [], setupLog);
    checkSetupOutputs();
    shim = await buildShim(buildLog);
    await script('staging xl-ha into the dom0 rootfs', path.join(LAB_SRC, 'stage-xlha.sh'), [ROOT, process.execPath], buildLog);
    await script('building dom0.img', path.join(LAB_SRC, 'build-images.sh'), [], buildLog);
  } catch (err) {
    if (err instanceof LabError) finish({ ok: false, reason: err.message }, 1);
    throw err;
  }

  const serialLog = path.join(runDir, 'serial.log');
  let b!: BootResult;
  const bootStalls: string[] = [];
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      b = await boot(serialLog, path.join(runDir, 'qemu.log'));
    } catch (err) {
      if (err instanceof LabError) finish({ ok: false, reason: err.message }, 1);
      throw err;
    }
    if (b.stalledAt === null) break;
    bootStalls.push(b.stalledAt);
    fs.copyFileSync(serialLog, path.join(runDir, `serial.stalled-boot-${attempt}.log`));
    if (attempt < 2) progress('booting again (a hung kernel boot is the emulator\'s, not a result)');
  }
  const res = await collect(path.join(L, 'dom0.img'), b.serial, path.join(runDir, 'out'));
  // The watchdog scenario ends in a reset of the whole lab, which dom0 cannot report: its result
  // is Xen's own line on the serial console after the daemon was hung (and none before).
  const wd = b.watchdog;
  if (!res.has('watchdog') && wd.firedAt !== null) {
    res.set(
      'watchdog',
      wd.waitSeenAt !== null && wd.firedAt >= wd.waitSeenAt
        ? { status: 'ok', resetAfterSecs: Math.round((wd.firedAt - wd.waitSeenAt) / 100) / 10, ...(wd.waitInfo ?? {}), xen: wd.line }
        : { status: 'fail', reason: `Xen's watchdog fired before the watchdog scenario hung the daemon: ${wd.line}` },
    );
  }

  const labProblem =
    b.bootSecs === null
      ? `the lab did not boot: no XENLAB-XEN-USERSPACE-UP in ${serialLog} (${b.stalledAt !== null ? `${bootStalls.length} boots hung, each printing nothing for ${BOOT_STALL_SECS} s` : `QEMU ${b.timedOut ? 'timed out' : `exit ${String(b.exitCode ?? b.signal)}`}`}): ${tailOf(path.join(runDir, 'qemu.log'), 4)} ${tailOf(serialLog, 6)}`.trim()
      : undefined;
  const wanted: readonly string[] = SELECTION.only ?? SCENARIOS;
  const scenarios: Record<string, Details> = {};
  for (const name of wanted) {
    scenarios[name] = res.get(name) ?? {
      status: 'fail',
      reason: labProblem ?? `no result: the lab ended before this scenario reported (QEMU ${b.timedOut ? `timed out after ${QEMU_TIMEOUT} s` : `exit ${String(b.exitCode ?? b.signal)}`}, dom0 ${b.done ? 'finished' : 'did not finish'}; see ${serialLog})`,
    };
  }
  // results for scenarios outside the selection: a diagnostic's figures, or a failure the
  // verdict counts; those dom0 skipped as not selected are listed in notSelected instead
  for (const [name, d] of res) if (!(name in scenarios) && !(d.status === 'skipped' && !wanted.includes(name) && (SCENARIOS as readonly string[]).includes(name))) scenarios[name] = d;
  const statuses = new Map<string, Status>(Object.entries(scenarios).map(([k, d]) => [k, d.status]));
  const { ok, failed, skipped, notSelected } = verdict(SELECTION, statuses, labProblem !== undefined);
  const summary: Record<string, unknown> = {
    ok,
    ...(labProblem ? { reason: labProblem } : {}),
    failed,
    skipped,
    ...(SELECTION.only ? { selection: SELECTION.source, notSelected } : {}),
    scenarios,
    sideBySide: {
      stock: figures(scenarios['stock-remus'], ['checkpointsPerSec', 'tickGapMsMean', 'tickGapMsMax', 'pagesPerCheckpointP50', 'unprotectedTickGapMsMean', 'yardstickMs']),
      // stock once more at the end of the boot: how far the boot itself drifted meanwhile
      stockAfter: figures(scenarios['stock-remus-after'], ['checkpointsPerSec', 'tickGapMsMean', 'tickGapMsMax', 'pagesPerCheckpointP50', 'yardstickMs']),
      // stock over TCP with a relay at each end (socat): the path xl-ha's daemons take, where
      // fakessh hands stock a single pipe that two hosts could not share
      stockTcp: figures(scenarios['stock-remus-tcp'], ['checkpointsPerSec', 'tickGapMsMean', 'tickGapMsMax', 'pagesPerCheckpointP50', 'yardstickMs']),
      checkpointsPerSecXlhaToStock: {
        before: ratio(scenarios['xlha-remus-figures']?.checkpointsPerSec, scenarios['stock-remus']?.checkpointsPerSec),
        tcp: ratio(scenarios['xlha-remus-figures']?.checkpointsPerSec, scenarios['stock-remus-tcp']?.checkpointsPerSec),
        after: ratio(scenarios['xlha-remus-figures']?.checkpointsPerSec, scenarios['stock-remus-after']?.checkpointsPerSec),
        // stock ran before and after this xl-ha run: the drift of the boot cancels
        bracketed: bracketed(scenarios['xlha-remus-figures']?.checkpointsPerSec, scenarios['stock-remus']?.checkpointsPerSec, scenarios['stock-remus-after']?.checkpointsPerSec),
        // the last two runs of the boot, back to back (xl-ha last, where the boot is slowest)
        lastPair: ratio(scenarios['xlha-remus-after']?.checkpointsPerSec, scenarios['stock-remus-after']?.checkpointsPerSec),
      },
      tickGapMsMeanXlhaToStock: {
        firstPair: ratio(scenarios['xlha-remus-figures']?.tickGapMsMean, scenarios['stock-remus']?.tickGapMsMean),
        bracketed: bracketed(scenarios['xlha-remus-figures']?.tickGapMsMean, scenarios['stock-remus']?.tickGapMsMean, scenarios['stock-remus-after']?.tickGapMsMean),
        lastPair: ratio(scenarios['xlha-remus-after']?.tickGapMsMean, scenarios['stock-remus-after']?.tickGapMsMean),
      },
      xlhaAfter: figures(scenarios['xlha-remus-after'], ['checkpointsPerSec', 'tickGapMsMean', 'tickGapMsMax', 'pagesPerCheckpointP50', 'pauseMsP50', 'firstCheckpointAfterSecs', 'yardstickMs', 'daemonPeakRssMiB']),
      xlha: figures(scenarios['xlha-remus-figures'], ['checkpointsPerSec', 'tickGapMsMean', 'tickGapMsMax', 'pagesPerCheckpointP50', 'bytesPerCheckpointP50', 'daemonCheckpointsPerSec', 'pauseMsP50', 'firstCheckpointAfterSecs', 'backendStepsMsP50', 'yardstickMs', 'daemonPeakRssMiB']),
      // the link without TLS (XLHA_PLAINTEXT_LOOPBACK=1), against the TLS runs of the same boot
      tlsCost: {
        plaintext: figures(scenarios['tls-cost'], ['checkpointsPerSec', 'tickGapMsMean', 'pauseMsP50', 'firstCheckpointAfterSecs', 'cpuMsPerCheckpoint', 'yardstickMs']),
        checkpointsPerSecTlsToPlain: ratio(scenarios['xlha-remus-after']?.checkpointsPerSec ?? scenarios['xlha-remus-figures']?.checkpointsPerSec, scenarios['tls-cost']?.checkpointsPerSec),
        firstCheckpointAfterSecsTlsToPlain: ratio(scenarios['xlha-remus-after']?.firstCheckpointAfterSecs ?? scenarios['xlha-remus-figures']?.firstCheckpointAfterSecs, scenarios['tls-cost']?.firstCheckpointAfterSecs),
        tlsRun: scenarios['xlha-remus-after'] ? 'xlha-remus-after' : 'xlha-remus-figures',
      },
      // each ha_transfer against full (the remus scenario's protection), same boot
      transfers: transfersSideBySide(scenarios['transfer'], scenarios['xlha-remus-figures']),
    },
    shimBuild: shim,
    dom0Crashes: dom0Crashes(b.serial),
    bootSpeed: bootSpeed(b.serial),
    remusSecs: REMUS_SECS,
    bootSecs: b.bootSecs,
    ...(bootStalls.length ? { bootStalls } : {}),
    labFinished: b.done,
    labEnd: labEndOf(b.done, b.watchdog.firedAt !== null),
    logs: runDir,
  };
  finish(summary, ok ? 0 : 1);
}

main().catch((err: unknown) => {
  const msg = err instanceof Error ? err.message : String(err);
  finish({ ok: false, reason: `harness error: ${msg}` }, 1);
});
