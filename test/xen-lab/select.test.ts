import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { DIAGNOSTICS, SCENARIOS, SMOKE_SCENARIOS, SelectionError, selectScenarios, verdict, type Status } from './select.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'xen-lab');

t.test('no selection runs every scenario, and every one must be ok', async (t) => {
  const sel = selectScenarios([], undefined);
  t.same(sel, { only: null, source: 'all' });
  const all = new Map<string, Status>(SCENARIOS.map((n) => [n, 'ok']));
  t.same(verdict(sel, all, false), { ok: true, failed: [], skipped: [], notSelected: [] });
  const one = new Map(all);
  one.set('watchdog', 'skipped');
  t.same(verdict(sel, one, false), { ok: false, failed: [], skipped: ['watchdog'], notSelected: [] });
  const missing = new Map(all);
  missing.delete('kemari');
  t.same(verdict(sel, missing, false).failed, ['kemari'], 'a scenario with no result fails');
});

t.test('--smoke selects the CI scenarios and the others do not count', async (t) => {
  const sel = selectScenarios(['--smoke'], undefined);
  t.same(sel, { only: ['shim', 'remus', 'failover', 'xl-create-ha'], source: 'smoke' });
  // dom0 reports the unselected ones as skipped ("not selected")
  const st = new Map<string, Status>(SCENARIOS.map((n) => [n, (SMOKE_SCENARIOS as readonly string[]).includes(n) ? 'ok' : 'skipped']));
  const v = verdict(sel, st, false);
  t.equal(v.ok, true);
  t.same(v.notSelected, SCENARIOS.filter((n) => !(SMOKE_SCENARIOS as readonly string[]).includes(n)));
  st.set('failover', 'fail');
  t.same(verdict(sel, st, false), { ok: false, failed: ['failover'], skipped: [], notSelected: v.notSelected });
  st.set('failover', 'skipped');
  t.same(verdict(sel, st, false).skipped, ['failover'], 'a selected scenario that was skipped fails the run');
  st.delete('failover');
  t.same(verdict(sel, st, false).failed, ['failover'], 'a selected scenario with no result fails the run');
});

t.test('a lab that could not start fails the run whatever the scenarios say', async (t) => {
  const sel = selectScenarios(['--smoke'], undefined);
  const st = new Map<string, Status>(SMOKE_SCENARIOS.map((n) => [n, 'ok']));
  t.equal(verdict(sel, st, true).ok, false);
});

t.test('XENLAB_SCENARIOS selects by name, diagnostics included, and refuses unknown names', async (t) => {
  t.same(selectScenarios([], 'remus, kemari,remus'), { only: ['remus', 'kemari'], source: 'XENLAB_SCENARIOS' });
  t.same(selectScenarios([], `${DIAGNOSTICS[0]}`).only, [DIAGNOSTICS[0]]);
  t.same(selectScenarios([], ' , '), { only: null, source: 'all' }, 'an empty list is no selection');
  t.throws(() => selectScenarios([], 'remus,remsu'), { message: /XENLAB_SCENARIOS names "remsu", which the lab does not have: accepted: stock-remus, shim, / });
  let thrown: unknown;
  try {
    selectScenarios([], 'remus,remsu');
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown instanceof SelectionError, 'a SelectionError, which run.ts reports as the reason');
});

t.test('a failed result outside the selection still fails the run', async (t) => {
  const sel = selectScenarios([], 'remus');
  const st = new Map<string, Status>([
    ['remus', 'ok'],
    ['relay-costs', 'fail'],
  ]);
  t.same(verdict(sel, st, false).failed, ['relay-costs']);
});

t.test('bad command lines name the argument and what is accepted', async (t) => {
  t.throws(() => selectScenarios(['--smok'], undefined), { message: 'unknown argument "--smok": accepted: --smoke (the CI smoke: shim, remus, failover, xl-create-ha); choose scenarios with XENLAB_SCENARIOS=a,b' });
  t.throws(() => selectScenarios(['--smoke'], 'remus'), { message: /--smoke and XENLAB_SCENARIOS="remus" both choose the scenarios/ });
});

t.test('the scenario lists agree with run-scenarios.sh', async (t) => {
  const sh = fs.readFileSync(path.join(SRC, 'files', 'run-scenarios.sh'), 'utf8');
  const m = /^SCENARIOS="([^"]+)"/m.exec(sh);
  t.ok(m, 'run-scenarios.sh has its SCENARIOS list');
  t.same(
    [...m![1]!.matchAll(/(?:^|\s)([a-z][a-z0-9-]*):/g)].map((x) => x[1]),
    [...SCENARIOS],
    'same scenarios, same order',
  );
  for (const d of DIAGNOSTICS) t.match(sh, new RegExp(`for d in [^;]*\\b${d}:`), `${d} is a diagnostic there too`);
  for (const s of SMOKE_SCENARIOS) t.ok((SCENARIOS as readonly string[]).includes(s), `smoke scenario ${s} exists`);
});
