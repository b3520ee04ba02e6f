/**
 * A linearizability checker for the kv service's history, after Wing & Gong and Lowe's
 * search as Porcupine does it: the history is split per key (each key is an independent
 * register, so the whole is linearizable iff each key is), and for each key a depth-first
 * search looks for an order of the operations that respects real time (an operation that
 * returned before another was invoked comes first) and the register's semantics (a read
 * returns the last value written), with memoisation of (linearized set, register value).
 *
 * An operation whose answer never came (the client gave up, or the run ended) may have taken
 * effect at any time after its invocation, or never: it is given an infinite return time,
 * and a put may be left out of the order.
 */

export interface KvOp {
  client: number;
  key: string;
  kind: 'put' | 'get';
  /** put: the value written; get: the value read (null: not found), when it returned. */
  value: string | null;
  /** performance.now() at invocation and at the answer (Infinity: no answer). */
  call: number;
  ret: number;
}

export interface CheckResult {
  linearizable: boolean;
  /** The first key whose history has no valid order, with its operations. */
  counterexample?: { key: string; ops: KvOp[] };
  keys: number;
  ops: number;
  /** Search steps, all keys (a cost figure). */
  steps: number;
}

const MAX_STEPS_PER_KEY = 2_000_000;

export function checkLinearizable(history: readonly KvOp[]): CheckResult {
  const byKey = new Map<string, KvOp[]>();
  for (const op of history) {
    const l = byKey.get(op.key);
    if (l) l.push(op);
    else byKey.set(op.key, [op]);
  }
  let steps = 0;
  for (const [key, ops] of byKey) {
    const r = checkRegister(ops);
    steps += r.steps;
    if (!r.ok) return { linearizable: false, counterexample: { key, ops }, keys: byKey.size, ops: history.length, steps };
  }
  return { linearizable: true, keys: byKey.size, ops: history.length, steps };
}

/** One register: is there a linearization? Unanswered gets are dropped (they constrain nothing). */
function checkRegister(all: readonly KvOp[]): { ok: boolean; steps: number } {
  const ops = all.filter((o) => !(o.kind === 'get' && o.ret === Infinity)).sort((a, b) => a.call - b.call);
  const n = ops.length;
  if (n > 30_000) throw new Error(`a key with ${n} operations is beyond this checker; use more keys`);
  const done = new Uint8Array(n);
  const seen = new Set<string>();
  let steps = 0;
  let remaining = ops.filter((o) => o.ret !== Infinity).length; // answered ops must all be placed
  // candidates: not done ops whose call precedes the earliest return among not-done answered ops
  const search = (value: string | null): boolean => {
    if (remaining === 0) return true;
    if (++steps > MAX_STEPS_PER_KEY) throw new Error(`linearizability search exceeded ${MAX_STEPS_PER_KEY} steps on one key`);
    const memo = `${value ?? '\u0000'}|${doneKey(done)}`;
    if (seen.has(memo)) return false;
    seen.add(memo);
    let minRet = Infinity;
    for (let i = 0; i < n; i++) if (!done[i] && ops[i]!.ret < minRet) minRet = ops[i]!.ret;
    for (let i = 0; i < n; i++) {
      if (done[i]) continue;
      const o = ops[i]!;
      if (o.call > minRet) break; // sorted by call: no later op can go before the one returning at minRet
      let next: string | null;
      if (o.kind === 'put') next = o.value;
      else {
        if (o.value !== value) continue;
        next = value;
      }
      done[i] = 1;
      if (o.ret !== Infinity) remaining--;
      if (search(next)) return true;
      done[i] = 0;
      if (o.ret !== Infinity) remaining++;
    }
    return false;
  };
  return { ok: search(null), steps };
}

function doneKey(done: Uint8Array): string {
  // compact: indices of done ops
  let s = '';
  for (let i = 0; i < done.length; i++) if (done[i]) s += i.toString(36) + ',';
  return s;
}
