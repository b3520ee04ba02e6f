import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { SimBackend, DHDR_TYPE_SIM } from '../../src/backend/sim/host.js';
import { BackendUnsupportedError, type ReplicaDomain, type SaveSession } from '../../src/backend/types.js';
import type { DomainConfig } from '../../src/config/domain.js';
import { CLIENT_BASE, CLIENT_SLOTS, KV_BASE, KV_MIN_MEMORY_MIB, KV_SLOTS, RECORD, REG_COUNT } from '../../src/backend/sim/guest.js';
import { FrameSplitter, KV_OP, KV_STATUS, decodeResponse, encodeRequest, type KvResponse } from '../../src/backend/sim/kvproto.js';
import { KvClient, KvConnection } from '../../src/client/kv.js';
import { XenStreamParser, type ParsedCheckpoint } from '../../src/transport/xenstream.js';
import { PAGE_SIZE } from '../../src/backend/sim/memory.js';

/** The part of a tap test the helpers need. */
type TT = { teardown(fn: () => unknown): void };

function tmpdir(t: TT): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-simhost-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function backend(t: TT, hostName: string, dir: string): SimBackend {
  const be = new SimBackend({ hostName, stateDir: path.join(dir, hostName) });
  t.teardown(() => be.dispose());
  return be;
}

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

async function collect(fn: (sink: (c: Buffer) => Promise<void>) => Promise<unknown>): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  await fn(async (c) => {
    chunks.push(Buffer.from(c));
  });
  return chunks;
}

function apply(replica: ReplicaDomain, epoch: number, xen: Buffer[], parsed: ParsedCheckpoint): Promise<void> {
  return replica.applyCheckpoint({ epoch, xen, pages: parsed.pages, vcpus: parsed.vcpus, diskWrites: [] });
}

t.test('createDomain refuses configurations the sim host cannot run', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'h', dir);
  const small = KV_MIN_MEMORY_MIB - 1;
  await t.rejects(
    be.createDomain({ name: 'tiny', memoryMiB: small, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 0, seed: 1 } }),
    { message: new RegExp(`memory = ${small} is too small .*kv.*at least ${KV_MIN_MEMORY_MIB} MiB`) },
    'kv memory below the minimum',
  );
  const err = await be.createDomain({ name: 'smp', memoryMiB: 8, vcpus: 2, disks: [], vifs: [] }).catch((e: unknown) => e);
  t.type(err, BackendUnsupportedError, 'vcpus = 2 is unsupported');
  t.match((err as Error).message, /vcpus = 2/);
  t.same(await be.listDomains(), [], 'nothing was created by the refused requests');

  const d = await be.createDomain({ name: 'vm', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } });
  t.equal(d.state, 'running');
  await t.rejects(
    be.createDomain({ name: 'vm', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } }),
    { message: /a domain named vm already exists on host h/ },
  );
  t.equal((await be.listDomains()).length, 1, 'the duplicate was not created');
  const ok = await be.createDomain({ name: 'kvmin', memoryMiB: KV_MIN_MEMORY_MIB, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 0, seed: 1 } });
  t.equal(ok.memoryMiB, KV_MIN_MEMORY_MIB, 'exactly the minimum is accepted');
});

t.test('a kv guest serves put, get and stat over a real socket', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'h', dir);
  const port = await freePort();
  const info = await be.createDomain(kvCfg('kv', port));
  t.same(info.service, { host: '127.0.0.1', port });
  const conn = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
  t.teardown(() => conn.close());
  const a = new KvClient(conn, 11);
  const b = new KvClient(conn, 12);
  t.same(await a.stat(), { slotsUsed: 0, writesApplied: 0 });
  t.equal(await a.get('missing'), null);
  await a.put('k1', 'v1');
  await b.put('k2', 'v2');
  await a.put('k1', 'v1bis');
  t.equal(await a.get('k1'), 'v1bis');
  t.equal(await b.get('k2'), 'v2', 'one client reads what another wrote');
  t.same(await b.stat(), { slotsUsed: 2, writesApplied: 3 });
  await b.ping();
});

t.test('a retried request is answered from the guest record and applied once', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'h', dir);
  const port = await freePort();
  await be.createDomain(kvCfg('kv', port));
  const c = await rawConn(t, port);

  c.send(77, 1, KV_OP.PUT, 'key', 'first');
  await c.waitFor(1);
  t.equal(c.responses[0]!.resp.status, KV_STATUS.OK);
  t.equal(c.responses[0]!.resp.seq, 1);

  c.send(77, 1, KV_OP.PUT, 'key', 'first'); // retransmission of the same (clientId, seq)
  await c.waitFor(2);
  t.same(c.responses[1]!.raw, c.responses[0]!.raw, 'the retry gets the recorded response, byte for byte');

  // A retry carrying a different value must not be applied either: it is the same request.
  c.send(77, 1, KV_OP.PUT, 'key', 'other');
  await c.waitFor(3);
  t.same(c.responses[2]!.raw, c.responses[0]!.raw);

  c.send(77, 2, KV_OP.STAT);
  await c.waitFor(4);
  const stat = Buffer.from(c.responses[3]!.resp.value);
  t.equal(stat.readUInt32LE(8), 1, 'STAT: writesApplied = 1 after one put and two retries');
  t.equal(stat.readUInt32LE(4), 1, 'STAT: one slot used');

  c.send(77, 3, KV_OP.GET, 'key');
  await c.waitFor(5);
  t.equal(Buffer.from(c.responses[4]!.resp.value).toString(), 'first', 'the value is the first one');

  c.send(77, 1, KV_OP.PUT, 'key', 'stale'); // older than the last seq: dropped without an answer
  c.send(77, 4, KV_OP.PING);
  await c.waitFor(6);
  t.equal(c.responses[5]!.resp.seq, 4, 'a stale request gets no answer; the next one does');
  t.equal(c.responses.length, 6);
});

t.test('a paused guest answers nothing until it is unpaused', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'h', dir);
  const port = await freePort();
  const d = await be.createDomain(kvCfg('kv', port));
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

t.test('a save session streams the domain and a replica built from it has identical memory', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'p', dir);
  const be2 = backend(t, 'b', dir);
  const port = await freePort();
  const cfg = kvCfg('kv', port);
  const d = await be.createDomain(cfg);
  const conn = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
  t.teardown(() => conn.close());
  const client = new KvClient(conn, 0x1234);
  await client.put('before', 'the-save'); // state that the first checkpoint must carry

  const session: SaveSession = await be.openSave(d.domid);
  t.teardown(() => session.close());
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

  const parser = new XenStreamParser();
  const xen1 = [...begin, ...cap1.chunks];
  const p1 = parser.parseCheckpoint(Buffer.concat(xen1));
  t.ok(p1.first);
  t.equal(p1.domainHeader?.type, DHDR_TYPE_SIM, 'domain header says sim');
  t.equal(p1.pages.length, pages);
  t.same(new Set(p1.pages.map((p) => p.pfn)).size, pages, 'every pfn, once');
  t.equal(p1.vcpus.length, 1);
  t.equal(p1.vcpus[0]!.id, 0);
  t.equal(p1.vcpus[0]!.context.length, REG_COUNT * 4, 'vCPU context is the 64-byte register file');
  t.equal(REG_COUNT * 4, 64);

  const replica = await be2.createReplica({ domain: cfg, uuid: d.uuid });
  t.equal(replica.lastEpoch, 0);
  await apply(replica, 1, xen1, p1);
  t.equal(replica.lastEpoch, 1);
  const primaryAt1 = await be.memoryDigest(d.domid);
  t.equal(await replica.memoryDigest(), primaryAt1, 'replica memory = primary memory at checkpoint 1');
  await session.resume();
  t.equal((await be.findDomain(d.domid)).state, 'running');

  // One put from a new client dirties exactly: the header page, the client's record page and
  // the key's slot page.
  const newClient = new KvClient(conn, 0xbeef);
  await newClient.put('during', 'epoch-2');
  await session.suspend();
  const cap2 = await session.capture();
  const p2 = parser.parseCheckpoint(Buffer.concat(cap2.chunks));
  t.notOk(p2.first);
  const clientPage = (CLIENT_BASE + (Math.imul(0xbeef, 0x9e3779b1) >>> 20) * RECORD) >>> 12;
  const slotPage = (KV_BASE + (fnv1a(Buffer.from('during')) & (KV_SLOTS - 1)) * RECORD) >>> 12;
  t.ok(CLIENT_SLOTS > 0);
  t.same(
    p2.pages.map((p) => p.pfn).sort((a, b) => a - b),
    [...new Set([0, clientPage, slotPage])].sort((a, b) => a - b),
    'checkpoint 2 carries only the pages dirtied since checkpoint 1',
  );
  t.equal(cap2.pages, p2.pages.length);
  t.equal(p2.vcpus.length, 1);
  await apply(replica, 2, cap2.chunks, p2);
  const primaryAt2 = await be.memoryDigest(d.domid);
  t.not(primaryAt2, primaryAt1, 'the put changed memory');
  t.equal(await replica.memoryDigest(), primaryAt2, 'replica memory = primary memory at checkpoint 2');

  const cap3 = await session.capture();
  t.equal(cap3.pages, 0, 'a second capture while still suspended finds nothing new');
  await session.resume();
});

t.test('a checkpoint with a pfn beyond memory is rejected whole and changes nothing', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'b', dir);
  const cfg: DomainConfig = { name: 'idle', memoryMiB: 8, vcpus: 1, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 1 } };
  const replica = await be.createReplica({ domain: cfg, uuid: crypto.randomUUID() });
  const page = (fill: number) => Buffer.alloc(PAGE_SIZE, fill);
  const regs = Buffer.alloc(REG_COUNT * 4, 1);
  await replica.applyCheckpoint({ epoch: 1, xen: [], pages: [{ pfn: 3, type: 0, data: page(0x33) }], vcpus: [{ id: 0, context: regs }], diskWrites: [] });
  const before = await replica.memoryDigest();
  const pages = (8 << 20) / PAGE_SIZE;
  await t.rejects(
    replica.applyCheckpoint({
      epoch: 2,
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
  t.equal(replica.lastEpoch, 1, 'the previous checkpoint stays in force');
  t.equal(await replica.memoryDigest(), before, 'no page of the bad checkpoint was applied');

  await t.rejects(
    replica.applyCheckpoint({ epoch: 2, xen: [], pages: [{ pfn: 0, type: 0, data: page(1) }], vcpus: [{ id: 0, context: Buffer.alloc(12) }], diskWrites: [] }),
    { message: /vCPU context/ },
    'a vCPU context of the wrong size is rejected too',
  );
  t.equal(await replica.memoryDigest(), before);
  t.equal(replica.lastEpoch, 1);
});

t.test('activating a replica whose service address is taken fails and leaves the replica intact', async (t) => {
  const dir = tmpdir(t);
  const be = backend(t, 'p', dir);
  const be2 = backend(t, 'b', dir);
  const port = await freePort();
  const cfg = kvCfg('kv', port);
  const d = await be.createDomain(cfg);
  const conn = new KvConnection({ host: '127.0.0.1', port, retryMs: 2000 });
  t.teardown(() => conn.close());
  const client = new KvClient(conn, 42);
  await client.put('x', 'y');

  const session = await be.openSave(d.domid);
  const begin = await collect((sink) => session.begin(sink));
  await session.suspend();
  const cap = await session.capture();
  const parser = new XenStreamParser();
  const xen = [...begin, ...cap.chunks];
  const parsed = parser.parseCheckpoint(Buffer.concat(xen));
  const replica = await be2.createReplica({ domain: cfg, uuid: d.uuid });
  await apply(replica, 1, xen, parsed);
  await session.resume();
  await session.close();
  const digest = await replica.memoryDigest();

  // The primary still runs and holds the service address: split brain must be refused.
  const err = (await replica.activate().then(
    () => null,
    (e: unknown) => e as Error,
  ))!;
  t.type(err, Error, 'activate() failed');
  t.match(err.message, `127.0.0.1:${port}`, 'the error names the address');
  t.match(err.message, /in use/);
  t.equal(replica.lastEpoch, 1, 'the replica keeps its checkpoint');
  t.equal(await replica.memoryDigest(), digest, 'and its memory');
  t.equal((await be2.findDomain('kv')).state, 'replica', 'it is still listed as a replica');
  t.equal(await client.get('x'), 'y', 'the primary keeps serving');

  // Once the primary is gone, the same replica can take over and serves the replicated state.
  await be.destroyDomain(d.domid);
  const info = await replica.activate();
  t.equal(info.state, 'running');
  t.equal(await client.get('x'), 'y', 'the activated replica serves the checkpointed data');
});
