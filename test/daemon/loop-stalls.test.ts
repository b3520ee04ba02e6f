/**
 * The main thread's stall recorder: a synchronous stretch shows as one stall of about its
 * length, with the garbage collection and CPU time inside it; listeners stop at unsubscribe.
 */
import t from 'tap';
import fs from 'node:fs';
import { watchGc } from '../../src/daemon/gc-stats.js';
import { STALL_MS, loopStats, onLoopStall, watchLoop, type LoopStall } from '../../src/daemon/loop-stalls.js';
import { sleep } from '../helpers/engine-fakes.js';

t.test('a 400 ms synchronous stretch is one stall of at least 380 ms, told to listeners and kept for status', async (t) => {
  t.equal(loopStats(), null, 'nothing before watchLoop');
  watchGc();
  watchLoop();
  await sleep(100);
  const before = loopStats()!;
  const seen: LoopStall[] = [];
  const off = onLoopStall((s) => seen.push(s));
  t.teardown(off);
  for (const end = performance.now() + 400; performance.now() < end; );
  await sleep(100);
  const after = loopStats()!;
  const mine = seen.filter((s) => s.ms >= 380);
  t.equal(mine.length, 1, `one stall of 380 ms or more (seen: ${seen.map((s) => s.ms).join(', ')} ms)`);
  t.ok(mine[0]!.ms < 2000, 'of about the stretch');
  t.ok(mine[0]!.gcMs >= 0 && mine[0]!.gcMs < mine[0]!.ms, 'its GC share is part of it');
  if (fs.existsSync('/proc/thread-self/schedstat')) {
    // a spinning thread is on a core or waiting for one, never asleep
    const { runMs, waitMs, ms } = mine[0]!;
    t.ok(runMs !== null && waitMs !== null && runMs + waitMs >= ms - 30, `on a core ${runMs} ms + waiting ${waitMs} ms covers the stall of ${ms} ms`);
    t.ok(runMs! >= 100, 'much of it on a core');
  }
  t.ok(after.stalls >= before.stalls + 1 && after.stallMs >= before.stallMs + 380, 'counted in the totals');
  t.ok(after.maxMs >= 380);
  t.same(after.recent.at(-1)?.at, seen.at(-1)?.at, 'the last one is in status');
  off();
  const heard = seen.length;
  for (const end = performance.now() + 2 * STALL_MS; performance.now() < end; );
  await sleep(100);
  t.ok(loopStats()!.stalls > after.stalls, 'another stall, counted');
  t.equal(seen.length, heard, 'but not told after unsubscribing');
});
