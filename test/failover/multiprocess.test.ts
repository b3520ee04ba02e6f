import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runScenario } from '../../src/demo/scenario.js';

t.test('the backup takes over from a SIGKILLed primary with every acknowledged write and the checkpoint memory byte for byte', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-mp-'));
  const digests = (host: string) => path.join(dir, `${host}.digests`);
  const r = await runScenario({
    memoryMiB: 16,
    dirtyMiBPerSec: 2,
    intervalMs: 20,
    heartbeatMs: 50,
    failoverTimeoutMs: 200,
    clients: 32,
    connections: 4,
    baselineMs: 500,
    protectedMs: 1500,
    afterMs: 500,
    dir,
    env: (host) => ({ XLHA_DEBUG_DIGESTS: digests(host) }),
  });
  t.equal(r.lostAckedWrites, 0, `no acknowledged write lost (${r.keysChecked} keys read back) ${r.lostDetails.join('; ')}`);
  t.ok(r.ackedWrites > 100, `load made progress (${r.ackedWrites} acknowledged writes)`);
  t.equal(r.writesAppliedByGuest, r.ackedWrites, 'every acknowledged write was applied exactly once');
  t.same(r.clientErrors, [], 'no client gave up');
  t.equal(r.backupStatus.state, 'active', 'the backup runs the domain');
  t.ok(r.failoverMs > 0, `failover took ${r.failoverMs} ms`);

  const primaryLines = fs.readFileSync(digests('primary'), 'utf8').trim().split('\n');
  const backupLines = fs.readFileSync(digests('backup'), 'utf8').trim().split('\n');
  const captured = new Map<number, string>();
  let lastCommitted = 0;
  for (const l of primaryLines) {
    const [kind, epoch, sha] = l.split(' ');
    if (kind === 'captured') captured.set(Number(epoch), sha!);
    if (kind === 'committed') lastCommitted = Math.max(lastCommitted, Number(epoch));
  }
  const act = backupLines.find((l) => l.startsWith('activated '));
  t.ok(act, 'the backup recorded its activation');
  const [, epochText, sha] = act!.split(' ');
  const epoch = Number(epochText);
  t.ok(epoch >= lastCommitted, `the backup resumed from checkpoint ${epoch}, not before the last acknowledged one (${lastCommitted})`);
  t.ok(captured.has(epoch), `the primary captured checkpoint ${epoch}`);
  t.equal(sha, captured.get(epoch), `backup memory equals checkpoint ${epoch} byte for byte`);
});
