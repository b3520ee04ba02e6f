import t from 'tap';
import net from 'node:net';
import { HeartbeatMonitor, SETTLE_AFTER_FULL_MS, WARMUP_TIMEOUT_MS } from '../../src/transport/heartbeat.js';
import { ChannelLink } from '../../src/engine/link.js';
import { Channel } from '../../src/transport/channel.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('after a full checkpoint the peer gets a settling window, then the ordinary timeout', async (t) => {
  let deadAfter = -1;
  const start = performance.now();
  const hb = new HeartbeatMonitor({ heartbeatMs: 20, timeoutMs: 60 }, () => (deadAfter = performance.now() - start), () => 1);
  hb.start(null);
  t.teardown(() => hb.stop());
  hb.grace(SETTLE_AFTER_FULL_MS); // the first checkpoint is in; the peer says nothing from now on
  await sleep(400);
  t.equal(deadAfter, -1, 'silence of several timeouts inside the window is tolerated (garbage collection after the full checkpoint)');
  await sleep(SETTLE_AFTER_FULL_MS);
  t.ok(deadAfter >= SETTLE_AFTER_FULL_MS && deadAfter < SETTLE_AFTER_FULL_MS + 400, `then the silent peer is declared dead (${Math.round(deadAfter)} ms)`);
});

t.test('the primary link settles once, not again at each checkpoint after the full one', async (t) => {
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => accepted.push(s)); // a backup that accepts and then says nothing
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of accepted) s.destroy();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const link = new ChannelLink(new Channel(sock), { heartbeatMs: 20, timeoutMs: 60, stalledPeerMaxMs: 0 });
  t.teardown(() => {
    link.close();
    sock.destroy();
  });
  const start = performance.now();
  link.slowPhase(true); // precopy and the first checkpoint
  await sleep(200);
  t.notOk(link.isLost, 'silence during the full checkpoint is tolerated');
  // the engine says slowPhase(false) after the first commit and after every later one
  const ticker = setInterval(() => link.slowPhase(false), 30);
  t.teardown(() => clearInterval(ticker));
  const lostAt = await link.lost.then(
    () => -1,
    () => performance.now() - start,
  );
  t.ok(lostAt > 200 + SETTLE_AFTER_FULL_MS - 100 && lostAt < 200 + SETTLE_AFTER_FULL_MS + 1000, `the silent backup is declared dead once the window has passed (${Math.round(lostAt)} ms)`);
});

t.test('the timeout stretches to the silences the peer has shown, and no further', async (t) => {
  // a peer whose bytes arrive every 80 ms (a loaded dom0), with a configured timeout of 60 ms
  const fake = { bytesReceived: 0, isClosed: false, send: () => true } as unknown as Channel;
  let deadAt = -1;
  const hb = new HeartbeatMonitor({ heartbeatMs: 20, timeoutMs: 60, warmupGaps: 0 }, () => (deadAt = performance.now()), () => 1);
  hb.start(fake);
  t.teardown(() => hb.stop());
  const feeder = setInterval(() => ((fake as unknown as { bytesReceived: number }).bytesReceived += 100), 50);
  await sleep(400);
  clearInterval(feeder);
  const inForce = hb.effectiveTimeoutMs;
  t.ok(inForce >= 120 && inForce <= 300, `after gaps of about 50 ms the timeout in force is ${inForce} ms (3 × the longest gap; 60 configured)`);
  const feeder2 = setInterval(() => ((fake as unknown as { bytesReceived: number }).bytesReceived += 100), 90);
  await sleep(450);
  clearInterval(feeder2);
  t.equal(deadAt, -1, 'gaps of 90 ms, longer than the configured 60, do not make it flap');
  const silentFrom = performance.now();
  await sleep(Math.min(2000, hb.effectiveTimeoutMs) + 300);
  t.ok(deadAt > 0, 'a peer that goes silent is still declared dead');
  t.ok(deadAt - silentFrom <= 2000 + 100, `within the cap (${Math.round(deadAt - silentFrom)} ms)`);
});

t.test('until the peer has shown its gaps, the timeout in force is at least the warm-up floor', async (t) => {
  const fake = { bytesReceived: 0, isClosed: false, send: () => true } as unknown as Channel;
  let deadAt = -1;
  const hb = new HeartbeatMonitor({ heartbeatMs: 10, timeoutMs: 30, warmupGaps: 10 }, () => (deadAt = performance.now()), () => 1);
  hb.start(fake);
  t.teardown(() => hb.stop());
  t.equal(hb.effectiveTimeoutMs, WARMUP_TIMEOUT_MS, `no gap known yet: ${WARMUP_TIMEOUT_MS} ms in force, not the configured 30`);
  const feed = () => ((fake as unknown as { bytesReceived: number }).bytesReceived += 100);
  feed();
  const silentFrom = performance.now();
  await sleep(150);
  t.equal(deadAt, -1, 'a silence of 5 timeouts while warming up is not a death');
  const feeder = setInterval(feed, 10);
  await sleep(400); // well over 10 gaps of about 10 ms
  clearInterval(feeder);
  const inForce = hb.effectiveTimeoutMs;
  t.ok(inForce >= 3 * 140 && inForce < WARMUP_TIMEOUT_MS, `once its gaps are known the timeout follows them: 3 x the longest (the 150 ms silence), ${inForce} ms`);
  const quiet = performance.now();
  await sleep(hb.effectiveTimeoutMs + 200);
  t.ok(deadAt > quiet && deadAt - silentFrom > 0, `and a silent peer is declared dead (${Math.round(deadAt - quiet)} ms after it went quiet)`);
});
