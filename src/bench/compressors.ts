/**
 * `node dist/src/bench/compressors.js [--json] [--reps N] [--mib N] [--kernel PATH] [--initrd PATH]`:
 * the candidate compressors for `ha_transfer="compress"` measured on the page stream, one
 * synchronous call per XEN_STREAM chunk (the stream is compressed chunk by chunk).
 *
 * Not a test: it reports figures. Page sets (each a list of chunks, each chunk the bytes of a
 * XEN_STREAM frame body: whole migration-v2 records, mostly PAGE_DATA):
 *  - sim-kv-checkpoints: a sim `kv` domain (the real sim guest on its vCPU thread, in this
 *    process) under the real kv client load (src/client/kv.ts); every 25 ms the domain is
 *    suspended and its dirty pages captured, as remus does; one chunk per checkpoint.
 *  - sim-kv-dirty20: the same with `sim_dirty_mibps = 20` (the `npm run bench` remus guest).
 *  - sim-kv-memory: all of the first run's guest memory after the load (a resync), in
 *    1024-page records (the sim's precopy chunks).
 *  - lab-domu: a Linux domU's memory stand-in: the domU kernel, decompressed from its bzImage
 *    (what the guest runs: kernel text and data), and the domU initramfs as an uncompressed
 *    cpio (what its rootfs holds in page cache), split into 4 KiB pages, in 1024-page records.
 *    Looked for in $XENLAB_DIR (default /var/tmp/xenlab: rootfs/xenlab/vmlinuz and
 *    domu-initrd.cpio.gz, as test/xen-lab/build-images.sh leaves them), or given by
 *    --kernel/--initrd; skipped (and said so) when absent.
 *  - random: incompressible pages (crypto.randomBytes), in 1024-page records: the worst case.
 *
 * For each set and codec, `--reps` repetitions (default 5); each repetition compresses and then
 * decompresses the whole set, again and again until at least `--mib` MiB (default 32) went
 * through, timing wall clock (performance.now) and this process's CPU (process.cpuUsage, user +
 * system). The codecs take turns within a repetition, so a neighbour's load spreads over all of
 * them. Reported: medians, with min and max.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { SimBackend } from '../backend/sim/host.js';
import { kvCfg, freePort } from '../demo/hosts.js';
import { KvLoad } from '../client/kv.js';
import { parseXlCfg } from '../config/xlcfg.js';
import { domainConfigFromCfg } from '../config/domain.js';
import { XenStreamWriter } from '../transport/xenstream.js';
import { PAGE_SIZE } from '../backend/sim/memory.js';

const require = createRequire(import.meta.url);
const argv = process.argv.slice(2);
const json = argv.includes('--json');
function arg(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv[i + 1];
}
function intArg(name: string, def: number, min: number, max: number): number {
  const v = arg(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`compressors: ${name} ${JSON.stringify(v)} is not valid: expected an integer from ${min} to ${max}\n`);
    process.exit(2);
  }
  return n;
}
const REPS = intArg('--reps', 5, 1, 50);
const MIN_MIB = intArg('--mib', 32, 1, 4096);
const KV_WRITES = intArg('--writes', 10000, 100, 1_000_000);
const log = (l: string) => {
  if (!json) process.stderr.write(`  ${l}\n`);
};

// ---------------------------------------------------------------------------------------------
// Candidates

export interface Candidate {
  id: string;
  /** Package and version, or `node:zlib (Node x)`. */
  lib: string;
  compress(raw: Buffer): Buffer;
  decompress(packed: Buffer, rawLength: number): Buffer;
}

/** A package's version, from the package.json above its main file (lz4-napi exports no ./package.json). */
function version(pkg: string): string {
  try {
    for (let dir = path.dirname(require.resolve(pkg)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const f = path.join(dir, 'package.json');
      if (!fs.existsSync(f)) continue;
      const j = JSON.parse(fs.readFileSync(f, 'utf8')) as { name?: string; version?: string };
      if (j.name === pkg) return j.version ?? '?';
    }
  } catch {
    // not installed: the caller says so
  }
  return '?';
}

function candidates(): { ok: Candidate[]; missing: { id: string; why: string }[] } {
  const ok: Candidate[] = [];
  const missing: { id: string; why: string }[] = [];
  try {
    const lz4 = require('lz4-napi') as typeof import('lz4-napi');
    const lib = `lz4-napi ${version('lz4-napi')}`;
    // lz4-napi (lz4_flex) has one compression level: no acceleration or HC setting to choose.
    ok.push({ id: 'lz4-block', lib, compress: (b) => lz4.compressSync(b), decompress: (p) => lz4.uncompressSync(p) });
    ok.push({ id: 'lz4-frame', lib, compress: (b) => lz4.compressFrameSync(b), decompress: (p) => lz4.decompressFrameSync(p) });
  } catch (err) {
    missing.push({ id: 'lz4', why: `lz4-napi: ${(err as Error).message.split('\n')[0]}` });
  }
  try {
    const binding = require('zstd-napi/binding') as typeof import('zstd-napi/binding.js');
    const lib = `zstd-napi ${version('zstd-napi')} (libzstd ${binding.versionString()})`;
    for (const level of [1, 3]) {
      const cctx = new binding.CCtx();
      cctx.setParameter(binding.CParameter.compressionLevel, level);
      const dctx = new binding.DCtx();
      ok.push({
        id: `zstd-${level}`,
        lib,
        compress: (b) => {
          const out = Buffer.allocUnsafe(binding.compressBound(b.length));
          return out.subarray(0, cctx.compress2(out, b));
        },
        decompress: (p, n) => {
          const out = Buffer.allocUnsafe(n);
          return out.subarray(0, dctx.decompress(out, p));
        },
      });
    }
  } catch (err) {
    missing.push({ id: 'zstd', why: `zstd-napi: ${(err as Error).message.split('\n')[0]}` });
  }
  const node = `node:zlib (Node ${process.versions.node}, zlib ${process.versions.zlib})`;
  ok.push({
    id: 'deflate-1',
    lib: node,
    compress: (b) => zlib.deflateRawSync(b, { level: 1 }),
    decompress: (p, n) => zlib.inflateRawSync(p, { maxOutputLength: Math.max(1, n) }),
  });
  ok.push({
    id: 'brotli-1',
    lib: node,
    compress: (b) =>
      zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length } }),
    decompress: (p, n) => zlib.brotliDecompressSync(p, { maxOutputLength: Math.max(1, n) }),
  });
  if (typeof (zlib as unknown as Record<string, unknown>).zstdCompressSync !== 'function') {
    missing.push({ id: 'node-zstd', why: `node:zlib of Node ${process.versions.node} has no zstd (zlib.zstdCompressSync arrived in Node 22.15 / 23.8)` });
  }
  missing.push({ id: '@mongodb-js/zstd', why: 'not measured: its documented API (compress, decompress) returns Promises only (a thread-pool call per chunk), and the stage compresses chunk by chunk, synchronously' });
  return { ok, missing };
}

// ---------------------------------------------------------------------------------------------
// Page sets

interface PageSet {
  id: string;
  source: string;
  chunks: Buffer[];
  bytes: number;
  pages: number;
}

function pageSet(id: string, source: string, chunks: Buffer[], pages: number): PageSet {
  return { id, source, chunks, bytes: chunks.reduce((s, c) => s + c.length, 0), pages };
}

/** `bytes` split into 4 KiB pages (the last one zero-padded), as PAGE_DATA records of 1024 pages. */
function asPageRecords(bytes: Buffer, firstPfn = 0): { chunks: Buffer[]; pages: number } {
  const pages = Math.ceil(bytes.length / PAGE_SIZE);
  const padded = Buffer.alloc(pages * PAGE_SIZE);
  bytes.copy(padded);
  const w = new XenStreamWriter();
  w.begin({ domainType: 1, xenMajor: 4, xenMinor: 17 });
  const chunks: Buffer[] = [];
  for (let p = 0; p < pages; p += 1024) {
    const n = Math.min(1024, pages - p);
    const pfns = Uint32Array.from({ length: n }, (_, i) => firstPfn + p + i);
    chunks.push(Buffer.concat(w.pageDataRecords(pfns, (i) => padded.subarray((p + i) * PAGE_SIZE, (p + i + 1) * PAGE_SIZE))));
  }
  return { chunks, pages };
}

async function simKv(o: { memoryMiB: number; dirtyMiBPerSec: number; writes: number; intervalMs: number; withMemory: boolean }): Promise<{
  checkpoints: Buffer[];
  pages: number;
  memory: Buffer[];
  memoryPages: number;
  puts: number;
}> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xl-ha-compress-bench-'));
  const backend = new SimBackend({ hostName: 'bench', stateDir: dir });
  const port = await freePort();
  const parsed = domainConfigFromCfg(parseXlCfg(kvCfg({ name: 'kv-bench', memoryMiB: o.memoryMiB, servicePort: port, dirtyMiBPerSec: o.dirtyMiBPerSec })));
  const info = await backend.createDomain(parsed.domain);
  const load = new KvLoad({ host: '127.0.0.1', port, clients: 32, connections: 4, keysPerClient: 64, retryMs: 1000 });
  try {
    const session = await backend.openSave(info.domid);
    await session.begin(async () => {});
    const checkpoints: Buffer[] = [];
    let pages = 0;
    const done = load.run(() => load.puts >= o.writes);
    const deadline = performance.now() + 120_000;
    while (load.puts < o.writes) {
      if (performance.now() > deadline) throw new Error(`the kv load made ${load.puts} of ${o.writes} writes in 120 s: ${load.errors.slice(0, 3).join('; ')}`);
      await new Promise((r) => setTimeout(r, o.intervalMs));
      await session.suspend();
      const cap = await session.capture();
      checkpoints.push(Buffer.concat(cap.chunks)); // a copy: the arena is reused
      pages += cap.pages;
      cap.release?.();
      await session.resume();
    }
    await done;
    const memory: Buffer[] = [];
    let memoryPages = 0;
    if (o.withMemory) {
      await session.suspend();
      memoryPages = (
        await session.resync(async (chunk) => {
          memory.push(Buffer.concat(Buffer.isBuffer(chunk) ? [chunk] : [...chunk]));
        })
      ).pages;
    }
    await session.close();
    return { checkpoints, pages, memory, memoryPages, puts: load.puts };
  } finally {
    load.close();
    await backend.destroyDomain(info.domid).catch(() => {});
    await backend.dispose().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A raw LZ4 block (no size prefix) decoded into `dst` at `d0`, for the kernel's lz4 legacy payload. */
function lz4Block(src: Buffer, dst: Buffer, d0: number): number {
  let i = 0;
  let d = d0;
  while (i < src.length) {
    const token = src[i++]!;
    let lit = token >>> 4;
    if (lit === 15) for (let b = 255; b === 255; ) lit += b = src[i++]!;
    src.copy(dst, d, i, i + lit);
    i += lit;
    d += lit;
    if (i >= src.length) break;
    const off = src[i]! | (src[i + 1]! << 8);
    i += 2;
    let ml = token & 15;
    if (ml === 15) for (let b = 255; b === 255; ) ml += b = src[i++]!;
    ml += 4;
    if (off === 0 || off > d) throw new Error('lz4 payload: bad match offset');
    for (let k = 0; k < ml; k++, d++) dst[d] = dst[d - off]!;
  }
  return d;
}

/** The kernel a bzImage carries, decompressed (gzip, xz, zstd or lz4 legacy payloads). */
function kernelFromBzImage(img: Buffer): { kernel: Buffer; how: string } {
  if (img.toString('latin1', 0x202, 0x206) !== 'HdrS') return { kernel: img, how: 'not a bzImage: taken as it is' };
  const setupSects = img[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + img.readUInt32LE(0x248);
  const payload = img.subarray(start, start + img.readUInt32LE(0x24c));
  const magic = payload.subarray(0, 6).toString('hex');
  if (magic.startsWith('1f8b')) return { kernel: zlib.gunzipSync(payload), how: 'gzip payload' };
  if (magic.startsWith('02214c18')) {
    const dst = Buffer.alloc(256 << 20);
    let d = 0;
    let i = 4;
    while (i + 4 <= payload.length) {
      const n = payload.readUInt32LE(i);
      if (n === 0x184c2102) {
        i += 4;
        continue;
      }
      if (i + 4 + n > payload.length) break; // the 4-byte size the kernel build appends
      d = lz4Block(payload.subarray(i + 4, i + 4 + n), dst, d);
      i += 4 + n;
    }
    return { kernel: Buffer.from(dst.subarray(0, d)), how: 'lz4 legacy payload' };
  }
  const tool = magic.startsWith('fd377a585a00') ? 'xz' : magic.startsWith('28b52ffd') ? 'zstd' : null;
  if (!tool) throw new Error(`bzImage payload with magic ${magic}: not gzip, xz, zstd or lz4`);
  const r = require('node:child_process').spawnSync(tool, ['-dc'], { input: payload, maxBuffer: 512 << 20 }) as { stdout: Buffer; status: number };
  if (r.status !== 0 && r.stdout.length === 0) throw new Error(`${tool} -dc failed on the bzImage payload`);
  return { kernel: r.stdout, how: `${tool} payload` };
}

function labDomU(): PageSet | { skipped: string } {
  const L = process.env.XENLAB_DIR ?? '/var/tmp/xenlab';
  const kernelPath = arg('--kernel') ?? path.join(L, 'rootfs/xenlab/vmlinuz');
  const initrdPath = arg('--initrd') ?? path.join(L, 'domu-initrd.cpio.gz');
  const missing = [kernelPath, initrdPath].filter((p) => !fs.existsSync(p));
  if (missing.length) return { skipped: `no ${missing.join(' or ')} (build them with test/xen-lab/build-images.sh, or pass --kernel and --initrd)` };
  const { kernel, how } = kernelFromBzImage(fs.readFileSync(kernelPath));
  if (kernel.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${kernelPath}: the decompressed kernel is not an ELF image`);
  const rawInitrd = fs.readFileSync(initrdPath);
  const cpio = rawInitrd[0] === 0x1f && rawInitrd[1] === 0x8b ? zlib.gunzipSync(rawInitrd) : rawInitrd;
  const k = asPageRecords(kernel, 0x1000);
  const r = asPageRecords(cpio, 0x1000 + k.pages);
  return pageSet(
    'lab-domu',
    `${kernelPath} (vmlinux from its ${how}, ${(kernel.length / 2 ** 20).toFixed(1)} MiB) + ${initrdPath} (cpio, ${(cpio.length / 2 ** 20).toFixed(1)} MiB)`,
    [...k.chunks, ...r.chunks],
    k.pages + r.pages,
  );
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface Rep {
  ratio: number;
  compressMBps: number;
  decompressMBps: number;
  cpuMsPerMiB: number;
  savedBytesPerCpuMs: number;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

function oneRep(c: Candidate, set: PageSet, loops: number, verify: boolean): Rep {
  let packedBytes = 0;
  let packed: Buffer[] = [];
  const t0 = performance.now();
  const u0 = process.cpuUsage();
  for (let l = 0; l < loops; l++) {
    packed = set.chunks.map((ch) => c.compress(ch));
  }
  const cWall = performance.now() - t0;
  const cCpu = cpuMs(u0);
  for (const p of packed) packedBytes += p.length;
  const t1 = performance.now();
  const u1 = process.cpuUsage();
  let out: Buffer[] = [];
  for (let l = 0; l < loops; l++) out = packed.map((p, i) => c.decompress(p, set.chunks[i]!.length));
  const dWall = performance.now() - t1;
  const dCpu = cpuMs(u1);
  if (verify) {
    for (let i = 0; i < out.length; i++) {
      if (!out[i]!.equals(set.chunks[i]!)) throw new Error(`${c.id} on ${set.id}: chunk ${i} did not round-trip`);
    }
  }
  const raw = set.bytes * loops;
  const mb = raw / 1e6;
  return {
    ratio: set.bytes / packedBytes,
    compressMBps: mb / (cWall / 1000),
    decompressMBps: mb / (dWall / 1000),
    cpuMsPerMiB: (cCpu + dCpu) / (raw / 2 ** 20),
    savedBytesPerCpuMs: ((set.bytes - packedBytes) * loops) / Math.max(cCpu + dCpu, 0.001),
  };
}

interface Stat {
  median: number;
  min: number;
  max: number;
}
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { median: m, min: s[0]!, max: s[s.length - 1]! };
}

export interface Result {
  set: string;
  codec: string;
  lib: string;
  rawBytes: number;
  reps: number;
  mibPerRep: number;
  ratio: Stat;
  compressMBps: Stat;
  decompressMBps: Stat;
  cpuMsPerMiB: Stat;
  savedBytesPerCpuMs: Stat;
}

function fmt(s: Stat, digits = 0): string {
  const f = (v: number) => (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits));
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

async function main(): Promise<void> {
  const { ok, missing } = candidates();
  for (const m of missing) log(`skipped ${m.id}: ${m.why}`);
  const sets: PageSet[] = [];
  const notes: string[] = [];

  log(`sim kv guest: ${KV_WRITES} kv writes, a checkpoint every 25 ms ...`);
  const kv = await simKv({ memoryMiB: 64, dirtyMiBPerSec: 0, writes: KV_WRITES, intervalMs: 25, withMemory: true });
  sets.push(pageSet('sim-kv-checkpoints', `sim kv guest (64 MiB, sim_dirty_mibps 0), ${kv.puts} acknowledged writes, ${kv.checkpoints.length} checkpoints of the dirty pages`, kv.checkpoints, kv.pages));
  sets.push(pageSet('sim-kv-memory', `all memory of that guest after the writes (resync, 1024-page records)`, kv.memory, kv.memoryPages));
  log(`sim kv guest with sim_dirty_mibps 20: ${KV_WRITES} kv writes ...`);
  const kv20 = await simKv({ memoryMiB: 64, dirtyMiBPerSec: 20, writes: KV_WRITES, intervalMs: 25, withMemory: false });
  sets.push(pageSet('sim-kv-dirty20', `sim kv guest (64 MiB, sim_dirty_mibps 20), ${kv20.puts} acknowledged writes, ${kv20.checkpoints.length} checkpoints of the dirty pages`, kv20.checkpoints, kv20.pages));
  const lab = labDomU();
  if ('skipped' in lab) {
    notes.push(`lab-domu skipped: ${lab.skipped}`);
    log(`lab-domu skipped: ${lab.skipped}`);
  } else sets.push(lab);
  sets.push(pageSet('random', 'crypto.randomBytes pages, 1024-page records', asPageRecords(crypto.randomBytes(2048 * PAGE_SIZE)).chunks, 2048));

  const results: Result[] = [];
  for (const set of sets) {
    const loops = Math.max(1, Math.ceil((MIN_MIB * 2 ** 20) / set.bytes));
    log(`${set.id}: ${set.pages} pages in ${set.chunks.length} chunks, ${(set.bytes / 2 ** 20).toFixed(2)} MiB, ${loops} passes a repetition: ${set.source}`);
    const reps = new Map<string, Rep[]>(ok.map((c) => [c.id, []]));
    for (const c of ok) oneRep(c, set, 1, true); // warm-up, and every chunk must round-trip
    for (let r = 0; r < REPS; r++) {
      // take turns: rotate the order each repetition
      for (let k = 0; k < ok.length; k++) {
        const c = ok[(k + r) % ok.length]!;
        reps.get(c.id)!.push(oneRep(c, set, loops, false));
      }
    }
    for (const c of ok) {
      const rs = reps.get(c.id)!;
      results.push({
        set: set.id,
        codec: c.id,
        lib: c.lib,
        rawBytes: set.bytes,
        reps: REPS,
        mibPerRep: round2((set.bytes * loops) / 2 ** 20),
        ratio: stat(rs.map((x) => x.ratio)),
        compressMBps: stat(rs.map((x) => x.compressMBps)),
        decompressMBps: stat(rs.map((x) => x.decompressMBps)),
        cpuMsPerMiB: stat(rs.map((x) => x.cpuMsPerMiB)),
        savedBytesPerCpuMs: stat(rs.map((x) => x.savedBytesPerCpuMs)),
      });
    }
  }
  const machine = {
    cpu: os.cpus()[0]?.model ?? '?',
    cores: os.cpus().length,
    loadavg: os.loadavg().map(round2),
    node: process.versions.node,
    platform: `${os.platform()} ${os.release()}`,
  };
  if (json) {
    process.stdout.write(
      JSON.stringify({ machine, reps: REPS, minMiBPerRep: MIN_MIB, sets: sets.map(({ id, source, bytes, pages, chunks }) => ({ id, source, bytes, pages, chunks: chunks.length })), skipped: missing, notes, results }, null, 2) + '\n',
    );
    return;
  }
  const out: string[] = [];
  out.push(`machine: ${machine.cpu}, ${machine.cores} cores, load ${machine.loadavg.join(' ')}, Node ${machine.node}; ${REPS} repetitions of >= ${MIN_MIB} MiB each; median (min–max)`);
  for (const set of sets) {
    out.push('', `${set.id}: ${set.source}; ${set.pages} pages, ${(set.bytes / 2 ** 20).toFixed(2)} MiB in ${set.chunks.length} chunks`);
    out.push('| codec | ratio | compress MB/s | decompress MB/s | CPU ms/MiB | saved bytes/CPU ms |');
    out.push('|---|---|---|---|---|---|');
    for (const r of results.filter((x) => x.set === set.id)) {
      out.push(`| ${r.codec} | ${fmt(r.ratio, 2)} | ${fmt(r.compressMBps)} | ${fmt(r.decompressMBps)} | ${fmt(r.cpuMsPerMiB, 2)} | ${fmt(r.savedBytesPerCpuMs)} |`);
    }
  }
  out.push('', ...ok.map((c) => `${c.id}: ${c.lib}`), ...notes);
  process.stdout.write(out.join('\n') + '\n');
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

await main();
