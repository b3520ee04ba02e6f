/**
 * TimeSlicer: synchronous work cut in slices of time lets timers run between them, however
 * slow each unit of work is; without it the same work holds them for its whole length.
 */
import t from 'tap';
import { SLICE_MS, TimeSlicer } from '../../src/util/slicer.js';

/** Runs `work` while a 1 ms timer notes its longest lateness. */
async function longestTimerGap(work: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  await new Promise((r) => setTimeout(r, 5));
  last = performance.now();
  await work();
  await new Promise((r) => setTimeout(r, 5));
  clearInterval(timer);
  return worst;
}

const spin = (ms: number) => {
  for (const end = performance.now() + ms; performance.now() < end; );
};

t.test('300 ms of work in 1 ms units: sliced, no timer waits much past the slice; unsliced, it waits the whole 300 ms', async (t) => {
  const sliced = await longestTimerGap(async () => {
    const s = new TimeSlicer();
    for (let i = 0; i < 300; i++) {
      spin(1);
      await s.maybeYield();
    }
  });
  const unsliced = await longestTimerGap(async () => {
    for (let i = 0; i < 300; i++) {
      spin(1);
      await Promise.resolve(); // a resolved await lets no timer run
    }
  });
  t.ok(unsliced >= 290, `unsliced: the timer waited ${unsliced.toFixed(1)} ms`);
  // on a loaded machine the thread may also wait for a core: judge against the unsliced run
  t.ok(sliced < unsliced / 4, `sliced: the timer waited at most ${sliced.toFixed(1)} ms (slice ${SLICE_MS} ms)`);
});

t.test('due() is false until the budget is spent, and yield() starts a new slice', async (t) => {
  const s = new TimeSlicer(20);
  t.notOk(s.due(), 'a fresh slice');
  spin(25);
  t.ok(s.due(), 'after 25 ms of a 20 ms budget');
  await s.yield();
  t.notOk(s.due(), 'a new slice after the turn');
});
