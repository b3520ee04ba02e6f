import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimBackend } from '../../src/backend/sim/host.js';
import type { OutputGate } from '../../src/backend/sim/nic.js';
import type { DomainInfo } from '../../src/backend/types.js';
import { CheckpointEngine, type EngineState } from '../../src/engine/engine.js';
import { DeviceEvents } from '../../src/engine/events.js';
import { KemariMode } from '../../src/engine/modes/kemari.js';
import { LARGE_CHECKPOINT_BYTES, frameGroups } from '../../src/engine/engine.js';
import { freePort } from '../../src/demo/hosts.js';
import { KV_OP } from '../../src/backend/sim/kvproto.js';
import { silentLogger } from '../../src/util/log.js';
import { FakeLink, kvDomainForFile, rawConn, sleep, startEngine, type TT } from '../helpers/engine-fakes.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-kemari-'));
const backend = new SimBackend({ hostName: 'p', stateDir: path.join(dir, 'p') });
const log = silentLogger();
const host = kvDomainForFile(t, backend, dir, 3);
let nextClient = 5000;

interface Run {
  engine: CheckpointEngine;
  link: FakeLink;
  mode: KemariMode;
  events: DeviceEvents;
  gate: OutputGate | null;
  abort: AbortController;
  done: Promise<EngineState>;
  protectedP: Promise<void>;
}

async function protect(t: TT, dom: DomainInfo, minGapMs: number): Promise<Run> {
  const session = await backend.openSave(dom.domid);
  const gate = session.net as OutputGate | null;
  if (gate) gate.log = [];
  const link = new FakeLink();
  const mode = new KemariMode({ minGapMs });
  const events = new DeviceEvents();
  const plan = mode.setup({ features: backend.features, backendKind: backend.kind, netbuf: true, disk: true, events });
  const engine = new CheckpointEngine({ session, link, mode, plan, events, domainName: dom.name, log });
  const { abort, done, protectedP } = startEngine(t, engine, link);
  return { engine, link, mode, events, gate, abort, done, protectedP };
}

async function stop(r: Run): Promise<EngineState> {
  r.link.auto = () => 'ack';
  r.abort.abort(new Error('test over'));
  r.link.ackUpTo(Number.MAX_SAFE_INTEGER);
  return r.done;
}

t.test('kemari takes no checkpoint while the guest emits nothing', async (t) => {
  const r = await protect(t, host.dom, 2);
  await r.protectedP;
  const after = r.link.sealed.length;
  t.equal(after, 1, 'only the first checkpoint, which ends the precopy');
  await sleep(600);
  t.equal(r.link.sealed.length, after, 'no checkpoint in 600 ms of an idle guest');
  t.equal(r.events.counts['output-pending'], 0, 'no output event was raised');
  t.equal(await stop(r), 'stopped');
});

t.test('kemari takes no checkpoint for a guest that dirties memory but emits no output', async (t) => {
  const busy = await backend.createDomain({ name: 'busy', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'memstress', dirtyMiBPerSec: 8, seed: 4 } });
  t.teardown(() => backend.destroyDomain(busy.domid));
  const r = await protect(t, busy, 2);
  await r.protectedP;
  const after = r.link.sealed.length;
  await sleep(500);
  t.equal(r.link.sealed.length, after, 'no checkpoint in 500 ms while about 4 MiB were dirtied');
  t.equal(await stop(r), 'stopped');
});

t.test('a burst of output costs exactly one checkpoint, taken at once, and leaves after its ack', async (t) => {
  const r = await protect(t, host.dom, 150);
  await r.protectedP;
  await sleep(200); // the last checkpoint is more than a gap ago: the next output syncs at once
  const before = r.link.sealed.length;
  r.link.auto = () => 'hold';
  const c = await rawConn(t, host.port);
  const ids = Array.from({ length: 20 }, () => nextClient++);
  const sentAt = performance.now();
  c.sendMany(ids.map((id) => ({ clientId: id, seq: 1, op: KV_OP.PING }))); // one write: one burst
  await r.link.waitSeal(before + 1, 3000);
  t.ok(performance.now() - sentAt < 100, `the sync followed the burst at once (${Math.round(performance.now() - sentAt)} ms), not after the 150 ms gap`);
  const sync = r.link.sealed[before]!.epoch;
  await sleep(250); // past the gap again: nothing else was emitted, so nothing else is due
  t.equal(r.link.sealed.length, before + 1, 'one sync for the burst of 20 responses');
  t.equal(c.responses.length, 0, 'no response reached the client before the sync was acknowledged');
  r.link.ack(sync);
  await c.waitFor(20, 3000);
  t.same(c.responses.map((x) => x.clientId).sort(), ids, 'every response arrived after the ack');
  const released = r.gate!.log!.filter((x) => x.epoch !== null);
  t.equal(released.length, 20, "the gate's log shows 20 held outputs released");
  t.ok(released.every((x) => x.epoch === sync), `all covered by sync ${sync}`);
  t.ok(released.every((x) => x.at >= r.link.ackedAt.get(sync)!), 'none left before the ack');
  t.equal(await stop(r), 'stopped');
});

t.test('output within the minimum gap after a sync waits for the end of the gap, and one sync covers all of it', async (t) => {
  const r = await protect(t, host.dom, 150);
  await r.protectedP;
  await sleep(200);
  const c = await rawConn(t, host.port);
  const before = r.link.sealed.length;
  c.send(nextClient++, 1, KV_OP.PING);
  await r.link.waitSeal(before + 1, 3000);
  const firstSyncAt = performance.now();
  for (let i = 0; i < 4; i++) {
    await sleep(15);
    c.send(nextClient++, 1, KV_OP.PING); // four more outputs, all within the gap
  }
  await r.link.waitSeal(before + 2, 3000);
  const gap = performance.now() - firstSyncAt;
  t.ok(gap >= 140, `the second sync came ${Math.round(gap)} ms after the first, not before the 150 ms gap`);
  await c.waitFor(5, 3000);
  await sleep(250);
  t.equal(r.link.sealed.length, before + 2, 'the four outputs within the gap cost one sync');
  const released = r.gate!.log!.filter((x) => x.epoch !== null);
  t.same([...new Set(released.map((x) => x.epoch))].length, 2, 'the five responses left with two syncs');
  t.equal(await stop(r), 'stopped');
  t.equal(r.events.listenerCount('output-pending'), 0, "after the stop the mode's subscription is disposed");
});

t.test('under a steady stream of requests no output ever leaves before the sync that covers it is acknowledged', async (t) => {
  const r = await protect(t, host.dom, 2);
  await r.protectedP;
  r.link.auto = () => 'hold';
  // The backup acknowledges, in order, every 3-8 ms, what was sealed by then.
  let acking = true;
  const acker = (async () => {
    while (acking) {
      await sleep(3 + Math.floor(Math.random() * 6));
      for (const s of r.link.sealed) if (!r.link.ackedAt.has(s.epoch)) r.link.ack(s.epoch);
    }
  })();
  const c = await rawConn(t, host.port);
  const n = 150;
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = nextClient++;
    ids.push(id);
    c.send(id, 1, i % 2 ? KV_OP.PUT : KV_OP.PING, `k${i}`, `v${i}`); // PUTs write the disk too
    await sleep(i % 10 === 0 ? 6 : 1);
  }
  await c.waitFor(n, 5000);
  acking = false;
  await acker;
  const held = r.gate!.log!.filter((x) => x.epoch !== null);
  t.equal(held.length, n, `the gate's log shows all ${n} responses held, then released`);
  const early = held.filter((x) => !(r.link.ackedAt.has(x.epoch!) && r.link.ackedAt.get(x.epoch!)! <= x.at));
  t.same(early, [], 'every output left after the ack of the sync that covers it');
  const syncs = r.link.sealed.length - 1;
  t.ok(syncs >= 1 && syncs < n, `${syncs} syncs for ${n} responses: events coalesced`);
  t.ok(r.mode.stats().outputEvents >= syncs, `each sync had an output event (${r.mode.stats().outputEvents} events)`);
  t.equal(await stop(r), 'stopped');
});

t.test('a large sync lets the backup be silent longer while it is in flight, and only until it is committed', async (t) => {
  const port2 = await freePort();
  const big = await backend.createDomain({
    name: 'kv-big',
    memoryMiB: 96,
    vcpus: 1,
    disks: [],
    vifs: [],
    sim: { workload: 'kv', dirtyMiBPerSec: 64, seed: 5, service: { host: '127.0.0.1', port: port2 } },
  });
  t.teardown(() => backend.destroyDomain(big.domid));
  const r = await protect(t, big, 2);
  await r.protectedP;
  const slowBefore = r.link.slowCalls.length;
  await sleep(600); // about 38 MiB dirtied, and no output: no sync yet
  const c = await rawConn(t, port2);
  c.send(nextClient++, 1, KV_OP.PING);
  await c.waitFor(1, 5000);
  const sync = r.link.sealed[r.link.sealed.length - 1]!;
  const bytes = sync.content.reduce((n, f) => n + f.body.length, 0);
  t.ok(bytes >= LARGE_CHECKPOINT_BYTES, `the sync carried ${(bytes / 1048576).toFixed(1)} MiB`);
  t.same(r.link.slowCalls.slice(slowBefore, slowBefore + 2), [true, false], 'a slow phase began when it was shipped and ended at its commit');
  t.equal(await stop(r), 'stopped');
});

t.test("a checkpoint's Xen stream goes in frames of at most 32 MiB of whole records", async (t) => {
  const rec = (n: number) => Buffer.alloc(n);
  const groups = frameGroups([rec(20 << 20), rec(10 << 20), rec(4 << 20), rec(30 << 20), rec(1)], 32 << 20);
  t.same(groups.map((g) => g.map((b) => b.length)), [[20 << 20, 10 << 20], [4 << 20], [30 << 20, 1]]);
  t.ok(groups.every((g) => g.reduce((n, b) => n + b.length, 0) <= 32 << 20), 'no frame above the limit');
  t.same(frameGroups([]), [], 'nothing, no frame');
});
