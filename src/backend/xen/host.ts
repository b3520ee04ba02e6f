/**
 * The xen backend: real Xen 4.17 through libxl-shim.
 *
 * Primary side. xc_domain_save runs on a koffi worker thread and writes the libxc stream into
 * a pipe; each of its callbacks becomes an event (SUSPEND, POSTCOPY, CHECKPOINT) that waits in
 * the shim until we answer. The engine's calls map onto them:
 *   begin    → libxl header + LIBXC_CONTEXT, then the precopy until libxc asks to SUSPEND
 *   suspend  → (answer the pending CHECKPOINT with 1, wait for SUSPEND) libxl suspend, answer 1
 *   capture  → wait for POSTCOPY and the CHECKPOINT record; the bytes since suspend plus our
 *              libxl CHECKPOINT_END are the checkpoint
 *   resume   → libxl fast resume, answer POSTCOPY with 1
 *   close    → answer the pending CHECKPOINT with 0: xc_domain_save ends cleanly
 *
 * Backup side. libxl_domain_create_restore with a checkpointed stream reads, from a pipe, the
 * checkpoints we write only once verified; the domain is built as <name>--incoming (as xl
 * does). Closing the pipe is the failover: libxl resumes the last complete checkpoint; we
 * rename the domain and unpause it.
 */
import { checkReplicaConfig } from './replica-policy.js';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import koffi from 'koffi';
import type { DomainConfig } from '../../config/domain.js';
import {
  BackendUnsupportedError,
  DomainNotFoundError,
  pickDomain,
  type BackendFeatures,
  type CaptureResult,
  type ContentSink,
  type DomainEvent,
  type DomainInfo,
  type HostWatchdog,
  type HypervisorBackend,
  type ReplicaDomain,
  type ReplicaSpec,
  type SaveSession,
  type VerifiedCheckpoint,
} from '../types.js';
import { encodeFrame } from '../../transport/framing.js';
import { XL_REC, encodeLibxlHeader } from '../../transport/xen-records.js';
import { Samples, round } from '../../util/samples.js';
import { ShimContext, ShimError, XLHA_DOM, XLHA_EV, XLHA_STREAM, keepFreedMemory, type ShimDomInfo } from './shim.js';
import { ForeignSaveWatch } from './foreign-save.js';
import { LibxcSplitter } from './splitter.js';
import { SlabPool, slabReadFd } from '../../util/slab-reads.js';
import { XenNetPlug, setVifsLink, vifsOf } from './netbuf.js';
import { diskLabel, libxlDisks, isBlockHa, replicaImagePath, replicatedDisk, withReplicaDisk } from './disks.js';
import type { DiskExports } from '../../disk/exports.js';
import { ReplicaImage } from '../../disk/replica-image.js';
import type { DiskTap, ServedDiskAnswer } from '../types.js';

const XEN_FEATURES: BackendFeatures = {
  // Output buffering: a plug qdisc on an IFB per vif (netbuf.ts), which also reports output
  // events (kemari) from the bytes that entered the plugs, read over rtnetlink.
  outputBuffering: true,
  outputEvents: true,
  ingressTap: false,
  runnableReplica: false,
  // Disk replication: a disk on hooks/block-ha is served by the daemon over NBD for blkback
  // (src/disk/exports.ts), and its NbdDisk is the session's tap; the backup applies its writes at
  // commit. A domain with a disk on another script needs -d (replicatedDiskBytes says which).
  diskReplication: true,
  // One checkpoint travels while the guest runs the next epoch. Measured in the lab (real Xen
  // under TCG, both hosts in one 2-vCPU dom0, stock xl remus in the same boot; each row
  // another boot): 1 in flight, 2.38 checkpoints/s vs stock 3.82, guest tick gap 1.83 s vs
  // 1.87 s; 2 in flight, 2.75/s vs 3.28 but checkpoints ran back to back and the tick gap
  // was 3.25 s vs 2.49 s; 2 in flight with remus's half-interval minimum run, 2.46/s vs
  // 3.15 and 2.70 s vs 2.54 s. sch_plug holds two epochs (netbuf.ts). A rejected checkpoint
  // ends protection on Xen (no full resync yet). docs/xen-backend.md has the table.
  maxInFlight: 2,
  // ha_transfer at the link (docs/transfer.md): the backup undoes the stages after the seal and
  // hands libxc the rebuilt stream (whole PAGE_DATA records, unpacked chunks); the first
  // checkpoint is then held until its seal rather than streamed into libxc. Verified by the
  // lab's transfer scenario: each option measured, and a failover under fgbi,compress.
  fgbi: true,
  compress: true,
};

/** Precopy bytes per XEN_STREAM frame, at most (and a little more: whole pipe reads). */
const PRECOPY_FRAME_BYTES = 4 << 20;
/**
 * During the precopy, the pipe is not read while this much is read and not yet taken: libxenguest
 * then waits on the pipe (the guest runs meanwhile), so the primary's memory stays bounded when
 * the backup is slower than libxenguest, whatever the guest's size. (Without it, the primary's
 * peak RSS in the lab was 173 MiB for a 128 MiB guest.) Checkpoints are never held back.
 */
const PRECOPY_BACKLOG_BYTES = 16 << 20;

/** XLHA_DEBUG_XEN=1: trace save/restore events on stderr (lab diagnostics). */
const trace = process.env.XLHA_DEBUG_XEN
  ? (msg: string) => process.stderr.write(`${new Date().toISOString()} xen-trace ${msg}\n`)
  : () => {};

const EV_NAME: Record<number, string> = { 1: 'SUSPEND', 2: 'POSTCOPY', 3: 'CHECKPOINT', 4: 'WAIT_CHECKPOINT', 5: 'DONE' };

function uuidOf(bytes: number[]): string {
  const h = Buffer.from(bytes).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function toInfo(d: ShimDomInfo): DomainInfo {
  const state: DomainInfo['state'] =
    // dying first: a domain libxl is destroying (after xl save or xl migrate, whose copy is
    // paused and dying) is on its way out, whatever else its flags say
    d.flags & XLHA_DOM.DYING ? 'shutdown' : d.flags & XLHA_DOM.SHUTDOWN ? 'suspended' : d.flags & XLHA_DOM.PAUSED ? 'paused' : 'running';
  return {
    domid: d.domid,
    name: d.name,
    uuid: uuidOf(d.uuid),
    memoryMiB: Math.round(Number(d.max_memory_kb) / 1024),
    vcpus: d.vcpus,
    state,
  };
}

/** Events from the save thread, in order, with waiters. */
class EventQueue {
  private queue: number[] = [];
  private waiters: ((ev: number) => void)[] = [];
  push(ev: number): void {
    const w = this.waiters.shift();
    if (w) w(ev);
    else this.queue.push(ev);
  }
  next(timeoutMs: number, what: string): Promise<number> {
    const ev = this.queue.shift();
    if (ev !== undefined) return Promise.resolve(ev);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new Error(`xc_domain_save: no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (e: number) => {
        clearTimeout(timer);
        resolve(e);
      };
      this.waiters.push(done);
    });
  }
}

class XenSaveSession implements SaveSession {
  private readonly events = new EventQueue();
  private readonly splitter = new LibxcSplitter();
  private pending = 0; // event awaiting our answer
  private save: unknown = null;
  private cb: bigint | null = null;
  private fds: [number, number] = [-1, -1];
  private sock: net.Socket | null = null;
  private run: Promise<number> | null = null;
  private bytes: Buffer[] = [];
  /** The pipe's read buffers: the precopy's reused once the socket wrote them, a checkpoint's once it is acknowledged. */
  readonly pool = new SlabPool();
  /** A checkpoint's bytes handed out, not yet given back to the pool (its ack does). */
  private handedOut: Buffer[] = [];
  private checkpointsRead = 0;
  private checkpointsTaken = 0;
  /** Bytes read since the last take, and whether reading stopped for them (precopy only). */
  private backlog = 0;
  private inPrecopy = false;
  private readPaused = false;
  private pagesRead = 0;
  /** pagesRead when the guest was suspended: libxenguest sends the dirty pages after that. */
  private pagesAtSuspend = 0;
  private suspendReplied = 0;
  private readWaiter: (() => void) | null = null;
  /** Where a checkpoint's time goes, step by step (status: backendStepsMsP50). */
  private readonly steps = {
    checkpointEvent: new Samples(1000), // waiting for libxenguest's CHECKPOINT callback
    toSuspendEvent: new Samples(1000), // CHECKPOINT answered → SUSPEND callback
    libxlSuspend: new Samples(1000),
    sendPages: new Samples(1000), // SUSPEND answered → POSTCOPY callback (pages into the pipe)
    readPages: new Samples(1000), // POSTCOPY → the CHECKPOINT record read from the pipe
    libxlResume: new Samples(1000),
  };
  private closed = false;

  constructor(
    private readonly ctx: ShimContext,
    readonly domid: number,
    readonly net: XenNetPlug | null,
    /** The block-ha disk's NbdDisk, borrowed from the daemon's exports (never closed here). */
    readonly disk: DiskTap | null,
    private readonly timeoutMs = 120_000,
    private readonly onFinished: () => void = () => {},
  ) {}

  private onData(chunk: Buffer): void {
    const r = this.splitter.push(chunk);
    for (const b of r.parts) this.bytes.push(b);
    this.checkpointsRead += r.checkpoints;
    this.pagesRead += r.pages;
    this.backlog += chunk.length;
    if (this.inPrecopy && !this.readPaused && this.backlog > PRECOPY_BACKLOG_BYTES) {
      this.readPaused = true;
      this.sock?.pause();
    }
    this.readWaiter?.();
  }

  private resumeReading(): void {
    if (!this.readPaused) return;
    this.readPaused = false;
    this.sock?.resume();
  }

  private reply(value: number): void {
    if (!this.pending) throw new Error('xc_domain_save is not waiting for an answer');
    this.pending = 0;
    this.ctx.check(this.ctx.shim.fn.saveReply!(this.save, value) as number);
  }

  private async expect(ev: number, timeoutMs = this.timeoutMs): Promise<void> {
    const got = await this.events.next(timeoutMs, EV_NAME[ev]!);
    if (got === XLHA_EV.DONE) {
      const rc = await this.run;
      throw new Error(`xc_domain_save of domain ${this.domid} ended early${rc && rc < 0 ? `: ${this.ctx.lastError()}` : ''}`);
    }
    if (got !== ev) throw new Error(`xc_domain_save: expected ${EV_NAME[ev]}, got ${EV_NAME[got] ?? got}`);
    this.pending = got;
  }

  /** What the pipe gave since the last take; with `hold`, kept until the checkpoint's ack. */
  private take(hold = true): Buffer[] {
    const b = this.bytes;
    this.bytes = [];
    this.backlog = 0;
    this.resumeReading();
    if (hold) for (const x of b) this.handedOut.push(x);
    return b;
  }

  /** Gives `parts` back to the pool: once written (a precopy frame) or acknowledged (a checkpoint). */
  private releaser(parts: readonly Buffer[]): () => void {
    return () => {
      for (const b of parts) this.pool.release(b);
    };
  }

  async begin(sink: ContentSink): Promise<{ pages: number; rounds: number }> {
    this.refuseForeignSave(); // before log-dirty is touched: refused, nothing of the other save is disturbed
    const shim = this.ctx.shim;
    this.fds = shim.pipe();
    this.inPrecopy = true;
    this.sock = slabReadFd(this.fds[0], (d) => this.onData(d), this.pool); // 1 MiB reads, passed on as views
    this.sock.on('error', () => {});
    this.cb = koffi.register((_opaque: unknown, ev: number) => {
      trace(`domain ${this.domid}: event ${EV_NAME[ev] ?? ev} (read ${this.pagesRead} pages, ${this.checkpointsRead} checkpoints)`);
      this.events.push(ev);
    }, koffi.pointer(shim.eventProto));
    const out = [null];
    this.ctx.check(shim.fn.saveNew!(this.ctx.ptr, this.domid, this.fds[1], XLHA_STREAM.REMUS, this.cb, null, out) as number);
    this.save = out[0];
    trace(`domain ${this.domid}: xc_domain_save starting (pipe ${this.fds[0]}<-${this.fds[1]})`);
    this.run = shim.call<number>(shim.fn.saveRun!, this.save);
    void this.run.then(
      (rc) => trace(`domain ${this.domid}: xc_domain_save returned ${rc}${rc < 0 ? `: ${this.ctx.lastError()}` : ''}`),
      (err: Error) => trace(`domain ${this.domid}: xc_domain_save call failed: ${err.message}`),
    );
    await sink(Buffer.concat([encodeLibxlHeader(), encodeFrame(XL_REC.LIBXC_CONTEXT, Buffer.alloc(0))]));
    // The precopy streams while libxc works; it ends when libxc asks for the suspend.
    const suspendAsked = this.expect(XLHA_EV.SUSPEND).then(() => true);
    for (;;) {
      const done = await Promise.race([suspendAsked, new Promise<false>((r) => setTimeout(() => r(false), 20))]);
      // what the pipe gave since, as frames of up to PRECOPY_FRAME_BYTES (the views, not
      // joined). Nothing resends the precopy, so its read buffers go back to the pool as soon as
      // the socket has written them: the precopy of a guest of any size runs in a few buffers
      // rather than holding all of its memory until the first checkpoint's ack.
      let frame: Buffer[] = [];
      let size = 0;
      for (const b of this.take(false)) {
        frame.push(b);
        size += b.length;
        if (size >= PRECOPY_FRAME_BYTES) {
          await sink(frame, this.releaser(frame));
          frame = [];
          size = 0;
        }
      }
      if (frame.length) await sink(frame, this.releaser(frame));
      if (done) break;
    }
    this.inPrecopy = false;
    this.resumeReading();
    return { pages: this.pagesRead, rounds: 0 };
  }

  async resync(): Promise<{ pages: number }> {
    throw new BackendUnsupportedError('a full resync is not available on the xen backend yet (libxenguest streams deltas only)');
  }

  /** Another toolstack's save of this domain (foreign-save.ts), looked for before each suspend. */
  private foreign: ForeignSaveWatch | null = null;

  /** Throws when libxl saves this domain too (xl save, xl migrate, stock xl remus). */
  private refuseForeignSave(): void {
    const pid = (this.foreign ??= new ForeignSaveWatch(this.domid)).find();
    if (pid === null) return;
    throw new Error(
      `another save of domain ${this.domid} runs (libxl-save-helper pid ${pid}: an xl save, xl migrate or xl remus of it); the two saves would each miss pages the guest writes, so this protection ends and the backup drops its replica (run xl-ha stop before xl save or xl migrate)`,
    );
  }

  async suspend(): Promise<void> {
    trace(`domain ${this.domid}: suspend (pending ${EV_NAME[this.pending] ?? 'none'})`);
    this.refuseForeignSave();
    // After the previous resume answered POSTCOPY, libxenguest goes on to its checkpoint
    // callback; that event may still be on its way.
    let t = performance.now();
    const lap = (s: Samples) => {
      const now = performance.now();
      s.add(now - t);
      t = now;
    };
    if (this.pending === 0) {
      await this.expect(XLHA_EV.CHECKPOINT);
      lap(this.steps.checkpointEvent);
    }
    if (this.pending === XLHA_EV.CHECKPOINT) {
      this.reply(1); // take another checkpoint
      await this.expect(XLHA_EV.SUSPEND);
      lap(this.steps.toSuspendEvent);
    }
    if (this.pending !== XLHA_EV.SUSPEND) throw new Error('xc_domain_save is not ready to suspend');
    await this.ctx.run('suspend', this.domid);
    lap(this.steps.libxlSuspend);
    this.pagesAtSuspend = this.pagesRead;
    this.reply(1);
    this.suspendReplied = performance.now();
  }

  async capture(): Promise<CaptureResult> {
    await this.expect(XLHA_EV.POSTCOPY);
    const postcopyAt = performance.now();
    this.steps.sendPages.add(postcopyAt - this.suspendReplied);
    while (this.checkpointsRead <= this.checkpointsTaken) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('xc_domain_save: the CHECKPOINT record did not arrive')), this.timeoutMs);
        this.readWaiter = () => {
          clearTimeout(timer);
          this.readWaiter = null;
          resolve();
        };
      });
    }
    this.checkpointsTaken++;
    this.steps.readPages.add(performance.now() - postcopyAt);
    const chunks = this.take();
    chunks.push(encodeFrame(XL_REC.CHECKPOINT_END, Buffer.alloc(0)));
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    // Once the backup acknowledged this checkpoint, its bytes have long left through the
    // socket: their read buffers may take new reads.
    const release = this.releaser(this.handedOut);
    this.handedOut = [];
    return { chunks, pages: this.pagesRead - this.pagesAtSuspend, bytes, release };
  }

  async resume(): Promise<void> {
    if (this.pending !== XLHA_EV.POSTCOPY) return;
    const t = performance.now();
    await this.ctx.resume(this.domid, true);
    this.steps.libxlResume.add(performance.now() - t);
    this.reply(1);
  }

  /** xc_domain_pause between two of libxenguest's checkpoints: its next suspend follows the unpause. */
  async throttle(on: boolean): Promise<void> {
    await this.ctx.run(on ? 'pause' : 'unpause', this.domid);
  }

  timings(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.steps)) if (v.count) out[k] = round(v.percentile(50));
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const shim = this.ctx.shim;
    if (this.save) {
      if (this.pending === 0) await this.expect(XLHA_EV.CHECKPOINT, 10_000).catch(() => {});
      if (this.pending === XLHA_EV.CHECKPOINT) this.reply(0);
      else {
        if (this.pending === XLHA_EV.POSTCOPY) await this.ctx.resume(this.domid, true).catch(() => {});
        shim.fn.saveAbort!(this.save);
      }
      await Promise.race([this.run, new Promise((r) => setTimeout(r, 10_000))]);
      shim.fn.saveFree!(this.save);
      this.save = null;
    }
    if (this.cb) koffi.unregister(this.cb);
    this.sock?.destroy();
    if (this.fds[1] >= 0) fs.closeSync(this.fds[1]);
    this.onFinished();
  }
}

const ETIMEDOUT = 110;
/**
 * How long libxenguest may take to apply one checkpoint on the backup before it is refused:
 * far above the lab's (a first checkpoint of 128 MiB under emulation: seconds).
 */
const TAKE_TIMEOUT_MS = 60_000;

class XenReplica implements ReplicaDomain {
  readonly takesRawStream = true;
  readonly keepsNoInput = true; // write() resolves once libuv has handed every byte to the pipe
  private epoch = 0;
  private preloadedBytes = 0;
  private activated = false;
  private failedWith: string | null = null;
  private writer: net.Socket;
  private readonly run: Promise<number>;
  private readonly incoming: string;
  private id = -1;
  private readonly writeFd: number;

  constructor(
    private readonly ctx: ShimContext,
    readonly name: string,
    configJson: string,
    onFinished: () => void,
    /** The replicated disk's image on this host, when the primary replicates one. */
    private readonly image: ReplicaImage | null = null,
  ) {
    let cfg: { c_info?: { name?: string } };
    try {
      cfg = JSON.parse(configJson) as { c_info?: { name?: string } };
    } catch (err) {
      throw new Error(`the primary's libxl configuration of ${name} is not JSON: ${(err as Error).message}`);
    }
    this.incoming = `${name}--incoming`;
    cfg.c_info = { ...(cfg.c_info ?? {}), name: this.incoming };
    const shim = ctx.shim;
    const [r, w] = shim.pipe();
    this.writeFd = w;
    this.writer = new net.Socket({ fd: w, readable: false, writable: true });
    this.writer.on('error', () => {});
    trace(`replica ${name}: restore starting as ${this.incoming}`);
    this.run = shim.call<number>(shim.fn.restoreRun!, ctx.ptr, JSON.stringify(cfg), r, XLHA_STREAM.REMUS).then(
      (rc) => {
        trace(`replica ${name}: restore returned ${rc}${rc < 0 ? `: ${ctx.lastError()}` : ''}`);
        onFinished();
        image?.close();
        fs.closeSync(r);
        if (rc < 0) this.failedWith = ctx.lastError();
        return rc;
      },
      (err: Error) => {
        onFinished();
        image?.close();
        fs.closeSync(r);
        this.failedWith = err.message;
        return -5;
      },
    );
  }

  get domid(): number {
    if (this.id < 0) {
      try {
        this.id = this.ctx.byName(this.incoming);
      } catch {
        /* not built yet */
      }
    }
    return this.id;
  }

  get lastEpoch(): number {
    return this.epoch;
  }

  /**
   * Writes the buffers to libxc's pipe (vectored: one writev); resolves once every byte is in
   * the pipe, so nothing refers to the buffers any longer (keepsNoInput).
   */
  private write(bufs: readonly Buffer[]): Promise<void> {
    const last = bufs.findLastIndex((b) => b.length > 0);
    if (last < 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.writer.cork();
      for (let i = 0; i < last; i++) if (bufs[i]!.length) this.writer.write(bufs[i]!);
      this.writer.write(bufs[last]!, (err) => (err ? reject(new Error(`writing to libxl's restore pipe: ${err.message}`)) : resolve()));
      this.writer.uncork();
    });
  }

  async preload(chunk: Buffer | readonly Buffer[]): Promise<void> {
    if (this.failedWith) throw new Error(`the restore of ${this.name} failed: ${this.failedWith}`);
    if (this.epoch !== 0) throw new Error(`domain ${this.name} already has checkpoint ${this.epoch}: nothing to preload`);
    const bufs = Buffer.isBuffer(chunk) ? [chunk] : chunk;
    await this.write(bufs);
    for (const b of bufs) this.preloadedBytes += b.length;
  }

  async applyCheckpoint(cp: VerifiedCheckpoint): Promise<void> {
    if (this.failedWith) throw new Error(`the restore of ${this.name} failed: ${this.failedWith}`);
    if (this.activated) throw new Error(`domain ${this.name} is active; it takes no more checkpoints`);
    // The disk first, all or none and on stable storage (ReplicaImage.applyAll), then memory: a
    // checkpoint whose disk writes fail leaves libxl at the previous one. The first checkpoint's
    // writes are the whole disk.
    if (this.image) await this.image.applyAll(cp.diskWrites, cp.epoch);
    else if (cp.diskWrites.length) throw new Error(`checkpoint ${cp.epoch} of ${this.name} carries ${cp.diskWrites.length} disk writes, but the primary did not say in HELLO that it replicates a disk`);
    let skip = this.preloadedBytes; // the first checkpoint's bytes already went to libxl
    this.preloadedBytes = 0;
    const out: Buffer[] = [];
    for (const b of cp.xen) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      out.push(skip ? b.subarray(skip) : b);
      skip = 0;
    }
    await this.write(out);
    await this.taken(cp.epoch);
    this.epoch = cp.epoch;
    trace(`replica ${this.name}: checkpoint ${cp.epoch} taken by libxenguest (${cp.xen.reduce((n, b) => n + b.length, 0)} bytes)`);
  }

  /**
   * Resolves once libxenguest has taken checkpoint `epoch`: the pipe is empty, so libxl has read
   * the checkpoint's last record (its CHECKPOINT_END), which it reads only after libxenguest's
   * checkpoint callback, that is after the checkpoint was applied (xlha_pipe_wait_drained). The
   * backup acknowledges only then, not when the bytes were written into the pipe.
   */
  private async taken(epoch: number): Promise<void> {
    const shim = this.ctx.shim;
    let rc = shim.fn.pipeWaitDrained!(this.writeFd, 0) as number; // most often already empty
    if (rc === -ETIMEDOUT) {
      const failed = this.run.then((code) => {
        throw new Error(`the restore of ${this.name} ended (${code}: ${this.failedWith ?? 'no error'}) before it took checkpoint ${epoch}`);
      });
      rc = await Promise.race([shim.call<number>(shim.fn.pipeWaitDrained!, this.writeFd, TAKE_TIMEOUT_MS), failed]);
    }
    if (rc === -ETIMEDOUT) throw new Error(`libxenguest did not take checkpoint ${epoch} of ${this.name} within ${TAKE_TIMEOUT_MS / 1000} s`);
    if (rc < 0) throw new Error(`waiting for libxenguest to take checkpoint ${epoch} of ${this.name}: errno ${-rc}`);
  }

  async activate(): Promise<DomainInfo> {
    if (this.epoch === 0) throw new Error(`domain ${this.name} has no complete checkpoint to run from`);
    // Split-brain guard: a domain of that name on this host is another live copy (the lab runs
    // primary and backup in one dom0; a primary whose daemon died may still run). Refuse before
    // libxl resumes anything: the replica stays parked with its checkpoint.
    // A copy that is on its way out (xl destroy of the old primary in the lab's shared dom0
    // takes seconds under emulation) is waited for, up to ACTIVATE_CLASH_WAIT_MS.
    const byName = (): number => {
      try {
        return this.ctx.byName(this.name);
      } catch (err) {
        if (!(err instanceof ShimError && err.errno === 2)) throw err;
        return -1;
      }
    };
    let other = byName();
    for (const until = Date.now() + ACTIVATE_CLASH_WAIT_MS; other >= 0 && Date.now() < until; other = byName()) {
      await new Promise((r) => setTimeout(r, 500));
    }
    if (other >= 0) {
      throw new Error(`a domain named ${this.name} still runs on this host (domid ${other}) after ${ACTIVATE_CLASH_WAIT_MS / 1000} s: refusing to start a second copy; destroy it, then fail over again`);
    }
    this.activated = true;
    this.writer.end(); // end of stream after a complete checkpoint: libxl fails over
    const domid = await this.run;
    if (domid < 0) throw new Error(`failover of ${this.name} failed: ${this.failedWith ?? 'restore error'}`);
    this.id = domid;
    this.ctx.rename(domid, this.incoming, this.name);
    await this.ctx.run('unpause', domid).catch(() => {}); // already running if libxl unpaused it
    return toInfo(this.ctx.info(domid));
  }

  async destroy(): Promise<void> {
    this.writer.destroy();
    const domid = await this.run;
    if (domid >= 0) await this.ctx.run('destroy', domid).catch(() => {});
  }

  async memoryDigest(): Promise<string> {
    throw new BackendUnsupportedError('memory digests are available on the sim backend only');
  }
}

/** memory (MiB) and vcpus from libxl's JSON configuration of a domain, where it has them. */
export function libxlSizes(configJson: string): { memoryMiB?: number; vcpus?: number } {
  try {
    const b = (JSON.parse(configJson) as { b_info?: { target_memkb?: unknown; max_memkb?: unknown; max_vcpus?: unknown } }).b_info ?? {};
    const kb = typeof b.target_memkb === 'number' && b.target_memkb > 0 ? b.target_memkb : typeof b.max_memkb === 'number' && b.max_memkb > 0 ? b.max_memkb : undefined;
    return { ...(kb !== undefined ? { memoryMiB: Math.round(kb / 1024) } : {}), ...(typeof b.max_vcpus === 'number' && b.max_vcpus > 0 ? { vcpus: b.max_vcpus } : {}) };
  } catch {
    return {};
  }
}

/** How long a failover waits for a same-named domain on this host to go before it refuses. */
export const ACTIVATE_CLASH_WAIT_MS = 30_000;

/** Where libxl keeps domains' userdata. */
export const XEN_USERDATA_DIR = '/var/lib/xen';
/** The domain list is compared at least this often (ms), watch or no watch. */
export const WATCH_POLL_MS = 2000;

export class XenBackend implements HypervisorBackend {
  readonly kind = 'xen' as const;
  readonly features = XEN_FEATURES;
  private readonly ctx: ShimContext;
  /** Save loops and restores running on worker threads: the context outlives them. */
  private busy = 0;
  private watching = false;
  private readonly domainListeners = new Set<(ev: DomainEvent) => void>();

  /** `disks`: the daemon's NBD exports for block-ha disks (none: disk replication is refused). */
  constructor(private readonly disks: DiskExports | null = null) {
    this.ctx = ShimContext.open();
    keepFreedMemory(); // the relay's read buffers are reused, not faulted in again (shim.ts)
  }

  async listDomains(): Promise<DomainInfo[]> {
    return this.ctx.list().map(toInfo);
  }

  async findDomain(ref: string | number): Promise<DomainInfo> {
    return pickDomain(await this.listDomains(), ref);
  }

  /**
   * The domain as libxl holds it: `memory` and `vcpus` as the cfg gave them (b_info.target_memkb
   * and max_vcpus of libxl's stored configuration). Xen's own figure is larger: libxl adds its
   * slack to maxmem (a cfg's memory = 128 runs with 129 MiB of max_memory in the lab), so it would
   * never match a cfg.
   */
  async getDomainConfig(domid: number): Promise<DomainConfig> {
    const d = toInfo(this.ctx.info(domid));
    const held = libxlSizes(this.ctx.configJson(domid));
    return { name: d.name, memoryMiB: held.memoryMiB ?? d.memoryMiB, vcpus: held.vcpus ?? d.vcpus, disks: [], vifs: [] };
  }

  async getBackendConfig(domid: number): Promise<string> {
    return this.ctx.configJson(domid);
  }

  async createDomain(): Promise<DomainInfo> {
    throw new BackendUnsupportedError('on the xen backend, domains are created with xl create');
  }

  async destroyDomain(domid: number): Promise<void> {
    await this.ctx.run('destroy', domid);
  }

  async pause(domid: number): Promise<void> {
    await this.ctx.run('pause', domid);
  }

  async unpause(domid: number): Promise<void> {
    await this.ctx.run('unpause', domid);
  }

  armWatchdog(timeoutSec: number): HostWatchdog {
    const ctx = this.ctx;
    const id = ctx.watchdog(0, timeoutSec);
    let armed = true;
    return {
      id,
      timeoutSec,
      kick: () => void (armed && ctx.watchdog(id, timeoutSec)),
      disarm: () => {
        if (!armed) return;
        armed = false;
        ctx.watchdog(id, 0);
      },
    };
  }

  /**
   * Fencing on Xen: the domain paused, then its vifs taken down, so the copy is off the network
   * (src/backend/xen/netbuf.ts setVifsLink). A vif that cannot be taken down fails the fence
   * after the pause, with the vif named.
   */
  async fence(domid: number): Promise<void> {
    await this.pause(domid);
    await setVifsLink(vifsOf(domid, this.ctx.configJson(domid)), false);
  }

  /** The witness let this copy keep the domain after all: vifs up, then running again. */
  async unfence(domid: number): Promise<void> {
    await setVifsLink(vifsOf(domid, this.ctx.configJson(domid)), true);
    await this.unpause(domid);
  }

  async openSave(domid: number): Promise<SaveSession> {
    const d = this.ctx.info(domid);
    if (!(d.flags & XLHA_DOM.PV)) throw new BackendUnsupportedError(`domain ${d.name} is not PV: the xen backend protects PV domains only for now`);
    const json = this.ctx.configJson(domid);
    const vifs = vifsOf(domid, json);
    const net = vifs.length ? new XenNetPlug(vifs, this.ctx.shim) : null;
    // The block-ha disk's export, when it is served (replicatedDiskBytes checked it for a
    // protection with disk replication; with -d the tap is there and never started).
    const blockHa = libxlDisks(json, d.name).filter((x) => isBlockHa(x.script) && !x.readonly);
    const served = blockHa.length === 1 ? this.disks?.get(domid, blockHa[0]!.devid) : undefined;
    this.busy++;
    return new XenSaveSession(this.ctx, domid, net, served?.disk ?? null, undefined, () => this.busy--);
  }

  /**
   * The size of the disk a protection of `domid` replicates (0: none), once it is known to be
   * served: every writable disk on block-ha (one at most), its export up. Otherwise an error
   * naming the disk and the way out (-d).
   */
  async replicatedDiskBytes(domid: number): Promise<number> {
    const d = this.ctx.info(domid);
    const disk = replicatedDisk(this.ctx.configJson(domid), d.name);
    if (!disk) return 0;
    const served = this.disks?.get(domid, disk.devid);
    if (!served) {
      // a plain error: protection started from the cfg at xl create may come before block-ha's
      // add, so the daemon tries again (with backoff)
      throw new Error(
        `${diskLabel(disk)} of domain ${d.name} is not served by this daemon: block-ha asks for its export when the disk is added, so the daemon must run before the domain is created (or protect with -d -F)`,
      );
    }
    if (served.target !== disk.target) throw new Error(`${diskLabel(disk)} of domain ${d.name} is served from ${served.target}, not its target`);
    return served.sizeBytes;
  }

  async serveDisk(domid: number, devid: number, target: string): Promise<ServedDiskAnswer> {
    if (!this.disks) throw new BackendUnsupportedError('this xen backend was started without a place for disk exports (no runtime directory)');
    const s = await this.disks.serve(domid, devid, target);
    return { socket: s.socket, exportName: s.exportName, sizeBytes: s.sizeBytes };
  }

  async unserveDisk(domid: number, devid: number): Promise<boolean> {
    return (await this.disks?.drop(domid, devid)) ?? false;
  }

  servedDisks(): unknown[] {
    return this.disks?.status() ?? [];
  }

  async createReplica(spec: ReplicaSpec): Promise<ReplicaDomain> {
    if (!spec.backendConfig) throw new Error(`the primary sent no libxl configuration for ${spec.domain.name}: is it running the xen backend?`);
    if (!spec.policy) throw new Error(`no replica policy for ${spec.domain.name}: a replica on Xen is built only under this host's policy for its peer`);
    let json = spec.backendConfig;
    let image: ReplicaImage | null = null;
    if (spec.diskBytes) {
      // The replicated disk goes on this host's own image (its policy's replica_disks), which
      // the first checkpoint fills; the primary's path is never used.
      const disk = replicatedDisk(json, spec.domain.name);
      if (!disk) throw new Error(`the primary replicates ${spec.diskBytes} bytes of disk of ${spec.domain.name}, but its libxl configuration has no writable disk`);
      const file = replicaImagePath(spec.policy, spec.domain.name, disk.vdev);
      const r = withReplicaDisk(json, spec.domain.name, file);
      checkReplicaConfig(r.json, spec.policy, spec.domain.name, r.index);
      fs.mkdirSync(spec.policy.replicaDiskDir!, { recursive: true, mode: 0o700 });
      image = ReplicaImage.open(file, spec.diskBytes);
      json = r.json;
    } else {
      checkReplicaConfig(json, spec.policy, spec.domain.name);
    }
    await this.dropStaleIncoming(spec.domain.name, spec.uuid);
    this.busy++;
    try {
      return new XenReplica(this.ctx, spec.domain.name, json, () => this.busy--, image);
    } catch (err) {
      this.busy--;
      image?.close();
      throw err;
    }
  }

  /**
   * A `<name>--incoming` of this domain that no restore is building any more: what a daemon that
   * died (or was stopped) in the middle of a replica's restore leaves behind. libxl refuses a
   * second domain of that name, so every later replica of the domain would fail. It is destroyed
   * when it has the replicated domain's uuid and no libxl save helper restores into it (an
   * `xl migrate` arriving on this host builds a `<name>--incoming` too, with its helper running).
   */
  private async dropStaleIncoming(name: string, uuid: string): Promise<void> {
    const incoming = `${name}--incoming`;
    let domid: number;
    try {
      domid = this.ctx.byName(incoming);
    } catch {
      return; // none
    }
    const info = this.ctx.list().find((d) => d.domid === domid);
    if (!info || uuidOf(info.uuid).toLowerCase() !== uuid.toLowerCase()) {
      throw new Error(`a domain named ${incoming} (domid ${domid}) that is not a replica of ${name} (uuid ${uuid}) exists on this host: refusing to build the replica beside it`);
    }
    const helper = new ForeignSaveWatch(domid, '/proc', undefined, '--restore-domain').find();
    if (helper !== null) throw new Error(`${incoming} (domid ${domid}) is being restored by another libxl (libxl-save-helper pid ${helper}: an xl migrate to this host?): refusing to build the replica beside it`);
    trace(`replica ${name}: destroying the stale ${incoming} (domid ${domid}) an earlier restore left`);
    await this.ctx.run('destroy', domid);
  }

  /**
   * Domains coming and going: a xenstore watch on @introduceDomain/@releaseDomain wakes a loop
   * that compares the domain list with the last one (the watch says that something changed,
   * not what). It also looks every WATCH_POLL_MS, should a watch event be missed.
   */
  onDomainEvent(listener: (ev: DomainEvent) => void): () => void {
    this.domainListeners.add(listener);
    if (!this.watching) this.watchDomains();
    return () => this.domainListeners.delete(listener);
  }

  private watchDomains(): void {
    this.watching = true;
    // A dying domain counts as released: libxl destroys a domain after `xl save` or `xl migrate`,
    // and it cannot finish dying while a protection's save session still maps its memory. Its
    // release ends that protection (a clean one: the backup drops its replica), and the session
    // closing lets the domain go.
    const alive = () => new Set(this.ctx.list().filter((d) => d.domid !== 0 && !(d.flags & XLHA_DOM.DYING)).map((d) => d.domid));
    let known = alive();
    let watched = true;
    try {
      this.ctx.watchDomains();
    } catch {
      watched = false; // no xenstore watch: the list is compared every WATCH_POLL_MS alone
    }
    const loop = async () => {
      this.busy++;
      try {
        while (this.watching && this.domainListeners.size > 0) {
          if (watched) {
            await this.ctx.watchWait(WATCH_POLL_MS).catch(async () => {
              watched = false;
            });
          } else {
            await new Promise((r) => setTimeout(r, WATCH_POLL_MS));
          }
          let now: Set<number>;
          try {
            now = alive();
          } catch {
            continue;
          }
          for (const id of now) if (!known.has(id)) this.emitDomain({ kind: 'introduce', domid: id });
          for (const id of known) if (!now.has(id)) this.emitDomain({ kind: 'release', domid: id });
          known = now;
        }
      } finally {
        this.busy--;
        this.watching = false;
      }
    };
    void loop();
  }

  private emitDomain(ev: DomainEvent): void {
    for (const l of this.domainListeners) l(ev);
  }

  /** libxl's userdata file of the domain (libxl__userdata_path), null when there is none. */
  async getUserdata(domid: number, key: string): Promise<string | null> {
    const d = toInfo(this.ctx.info(domid));
    try {
      return await fs.promises.readFile(path.join(XEN_USERDATA_DIR, `userdata-d.${domid}.${d.uuid}.${key}`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async dispose(): Promise<void> {
    this.watching = false;
    this.domainListeners.clear();
    await this.disks?.dispose();
    // Freeing libxl's context under a running save or restore trips libxl's own assertions
    // (children still listed); the process is ending anyway, so leave it to the exit.
    if (this.busy === 0) this.ctx.close();
  }
}
