/**
 * `npm run demo`: two simulated Xen hosts as separate processes, a kv domain under load,
 * protected by remus, the primary SIGKILLed under load, the backup taking over.
 * `--json` prints the report as one JSON object.
 */
import { runScenario } from './scenario.js';
import { round } from '../util/samples.js';

const json = process.argv.includes('--json');
const say = (l: string) => {
  if (!json) process.stdout.write(`  ${l}\n`);
};

if (!json) process.stdout.write('xl-ha demo: remus on the sim backend (no Xen needed)\n');
try {
  const r = await runScenario({
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
    clientNice: 10,
    progress: say,
  });
  const report = {
    lostAckedWrites: r.lostAckedWrites,
    failoverMs: r.failoverMs,
    checkpointsPerSec: Number(r.primaryStatus.checkpointsPerSec),
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
    unprotected: r.unprotected,
    protected: r.protected,
  };
  const ok = r.lostAckedWrites === 0 && r.writesAppliedByGuest === r.ackedWrites && r.clientErrors.length === 0;
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
        `  checkpoints per second        ${report.checkpointsPerSec} (interval 25 ms)`,
        `  guest pause per checkpoint    p50 ${report.pauseMsP50} ms, p99 ${report.pauseMsP99} ms`,
        `  bytes per checkpoint (p50)    ${report.bytesPerCheckpoint}`,
        `  client latency unprotected    p50 ${r.unprotected.latencyMsP50} ms, p99 ${r.unprotected.latencyMsP99} ms`,
        `  client latency protected      p50 ${r.protected.latencyMsP50} ms, p99 ${r.protected.latencyMsP99} ms (added p50 ${report.addedLatencyMsP50} ms)`,
        `  throughput protected/unprot.  ${report.throughputRatio} (64 closed-loop clients: bound by the added latency; npm run bench measures capacity at saturation)`,
        ...(r.clientErrors.length ? ['  client errors:', ...r.clientErrors.map((e) => `    ${e}`)] : []),
        ...(r.lostDetails.length ? ['  lost:', ...r.lostDetails.map((e) => `    ${e}`)] : []),
        ok ? 'PASS: no acknowledged write lost' : 'FAIL',
        '',
      ].join('\n'),
    );
  }
  process.exit(ok ? 0 : 1);
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
}
