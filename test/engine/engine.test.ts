import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimBackend } from '../../src/backend/sim/host.js';
import type { ContentSink, SaveSession } from '../../src/backend/types.js';
import { CheckpointEngine, type EngineState } from '../../src/engine/engine.js';
import { NackError, ReplicationLostError } from '../../src/engine/link.js';
import { FakeLink, kvDomainForFile, rawConn, sleep, startEngine, until, type TT } from '../helpers/engine-fakes.js';
import { SEAL_FLAG } from '../../src/transport/channel-records.js';
import { createMode } from '../../src/engine/modes/index.js';
import { RemusMode } from '../../src/engine/modes/remus.js';
import { DeviceEvents } from '../../src/engine/events.js';
import { ModeSetupError, type CheckpointDevice, type LoopState, type ModePlan } from '../../src/engine/types.js';
import { NetbufDevice } from '../../src/devices/netbuf.js';
import { DiskReplicationDevice } from '../../src/devices/disk.js';
import { XLHA_REC, decodeDiskWrites } from '../../src/transport/channel-records.js';
import { XenStreamParser } from '../../src/transport/xenstream.js';
import { KV_OP, KV_STATUS } from '../../src/backend/sim/kvproto.js';
import { KV_DISK_BYTES, RECORD } from '../../src/backend/sim/guest.js';
import { silentLogger } from '../../src/util/log.js';

type Tap = { equal: (...args: any[]) => unknown };

// One primary host and one kv domain serve every scenario: a protection ends with the domain
// running, and the next one protects it again. (vCPU threads are slow to start under tap.)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-engine-'));
const stateDir = path.join(dir, 'p');
const backend = new SimBackend({ hostName: 'p', stateDir });
let nextClient = 1000;
const log = silentLogger();

const host = kvDomainForFile(t, backend, dir, 9);

interface Run {
  engine: CheckpointEngine;
  link: FakeLink;
  netbuf: NetbufDevice;
  disk: DiskReplicationDevice | null;
  abort: AbortController;
  done: Promise<EngineState>;
  protectedP: Promise<void>;
  commits: number[];
}

async function protect(
  t: TT,
  o: { intervalMs?: number; maxInFlight?: number; disk?: boolean; maxResyncs?: number; link?: FakeLink; wrap?: (s: SaveSession) => SaveSession; phaseOrder?: ModePlan['phaseOrder'] } = {},
): Promise<Run> {
  const opened = await backend.openSave(host.dom.domid);
  const session = o.wrap ? o.wrap(opened) : opened;
  const link = o.link ?? new FakeLink();
  const netbuf = new NetbufDevice();
  const devices: CheckpointDevice[] = [netbuf];
  const disk = o.disk ? new DiskReplicationDevice() : null;
  if (disk) devices.push(disk);
  const commits: number[] = [];
  const plan: ModePlan = { devices, maxInFlight: o.maxInFlight ?? 1, phaseOrder: o.phaseOrder ?? 'resume-then-ack', outputRule: 'after-checkpoint-ack' };
  const engine = new CheckpointEngine({
    session,
    link,
    mode: new RemusMode({ intervalMs: o.intervalMs ?? 20 }),
    plan,
    events: new DeviceEvents(),
    domainName: host.dom.name,
    log,
    ...(o.maxResyncs !== undefined ? { maxResyncs: o.maxResyncs } : {}),
    onCommit: (e) => {
      commits.push(e);
      link.events.push(`commit ${e}`);
    },
  });
  const { abort, done, protectedP } = startEngine(t, engine, link);
  return { engine, link, netbuf, disk, abort, done, protectedP, commits };
}

/** Ends a run cleanly (acknowledging whatever is left) and checks the domain runs on. */
async function finish(t: Tap, r: Run, want: EngineState = 'stopped'): Promise<void> {
  r.link.auto = () => 'ack';
  r.abort.abort(new Error('test over'));
  r.link.ackUpTo(Number.MAX_SAFE_INTEGER);
  t.equal(await r.done, want, `protection ended ${want}`);
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running', 'the domain keeps running');
}

t.test("a session's precopy sink passes its onWritten to the link, which runs it once the bytes are sent", async (t) => {
  let frames = 0;
  let ran = 0;
  const r = await protect(t, {
    wrap: (inner) =>
      new Proxy(inner, {
        get(target, prop, receiver) {
          if (prop !== 'begin') return Reflect.get(target, prop, receiver) as unknown;
          return (sink: ContentSink) =>
            target.begin((chunk, onWritten) => {
              frames++;
              return sink(chunk, () => {
                ran++;
                onWritten?.();
              });
            });
        },
      }),
  });
  await r.protectedP;
  t.ok(frames > 0, `the precopy went out in ${frames} frames`);
  t.equal(r.link.writtenAsked, frames, 'each frame reached the link with its onWritten');
  t.equal(ran, frames, 'and each ran once');
  await finish(t, r);
});

t.test('network output of an epoch is held until the backup acknowledges that checkpoint', async (t) => {
  const r = await protect(t, { intervalMs: 20 });
  await r.protectedP;
  t.equal(r.engine.state, 'protected');
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1); // the engine now waits for an ack it will not get yet
  const e0 = r.engine.epoch;
  const c = await rawConn(t, host.port);
  const ids = [nextClient++, nextClient++, nextClient++];
  for (const id of ids) c.send(id, 1, KV_OP.PING);
  await until('the three responses to be held', () => r.netbuf.heldBytes === 36);
  t.equal(r.engine.epoch, e0, 'no checkpoint began meanwhile: the responses belong to the open epoch');
  const epoch = e0 + 1;

  r.link.ackUpTo(e0);
  await r.link.waitSeal(epoch);
  await sleep(150);
  t.equal(c.responses.length, 0, `nothing reached the client before checkpoint ${epoch} was acknowledged`);
  t.equal(r.netbuf.heldBytes, 36, 'still held');

  r.link.ack(epoch);
  await c.waitFor(3, 2000);
  t.same(c.responses.map((x) => x.clientId).sort(), ids, `all three responses arrived once checkpoint ${epoch} was acknowledged`);
  t.equal(r.netbuf.heldBytes, 0);
  t.ok(r.commits.includes(epoch));
  await finish(t, r);
});

t.test('disk writes travel in the checkpoint of their epoch; the first checkpoint carries the whole disk', async (t) => {
  const r = await protect(t, { intervalMs: 20, disk: true });
  await r.protectedP;
  r.link.auto = () => 'hold';

  const first = r.link.seal_(1)!;
  t.equal(first.flags, SEAL_FLAG.FULL, 'checkpoint 1 is sealed FULL');
  const initial = first.content.filter((f) => f.type === XLHA_REC.DISK_WRITES).flatMap((f) => decodeDiskWrites(f.body));
  initial.sort((a, b) => a.offset - b.offset);
  let next = 0;
  for (const w of initial) {
    if (w.offset !== next) break;
    next += w.data.length;
  }
  t.equal(next, KV_DISK_BYTES, 'checkpoint 1 covers the disk from byte 0 to its end without a gap');
  const image = fs.readFileSync(path.join(stateDir, 'kv.img'));
  t.ok(Buffer.concat(initial.map((w) => w.data)).equals(image.subarray(0, KV_DISK_BYTES)), 'with the disk content');

  await r.link.waitSeal(r.engine.epoch + 1);
  const e0 = r.engine.epoch;
  const c = await rawConn(t, host.port);
  const key = 'disk-key';
  const value = 'disk-value-123';
  c.send(nextClient++, 1, KV_OP.PUT, key, value);
  await until('the PUT response to be held', () => r.netbuf.heldBytes > 0);
  t.equal(r.engine.epoch, e0);
  const epoch = e0 + 1;
  r.link.ackUpTo(e0);
  await r.link.waitSeal(epoch);
  r.link.ack(epoch);
  await c.waitFor(1, 2000);

  const writesOf = (e: number) => r.link.seal_(e)!.content.filter((f) => f.type === XLHA_REC.DISK_WRITES).flatMap((f) => decodeDiskWrites(f.body));
  for (let e = 2; e < epoch; e++) t.same(writesOf(e), [], `checkpoint ${e} carries no disk write`);
  const writes = writesOf(epoch);
  t.equal(writes.length, 1, `checkpoint ${epoch} carries the one write of its epoch`);
  const w = writes[0]!;
  t.equal(w.offset % RECORD, 0);
  t.equal(w.data.length, RECORD);
  t.equal(w.data[1], key.length);
  t.equal(w.data.subarray(8, 8 + key.length).toString(), key);
  t.equal(w.data.subarray(64, 64 + value.length).toString(), value);
  t.ok(image.length >= w.offset + RECORD);
  t.equal(r.link.seal_(epoch)!.flags, 0, 'an ordinary checkpoint is not FULL');
  await finish(t, r);
});

t.test('each suspend is announced to the devices first: the disk tap lets held guest I/O through before the guest must suspend', async (t) => {
  const calls: string[] = [];
  const bound = <T extends object>(target: T, k: string | symbol) => {
    const v = Reflect.get(target, k, target) as unknown;
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  };
  const r = await protect(t, {
    disk: true,
    wrap: (s) => {
      const tap = s.disk!;
      const disk = new Proxy(tap, { get: (target, k) => (k === 'suspending' ? () => void calls.push('suspending') : bound(target, k)) });
      return new Proxy(s, {
        get: (target, k) =>
          k === 'disk'
            ? disk
            : k === 'suspend'
              ? async () => {
                  calls.push('suspend');
                  await target.suspend();
                }
              : bound(target, k),
      });
    },
  });
  await r.protectedP;
  await until('a few checkpoints', () => calls.filter((c) => c === 'suspend').length >= 3);
  await finish(t, r);
  const suspends = calls.map((c, i) => [c, i] as const).filter(([c]) => c === 'suspend');
  t.ok(suspends.length >= 3, `${suspends.length} suspends`);
  t.ok(suspends.every(([, i]) => calls[i - 1] === 'suspending'), `each suspend right after the tap heard of it (${calls.slice(0, 8).join(', ')}...)`);
});

t.test('a rejected checkpoint makes the engine resend everything in a checkpoint flagged FULL', async (t) => {
  const link = new FakeLink();
  link.auto = (e) => (e === 3 ? 'nack' : 'ack');
  const r = await protect(t, { intervalMs: 10, disk: true, link });
  await r.protectedP;
  await link.waitSeal(5);

  const parser = new XenStreamParser();
  const parse = (e: number) =>
    parser.parseCheckpoint(Buffer.concat(link.seal_(e)!.content.filter((f) => f.type === XLHA_REC.XEN_STREAM).map((f) => f.body)));
  const pages = (8 << 20) >> 12;
  t.equal(new Set(parse(1).pages.map((p) => p.pfn)).size, pages, 'checkpoint 1 has every page');
  parse(2);
  parse(3);
  const full = parse(4);
  t.same(link.sealed.slice(0, 5).map((s) => s.flags), [SEAL_FLAG.FULL, 0, 0, SEAL_FLAG.FULL, 0], 'only checkpoints 1 and 4 are FULL');
  t.equal(new Set(full.pages.map((p) => p.pfn)).size, pages, 'checkpoint 4 has every page again');
  const disk = link.seal_(4)!.content.filter((f) => f.type === XLHA_REC.DISK_WRITES).flatMap((f) => decodeDiskWrites(f.body));
  t.equal(disk.reduce((s, w) => s + w.data.length, 0), 0, 'and no disk block: nothing was written since the last acknowledged checkpoint, which the backup still holds');
  t.ok(parse(5).pages.length < pages, 'checkpoint 5 is incremental again');
  t.equal(r.engine.stats.resyncs, 1);
  t.notOk(r.commits.includes(3), 'the rejected checkpoint is never committed');
  t.ok(r.commits.includes(4));
  t.equal(r.engine.state, 'protected', 'protection goes on');
  t.ok(link.slowCalls.filter((x) => x).length >= 2, 'the link was told about both slow phases');
  await finish(t, r);
});

t.test('a resync sends the disk blocks written since the last acknowledged checkpoint, not the whole disk, and the backup\'s copy ends equal to the primary\'s', async (t) => {
  const link = new FakeLink();
  let rejected = 0;
  // reject the first checkpoint after the first that carries disk writes
  link.auto = (e) => {
    if (!rejected && e > 1 && link.sealed.at(-1)!.content.some((f) => f.type === XLHA_REC.DISK_WRITES)) {
      rejected = e;
      return 'nack';
    }
    return 'ack';
  };
  const r = await protect(t, { intervalMs: 10, disk: true, link });
  await r.protectedP;
  const c = await rawConn(t, host.port);
  const client = nextClient++;
  const n = 60;
  for (let i = 0; i < n; i++) {
    c.send(client, i + 1, KV_OP.PUT, `resync-${i}`, `value ${i} ${'x'.repeat(120)}`);
    await sleep(2);
  }
  await c.waitFor(n, 10000);
  t.ok(c.responses.every((x) => x.status === KV_STATUS.OK), 'every write acknowledged');
  await until('the resync to be acknowledged', () => rejected > 0 && r.commits.includes(rejected + 1), 10000);
  const quiet = r.engine.epoch;
  await until('two quiet checkpoints', () => (r.commits.at(-1) ?? 0) >= quiet + 2, 10000);
  const diskOf = (s: { content: { type: number; body: Buffer }[] }) => s.content.filter((f) => f.type === XLHA_REC.DISK_WRITES).flatMap((f) => decodeDiskWrites(f.body));
  const full = link.sealed.find((s) => s.epoch === rejected + 1)!;
  t.equal(full.flags, SEAL_FLAG.FULL, `checkpoint ${rejected + 1} is the FULL one`);
  const resent = diskOf(full).reduce((b, w) => b + w.data.length, 0);
  const rejectedBytes = diskOf(link.sealed.find((s) => s.epoch === rejected)!).reduce((b, w) => b + w.data.length, 0);
  t.ok(resent >= rejectedBytes && resent > 0, `the rejected checkpoint's writes (${rejectedBytes} bytes) go again, as ${resent} bytes of written blocks`);
  t.ok(resent <= KV_DISK_BYTES / 8, `far less than the ${KV_DISK_BYTES}-byte disk`);
  t.same(r.disk!.lastResync, { bytes: r.disk!.lastResync!.bytes, wholeDisk: false }, 'the device resynced the written blocks only');
  t.ok(r.disk!.lastResync!.bytes <= resent, 'what it read is in the FULL checkpoint');
  // the backup's copy: every acknowledged checkpoint's disk writes, in order (the rejected one never applied)
  const model = Buffer.alloc(KV_DISK_BYTES);
  for (const s of [...link.sealed].sort((a, b) => a.epoch - b.epoch)) if (link.ackedAt.has(s.epoch)) for (const w of diskOf(s)) model.set(w.data, w.offset);
  const image = fs.readFileSync(path.join(stateDir, 'kv.img')).subarray(0, KV_DISK_BYTES);
  t.ok(model.equals(image), 'the backup\'s copy equals the primary\'s disk byte for byte');
  t.ok(image.includes(Buffer.from(`value ${n - 1} `)), 'and holds the last write');
  await finish(t, r);
});

t.test('output of a rejected epoch is released only when the FULL checkpoint after it is acknowledged', async (t) => {
  const r = await protect(t, { intervalMs: 10 });
  await r.protectedP;
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1);
  const e0 = r.engine.epoch;
  const c = await rawConn(t, host.port);
  c.send(nextClient++, 1, KV_OP.PING);
  await until('the response to be held', () => r.netbuf.heldBytes > 0);
  t.equal(r.engine.epoch, e0);
  const rejected = e0 + 1;
  r.link.ackUpTo(e0);
  await r.link.waitSeal(rejected);
  r.link.nack(rejected, 'torn');
  await r.link.waitSeal(rejected + 1);
  t.equal(r.link.seal_(rejected + 1)!.flags, SEAL_FLAG.FULL);
  await sleep(100);
  t.equal(c.responses.length, 0, 'not released by the NACK nor by the FULL checkpoint being sent');
  r.link.ack(rejected + 1);
  await c.waitFor(1, 2000);
  t.pass('released by the ack of the FULL checkpoint');
  await finish(t, r);
});

t.test('a rejected first checkpoint fails protection and leaves the domain running', async (t) => {
  const link = new FakeLink();
  link.auto = (e) => (e === 1 ? 'nack' : 'ack');
  const r = await protect(t, { link });
  t.equal(await r.done, 'failed');
  t.match(r.engine.error?.message, /checkpoint 1.*test says no/);
  t.equal(link.goodbyes, 0, 'no clean GOODBYE on failure');
  t.equal(link.gaveUp.length, 1, 'but the backup is given up (a GOODBYE with the reason), so that it drops its replica');
  t.match(link.gaveUp[0], /the primary gave protection up: backup rejected checkpoint 1/);
  t.ok(link.closed, 'the link is closed');
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running');
  const c = await rawConn(t, host.port);
  c.send(nextClient++, 1, KV_OP.PING);
  await c.waitFor(1, 2000);
  t.pass('the domain answers, unbuffered');
});

t.test('protection gives up when the backup keeps rejecting full resyncs', async (t) => {
  const link = new FakeLink();
  link.auto = (e) => (e >= 2 ? 'nack' : 'ack');
  const r = await protect(t, { intervalMs: 5, link, maxResyncs: 2 });
  t.equal(await r.done, 'failed');
  t.match(r.engine.error?.message, /rejected 3 full resyncs in a row/);
  t.equal(r.engine.stats.resyncs, 2);
  t.match(link.gaveUp[0], /the primary gave protection up: backup rejected 3 full resyncs/, 'the backup is told');
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running');
});

t.test('a lost link ends protection as lost, releases held output and keeps the domain running', async (t) => {
  const r = await protect(t, { intervalMs: 20 });
  await r.protectedP;
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1);
  const c = await rawConn(t, host.port);
  const id = nextClient++;
  c.send(id, 1, KV_OP.PUT, 'lost-key', 'v');
  await until('the response to be held', () => r.netbuf.heldBytes > 0);
  await sleep(50);
  t.equal(c.responses.length, 0);

  r.link.lose('backup vanished');
  t.equal(await r.done, 'lost');
  t.type(r.engine.error, ReplicationLostError);
  t.match(r.engine.error?.message, /backup vanished/);
  await c.waitFor(1, 2000);
  t.equal(c.responses[0]!.clientId, id, 'the held response was released');
  t.equal(r.netbuf.heldBytes, 0);
  t.equal(r.link.goodbyes, 0);
  t.ok(r.link.closed);

  const info = await backend.findDomain(host.dom.domid);
  t.equal(info.state, 'running', 'the domain is not left suspended');
  c.send(id, 2, KV_OP.GET, 'lost-key');
  await c.waitFor(2, 2000);
  t.equal(Buffer.from(c.responses[1]!.value).toString(), 'v', 'and answers new requests at once');
});

t.test('a link lost with several checkpoints in flight ends protection as lost, not the process', async (t) => {
  const r = await protect(t, { intervalMs: 10, maxInFlight: 3 });
  await r.protectedP;
  r.link.auto = () => 'hold';
  const e0 = r.engine.epoch;
  await r.link.waitSeal(e0 + 3);
  await sleep(30);
  r.link.lose('backup silent: declared dead');
  t.equal(await r.done, 'lost', 'every in-flight ack is rejected; run() reports the loss');
  await sleep(50); // an unhandled rejection of an in-flight checkpoint would end this process here
  t.match(r.engine.error?.message, /declared dead/);
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running');
});

t.test('a clean stop commits the checkpoints in flight before saying goodbye', async (t) => {
  const r = await protect(t, { intervalMs: 10, maxInFlight: 3 });
  await r.protectedP;
  r.link.auto = () => 'hold';
  const e0 = r.engine.epoch;
  await r.link.waitSeal(e0 + 3);
  await sleep(60);
  const last = Math.max(...r.link.sealed.map((s) => s.epoch));
  t.equal(last, e0 + 3, 'at most 3 checkpoints in flight: the engine waits');
  const c = await rawConn(t, host.port);
  c.send(nextClient++, 1, KV_OP.PING);
  await until('a held response', () => r.netbuf.heldBytes > 0);

  r.abort.abort(new Error('stop'));
  await sleep(100);
  t.equal(r.link.goodbyes, 0, 'no GOODBYE while checkpoints are in flight');
  t.equal(r.engine.state, 'protected');
  let settled = false;
  void r.done.then(() => (settled = true));
  t.notOk(settled, 'run() waits for the acks');

  // Acknowledge one at a time: until the last one is in, no GOODBYE and run() goes on.
  for (let e = e0 + 1; e < last; e++) {
    r.link.ack(e);
    await sleep(40);
    t.equal(r.link.goodbyes, 0, `no GOODBYE with checkpoint ${e + 1} still in flight`);
    t.notOk(settled, `run() still waits after the ack of ${e}`);
  }
  r.link.ack(last);
  t.equal(await r.done, 'stopped');
  t.equal(r.engine.error, null);
  for (let e = e0 + 1; e <= last; e++) t.ok(r.commits.includes(e), `checkpoint ${e} was committed`);
  const ev = r.link.events;
  const bye = ev.findIndex((x) => x.startsWith('goodbye'));
  t.ok(bye > ev.indexOf(`commit ${last}`), 'GOODBYE after the last commit');
  t.equal(r.link.goodbyes, 1);
  t.equal(Math.max(...r.link.sealed.map((s) => s.epoch)), last, 'no checkpoint was taken after the stop');
  await c.waitFor(1, 2000);
  t.equal(r.netbuf.heldBytes, 0, 'output flows freely after the stop');
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running');
});

const setupCtx = (o: Partial<Parameters<RemusMode['setup']>[0]> = {}) => ({
  features: backend.features,
  backendKind: backend.kind,
  netbuf: true,
  disk: true,
  events: new DeviceEvents(),
  ...o,
});

t.test('modes this release cannot run fail at setup with an error naming the mode', async (t) => {
  for (const mode of ['llm'] as const) {
    let err: unknown = null;
    try {
      createMode(mode, { intervalMs: 25 });
    } catch (e) {
      err = e;
    }
    t.type(err, ModeSetupError, `${mode} throws a ModeSetupError`);
    t.match((err as Error | null)?.message, new RegExp(`\\bmode ${mode}\\b`), 'naming the mode');
    t.equal((err as ModeSetupError | null)?.code, 'EMODESETUP');
  }
  const p = createMode('remus', { intervalMs: 25 });
  t.equal(p.id, 'remus');
  t.type(p, RemusMode);
  t.throws(() => new RemusMode({ intervalMs: 0 }).setup(setupCtx()), /interval/);
});

t.test("a mode's plan names its devices, depth, phase order and output rule; the daemon chooses none of them", async (t) => {
  const remus = createMode('remus', { intervalMs: 25 }).setup(setupCtx());
  t.same(remus.devices.map((d) => d.kind), ['netbuf', 'disk']);
  t.equal(remus.maxInFlight, backend.features.maxInFlight, "in flight: the backend's default");
  t.equal(remus.phaseOrder, 'resume-then-ack');
  t.equal(remus.outputRule, 'after-checkpoint-ack');
  t.same(createMode('remus', { intervalMs: 25 }).setup(setupCtx({ netbuf: false, inFlight: 3 })).devices.map((d) => d.kind), ['disk'], '-n drops netbuf');
  t.equal(createMode('remus', { intervalMs: 25 }).setup(setupCtx({ inFlight: 3 })).maxInFlight, 3, '--in-flight is honoured');
  const kemari = createMode('kemari', { intervalMs: 25 });
  const kp = kemari.setup(setupCtx());
  t.same(kp.devices.map((d) => d.kind), ['netbuf', 'disk']);
  t.equal(kp.outputRule, 'after-checkpoint-ack');
  kemari.dispose?.();
  // What a backend lacks is named, with the option that turns it off.
  const xenLike = { ...backend.features, outputEvents: false, diskReplication: false };
  t.throws(() => createMode('remus', { intervalMs: 25 }).setup(setupCtx({ features: xenLike, backendKind: 'xen' })), /remus: disk replication is not available on the xen backend; use -d/);
  t.throws(() => createMode('kemari', { intervalMs: 25 }).setup(setupCtx({ features: xenLike, backendKind: 'xen', disk: false })), /mode kemari needs output events .* the xen backend does not report yet/);
  t.throws(() => createMode('kemari', { intervalMs: 25 }).setup(setupCtx({ netbuf: false, disk: false })), /kemari: with both -n and -d there is no output to sync on/);
  t.throws(() => createMode('remus', { intervalMs: 25 }).setup(setupCtx({ features: { ...backend.features, outputBuffering: false }, backendKind: 'xen' })), /network buffering is not available on the xen backend; use -n/);
});

t.test('remus takes the first checkpoint at once and then waits an interval', async (t) => {
  const p = new RemusMode({ intervalMs: 60 });
  const ac = new AbortController();
  const state = (last: number, resumed = last): LoopState => ({ epoch: 1, lastCheckpointAt: last, lastEpochClosedAt: last, lastResumedAt: resumed, inFlight: 0 });
  let t0 = performance.now();
  await p.nextCheckpoint(state(0), ac.signal);
  t.ok(performance.now() - t0 < 30, 'no wait before the first checkpoint');
  t0 = performance.now();
  await p.nextCheckpoint(state(t0), ac.signal);
  const waited = performance.now() - t0;
  t.ok(waited >= 55 && waited < 1000, `waited about an interval (${waited.toFixed(1)} ms)`);
  t0 = performance.now();
  await p.nextCheckpoint(state(t0 - 100), ac.signal);
  t.ok(performance.now() - t0 < 30, 'no wait when the interval is already over');
  // A checkpoint that took longer than the interval (started 100 ms ago, resumed just now):
  // the guest still runs half an interval before the next one.
  t0 = performance.now();
  await p.nextCheckpoint(state(t0 - 100, t0), ac.signal);
  const ran = performance.now() - t0;
  t.ok(ran >= 25 && ran < 1000, `after a long checkpoint the guest runs half an interval first (${ran.toFixed(1)} ms)`);
  const pending = p.nextCheckpoint(state(performance.now()), ac.signal);
  ac.abort(new Error('aborted by test'));
  await t.rejects(pending, /aborted by test/, 'an abort ends the wait');
});

t.test('the engine checkpoints about once per interval', async (t) => {
  const r = await protect(t, { intervalMs: 50 });
  await r.protectedP;
  const start = r.link.sealed.length;
  await sleep(600);
  const n = r.link.sealed.length - start;
  t.ok(n >= 4 && n <= 15, `${n} checkpoints in 600 ms at a 50 ms interval`);
  await finish(t, r);
});

t.test('with the ack-then-resume phase order the guest stays suspended until the backup acknowledges, then runs on', async (t) => {
  const r = await protect(t, { intervalMs: 20, maxInFlight: 4, phaseOrder: 'ack-then-resume' });
  await r.protectedP;
  t.equal(r.engine.maxInFlight, 1, 'one checkpoint in flight at most, whatever the plan asked');
  r.link.auto = () => 'hold';
  const e = r.engine.epoch + 1;
  await r.link.waitSeal(e);
  await sleep(100);
  t.equal((await backend.findDomain(host.dom.domid)).state, 'suspended', `the guest is suspended while checkpoint ${e} waits for its ack`);
  t.equal(r.link.sealed.length, e, 'and no further checkpoint was taken');
  const pausesBefore = r.engine.stats.pauseMs.count;
  r.link.ack(e);
  await until('the guest to run again', () => r.engine.stats.pauseMs.count > pausesBefore);
  t.ok(r.engine.stats.pauseMs.percentile(100) >= 90, `the pause counts the wait for the ack (${Math.round(r.engine.stats.pauseMs.percentile(100))} ms)`);
  t.ok(r.commits.includes(e), `checkpoint ${e} was committed`);
  await finish(t, r);
});

t.test('with the ack-then-resume phase order a link lost during the wait resumes the guest', async (t) => {
  const r = await protect(t, { intervalMs: 20, phaseOrder: 'ack-then-resume' });
  await r.protectedP;
  r.link.auto = () => 'hold';
  await r.link.waitSeal(r.engine.epoch + 1);
  r.link.lose('backup vanished');
  t.equal(await r.done, 'lost');
  t.equal((await backend.findDomain(host.dom.domid)).state, 'running', 'the domain runs on, unprotected');
});
