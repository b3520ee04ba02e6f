/**
 * `npm run demo`: two simulated Xen hosts as separate processes, a kv domain under load,
 * protected by remus (or `--mode kemari`), the primary SIGKILLed under load, the backup taking
 * over. `--json` prints the report as one JSON object.
 */
import { runScenario } from './scenario.js';
import { round } from '../util/samples.js';
import { enforceToolArgs } from '../util/tool-args.js';

enforceToolArgs('demo', 'usage: npm run demo -- [options]   (two sim hosts, a kv domain under load, the primary killed, the backup taking over)', process.argv.slice(2), [
  { name: '--mode', value: 'required', help: 'remus, kemari or colo (default remus)' },
  { name: '--json', value: 'none', help: 'the report as one JSON object' },
]);

const json = process.argv.includes('--json');
const DEMO_MODES = ['remus', 'kemari', 'colo'] as const;
type DemoMode = (typeof DEMO_MODES)[number];
function modeArg(argv: readonly string[]): DemoMode {
  const i = argv.findIndex((a) => a === '--mode' || a.startsWith('--mode='));
  if (i < 0) return 'remus';
  const v = argv[i]!.includes('=') ? argv[i]!.slice('--mode='.length) : argv[i + 1];
  if (!DEMO_MODES.includes(v as DemoMode)) {
    process.stderr.write(`demo: --mode ${JSON.stringify(v ?? '')} is not valid: expected one of ${DEMO_MODES.join(', ')} (llm is not implemented yet)\n`);
    process.exit(2);
  }
  return v as DemoMode;
}
const mode = modeArg(process.argv.slice(2));
const say = (l: string) => {
  if (!json) process.stdout.write(`  ${l}\n`);
};

if (!json) process.stdout.write(`xl-ha demo: ${mode} on the sim backend (no Xen needed)\n`);
try {
  const r = await runScenario({
    mode,
    // colo: 0.5% of PUT responses differ between the two copies, so that divergence happens
    ...(mode === 'colo' ? { nondeterminism: 0.005 } : {}),
    memoryMiB: 256,
    dirtyMiBPerSec: 20,
    intervalMs: 25,
    heartbeatMs: 50,
    failoverTimeoutMs: 150,
    clients: 64,
    connections: 8,
    baselineMs: 3000,
    protectedMs: 4000,
    afterMs: 1500,
    progress: say,
  });
  const report = {
    mode,
    lostAckedWrites: r.lostAckedWrites,
    failoverMs: r.failoverMs,
    checkpointsPerSec: r.checkpointsPerSec,
    checkpointsTaken: Number(r.primaryStatus.checkpointsTaken),
    pauseMsP99: Number(r.primaryStatus.pauseMsP99),
    addedLatencyMsP50: round(r.protected.latencyMsP50 - r.unprotected.latencyMsP50),
    addedLatencyMsP99: round(r.protected.latencyMsP99 - r.unprotected.latencyMsP99),
    throughputRatio: round(r.protected.requestsPerSec / r.unprotected.requestsPerSec),
    pauseMsP50: Number(r.primaryStatus.pauseMsP50),
    bytesPerCheckpoint: Number(r.primaryStatus.bytesPerCheckpointP50),
    ackedWrites: r.ackedWrites,
    keysChecked: r.keysChecked,
    writesAppliedByGuest: r.writesAppliedByGuest,
    backupEpoch: Number(r.backupStatus.epoch),
    protectionHeld: r.protection.held,
    ...(r.protection.held ? {} : { protectionFailures: r.protection.failures }),
    unprotected: r.unprotected,
    protected: r.protected,
  };
  const ok = r.lostAckedWrites === 0 && r.writesAppliedByGuest === r.ackedWrites && r.clientErrors.length === 0 && r.protection.held;
  if (json) {
    process.stdout.write(JSON.stringify(report) + '\n');
  } else {
    process.stdout.write(
      [
        '',
        'report',
        `  acknowledged writes lost      ${report.lostAckedWrites} of ${r.ackedWrites} (${r.keysChecked} keys read back)`,
        `  writes applied by the guest   ${r.writesAppliedByGuest} (exactly once: ${r.writesAppliedByGuest === r.ackedWrites ? 'yes' : 'NO'})`,
        `  failover time                 ${report.failoverMs} ms (SIGKILL of the primary → first answer from the backup)`,
        `  checkpoints per second        ${report.checkpointsPerSec} (${mode === 'kemari' ? 'kemari: one sync per burst of output' : mode === 'colo' ? `colo: on divergence (${String(r.primaryStatus.divergences)} of ${String(r.primaryStatus.outputsCompared)} outputs compared differed)` : 'interval 25 ms'})`,
        `  guest pause per checkpoint    p50 ${report.pauseMsP50} ms, p99 ${report.pauseMsP99} ms`,
        `  bytes per checkpoint (p50)    ${report.bytesPerCheckpoint}`,
        `  client latency unprotected    p50 ${r.unprotected.latencyMsP50} ms, p99 ${r.unprotected.latencyMsP99} ms`,
        `  client latency protected      p50 ${r.protected.latencyMsP50} ms, p99 ${r.protected.latencyMsP99} ms (added p50 ${report.addedLatencyMsP50} ms)`,
        `  throughput protected/unprot.  ${report.throughputRatio} (64 closed-loop clients: bound by the added latency; npm run bench measures capacity at saturation)`,
        ...(r.clientErrors.length ? ['  client errors:', ...r.clientErrors.map((e) => `    ${e}`)] : []),
        ...(r.lostDetails.length ? ['  lost:', ...r.lostDetails.map((e) => `    ${e}`)] : []),
        ...(r.protection.held ? [] : ['  protection did not hold while measured:', ...r.protection.failures.map((e) => `    ${e}`)]),
        ok ? 'PASS: no acknowledged write lost, protection held' : 'FAIL',
        '',
      ].join('\n'),
    );
  }
  process.exit(ok ? 0 : 1);
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
}
