/** The linearizability checker (src/chaos/linearizability.ts) on histories we know the answer for. */
import t from 'tap';
import { checkLinearizable, type KvOp } from '../../src/chaos/linearizability.js';

const put = (client: number, key: string, value: string, call: number, ret: number): KvOp => ({ client, key, kind: 'put', value, call, ret });
const get = (client: number, key: string, value: string | null, call: number, ret: number): KvOp => ({ client, key, kind: 'get', value, call, ret });

t.test('sequential and concurrent histories that have an order are accepted', async (t) => {
  t.ok(checkLinearizable([put(1, 'a', 'x', 0, 1), get(2, 'a', 'x', 2, 3)]).linearizable, 'a read after a write sees it');
  t.ok(checkLinearizable([get(2, 'a', null, 0, 1), put(1, 'a', 'x', 2, 3)]).linearizable, 'a read before any write sees nothing');
  t.ok(checkLinearizable([put(1, 'a', 'x', 0, 10), get(2, 'a', null, 1, 2), get(3, 'a', 'x', 3, 4)]).linearizable, 'concurrent with the write, either value');
  t.ok(checkLinearizable([put(1, 'a', 'x', 0, 1), put(2, 'a', 'y', 2, Infinity), get(3, 'a', 'x', 5, 6)]).linearizable, 'an unanswered write may never have happened');
  t.ok(checkLinearizable([put(1, 'a', 'x', 0, 1), put(2, 'a', 'y', 2, Infinity), get(3, 'a', 'y', 5, 6), get(3, 'a', 'y', 7, 8)]).linearizable, 'or may have');
  t.ok(checkLinearizable([put(1, 'a', 'x', 0, 1), put(1, 'b', 'y', 0, 1), get(2, 'b', 'y', 2, 3), get(2, 'a', 'x', 2, 3)]).linearizable, 'keys are independent');
});

t.test('histories with no order are refused, naming the key', async (t) => {
  const lost = checkLinearizable([put(1, 'a', 'x', 0, 1), put(1, 'a', 'y', 2, 3), get(2, 'a', 'x', 4, 5)]);
  t.notOk(lost.linearizable, 'an acknowledged write lost (a stale read after it)');
  t.equal(lost.counterexample?.key, 'a');
  t.notOk(checkLinearizable([get(2, 'a', 'x', 0, 1), put(1, 'a', 'x', 2, 3)]).linearizable, 'a read from the future');
  t.notOk(checkLinearizable([put(1, 'a', 'x', 0, 1), get(2, 'a', 'x', 2, 3), get(2, 'a', null, 4, 5)]).linearizable, 'a write undone (a failover to an older checkpoint)');
  t.notOk(
    checkLinearizable([put(1, 'a', 'x', 0, 1), put(2, 'a', 'y', 2, 3), get(3, 'a', 'y', 4, 5), get(3, 'a', 'x', 6, 7)]).linearizable,
    'values going back (two copies answering)',
  );
  t.notOk(checkLinearizable([put(1, 'a', 'x', 0, 1), get(2, 'a', 'z', 2, 3)]).linearizable, 'a value never written');
});

t.test('a long concurrent history is checked in bounded time', async (t) => {
  const ops: KvOp[] = [];
  let now = 0;
  let last: string | null = null;
  for (let i = 0; i < 3000; i++) {
    const k = `k${i % 20}`;
    if (i % 3 === 0) {
      ops.push(put(i % 8, k, `v${i}`, now, now + 3));
    } else {
      // reads see the last write of their key in this sequential-ish history
      const w = [...ops].reverse().find((o) => o.key === k && o.kind === 'put' && o.ret <= now);
      last = w ? w.value : null;
      ops.push(get(i % 8, k, last, now, now + 1));
    }
    now += 4;
  }
  const t0 = performance.now();
  const r = checkLinearizable(ops);
  t.ok(r.linearizable, `${r.ops} ops on ${r.keys} keys, ${r.steps} steps, ${Math.round(performance.now() - t0)} ms`);
});
