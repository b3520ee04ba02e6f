import t from 'tap';
import net from 'node:net';
import { Channel, WRITE_SLICE } from '../../src/transport/channel.js';
import { frameParts, type Frame } from '../../src/transport/framing.js';
import { XLHA_REC } from '../../src/transport/channel-records.js';
import { SLAB_READ_BYTES } from '../../src/util/slab-reads.js';
import { HeartbeatMonitor } from '../../src/transport/heartbeat.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A server whose connections become Channels through Channel.accept, and a client socket. */
async function pair(t: { teardown(fn: () => void): void }): Promise<{ server: net.Server; accepted: Promise<Channel>; client: net.Socket }> {
  let give: (c: Channel) => void;
  const accepted = new Promise<Channel>((r) => (give = r));
  const server = net.createServer({ pauseOnConnect: true }, (sock) => give(Channel.accept(sock)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  t.teardown(() => {
    client.destroy();
    server.close();
  });
  return { server, accepted, client };
}

t.test('an accepted channel reads in large buffers and delivers every frame, bytes intact', async (t) => {
  const { server, accepted, client } = await pair(t);
  const ch = await accepted;
  t.teardown(() => ch.fail());
  t.ok(ch.largeReads, 'the connection moved to a socket that reads into our own buffers');
  const conns = await new Promise<number>((r) => server.getConnections((_e, n) => r(n)));
  t.equal(conns, 0, 'the server no longer counts the socket that gave its connection away');

  const frames: Frame[] = [];
  ch.onFrame((f) => frames.push(f));
  const sender = new Channel(client);
  // 24 content frames of 256 KiB whose bytes identify frame and offset, then a heartbeat
  const bodies: Buffer[] = [];
  for (let i = 0; i < 24; i++) {
    const b = Buffer.alloc(256 << 10);
    for (let o = 0; o < b.length; o += 4) b.writeUInt32LE((i << 24) ^ o, o);
    bodies.push(b);
    sender.send(XLHA_REC.XEN_STREAM, b);
  }
  sender.send(XLHA_REC.HEARTBEAT, Buffer.alloc(24));
  while (frames.length < 25) await sleep(10);
  for (let i = 0; i < 24; i++) {
    const f = frames[i]!;
    if (f.type !== XLHA_REC.XEN_STREAM || !f.body.equals(bodies[i]!)) {
      t.fail(`frame ${i} differs`);
      return;
    }
  }
  t.pass('24 content frames arrived with their bytes, in order');
  t.equal(frames[24]!.type, XLHA_REC.HEARTBEAT, 'then the heartbeat');
  t.equal(ch.bytesReceived, sender.bytesSent, 'every byte counted');
  const slabs = new Set(frames.slice(0, 24).flatMap((f) => (f.parts ?? [f.body]).map((p) => p.buffer)));
  t.ok([...slabs].every((b) => b.byteLength === SLAB_READ_BYTES), 'content bodies are views of the reader\'s 1 MiB buffers');
  t.not(frames[24]!.body.buffer.byteLength, SLAB_READ_BYTES, 'a control frame\'s body is a copy (its read buffer can go back at once)');
  t.ok(slabs.size <= 8, `6 MiB came in ${slabs.size} buffers`);
});

t.test('an accepted channel still reports a closed connection and answers on the same socket', async (t) => {
  const { accepted, client } = await pair(t);
  const ch = await accepted;
  const got: Buffer[] = [];
  client.on('data', (d: Buffer) => got.push(d));
  ch.send(XLHA_REC.HEARTBEAT, Buffer.alloc(24, 1));
  while (Buffer.concat(got).length < 32) await sleep(5);
  t.equal(Buffer.concat(got).readUInt32LE(0), XLHA_REC.HEARTBEAT, 'what the channel sends reaches the client');
  const closed = new Promise<Error | undefined>((r) => ch.onClose(r));
  client.destroy();
  const err = await closed;
  t.match(err?.message ?? '', /closed by peer/, 'the peer closing is reported');
});

t.test('bytes in the middle of a frame keep the peer alive; silence after them is measured from them', async (t) => {
  const { accepted, client } = await pair(t);
  const ch = await accepted;
  t.teardown(() => ch.fail());
  let deadAt = -1;
  const hb = new HeartbeatMonitor({ heartbeatMs: 40, timeoutMs: 150, warmupGaps: 0, stalledPeerMaxMs: 0 }, () => (deadAt = performance.now()), () => 0);
  hb.start(ch); // (it sends heartbeats to the client too: the client ignores them)
  t.teardown(() => hb.stop());
  // one frame announced as 1 MiB, trickled 1 KiB every 30 ms: never complete, yet the peer is there
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32LE(XLHA_REC.XEN_STREAM, 0);
  hdr.writeUInt32LE(1 << 20, 4);
  client.write(hdr);
  for (let i = 0; i < 15; i++) {
    client.write(Buffer.alloc(1024));
    await sleep(30);
  }
  t.equal(deadAt, -1, 'a peer sending part of a large frame is not declared dead (450 ms, timeout 150 ms)');
  const lastAt = performance.now();
  while (deadAt < 0 && performance.now() - lastAt < 2000) await sleep(10);
  const after = deadAt - lastAt;
  t.ok(after >= 150 - 31 && after < 150 + 10 + 150, `then silence is detected ${Math.round(after)} ms after the last byte (timeout 150, checks every 10)`);
});

t.test('an accepted channel reuses its read buffers once content is given back, and no held byte is overwritten', async (t) => {
  const { accepted, client } = await pair(t);
  const ch = await accepted;
  t.teardown(() => ch.fail());
  t.ok(ch.pool, 'an accepted channel reads from a pool');
  const pool = ch.pool!;
  // 40 "checkpoints": two content frames of ~600 KB each, then a heartbeat; bytes identify
  // the checkpoint and their offset
  const body = (cp: number, k: number, n: number) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE((cp * 7919 + k * 104729 + i) >>> 0, i);
    return b;
  };
  const N = 40;
  const held: Buffer[][] = [];
  let bad = 0;
  let frames = 0;
  const done = new Promise<void>((resolve) => {
    ch.onFrame((f: Frame) => {
      if (f.type === XLHA_REC.HEARTBEAT) {
        // keep the last two checkpoints (two frames each); give back the ones before
        while (held.length > 4) for (const p of held.shift()!) pool.release(p);
        if (++frames === N) resolve();
        return;
      }
      const parts = [...frameParts(f)];
      held.push(parts);
      const whole = Buffer.concat(parts);
      const [cp, k] = [whole.readUInt32LE(whole.length - 8), whole.readUInt32LE(whole.length - 4)];
      if (!whole.subarray(0, whole.length - 8).equals(body(cp, k, whole.length - 8))) bad++;
      // re-check the checkpoint held longest: reuse must not have overwritten it
      for (const h of held) {
        const w = Buffer.concat(h);
        const [c2, k2] = [w.readUInt32LE(w.length - 8), w.readUInt32LE(w.length - 4)];
        if (!w.subarray(0, w.length - 8).equals(body(c2, k2, w.length - 8))) bad++;
      }
    });
  });
  for (let cp = 0; cp < N; cp++) {
    for (let k = 0; k < 2; k++) {
      const b = body(cp, k, 600_000 + cp * 8);
      const tail = Buffer.alloc(8);
      tail.writeUInt32LE(cp, 0);
      tail.writeUInt32LE(k, 4);
      const hdr = Buffer.alloc(8);
      hdr.writeUInt32LE(XLHA_REC.XEN_STREAM, 0);
      hdr.writeUInt32LE(b.length + 8, 4);
      client.write(Buffer.concat([hdr, b, tail]));
    }
    const hb = Buffer.alloc(8 + 24);
    hb.writeUInt32LE(XLHA_REC.HEARTBEAT, 0);
    hb.writeUInt32LE(24, 4);
    client.write(hb);
    await sleep(2);
  }
  await done;
  t.equal(bad, 0, 'every content frame intact on arrival and while held');
  t.ok(pool.reused > 0, `buffers reused ${pool.reused} times, ${pool.allocated} allocated for ~${Math.round((N * 1.2e6) / 1048576)} MiB`);
  t.ok(pool.allocated < 20, 'a steady stream allocates few buffers');
  t.equal(pool.overReleased, 0);
});

/** A server that accepts one raw connection, paused (nothing is read until the test resumes it). */
async function pausedPeer(t: { teardown(fn: () => void): void }): Promise<{ peer: net.Socket; client: net.Socket }> {
  let give: (s: net.Socket) => void;
  const got = new Promise<net.Socket>((r) => (give = r));
  const server = net.createServer({ pauseOnConnect: true }, (s) => give(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => client.once('connect', r));
  const peer = await got;
  t.teardown(() => {
    client.destroy();
    peer.destroy();
    server.close();
  });
  return { peer, client };
}

t.test("a frame's onWritten runs once the socket is done with its bytes, in order: reusing them then changes nothing sent", async (t) => {
  const { peer, client } = await pausedPeer(t);
  const sender = new Channel(client);
  const FRAMES = 16;
  const SIZE = 4 << 20;
  const written: number[] = [];
  for (let i = 0; i < FRAMES; i++) {
    const body = Buffer.alloc(SIZE, 0x10 + i);
    sender.send(XLHA_REC.XEN_STREAM, [body.subarray(0, SIZE / 2), body.subarray(SIZE / 2)], () => {
      written.push(i);
      body.fill(0xee); // the memory goes back to a pool and takes new data
    });
  }
  await sleep(200);
  t.ok(written.length < FRAMES, `with the peer not reading, only ${written.length} of ${FRAMES} frames are through (64 MiB do not fit in the kernel)`);
  // the peer reads everything now
  const chunks: Buffer[] = [];
  let total = 0;
  const want = FRAMES * (8 + SIZE);
  peer.on('data', (d: Buffer) => {
    chunks.push(d);
    total += d.length;
  });
  peer.resume();
  while (total < want) await sleep(10);
  const all = Buffer.concat(chunks);
  let bad = -1;
  for (let i = 0; i < FRAMES && bad < 0; i++) {
    const at = i * (8 + SIZE);
    if (all.readUInt32LE(at) !== XLHA_REC.XEN_STREAM || all.readUInt32LE(at + 4) !== SIZE) bad = i;
    else for (let o = at + 8; o < at + 8 + SIZE; o += 4096) if (all[o] !== 0x10 + i) bad = i;
  }
  t.equal(bad, -1, 'every frame arrived with the bytes it was sent with, none overwritten by the reuse');
  while (written.length < FRAMES) await sleep(5);
  t.same(written, [...Array(FRAMES).keys()], 'every onWritten ran once, in frame order');
});

t.test('onWritten: a failed socket drops its queued frames and says so; a closed channel sends nothing and never calls it', async (t) => {
  const { client } = await pausedPeer(t);
  const sender = new Channel(client);
  let calls = 0;
  for (let i = 0; i < 16; i++) sender.send(XLHA_REC.XEN_STREAM, Buffer.alloc(4 << 20), () => calls++);
  await sleep(100);
  const before = calls;
  t.ok(before < 16, `${before} of 16 frames through before the failure`);
  sender.fail(new Error('peer lost'));
  for (let i = 0; i < 200 && calls < 16; i++) await sleep(5);
  t.equal(calls, 16, 'the frames dropped with the socket ran their onWritten too (their memory is free)');
  let late = 0;
  t.equal(sender.send(XLHA_REC.XEN_STREAM, Buffer.alloc(16), () => late++), false, 'send on a closed channel returns false');
  await sleep(20);
  t.equal(late, 0, 'and never calls onWritten');
  await t.rejects(sender.sendContent(XLHA_REC.XEN_STREAM, Buffer.alloc(16), () => late++), 'sendContent on a closed channel rejects');
  t.equal(late, 0, 'without calling onWritten');
});

t.test('on a plain socket a large frame goes out in slices too: the loop turns while it is written, and a frame sent meanwhile waits until it is whole', async (t) => {
  const { accepted, client } = await pair(t);
  const rx = await accepted;
  const got: Frame[] = [];
  rx.onFrame((f) => got.push(f));
  await new Promise<void>((r) => (client.connecting ? client.once('connect', () => r()) : r()));
  const c = new Channel(client);
  const big = Buffer.alloc(48 << 20);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  let beats = 0;
  let last = performance.now();
  let worstGap = 0;
  let mostBuffered = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worstGap = Math.max(worstGap, now - last);
    mostBuffered = Math.max(mostBuffered, client.writableLength);
    last = now;
    c.send(XLHA_REC.HEARTBEAT, Buffer.alloc(8, ++beats));
  }, 1);
  last = performance.now();
  await c.sendContent(XLHA_REC.XEN_STREAM, big);
  clearInterval(timer);
  const deadline = Date.now() + 10_000;
  while (got.length < 1 + beats && Date.now() < deadline) await sleep(20);
  const content = got.filter((f) => f.type === XLHA_REC.XEN_STREAM);
  t.equal(content.length, 1, 'one content frame');
  t.ok(Buffer.compare(Buffer.concat(frameParts(content[0]!)), big) === 0, 'whole and unaltered');
  t.ok(beats > 0, `the loop turned while the frame was written (${beats} timer runs)`);
  t.equal(got.filter((f) => f.type === XLHA_REC.HEARTBEAT).length, beats, 'every frame sent meanwhile arrived, intact, after it');
  t.ok(got.findIndex((f) => f.type === XLHA_REC.HEARTBEAT) > got.findIndex((f) => f.type === XLHA_REC.XEN_STREAM), 'after the content frame');
  // what the socket holds beyond the kernel is written in one writev when the kernel takes
  // more: it stays at a slice or two, not the frame
  t.ok(mostBuffered <= 2 * WRITE_SLICE + (64 << 10), `the socket held at most ${mostBuffered} bytes not yet in the kernel`);
  t.comment(`longest timer gap while 48 MiB were written: ${worstGap.toFixed(1)} ms`);
});

t.test('a farewell while a large frame is being written goes after the whole frame, and the frames queued behind it do not', async (t) => {
  const { accepted, client } = await pair(t);
  const rx = await accepted;
  const got: Frame[] = [];
  let ended = false;
  rx.onFrame((f) => got.push(f));
  rx.onClose(() => (ended = true));
  const c = new Channel(client);
  const big = Buffer.alloc(16 << 20, 7);
  const sending = c.sendContent(XLHA_REC.XEN_STREAM, big);
  await sleep(1); // the frame is under way, in slices
  c.send(XLHA_REC.HEARTBEAT, Buffer.alloc(24)); // queued behind it
  c.farewell(XLHA_REC.GOODBYE, Buffer.from('bye'), new Error('giving up'));
  t.ok(c.isClosed, 'the channel is closed for its users at once');
  await sending.catch(() => {});
  const deadline = Date.now() + 10_000;
  while (!ended && Date.now() < deadline) await sleep(20);
  t.same(got.map((f) => f.type), [XLHA_REC.XEN_STREAM, XLHA_REC.GOODBYE], 'the whole content frame, then the GOODBYE; not the frame queued after the farewell');
  t.ok(Buffer.compare(Buffer.concat(frameParts(got[0]!)), big) === 0, 'the content frame whole');
  t.equal(Buffer.concat(frameParts(got[1]!)).toString(), 'bye');
});
