import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SimBackend, DHDR_TYPE_SIM } from '../../src/backend/sim/host.js';
import { BackendUnsupportedError, type ContentSink, type DomainInfo, type ReplicaDomain, type SaveSession } from '../../src/backend/types.js';
import type { DomainConfig } from '../../src/config/domain.js';
import { CLIENT_BASE, CLIENT_SLOTS, KV_BASE, KV_DISK_BYTES, KV_MIN_MEMORY_MIB, KV_SLOTS, RECORD, REG_COUNT } from '../../src/backend/sim/guest.js';
import { FrameSplitter, KV_OP, KV_STATUS, decodeResponse, encodeRequest, type KvResponse } from '../../src/backend/sim/kvproto.js';
import { KvClient, KvConnection } from '../../src/client/kv.js';
import { XenStreamParser, type ParsedCheckpoint } from '../../src/transport/xenstream.js';
import { PAGE_SIZE } from '../../src/backend/sim/memory.js';
import { freePort } from '../../src/demo/hosts.js';

/** The part of a tap test the helpers need. */
type TT = { teardown(fn: () => unknown): void };


function kvCfg(name: string, port: number, over: Partial<DomainConfig> = {}): DomainConfig {
  return { name, memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 0, seed: 3, service: { host: '127.0.0.1', port } }, ...over };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw connection to a kv guest: write crafted requests, collect decoded responses. */
async function rawConn(t: TT, port: number) {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  t.teardown(() => sock.destroy());
  const split = new FrameSplitter();
  const responses: { resp: KvResponse; raw: Buffer }[] = [];
  const waiters: (() => void)[] = [];
  sock.on('data', (chunk: Buffer) => {
    for (const f of split.push(chunk)) {
      responses.push({ resp: decodeResponse(f)!, raw: Buffer.from(f) });
      for (const w of waiters.splice(0)) w();
    }
  });
  return {
    sock,
    responses,
    send: (clientId: number, seq: number, op: number, key = '', value = '') =>
      sock.write(encodeRequest({ clientId, seq, op, key: Buffer.from(key), value: Buffer.from(value) })),
    /** Resolves when at least `n` responses have arrived. */
    async waitFor(n: number, timeoutMs = 5000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (responses.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${responses.length} of ${n} responses within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
  };
}

function fnv1a(key: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h >>> 0;
}

async function collect(fn: (sink: ContentSink) => Promise<unknown>): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  await fn(async (c) => {
    chunks.push(Buffer.isBuffer(c) ? Buffer.from(c) : Buffer.concat(c as Buffer[]));
  });
  return chunks;
}

function apply(replica: ReplicaDomain, epoch: number, xen: Buffer[], parsed: ParsedCheckpoint): Promise<void> {
  return replica.applyCheckpoint({ epoch, xen, pages: parsed.pages, vcpus: parsed.vcpus, diskWrites: [] });
}

// vCPU threads are slow to start under the test runner, so one primary domain serves every
// test (each uses its own client ids and keys), and one replica of it serves the replica tests.
const top = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-simhost-'));
const be = new SimBackend({ hostName: 'p', stateDir: path.join(top, 'p') });
const be2 = new SimBackend({ hostName: 'b', stateDir: path.join(top, 'b') });
let port: number;
let cfg: DomainConfig;
let d: DomainInfo;
t.before(async () => {
  port = await freePort();
  cfg = kvCfg('kv', port);
  d = await be.createDomain(cfg);
});
t.teardown(async () => {
  await be.dispose();
  await be2.dispose();
  fs.rmSync(top, { recursive: true, force: true });
});

async function stat(c: Awaited<ReturnType<typeof rawConn>>, clientId: number, seq: number): Promise<{ used: number; applied: number }> {
  const n = c.responses.length;
  c.send(clientId, seq, KV_OP.STAT);
  await c.waitFor(n + 1);
  const v = Buffer.from(c.responses[n]!.resp.value);
  return { used: v.readUInt32LE(4), applied: v.readUInt32LE(8) };
}

t.test('createDomain refuses configurations the sim host cannot run', async (t) => {
  const before = await be.listDomains();
  const small = KV_MIN_MEMORY_MIB - 1;
  await t.rejects(
    be.createDomain({ name: 'tiny', memoryMiB: small, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 0, seed: 1 } }),
    { message: new RegExp(`memory = ${small} is too small .*kv.*at least ${KV_MIN_MEMORY_MIB} MiB`) },
    'kv memory below the minimum',
  );
  const err = await be.createDomain({ name: 'smp', memoryMiB: 8, vcpus: 2, disks: [], vifs: [] }).catch((e: unknown) => e);
  t.type(err, BackendUnsupportedError, 'vcpus = 2 is unsupported');
  t.match((err as Error).message, /vcpus = 2/);
  await t.rejects(be.createDomain({ ...cfg, sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } }), { message: /a domain named kv already exists on host p/ });
  t.same(await be.listDomains(), before, 'nothing was created by the refused requests');

  const ok = await be.createDomain({ name: 'kvmin', memoryMiB: KV_MIN_MEMORY_MIB, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 0, seed: 1 } });
  t.equal(ok.memoryMiB, KV_MIN_MEMORY_MIB, 'exactly the minimum is accepted');
  t.equal(ok.state, 'running');
  await be.destroyDomain(ok.domid);
  t.same(await be.listDomains(), before);
});

t.test('a kv guest serves put, get and stat over a real socket', async (t) => {
  t.same(d.service, { host: '127.0.0.1', port });
  const conn = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
  t.teardown(() => conn.close());
  const a = new KvClient(conn, 11);
  const b = new KvClient(conn, 12);
  const s0 = await a.stat();
  t.equal(await a.get('missing'), null);
  await a.put('k1', 'v1');
  await b.put('k2', 'v2');
  await a.put('k1', 'v1bis');
  t.equal(await a.get('k1'), 'v1bis');
  t.equal(await b.get('k2'), 'v2', 'one client reads what another wrote');
  t.same(await b.stat(), { slotsUsed: s0.slotsUsed + 2, writesApplied: s0.writesApplied + 3 });
  await b.ping();
});

t.test("the guest's own counters count the requests it consumed; its vCPU thread is named", async (t) => {
  const mine = () => be.guestCounters().find((g) => g.domid === d.domid)!;
  const conn = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
  t.teardown(() => conn.close());
  const c = new KvClient(conn, 21);
  const before = mine();
  t.equal(before.name, 'kv');
  for (let i = 0; i < 5; i++) await c.put(`counted${i}`, 'v');
  t.equal(mine().inputsHandled - before.inputsHandled, 5, 'one input per request');
  t.equal(mine().dirtiedPages, 0, 'no background writer (sim_dirty_mibps 0)');
  if (process.platform === 'linux') {
    const names = fs.readdirSync('/proc/self/task').map((tid) => fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim());
    t.ok(names.includes('sim-vcpu'), 'a thread named sim-vcpu, which the bench leaves out of the host CPU');
  }
});

t.test('a retried request is answered from the guest record and applied once', async (t) => {
  const c = await rawConn(t, port);
  const s0 = await stat(c, 70, 1);

  c.send(77, 1, KV_OP.PUT, 'retry-key', 'first');
  await c.waitFor(2);
  const first = c.responses[1]!;
  t.equal(first.resp.status, KV_STATUS.OK);
  t.equal(first.resp.seq, 1);

  c.send(77, 1, KV_OP.PUT, 'retry-key', 'first'); // retransmission of the same (clientId, seq)
  await c.waitFor(3);
  t.same(c.responses[2]!.raw, first.raw, 'the retry gets the recorded response, byte for byte');

  // A retry carrying a different value must not be applied either: it is the same request.
  c.send(77, 1, KV_OP.PUT, 'retry-key', 'other');
  await c.waitFor(4);
  t.same(c.responses[3]!.raw, first.raw);

  const s1 = await stat(c, 77, 2);
  t.equal(s1.applied, s0.applied + 1, 'STAT: writesApplied grew by 1 for one put and two retries');
  t.equal(s1.used, s0.used + 1, 'STAT: one more slot used');

  c.send(77, 3, KV_OP.GET, 'retry-key');
  await c.waitFor(6);
  t.equal(Buffer.from(c.responses[5]!.resp.value).toString(), 'first', 'the value is the first one');

  c.send(77, 1, KV_OP.PUT, 'retry-key', 'stale'); // older than the last seq: dropped without an answer
  c.send(77, 4, KV_OP.PING);
  await c.waitFor(7);
  t.equal(c.responses[6]!.resp.seq, 4, 'a stale request gets no answer; the next one does');
  await sleep(50);
  t.equal(c.responses.length, 7);
});

t.test('a paused guest answers nothing until it is unpaused', async (t) => {
  const c = await rawConn(t, port);
  c.send(5, 1, KV_OP.PING);
  await c.waitFor(1);

  await be.pause(d.domid);
  t.equal((await be.findDomain(d.domid)).state, 'paused');
  c.send(5, 2, KV_OP.PUT, 'a', '1');
  c.send(6, 1, KV_OP.PING);
  await sleep(250);
  t.equal(c.responses.length, 1, 'no response while paused');

  await be.unpause(d.domid);
  t.equal((await be.findDomain('kv')).state, 'running');
  await c.waitFor(3);
  t.same(c.responses.slice(1).map((r) => [r.resp.clientId, r.resp.seq]).sort(), [[5, 2], [6, 1]], 'both requests answered after unpause');
});

t.test('a save session and a replica built from its stream', async (t) => {
  const conn = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
  t.teardown(() => conn.close());
  const client = new KvClient(conn, 0x1234);
  await client.put('before', 'the-save'); // state that the first checkpoint must carry

  const session: SaveSession = await be.openSave(d.domid);
  t.teardown(() => session.close());
  const parser = new XenStreamParser();
  let replica!: ReplicaDomain;

  await t.test('begin streams the headers and every page; the first capture completes checkpoint 1', async (t) => {
    const pages = (cfg.memoryMiB << 20) / PAGE_SIZE;
    let result!: { pages: number; rounds: number };
    const begin = await collect(async (sink) => (result = await session.begin(sink)));
    t.equal(result.pages, pages, 'precopy sent every page once (nothing was dirtied meanwhile)');
    t.equal(result.rounds, 1);

    await session.suspend();
    t.equal((await be.findDomain(d.domid)).state, 'suspended');
    const cap1 = await session.capture();
    t.equal(cap1.pages, 0, 'nothing was dirtied since the precopy');
    t.equal(cap1.bytes, cap1.chunks.reduce((s, c) => s + c.length, 0), 'bytes counts every chunk');

    const xen1 = [...begin, ...cap1.chunks].map((c) => Buffer.from(c));
    const p1 = parser.parseCheckpoint(Buffer.concat(xen1));
    t.ok(p1.first);
    t.equal(p1.domainHeader?.type, DHDR_TYPE_SIM, 'domain header says sim');
    t.equal(p1.pages.length, pages);
    t.same(new Set(p1.pages.map((p) => p.pfn)).size, pages, 'every pfn, once');
    t.equal(p1.vcpus.length, 1);
    t.equal(p1.vcpus[0]!.id, 0);
    t.equal(p1.vcpus[0]!.context.length, REG_COUNT * 4, 'vCPU context is the 64-byte register file');
    t.equal(REG_COUNT * 4, 64);

    replica = await be2.createReplica({ domain: cfg, uuid: d.uuid });
    t.equal(replica.lastEpoch, 0);
    t.equal((await be2.findDomain('kv')).state, 'replica');
    await apply(replica, 1, xen1, p1);
    t.equal(replica.lastEpoch, 1);
    t.equal(await replica.memoryDigest(), await be.memoryDigest(d.domid), 'replica memory = primary memory at checkpoint 1');
    await session.resume();
    t.equal((await be.findDomain(d.domid)).state, 'running');
  });

  await t.test('a capture after suspend carries only the pages dirtied since the previous one', async (t) => {
    const before = await be.memoryDigest(d.domid);
    // One put from a new client dirties exactly: the header page, the client's record page and
    // the key's slot page.
    const newClient = new KvClient(conn, 0xbeef);
    await newClient.put('during', 'epoch-2');
    await session.suspend();
    const cap2 = await session.capture();
    const xen2 = cap2.chunks.map((c) => Buffer.from(c));
    const p2 = parser.parseCheckpoint(Buffer.concat(xen2));
    t.notOk(p2.first);
    const clientPage = (CLIENT_BASE + (Math.imul(0xbeef, 0x9e3779b1) >>> 20) * RECORD) >>> 12;
    const slotPage = (KV_BASE + (fnv1a(Buffer.from('during')) & (KV_SLOTS - 1)) * RECORD) >>> 12;
    t.ok(CLIENT_SLOTS > 0);
    t.same(
      p2.pages.map((p) => p.pfn).sort((a, b) => a - b),
      [...new Set([0, clientPage, slotPage])].sort((a, b) => a - b),
      'checkpoint 2 carries only the header, client record and slot pages',
    );
    t.equal(cap2.pages, p2.pages.length);
    t.equal(p2.vcpus.length, 1);
    await apply(replica, 2, xen2, p2);
    const primaryAt2 = await be.memoryDigest(d.domid);
    t.not(primaryAt2, before, 'the put changed memory');
    t.equal(await replica.memoryDigest(), primaryAt2, 'replica memory = primary memory at checkpoint 2');

    const cap3 = await session.capture();
    t.equal(cap3.pages, 0, 'a second capture while still suspended finds nothing new');
    await session.resume();
    await session.close();
    t.equal((await be.findDomain(d.domid)).state, 'running');
  });

  await t.test('a checkpoint with a pfn beyond memory is rejected whole and changes nothing', async (t) => {
    const before = await replica.memoryDigest();
    const pages = (cfg.memoryMiB << 20) / PAGE_SIZE;
    const page = (fill: number) => Buffer.alloc(PAGE_SIZE, fill);
    await t.rejects(
      replica.applyCheckpoint({
        epoch: 3,
        xen: [],
        pages: [
          { pfn: 0, type: 0, data: page(0xaa) },
          { pfn: 3, type: 0, data: page(0xbb) },
          { pfn: pages, type: 0, data: page(0xcc) },
        ],
        vcpus: [],
        diskWrites: [],
      }),
      { message: new RegExp(`pfn ${pages} is beyond`) },
    );
    t.equal(replica.lastEpoch, 2, 'the previous checkpoint stays in force');
    t.equal(await replica.memoryDigest(), before, 'no page of the bad checkpoint was applied');

    await t.rejects(
      replica.applyCheckpoint({ epoch: 3, xen: [], pages: [{ pfn: 0, type: 0, data: page(1) }], vcpus: [{ id: 0, context: Buffer.alloc(12) }], diskWrites: [] }),
      { message: /vCPU context/ },
      'a vCPU context of the wrong size is rejected too',
    );
    await t.rejects(
      replica.applyCheckpoint({ epoch: 3, xen: [], pages: [{ pfn: 0, type: 0, data: page(1) }], vcpus: [], diskWrites: [{ offset: KV_DISK_BYTES - 10, data: Buffer.alloc(20) }] }),
      { message: /beyond the \d+-byte disk/ },
      'so is a disk write past the end of the disk',
    );
    t.equal(await replica.memoryDigest(), before);
    t.equal(replica.lastEpoch, 2);
  });

  await t.test('activating the replica while its service address is taken fails and leaves it intact', async (t) => {
    const digest = await replica.memoryDigest();
    // The primary still runs and holds the service address: split brain must be refused.
    const err = (await replica.activate().then(
      () => null,
      (e: unknown) => e as Error,
    ))!;
    t.type(err, Error, 'activate() failed');
    t.match(err?.message, `127.0.0.1:${port}`, 'the error names the address');
    t.match(err?.message, /in use/);
    t.equal(replica.lastEpoch, 2, 'the replica keeps its checkpoint');
    t.equal(await replica.memoryDigest(), digest, 'and its memory');
    t.equal((await be2.findDomain('kv')).state, 'replica', 'it is still listed as a replica');
    t.equal(await client.get('before'), 'the-save', 'the primary keeps serving');

    // Once the primary is gone, the same replica can take over and serves the replicated state.
    conn.close();
    await be.destroyDomain(d.domid);
    const info = await replica.activate();
    t.equal(info.state, 'running');
    const conn2 = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
    t.teardown(() => conn2.close());
    const c2 = new KvClient(conn2, 0x5678);
    t.equal(await c2.get('before'), 'the-save', 'the activated replica serves what checkpoint 1 carried');
    t.equal(await c2.get('during'), 'epoch-2', 'and what checkpoint 2 carried');
  });
});
