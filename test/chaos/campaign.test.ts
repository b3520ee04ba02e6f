/**
 * A short chaos campaign in the suite (the long one is `npm run chaos`): a SIGKILLed primary
 * and a cut link, each checked from the clients' history.
 */
import t from 'tap';
import { campaign } from '../../src/chaos/main.js';

t.test('two faulty runs keep every invariant', async (t) => {
  const lines: string[] = [];
  for (const fault of ['kill-primary', 'partition'] as const) {
    const { summary, results } = await campaign({ runs: 1, seed: fault === 'partition' ? 11 : 7, modes: ['remus'], faults: [fault], log: (s) => lines.push(s) });
    const r = results[0]!;
    t.ok(r.acked > 50, `${fault}: the clients made progress (${r.acked} acknowledged writes, ${r.ops} operations)`);
    t.equal(summary.lostAckedWrites, 0, `${fault}: no acknowledged write lost`);
    t.equal(summary.duplicateWrites, 0, `${fault}: none applied twice`);
    t.ok(summary.linearizable, `${fault}: the history is linearizable ${r.note ?? ''}`);
    t.equal(summary.splitBrain, 0, `${fault}: never two running copies`);
    t.equal(summary.unrecovered, 0, `${fault}: the service answered again (${r.recoveryMs} ms after the fault)`);
    t.equal(summary.unprotected, 0, `${fault}: no primary left unprotected (${r.protection}${r.reprotectedMs !== null ? `, ${r.reprotectedMs} ms after the fault` : ''}${r.note ? `: ${r.note}` : ''})`);
  }
  t.comment(lines.join('\n'));
});
