/**
 * The precopy's progress while `xl-ha remus` waits: polled from a fake daemon, shown on a
 * fake stream (plain lines without a terminal, a cli-progress bar on one).
 */
import t from 'tap';
import { precopyLine, watchPrecopy } from '../../src/cli/progress.js';
import type { DaemonStatusJson, PrecopyProgressJson, ProtectionStatusJson } from '../../src/daemon/status-types.js';

const MIB = 1048576;
const TOTAL = 100 * MIB;

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, out: { isTTY, columns: 100, write: (s: string) => chunks.push(s) } };
}

function precopy(pct: number): PrecopyProgressJson {
  return { sentBytes: pct * MIB, totalBytes: TOTAL, bytesPerSec: 12.3 * MIB, etaSec: pct === 0 ? null : Math.round((100 - pct) / 10) };
}

function answer(vm1: Partial<ProtectionStatusJson> | null): DaemonStatusJson {
  const protections: ProtectionStatusJson[] = [{ domain: 'other', domid: 3, state: 'starting', precopy: precopy(99) }];
  if (vm1) protections.push({ domain: 'vm1', domid: 7, state: 'starting', ...vm1 });
  return { host: 'a', backend: 'sim', protections, replicas: [] };
}

const isVm1 = (p: ProtectionStatusJson) => p.domain === 'vm1';

/** Resolves when `cond` holds (polling every 5 ms), or fails after `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('a plain line says the percentage, the MiB, the rate and the ETA', async (t) => {
  t.equal(precopyLine({ sentBytes: 58 * MIB, totalBytes: 128 * MIB, bytesPerSec: 12.3 * MIB, etaSec: 6 }), 'precopy 45% 58/128 MiB 12.3 MiB/s ETA 6s');
  t.equal(precopyLine({ sentBytes: 0, totalBytes: 8 * MIB, bytesPerSec: 0, etaSec: null }), 'precopy 0% 0.0/8.0 MiB 0.0 MiB/s ETA -', 'no rate yet');
  t.equal(precopyLine({ sentBytes: 1, totalBytes: 0, bytesPerSec: 0, etaSec: 125 }), 'precopy 0% 0.0/0.0 MiB 0.0 MiB/s ETA 2m05s', 'a total of 0 is 0 %');
});

t.test('without a terminal, a line each 10 % of the copy, and nothing after stop', async (t) => {
  const { chunks, out } = sink(false);
  let pct = 0;
  let polls = 0;
  // 5 % more at each poll: lines at 0, 10, ..., 100 %, not at the odd steps
  const w = watchPrecopy(
    async () => {
      polls++;
      const a = answer({ precopy: precopy(pct) });
      pct = Math.min(100, pct + 5);
      return a;
    },
    isVm1,
    out,
    { pollMs: 2 },
  );
  await until(() => polls >= 22);
  w.stop();
  const lines = chunks.join('').split('\n').filter(Boolean);
  t.same(
    lines.map((l) => /^precopy (\d+)% /.exec(l)?.[1]),
    ['0', '10', '20', '30', '40', '50', '60', '70', '80', '90', '100'],
    'one line per 10 %',
  );
  t.equal(lines[4], 'precopy 40% 40/100 MiB 12.3 MiB/s ETA 6s');
  const seen = chunks.length;
  const pollsAtStop = polls;
  await new Promise((r) => setTimeout(r, 30));
  t.equal(chunks.length, seen, 'nothing written after stop');
  t.ok(polls <= pollsAtStop + 1, 'and no more polling (at most the one in flight)');
  w.stop(); // idempotent
});

t.test('without a terminal, a copy that does not move gets a line every 10 s', async (t) => {
  const { chunks, out } = sink(false);
  let clock = 0;
  let polls = 0;
  const w = watchPrecopy(
    async () => {
      polls++;
      clock = Math.min(polls, 9) * 2500; // then the clock stands still: no more lines
      return answer({ precopy: precopy(42) });
    },
    isVm1,
    out,
    { pollMs: 2, now: () => clock },
  );
  await until(() => polls >= 9); // 2.5 s ... 22.5 s
  w.stop();
  t.equal(chunks.length, 3, 'at 2.5 s, 12.5 s and 22.5 s');
  t.ok(chunks.every((c) => c === 'precopy 42% 42/100 MiB 12.3 MiB/s ETA 6s\n'));
});

t.test('poll errors, a protection not there yet and an absent field show nothing', async (t) => {
  const { chunks, out } = sink(false);
  const answers: (DaemonStatusJson | Error)[] = [
    new Error('the xl-ha daemon did not answer within 5000 ms'),
    answer(null), // not registered yet
    answer({}), // starting, no precopy field (an older daemon, or the handshake)
    { host: 'a', backend: 'sim' } as DaemonStatusJson, // no protections at all
    new Error('connection reset'),
    answer({ precopy: precopy(30) }),
  ];
  let i = 0;
  const w = watchPrecopy(
    async () => {
      const a = answers[Math.min(i++, answers.length - 1)]!;
      if (a instanceof Error) throw a;
      return a;
    },
    isVm1,
    out,
    { pollMs: 2 },
  );
  await until(() => i >= answers.length + 2);
  w.stop();
  t.same(chunks, ['precopy 30% 30/100 MiB 12.3 MiB/s ETA 7s\n'], "only vm1's progress, once it is there; other domains' are not shown");
});

t.test('a domid matches as well as a name', async (t) => {
  const { chunks, out } = sink(false);
  let polls = 0;
  const w = watchPrecopy(
    async () => {
      polls++;
      return answer({ precopy: precopy(50) });
    },
    (p) => p.domid === 7,
    out,
    { pollMs: 2 },
  );
  await until(() => polls >= 3);
  w.stop();
  t.same(chunks, ['precopy 50% 50/100 MiB 12.3 MiB/s ETA 5s\n']);
});

t.test('stop before the first poll writes nothing and polls nothing', async (t) => {
  const { chunks, out } = sink(true);
  let polls = 0;
  const w = watchPrecopy(
    async () => {
      polls++;
      return answer({ precopy: precopy(50) });
    },
    isVm1,
    out,
    { pollMs: 5 },
  );
  w.stop();
  await new Promise((r) => setTimeout(r, 30));
  t.equal(polls, 0);
  t.same(chunks, []);
});

t.test('on a terminal, a cli-progress bar that stops cleanly', async (t) => {
  const { chunks, out } = sink(true);
  let pct = 0;
  let polls = 0;
  const w = watchPrecopy(
    async () => {
      polls++;
      if (pct > 100) return answer({ state: 'protected' }); // the copy is done, the field gone
      const a = answer({ precopy: precopy(pct) });
      pct += 25;
      return a;
    },
    isVm1,
    out,
    { pollMs: 5 },
  );
  await until(() => polls >= 8);
  w.stop();
  const all = chunks.join('');
  t.match(all, /precopy \|[█░]{30}\| 0% 0\.0\/100 MiB 12\.3 MiB\/s ETA -/, 'the bar as it starts');
  t.match(all, /precopy \|█{30}\| 100% 100\/100 MiB 12\.3 MiB\/s ETA 0s/, 'full once the domain is protected');
  t.ok(all.endsWith('\n'), 'stop ends the bar with a newline');
  const seen = chunks.length;
  await new Promise((r) => setTimeout(r, 300));
  t.equal(chunks.length, seen, "nothing after stop (cli-progress's redraw timer is gone too)");
});
