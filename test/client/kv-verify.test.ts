/**
 * KvLoad's read-back: a write whose request went unanswered is in doubt, so reading it back is
 * right, not a loss; any other value is a loss. Against a kv server the test writes, which
 * applies one PUT per client without answering it, and can be told to forget a key.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { KvLoad } from '../../src/client/kv.js';
import { FrameSplitter, KV_OP, KV_STATUS, decodeRequest, encodeResponsePayload, frame } from '../../src/backend/sim/kvproto.js';

async function fakeKv(t: Test, o: { silentAfterPuts: number }) {
  const store = new Map<string, Uint8Array>();
  const puts = new Map<number, number>();
  const server = net.createServer((sock) => {
    const split = new FrameSplitter();
    sock.on('data', (chunk) => {
      for (const p of split.push(chunk)) {
        const r = decodeRequest(p)!;
        const key = Buffer.from(r.key).toString();
        let value: Uint8Array = new Uint8Array(0);
        let status: number = KV_STATUS.OK;
        if (r.op === KV_OP.PUT) {
          store.set(key, Uint8Array.from(r.value));
          const n = (puts.get(r.clientId) ?? 0) + 1;
          puts.set(r.clientId, n);
          if (n > o.silentAfterPuts) continue; // applied, never answered
        } else if (r.op === KV_OP.GET) {
          const v = store.get(key);
          if (v) value = v;
          else status = KV_STATUS.NOT_FOUND;
        }
        sock.write(frame(encodeResponsePayload({ clientId: r.clientId, seq: r.seq, status, value })));
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, store };
}

t.test('a write applied but never answered reads back as in doubt, not lost; a value nobody wrote is lost', async (t) => {
  const kv = await fakeKv(t, { silentAfterPuts: 5 });
  const load = new KvLoad({ host: '127.0.0.1', port: kv.port, clients: 2, connections: 1, keysPerClient: 2, readEvery: 1000, retryMs: 100, deadlineMs: 300 });
  t.teardown(() => load.close());
  await load.run(() => false); // each client stops at its unanswered sixth write
  t.equal(load.errors.length, 2, `each client's sixth write went unanswered: ${load.errors.join('; ')}`);
  t.equal(load.puts, 10, 'five acknowledged writes per client');
  t.equal(load.inDoubt.size, 2, 'one write in doubt per client');
  const first = await load.verify();
  t.same(first.lost, [], 'nothing lost');
  t.equal(first.inDoubtApplied, 2, 'the two writes in doubt read back: applied');
  // a key whose value is neither the acknowledged one nor the one in doubt is a loss
  const [key] = [...load.inDoubt.keys()];
  kv.store.set(key!, Buffer.from('v9.9.nobody-wrote-this'));
  const second = await load.verify();
  t.equal(second.lost.length, 1, 'that key is lost');
  t.match(second.lost[0], new RegExp(`^${key}: acknowledged v\\d+\\.\\d+\\.[0-9a-f]+, read v9\\.9\\.nobody-wrote-this \\(the write in doubt was v`));
  t.equal(second.inDoubtApplied, 1);
});
