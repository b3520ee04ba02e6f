/**
 * A silent peer whose kernel still acknowledges is stalled, not dead (src/transport/tcp-info.ts):
 * a stopped peer process is waited for up to the cap, a killed one and a cut network are
 * declared dead at the ordinary timeout. The peer is a real child process (so that SIGSTOP
 * stops its process and not its kernel), and for the cut network it sits in a network
 * namespace behind a veth pair that the test takes down.
 */
import t, { type Test } from 'tap';
import net from 'node:net';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { HeartbeatMonitor } from '../../src/transport/heartbeat.js';
import { loadTcpInfo, tcpAcks } from '../../src/transport/tcp-info.js';
import type { Channel } from '../../src/transport/channel.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HB = 20;
const TIMEOUT = 150;

/** The peer: writes a byte every HB ms and reads all it gets (our heartbeats). */
const PEER = `const s=require('net').connect(+process.argv[1],process.argv[2]);s.on('data',()=>{});s.on('error',()=>process.exit(0));s.on('connect',()=>setInterval(()=>s.write('x'),${HB}));`;

interface Peer {
  child: ChildProcess;
  socket: net.Socket;
  channel: Channel;
}

async function startPeer(t: Test, listenHost: string, wrap: string[] = []): Promise<Peer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, listenHost, r));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const argv = [...wrap, process.execPath, '-e', PEER, String(port), listenHost];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  const socket = await accepted;
  server.close();
  socket.on('error', () => {});
  // what the monitor reads of a channel: its byte count, its socket, and a send that puts
  // real bytes on the wire for the peer's kernel to acknowledge
  const fake = { bytesReceived: 0, isClosed: false, socket, send: () => socket.write(Buffer.alloc(24)) };
  socket.on('data', (d: Buffer) => (fake.bytesReceived += d.length));
  t.teardown(() => {
    socket.destroy();
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child, socket, channel: fake as unknown as Channel };
}

function watch(channel: Channel, stalledPeerMaxMs: number) {
  const r = { deadAt: -1, stalledAt: -1, stalledLastAck: -1 };
  const hb = new HeartbeatMonitor(
    {
      heartbeatMs: HB,
      timeoutMs: TIMEOUT,
      warmupGaps: 0,
      stalledPeerMaxMs,
      onStalled: (_s, a) => {
        r.stalledAt = performance.now();
        r.stalledLastAck = a.lastAckRecvMs;
      },
    },
    () => (r.deadAt = performance.now()),
    () => 1,
  );
  hb.start(channel);
  return { hb, r };
}

const haveTcpInfo = process.platform === 'linux' && loadTcpInfo() !== null;

t.test('TCP_INFO is read off a live connection and not off a closed one', { skip: haveTcpInfo ? false : 'TCP_INFO is not readable here (not Linux, or koffi missing)' }, async (t) => {
  const p = await startPeer(t, '127.0.0.1');
  await sleep(200);
  const a = tcpAcks(p.socket);
  t.ok(a, 'an established connection has an ack state');
  t.ok(a!.lastAckRecvMs < 200, `the peer's kernel acknowledged within the last heartbeats (${a!.lastAckRecvMs} ms ago)`);
  p.child.kill('SIGKILL');
  await sleep(200);
  t.equal(tcpAcks(p.socket), null, 'once the peer process is gone its kernel closed the connection: no ack state to lean on');
  p.socket.destroy();
  t.equal(tcpAcks(p.socket), null, 'a destroyed socket has none either');
});

t.test('a stopped peer process is waited for up to the cap, then declared dead', { skip: haveTcpInfo ? false : 'no TCP_INFO here' }, async (t) => {
  const p = await startPeer(t, '127.0.0.1');
  const { hb, r } = watch(p.channel, 1500);
  t.teardown(() => hb.stop());
  await sleep(300);
  const stoppedAt = performance.now();
  p.child.kill('SIGSTOP');
  await sleep(TIMEOUT * 4);
  t.equal(r.deadAt, -1, 'four timeouts of silence and the stopped peer is not declared dead (its kernel still acknowledges)');
  t.ok(r.stalledAt > 0, 'the silence was reported as a stall');
  t.ok(r.stalledLastAck >= 0 && r.stalledLastAck < TIMEOUT, `with a recent ack from the peer's kernel (${r.stalledLastAck} ms ago)`);
  t.equal(hb.stalledSilences, 1, 'once per silence');
  await sleep(1500);
  t.ok(r.deadAt > 0, 'a peer stopped past the cap is declared dead anyway (a hung daemon)');
  const after = r.deadAt - stoppedAt;
  t.ok(after >= 1400 && after < 1900, `at the cap (${Math.round(after)} ms after it stopped; cap 1500)`);
});

t.test('a stall that ends is not learned: the timeout a death is judged by stays short', { skip: haveTcpInfo ? false : 'no TCP_INFO here' }, async (t) => {
  const p = await startPeer(t, '127.0.0.1');
  const { hb, r } = watch(p.channel, 3000);
  t.teardown(() => hb.stop());
  await sleep(300);
  p.child.kill('SIGSTOP');
  await sleep(700);
  p.child.kill('SIGCONT');
  await sleep(300);
  t.equal(r.deadAt, -1, 'the peer came back from a 700 ms stop and was never declared dead');
  t.ok(r.stalledAt > 0, 'the stop was seen as a stall');
  t.ok(hb.effectiveTimeoutMs < 700, `the 700 ms gap was not learned into the timeout (${hb.effectiveTimeoutMs} ms in force)`);
  const killedAt = performance.now();
  p.child.kill('SIGKILL');
  while (r.deadAt < 0 && performance.now() - killedAt < 3000) await sleep(10);
  t.ok(r.deadAt > 0 && r.deadAt - killedAt < hb.effectiveTimeoutMs + 300, `then a killed peer is declared dead at the timeout (${Math.round(r.deadAt - killedAt)} ms)`);
});

t.test('a killed peer is declared dead at the timeout, not the stall cap', { skip: haveTcpInfo ? false : 'no TCP_INFO here' }, async (t) => {
  const p = await startPeer(t, '127.0.0.1');
  const { hb, r } = watch(p.channel, 5000);
  t.teardown(() => hb.stop());
  await sleep(300);
  const killedAt = performance.now();
  p.child.kill('SIGKILL');
  while (r.deadAt < 0 && performance.now() - killedAt < 6000) await sleep(10);
  t.ok(r.deadAt > 0, 'declared dead');
  t.ok(r.deadAt - killedAt < TIMEOUT + 300, `at the timeout (${Math.round(r.deadAt - killedAt)} ms; cap 5000)`);
  t.equal(r.stalledAt, -1, 'never taken for a stall');
});

function canNetns(): string | false {
  if (!haveTcpInfo) return 'no TCP_INFO here';
  if (process.getuid?.() !== 0) return 'needs root for a network namespace';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2 (ip)';
  }
  return false;
}

t.test('a peer behind a cut network is declared dead at the timeout, not the stall cap', { skip: canNetns() }, async (t) => {
  const ns = `xlha-hb-${process.pid}`;
  const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
  const hostIf = `xhb${process.pid % 100000}a`;
  const peerIf = `xhb${process.pid % 100000}b`;
  ip('netns', 'add', ns);
  t.teardown(() => {
    try {
      ip('link', 'del', hostIf);
    } catch {}
    try {
      ip('netns', 'del', ns);
    } catch {}
  });
  ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', peerIf);
  ip('link', 'set', peerIf, 'netns', ns);
  ip('addr', 'add', '10.251.77.1/30', 'dev', hostIf);
  ip('link', 'set', hostIf, 'up');
  ip('-n', ns, 'addr', 'add', '10.251.77.2/30', 'dev', peerIf);
  ip('-n', ns, 'link', 'set', peerIf, 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const p = await startPeer(t, '10.251.77.1', ['ip', 'netns', 'exec', ns]);
  const { hb, r } = watch(p.channel, 5000);
  t.teardown(() => hb.stop());
  await sleep(400);
  t.equal(r.deadAt, -1, 'alive while the network is up');
  const cutAt = performance.now();
  ip('-n', ns, 'link', 'set', peerIf, 'down');
  while (r.deadAt < 0 && performance.now() - cutAt < 6000) await sleep(10);
  t.ok(r.deadAt > 0, 'declared dead');
  t.ok(r.deadAt - cutAt < TIMEOUT + 300, `at the timeout (${Math.round(r.deadAt - cutAt)} ms after the cut; cap 5000): nothing acknowledges`);
  t.equal(r.stalledAt, -1, 'never taken for a stall');
});
