/**
 * The primary's limits against a backup slower than its guest: held output past the buffer
 * limit throttles the guest (or gives protection up, as configured), a backup that heartbeats
 * but never acknowledges loses the link after the ack timeout, and the control socket refuses
 * an over-long request with an answer.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { SimBackend } from '../../src/backend/sim/host.js';
import { CheckpointEngine, type BufferFullPolicy } from '../../src/engine/engine.js';
import { ChannelLink, ReplicationLostError } from '../../src/engine/link.js';
import { RemusMode } from '../../src/engine/modes/remus.js';
import { DeviceEvents } from '../../src/engine/events.js';
import type { ModePlan } from '../../src/engine/types.js';
import { NetbufDevice } from '../../src/devices/netbuf.js';
import { DiskReplicationDevice } from '../../src/devices/disk.js';
import { RECORD } from '../../src/backend/sim/guest.js';
import { KV_OP } from '../../src/backend/sim/kvproto.js';
import { silentLogger } from '../../src/util/log.js';
import { Channel } from '../../src/transport/channel.js';
import { XLHA_REC, encodeHeartbeat } from '../../src/transport/channel-records.js';
import { Daemon, CONTROL_MAX_REQUEST_BYTES } from '../../src/daemon/daemon.js';
import { pairedKeys } from '../helpers/keys.js';
import { FakeLink, kvDomainForFile, rawConn, sleep, startEngine, until, type TT } from '../helpers/engine-fakes.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-limits-'));
const backend = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
const host = kvDomainForFile(t, backend, dir, 11);
const log = silentLogger();
let nextClient = 5000;

/** Each PING's response is 12 bytes: 20 of them pass a 100-byte limit. */
const LIMIT = 100;

async function protect(t: TT, onBufferFull: BufferFullPolicy, withDisk = false) {
  const session = await backend.openSave(host.dom.domid);
  const link = new FakeLink();
  const netbuf = new NetbufDevice();
  const disk = new DiskReplicationDevice();
  const plan: ModePlan = { devices: withDisk ? [netbuf, disk] : [netbuf], maxInFlight: 1, phaseOrder: 'resume-then-ack', outputRule: 'after-checkpoint-ack' };
  const engine = new CheckpointEngine({ session, link, mode: new RemusMode({ intervalMs: 20 }), plan, events: new DeviceEvents(), domainName: host.dom.name, log, bufferLimitBytes: LIMIT, onBufferFull });
  const { abort, done, protectedP } = startEngine(t, engine, link);
  await protectedP;
  return { engine, link, netbuf, disk, abort, done };
}

t.test('throttle: past the limit the guest is paused until the backup catches up, and no output leaves before its ack', async (t) => {
  const r = await protect(t, 'throttle');
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1);
  const c = await rawConn(t, host.port);
  const id = nextClient++;
  c.sendMany(Array.from({ length: 20 }, (_, i) => ({ clientId: id, seq: i + 1, op: KV_OP.PING })));
  await until('the guest to be throttled', () => r.engine.stats.throttles === 1, 3000);
  const held = r.netbuf.heldBytes;
  t.ok(held > LIMIT, `${held} bytes held, past the limit of ${LIMIT}`);
  // more requests while throttled: a paused guest does not answer them
  c.sendMany(Array.from({ length: 10 }, (_, i) => ({ clientId: id, seq: 21 + i, op: KV_OP.PING })));
  await sleep(300);
  t.equal(r.netbuf.heldBytes, held, 'the paused guest produced nothing more in 300 ms');
  t.equal(c.responses.length, 0, 'nothing left before its checkpoint was acknowledged');
  t.equal(r.engine.state, 'protected', 'protection holds meanwhile');

  r.link.auto = () => 'ack';
  r.link.ackUpTo(Number.MAX_SAFE_INTEGER);
  await c.waitFor(30, 5000);
  t.same(
    c.responses.map((x) => x.seq),
    Array.from({ length: 30 }, (_, i) => i + 1),
    'once the backup caught up the guest ran on: all 30 answers, in order, each once',
  );
  t.ok(r.engine.stats.throttledMs >= 250, `paused for ${Math.round(r.engine.stats.throttledMs)} ms`);
  t.ok(r.engine.stats.maxHeldBytes >= held, 'the peak is reported');
  t.equal(r.engine.state, 'protected');
  r.abort.abort(new Error('test over'));
  t.equal(await r.done, 'stopped');
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running', 'the domain runs on');
});

t.test('degrade: past the limit protection is given up with an alert, the backup is told, held output is released', async (t) => {
  const r = await protect(t, 'degrade');
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1);
  const c = await rawConn(t, host.port);
  const id = nextClient++;
  c.sendMany(Array.from({ length: 20 }, (_, i) => ({ clientId: id, seq: i + 1, op: KV_OP.PING })));
  t.equal(await r.done, 'lost', 'protection ends as lost (the supervisor reconnects from there)');
  t.equal(r.link.gaveUp.length, 1, 'the backup was given up, with a GOODBYE');
  t.match(r.link.gaveUp[0], new RegExp(`bytes of output held for the backup passed the limit of ${LIMIT} .*on buffer full: degrade`));
  t.match(r.engine.error?.message, /passed the limit/);
  await c.waitFor(20, 3000);
  t.equal(c.responses.length, 20, 'the held output was released (no witness here says otherwise)');
  t.equal(r.engine.stats.throttles, 0, 'the guest was never paused');
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running');
});

t.test('disk writes replicated but not yet acknowledged count against the same limit', async (t) => {
  t.ok(RECORD > LIMIT, `one kv PUT writes a ${RECORD}-byte record, past the ${LIMIT}-byte limit`);
  const r = await protect(t, 'throttle', true);
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1);
  const e0 = r.engine.epoch;
  const c = await rawConn(t, host.port);
  c.send(nextClient++, 1, KV_OP.PUT, 'limit-key', 'v');
  await until('the PUT response to be held', () => r.netbuf.heldBytes > 0);
  t.ok(r.netbuf.heldBytes <= LIMIT, 'the network output alone is under the limit');
  t.equal(r.disk.heldBytes, 0, 'the write is not replicated yet');
  r.link.ackUpTo(e0); // the next checkpoint carries the write, and waits for its ack
  await until('the guest to be throttled', () => r.engine.stats.throttles === 1, 3000);
  t.equal(r.disk.heldBytes, RECORD, 'the write of the checkpoint in flight is held against the limit');
  r.link.auto = () => 'ack';
  r.link.ackUpTo(Number.MAX_SAFE_INTEGER);
  await c.waitFor(1, 3000);
  await until('the acknowledged write to be let go', () => r.disk.heldBytes === 0, 3000);
  t.equal(r.engine.state, 'protected');
  r.abort.abort(new Error('test over'));
  t.equal(await r.done, 'stopped');
});

/** A backup that accepts the link and sends heartbeats, and never acknowledges anything. */
async function heartbeatingBackup(t: TT) {
  const chans: Channel[] = [];
  const server = net.createServer((s) => {
    const ch = new Channel(s);
    chans.push(ch);
    let seq = 0;
    const timer = setInterval(() => ch.isClosed || ch.send(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: ++seq, sentAtMs: Date.now(), lastEpoch: null })), 20);
    ch.onClose(() => clearInterval(timer));
    ch.onFrame(() => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of chans) c.fail(new Error('test over'));
    server.close();
  });
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  return sock;
}

t.test('a backup that heartbeats but never acknowledges loses the link after the ack timeout, not before', async (t) => {
  const sock = await heartbeatingBackup(t);
  const link = new ChannelLink(new Channel(sock), { heartbeatMs: 20, timeoutMs: 60, ackTimeoutMs: 400 });
  t.teardown(() => link.close());
  link.seal(1, 0);
  const start = performance.now();
  const err = await link.waitAck(1).then(
    () => null,
    (e: Error) => e,
  );
  const after = performance.now() - start;
  t.type(err, ReplicationLostError);
  t.match(err?.message, /has not acknowledged checkpoint 1 for \d+ ms though it still sends heartbeats \(ack timeout 400 ms\)/);
  t.ok(after >= 400 && after < 1400, `given up after ${Math.round(after)} ms`);
  t.ok(link.isLost);
});

t.test('the ack timeout does not run while a full or large checkpoint is in flight', async (t) => {
  const sock = await heartbeatingBackup(t);
  const link = new ChannelLink(new Channel(sock), { heartbeatMs: 20, timeoutMs: 60, ackTimeoutMs: 200 });
  t.teardown(() => link.close());
  link.slowPhase(true);
  link.seal(1, 0);
  const waiting = link.waitAck(1);
  waiting.catch(() => {});
  await sleep(600);
  t.notOk(link.isLost, 'three ack timeouts pass in the slow phase');
  const ended = performance.now();
  link.slowPhase(false);
  const err = await waiting.then(
    () => null,
    (e: Error) => e,
  );
  t.match(err?.message, /has not acknowledged checkpoint 1/);
  t.ok(performance.now() - ended >= 200, 'counted from the end of the slow phase');
});

t.test('the control socket answers an over-long request with an error and stays up', async (t) => {
  const cdir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-ctl-'));
  const be = new SimBackend({ hostName: 'p', stateDir: path.join(cdir, 's') });
  const controlPath = path.join(cdir, 'c.sock');
  const daemon = new Daemon({ backend: be, hostName: 'p', stateDir: path.join(cdir, 's'), controlPath, log, keys: pairedKeys(cdir).p! });
  await daemon.start();
  t.teardown(async () => {
    await daemon.stop();
    await be.dispose();
    fs.rmSync(cdir, { recursive: true, force: true });
  });
  const sock = net.connect(controlPath);
  await new Promise((r) => sock.once('connect', r));
  let answer = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => (answer += d));
  const closed = new Promise((r) => sock.once('close', r));
  sock.on('error', () => {});
  const chunk = 'x'.repeat(64 * 1024);
  for (let n = 0; n <= CONTROL_MAX_REQUEST_BYTES + chunk.length && !sock.destroyed; n += chunk.length) {
    if (!sock.write(chunk)) await new Promise((r) => setTimeout(r, 1));
  }
  await closed;
  const resp = JSON.parse(answer.split('\n')[0]!) as { ok: boolean; error: string };
  t.equal(resp.ok, false);
  t.match(resp.error, new RegExp(`control request refused: longer than ${CONTROL_MAX_REQUEST_BYTES} bytes without a newline`));
  const { controlRequest } = await import('../../src/daemon/control.js');
  const ping = await controlRequest(controlPath, { cmd: 'ping' });
  t.equal(ping.ok, true, 'the daemon still answers');
});
