/**
 * The replication link's TLS-PSK (src/transport/secure.ts) against a peer that has no key, a
 * wrong key, a recorded session, and a man in the middle that flips, reorders or drops
 * records. A proxy we control sits between the two ends and sees TLS records, as an attacker
 * on the network would.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Channel } from '../../src/transport/channel.js';
import { connectSecure, secureServer } from '../../src/transport/secure.js';
import type { Frame } from '../../src/transport/framing.js';
import { XLHA_REC, encodeHeartbeat } from '../../src/transport/channel-records.js';
import { PeerKeys, generateKey } from '../../src/security/peers.js';
import { silentLogger } from '../../src/util/log.js';
import { pairedKeys } from '../helpers/keys.js';
import { recordingLogger } from '../helpers/log.js';

const TLS_APPLICATION_DATA = 23;

type Fault = 'flip' | 'swap' | 'drop' | 'none';

/**
 * Forwards client to server, cutting the client's stream into TLS records; the `nth`
 * application-data record (0-based) gets `fault`. Server to client passes untouched.
 */
async function proxy(to: number, fault: Fault, nth: number, tlsRecords = true): Promise<{ port: number; close: () => void; recorded: Buffer[] }> {
  const recorded: Buffer[] = [];
  const server = net.createServer((c) => {
    const s = net.connect(to, '127.0.0.1');
    s.on('data', (d) => c.write(d));
    let buf = Buffer.alloc(0);
    let appRecords = 0;
    let held: Buffer | null = null as Buffer | null;
    c.on('data', (d: Buffer) => {
      recorded.push(Buffer.from(d));
      if (!tlsRecords) {
        // plain bytes: flip the nth byte of the stream past the first 256
        if (fault === 'flip' && buf.length <= 256 + nth && buf.length + d.length > 256 + nth) {
          d = Buffer.from(d);
          d[256 + nth - buf.length]! ^= 0x40;
        }
        buf = Buffer.concat([buf, d]).subarray(-1024);
        s.write(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5) {
        const len = buf.readUInt16BE(3);
        if (buf.length < 5 + len) break;
        let rec: Buffer = Buffer.from(buf.subarray(0, 5 + len));
        buf = buf.subarray(5 + len);
        if (rec[0] === TLS_APPLICATION_DATA) {
          const i = appRecords++;
          if (i === nth && fault === 'flip') rec[5 + Math.floor(len / 2)]! ^= 0x01;
          if (i === nth && fault === 'drop') continue;
          if (i === nth && fault === 'swap') {
            held = rec;
            continue;
          }
          if (held) {
            s.write(rec);
            rec = held;
            held = null;
          }
        }
        s.write(rec);
      }
    });
    const end = () => {
      c.destroy();
      s.destroy();
    };
    c.on('error', end).on('close', end);
    s.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close(), recorded };
}

/** 40 content frames of 4 KiB, each filled with its index. */
function frames(): Buffer[] {
  return Array.from({ length: 40 }, (_, i) => Buffer.alloc(4096, i));
}

/** Runs a secure server and a client through a proxy with `fault`; what reached the server. */
async function throughProxy(t: Test, fault: Fault, nth = 12) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = pairedKeys(dir, 'a', 'b');
  const got: Frame[] = [];
  let serverError: Error | undefined;
  let serverClosed!: () => void;
  const closed = new Promise<void>((r) => (serverClosed = r));
  const { log, lines } = recordingLogger();
  const server = secureServer(keys.b!, log, (sock) => {
    const ch = new Channel(sock);
    ch.onFrame((f) => got.push(f));
    ch.onClose((err) => {
      serverError = err;
      serverClosed();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const p = await proxy((server.address() as net.AddressInfo).port, fault, nth);
  t.teardown(() => {
    server.close();
    p.close();
  });
  const { socket } = await connectSecure({ host: '127.0.0.1', port: p.port }, keys.a!);
  const client = new Channel(socket);
  const sent = frames();
  for (let i = 0; i < sent.length; i++) await client.sendContent(XLHA_REC.XEN_STREAM, sent[i]!);
  await client.end();
  await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
  return { got, sent, serverError, lines };
}

t.test('an untouched TLS link delivers every frame, byte for byte', async (t) => {
  const { got, sent } = await throughProxy(t, 'none');
  t.equal(got.length, sent.length, 'all 40 frames');
  t.ok(got.every((f, i) => f.type === XLHA_REC.XEN_STREAM && Buffer.compare(Buffer.from(f.body), sent[i]!) === 0), 'each is what was sent');
});

for (const fault of ['flip', 'swap', 'drop'] as const) {
  t.test(`a ${fault === 'flip' ? 'tampered' : fault === 'swap' ? 'reordered' : 'dropped'} record is never handed on: the link ends there with a TLS error`, async (t) => {
    const { got, sent, serverError } = await throughProxy(t, fault);
    t.ok(got.length < sent.length, `the frames after the fault never arrived (${got.length} of ${sent.length})`);
    t.ok(
      got.every((f, i) => f.type === XLHA_REC.XEN_STREAM && Buffer.compare(Buffer.from(f.body), sent[i]!) === 0),
      'what did arrive is an unaltered prefix of what was sent',
    );
    t.match(String(serverError?.message ?? serverError), /decrypt|bad record mac|BAD_RECORD|DECRYPTION/i, `the receiver names the TLS failure: ${String(serverError?.message)}`);
  });
}

t.test('control: without TLS the same proxy does alter what arrives (the test can fail)', async (t) => {
  const srv = net.createServer();
  const got: Frame[] = [];
  srv.on('connection', (sock) => new Channel(sock).onFrame((f) => got.push(f)));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const p = await proxy((srv.address() as net.AddressInfo).port, 'flip', 100, false);
  t.teardown(() => {
    srv.close();
    p.close();
  });
  const sock = net.connect(p.port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const c = new Channel(sock);
  const sent = frames();
  for (let i = 0; i < sent.length; i++) await c.sendContent(XLHA_REC.XEN_STREAM, sent[i]!);
  await new Promise((r) => setTimeout(r, 300));
  await c.end();
  t.equal(got.length, sent.length, 'every frame arrived');
  t.ok(got.some((f, i) => Buffer.compare(Buffer.from(f.body), sent[i]!) !== 0), 'and one of them was altered in flight');
});

t.test('a peer without a pairing, a wrong key, and a plain-TCP client are refused with a log line naming why', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = pairedKeys(dir, 'a', 'b');
  const { log, lines } = recordingLogger();
  let accepted = 0;
  const server = secureServer(keys.b!, log, (s) => {
    accepted++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const to = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };

  // host x has a key file for b, but b was never paired with x
  const x = new PeerKeys(path.join(dir, 'x-peers'), 'x');
  x.write({ peer: 'b', key: generateKey(), allow: ['*'], disks: [], bridges: ['*'] }, 'test');
  await t.rejects(connectSecure(to, x), /did not authenticate|closed the connection|refused/, 'an unpaired host cannot connect');
  // a believes it is paired with b, but with another key
  const wrongDir = path.join(dir, 'wrong');
  const wrong = new PeerKeys(wrongDir, 'a');
  wrong.write({ peer: 'b', key: generateKey(), allow: ['*'], disks: [], bridges: ['*'] }, 'test');
  await t.rejects(connectSecure(to, wrong), /did not authenticate|closed the connection|refused/, 'a wrong key cannot connect');
  // a client that speaks xl-ha frames without TLS
  const raw = net.connect(to.port, to.host);
  await new Promise((r) => raw.once('connect', r));
  raw.write(Buffer.from('584c4841000000100000000000000000', 'hex'));
  await new Promise((r) => raw.once('close', r));
  await new Promise((r) => setTimeout(r, 100));
  t.equal(accepted, 0, 'none of the three got a connection through');
  const refused = lines.filter((l) => l.message === 'replication connection refused: not authenticated');
  t.equal(refused.length, 3, 'each refusal is logged');
  t.match(String(refused[0]?.reason), /host x is not paired with b/, 'the unpaired host by name');
  t.match(String(refused[1]?.reason), /TLS handshake failed/, 'the wrong key as a failed handshake');
  t.match(String(refused[2]?.reason), /TLS handshake failed/, 'plain TCP as a failed handshake');
  // the right key still works
  const ok = await connectSecure(to, keys.a!);
  ok.socket.destroy();
  t.pass('the paired host connects');
});

t.test('a recorded session replayed to the backup is refused: every session has fresh keys', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = pairedKeys(dir, 'a', 'b');
  const { log, lines } = recordingLogger();
  const sessions: Frame[][] = [];
  const server = secureServer(keys.b!, log, (sock) => {
    const got: Frame[] = [];
    sessions.push(got);
    new Channel(sock).onFrame((f) => got.push(f));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const p = await proxy((server.address() as net.AddressInfo).port, 'none', 0);
  t.teardown(() => {
    server.close();
    p.close();
  });
  const { socket } = await connectSecure({ host: '127.0.0.1', port: p.port }, keys.a!);
  const c = new Channel(socket);
  for (const [i, b] of frames().entries()) await c.sendContent(XLHA_REC.XEN_STREAM, b);
  await new Promise((r) => setTimeout(r, 200));
  await c.end();
  t.equal(sessions[0]?.length, 40, 'the genuine session delivered its frames');
  // the attacker replays every byte the client sent, on a new connection
  const replay = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => replay.once('connect', r));
  replay.on('error', () => {});
  replay.resume(); // read what the server answers, so its close is seen
  for (const b of p.recorded) replay.write(b);
  await new Promise((r) => replay.once('close', r));
  await new Promise((r) => setTimeout(r, 100));
  t.equal(sessions.length, 1, 'the replay never became a session');
  t.ok(
    lines.some((l) => l.message === 'replication connection refused: not authenticated'),
    'and it is logged as refused',
  );
});

t.test('connecting with no pairing at all says what to run', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const lonely = new PeerKeys(path.join(dir, 'none'), 'a');
  await t.rejects(connectSecure({ host: '127.0.0.1', port: 1 }, lonely), /paired with no host.*xl-ha keygen <peer> --address 127\.0\.0\.1:1/);
});

t.test('XLHA_PLAINTEXT_LOOPBACK (for the bench) never leaves loopback', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tls-'));
  const before = process.env.XLHA_PLAINTEXT_LOOPBACK;
  process.env.XLHA_PLAINTEXT_LOOPBACK = '1';
  t.teardown(() => {
    if (before === undefined) delete process.env.XLHA_PLAINTEXT_LOOPBACK;
    else process.env.XLHA_PLAINTEXT_LOOPBACK = before;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const keys = pairedKeys(dir, 'a', 'b');
  await t.rejects(connectSecure({ host: '10.1.2.3', port: 8003 }, keys.a!), /for loopback measurements only: 10\.1\.2\.3:8003 is not a loopback address/);
  const { SimBackend } = await import('../../src/backend/sim/host.js');
  const { Daemon } = await import('../../src/daemon/daemon.js');
  const d = new Daemon({ backend: new SimBackend({ hostName: 'b', stateDir: path.join(dir, 'st') }), hostName: 'b', stateDir: path.join(dir, 'st'), controlPath: path.join(dir, 'b.sock'), listen: { host: '0.0.0.0', port: 1 }, keys: keys.b!, log: silentLogger() });
  await t.rejects(d.start(), /cannot listen on 0\.0\.0\.0 without encryption/);
  await d.stop();
});

t.test('on TLS a large frame goes out in slices; a frame sent meanwhile waits until it is whole', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const keys = pairedKeys(dir, 'a', 'b');
  const got: Frame[] = [];
  const server = secureServer(keys.b!, silentLogger(), (sock) => new Channel(sock).onFrame((f) => got.push(f)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const { socket } = await connectSecure({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, keys.a!);
  const c = new Channel(socket);
  const big = Buffer.alloc(8 << 20);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  let beats = 0;
  const timer = setInterval(() => {
    c.send(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: ++beats, sentAtMs: Date.now(), lastEpoch: null }));
  }, 1);
  const sending = c.sendContent(XLHA_REC.XEN_STREAM, big);
  await new Promise((r) => setImmediate(r));
  clearInterval(timer);
  c.send(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: ++beats, sentAtMs: Date.now(), lastEpoch: null }));
  await sending;
  const deadline = Date.now() + 5000;
  while (got.length < 1 + beats && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await c.end();
  const content = got.filter((f) => f.type === XLHA_REC.XEN_STREAM);
  t.equal(content.length, 1, 'one content frame');
  t.ok(Buffer.compare(Buffer.from(content[0]!.body), big) === 0, 'whole and unaltered');
  t.equal(got.filter((f) => f.type === XLHA_REC.HEARTBEAT).length, beats, `and every heartbeat sent meanwhile (${beats}) arrived after it, intact`);
});
