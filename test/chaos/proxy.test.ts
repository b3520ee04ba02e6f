/**
 * The chaos forwarder's faults, on plain TCP (test/transport/secure.test.ts shows what the
 * replication link's TLS makes of a gap, a swap or a cut: the connection ends).
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { FaultProxy } from '../../src/chaos/proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A sink server, a proxy in front of it, and a client through the proxy. */
async function rig(t: Test, rand: () => number) {
  const got: Buffer[] = [];
  let ended = false;
  const server = net.createServer((s) => {
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => (ended = true));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const proxy = await new FaultProxy(() => (server.address() as net.AddressInfo).port, rand).start();
  const client = net.connect(proxy.port, '127.0.0.1');
  client.setNoDelay(true);
  let clientClosed = false;
  client.on('close', () => (clientClosed = true)).on('error', () => {});
  await new Promise((r) => client.once('connect', r));
  t.teardown(() => {
    client.destroy();
    proxy.close();
    server.close();
  });
  await sleep(20);
  const received = () => Buffer.concat(got).toString();
  return { proxy, client, received, ended: () => ended, clientClosed: () => clientClosed };
}

t.test('loss drops whole chunks', async (t) => {
  const r = await rig(t, () => 0);
  r.proxy.loss = 1;
  r.client.write('lost');
  await sleep(50);
  r.proxy.loss = 0;
  r.client.write('kept');
  await sleep(50);
  t.equal(r.received(), 'kept', 'the chunk sent during the loss never arrives; the stream has a gap');
  t.equal(r.proxy.stats.dropped, 1);
});

t.test('reorder sends a held chunk after the next one, and a lone held chunk after a while', async (t) => {
  const r = await rig(t, () => 0); // every draw holds (a chunk after a held one is not drawn for)
  r.proxy.reorder = 0.5;
  r.client.write('first,');
  await sleep(10);
  r.client.write('second,');
  await sleep(30);
  t.equal(r.received(), 'second,first,', 'swapped');
  r.proxy.reorder = 1;
  r.client.write('alone');
  await sleep(120);
  t.equal(r.received(), 'second,first,alone', 'a held chunk with nothing after it goes anyway');
  t.equal(r.proxy.stats.reordered, 2);
});

t.test('truncate sends part of a chunk, then closes the connection', async (t) => {
  const r = await rig(t, () => 0.5);
  r.proxy.truncate = 1;
  r.client.write('0123456789');
  await sleep(100);
  const got = r.received();
  t.ok(got.length > 0 && got.length < 10 && '0123456789'.startsWith(got), `a strict prefix arrived (${JSON.stringify(got)})`);
  t.ok(r.ended(), 'then the end of the stream');
  t.ok(r.clientClosed(), "and the client's connection is closed");
  t.equal(r.proxy.stats.truncated, 1);
});
