/**
 * Which of the lab's scenarios a run asks for, and whether the run passed: the part of run.ts
 * that decides, kept free of I/O so that test/xen-lab/select.test.ts can check it.
 *
 * - no selection: every scenario; each must be ok (the full lab, `npm run test:xen`);
 * - `--smoke`: the scenarios CI runs (SMOKE_SCENARIOS), `.ci/run` calls `npm run test:xen:smoke`;
 * - XENLAB_SCENARIOS=a,b: those. A scenario that was not asked for is listed in `notSelected`
 *   and does not count; a selected one that did not run (skipped, or no result) fails the run.
 */

/** Every scenario run-scenarios.sh knows, in its order. */
export const SCENARIOS = ['stock-remus', 'shim', 'remus', 'xlha-remus-figures', 'netbuf', 'kemari', 'failover', 'xl-create-ha', 'stock-remus-tcp', 'stock-remus-after', 'xlha-remus-after', 'tls-cost', 'xl-save', 'transfer', 'disk', 'watchdog'] as const;
/** Diagnostics: run only when named (they measure, they do not pass or fail xl-ha). */
export const DIAGNOSTICS = ['relay-costs'] as const;
/** The lab smoke in CI: the shim against libxl, remus, a failover, and the xl lifecycle. */
export const SMOKE_SCENARIOS = ['shim', 'remus', 'failover', 'xl-create-ha'] as const;
/**
 * QEMU's time limit for the smoke when XENLAB_TIMEOUT is not set (seconds): a bound on a hung
 * lab, not the expected time. The smoke took 1129 s with the boot on a slow boot (yardstick
 * 514 ms, 2026-12-02: each of its three protection starts copies 128 MiB at 1-2 MiB/s under TCG)
 * and its xl-create-ha still ran out of time (boots differ by 2x and more). The scenarios' own
 * limits grow with the boot's slowness (run-scenarios.sh LIMIT_FACTOR); this leaves them room.
 */
export const SMOKE_TIMEOUT_SECS = 1800;

export interface Selection {
  /** The scenarios to run, or null for all of them. */
  only: string[] | null;
  /** How the selection was made, for the summary: 'all', 'smoke' or 'XENLAB_SCENARIOS'. */
  source: 'all' | 'smoke' | 'XENLAB_SCENARIOS';
}

export class SelectionError extends Error {}

/**
 * The selection from the command line (`--smoke`) and XENLAB_SCENARIOS. Throws SelectionError
 * naming the bad argument or scenario and what is accepted.
 */
export function selectScenarios(argv: readonly string[], envList: string | undefined): Selection {
  let smoke = false;
  for (const a of argv) {
    if (a === '--smoke') smoke = true;
    else throw new SelectionError(`unknown argument ${JSON.stringify(a)}: accepted: --smoke (the CI smoke: ${SMOKE_SCENARIOS.join(', ')}); choose scenarios with XENLAB_SCENARIOS=a,b`);
  }
  const list = (envList ?? '').split(/[\s,]+/).filter(Boolean);
  if (smoke && list.length) throw new SelectionError(`--smoke and XENLAB_SCENARIOS=${JSON.stringify(envList)} both choose the scenarios: give one of them`);
  if (smoke) return { only: [...SMOKE_SCENARIOS], source: 'smoke' };
  if (!list.length) return { only: null, source: 'all' };
  const known: readonly string[] = [...SCENARIOS, ...DIAGNOSTICS];
  const bad = list.filter((n) => !known.includes(n));
  if (bad.length) throw new SelectionError(`XENLAB_SCENARIOS names ${bad.map((n) => JSON.stringify(n)).join(', ')}, which the lab does not have: accepted: ${known.join(', ')}`);
  return { only: [...new Set(list)], source: 'XENLAB_SCENARIOS' };
}

export type Status = 'ok' | 'fail' | 'skipped';
export interface Verdict {
  ok: boolean;
  failed: string[];
  skipped: string[];
  notSelected: string[];
}

/**
 * The run's verdict from each scenario's status (a scenario with no entry had no result).
 * Selected scenarios must each be ok; with no selection, every scenario is selected.
 * A diagnostic that was asked for and did not report is a failure too.
 */
export function verdict(sel: Selection, statuses: ReadonlyMap<string, Status | undefined>, labProblem: boolean): Verdict {
  const wanted = sel.only ?? [...SCENARIOS];
  const failed: string[] = [];
  const skipped: string[] = [];
  for (const name of wanted) {
    const s = statuses.get(name);
    if (s === 'skipped') skipped.push(name);
    else if (s !== 'ok') failed.push(name);
  }
  // results the lab printed for scenarios outside the selection (a diagnostic, or a name this
  // harness does not know) still fail the run when they failed
  for (const [name, s] of statuses) if (!wanted.includes(name) && s === 'fail') failed.push(name);
  const notSelected = [...SCENARIOS].filter((n) => !wanted.includes(n));
  return { ok: !labProblem && failed.length === 0 && skipped.length === 0, failed, skipped, notSelected };
}
