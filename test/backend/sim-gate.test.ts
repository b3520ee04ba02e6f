import t from 'tap';
import { OutputGate } from '../../src/backend/sim/nic.js';

/** A gate whose deliveries are recorded as "conn:text" strings. */
function gate() {
  const out: string[] = [];
  let flushes = 0;
  const g = new OutputGate(
    (conn, data) => out.push(`${conn}:${Buffer.from(data).toString()}`),
    () => flushes++,
  );
  const send = (conn: number, text: string) => g.send(conn, Buffer.from(text));
  return { g, out, send, flushes: () => flushes };
}

t.test('without buffering, output leaves at once and nothing is held', async (t) => {
  const { g, out, send } = gate();
  send(1, 'a');
  send(2, 'bb');
  t.same(out, ['1:a', '2:bb']);
  t.equal(g.bufferedBytes, 0);
  g.barrier(1); // no effect while not buffering
  g.release(1);
  send(1, 'c');
  t.same(out, ['1:a', '2:bb', '1:c']);
  t.equal(g.bufferedBytes, 0);
});

t.test('while buffering nothing leaves until the epoch is released', async (t) => {
  const { g, out, send } = gate();
  g.startBuffering();
  send(1, 'hello');
  send(2, 'xy');
  t.same(out, [], 'held');
  t.equal(g.bufferedBytes, 7);
  g.barrier(1);
  t.same(out, [], 'a barrier alone releases nothing');
  g.release(1);
  t.same(out, ['1:hello', '2:xy'], 'released in the order sent');
  t.equal(g.bufferedBytes, 0);
});

t.test('release(N) lets out exactly the output before barrier N, not what came after it', async (t) => {
  const { g, out, send, flushes } = gate();
  g.startBuffering();
  send(1, 'e1a');
  send(1, 'e1b');
  g.barrier(1);
  send(1, 'e2');
  g.barrier(2);
  send(1, 'e3-x');
  g.barrier(3);
  send(1, 'open');
  t.equal(g.bufferedBytes, 3 + 3 + 2 + 4 + 4);

  g.release(1);
  t.same(out, ['1:e1a', '1:e1b']);
  t.equal(g.bufferedBytes, 2 + 4 + 4);
  t.equal(flushes(), 1, 'a release flushes the NIC');

  g.release(1);
  t.same(out, ['1:e1a', '1:e1b'], 'releasing the same epoch again lets out nothing more');

  g.release(3);
  t.same(out, ['1:e1a', '1:e1b', '1:e2', '1:e3-x'], 'release(3) covers epochs 2 and 3 but not the open epoch');
  t.equal(g.bufferedBytes, 4);

  g.release(2);
  t.same(out.length, 4, 'an older epoch after a newer one releases nothing');

  g.barrier(4);
  g.release(4);
  t.same(out.at(-1), '1:open');
  t.equal(g.bufferedBytes, 0);
});

t.test('release(N) with no barrier at or below N releases nothing', async (t) => {
  const { g, out, send } = gate();
  g.startBuffering();
  send(1, 'aaa');
  t.equal(g.bufferedBytes, 3);
  g.release(5);
  t.same(out, [], 'no barrier at all');
  g.barrier(7);
  send(1, 'bb');
  g.release(6);
  t.same(out, [], 'only a barrier above N');
  t.equal(g.bufferedBytes, 5);
  g.release(7);
  t.same(out, ['1:aaa']);
  t.equal(g.bufferedBytes, 2);
});

t.test('release(N) uses the last barrier at or below N when N itself has none', async (t) => {
  const { g, out, send } = gate();
  g.startBuffering();
  send(1, 'a');
  g.barrier(2);
  send(1, 'b');
  g.barrier(4);
  send(1, 'c');
  g.barrier(6);
  g.release(5);
  t.same(out, ['1:a', '1:b']);
  t.equal(g.bufferedBytes, 1);
});

t.test('releaseAll lets everything out, barriers or not, and stops buffering', async (t) => {
  const { g, out, send, flushes } = gate();
  g.startBuffering();
  send(1, 'a');
  g.barrier(1);
  send(2, 'b');
  g.barrier(2);
  send(3, 'c');
  g.release(1);
  t.same(out, ['1:a']);
  g.releaseAll();
  t.same(out, ['1:a', '2:b', '3:c'], 'in order, nothing twice');
  t.equal(g.bufferedBytes, 0);
  t.ok(flushes() >= 2);
  send(1, 'd');
  t.same(out.at(-1), '1:d', 'after releaseAll output leaves at once');
  t.equal(g.bufferedBytes, 0);
  g.releaseAll();
  t.equal(out.length, 4, 'a second releaseAll has nothing to let out');

  g.startBuffering();
  send(1, 'e');
  t.equal(out.length, 4, 'buffering can start again');
  t.equal(g.bufferedBytes, 1);
  g.barrier(9);
  g.release(9);
  t.same(out.at(-1), '1:e');
});

t.test('a long run of epochs keeps order and byte accounting exact', async (t) => {
  const { g, out, send } = gate();
  g.startBuffering();
  const epochs = 6000;
  let sent = 0;
  let expectHeld = 0;
  let released = 0;
  let bad = 0;
  for (let e = 1; e <= epochs; e++) {
    for (let k = 0; k < 3; k++) {
      const text = `${e}.${k}`;
      send(e % 5, text);
      sent++;
      expectHeld += text.length;
    }
    g.barrier(e);
    if (e > 2) {
      // Acks trail by two epochs.
      const before = out.length;
      g.release(e - 2);
      const n = out.length - before;
      if (n !== 3) bad++;
      for (let k = 0; k < 3; k++) expectHeld -= `${e - 2}.${k}`.length;
      released += n;
      if (g.bufferedBytes !== expectHeld) bad++;
    }
  }
  t.equal(bad, 0, 'each release let out exactly its epoch and the held byte count stayed exact');
  g.release(epochs);
  t.equal(out.length, sent);
  t.equal(g.bufferedBytes, 0);
  const order = out.map((s) => s.split(':')[1]!);
  const expected: string[] = [];
  for (let e = 1; e <= epochs; e++) for (let k = 0; k < 3; k++) expected.push(`${e}.${k}`);
  t.same(order, expected, 'output left in the order it was sent');
  t.equal(out[0], '1:1.0', 'each packet went to its own connection');
  t.equal(released + 6, sent);
});
