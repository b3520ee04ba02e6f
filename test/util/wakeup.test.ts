import t from 'tap';
import { Wakeup } from '../../src/util/wakeup.js';

t.test('a wait ends with a wake (true), at its timeout (false), or with the abort reason', async (t) => {
  const w = new Wakeup();
  const ac = new AbortController();
  const p = w.wait(ac.signal);
  setTimeout(() => w.wake(), 10);
  t.equal(await p, true, 'woken');
  const t0 = performance.now();
  t.equal(await w.wait(ac.signal, 30), false, 'timed out');
  t.ok(performance.now() - t0 >= 25, 'not before the timeout');
  w.wake(); // nobody waits: nothing is remembered
  t.equal(await w.wait(ac.signal, 20), false, 'a wake with no waiter does not end the next wait');
  const q = w.wait(ac.signal);
  ac.abort(new Error('stop'));
  await t.rejects(q, /stop/);
  await t.rejects(w.wait(ac.signal), /stop/, 'an aborted signal rejects at once');
});
