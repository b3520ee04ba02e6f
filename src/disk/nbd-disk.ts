/**
 * NbdDisk: a domain's disk image (a raw file or a block device) served over NBD, and the
 * {@link DiskTap} xl-ha replicates it through. On Xen, dom0's kernel NBD client connects to the
 * {@link NbdServer} that serves it and blkback is given the /dev/nbdN (docs/disk-replication.md).
 *
 * Every write the guest issues is applied to the image at once (the primary runs ahead
 * speculatively, as its memory does) and, while recording, kept in issue order for the next
 * `drain()`. The rules that keep the backup's disk a copy of the primary's at each checkpoint:
 *
 * - A write is recorded before it is replied to, so any write the guest saw complete in epoch N
 *   is in the writes drained at the end of epoch N (or an earlier one).
 * - From `drain()` to `resumed()` (the checkpoint's capture), replies are held: a reply that
 *   reached the guest's memory then would be in checkpoint N's memory while its write is in
 *   epoch N+1. Requests still reach the image meanwhile; only their replies wait.
 * - A flush (or a FUA write) completes only once the image is fsynced. Its place among the
 *   epoch's writes is recorded as a barrier ({@link DrainedEpoch.barriers}).
 * - Once the writes of the open epoch reach `epochCapBytes`, the server reads no further request
 *   until the next drain: the guest's I/O waits for the checkpoint, and what is held for one
 *   epoch stays bounded (by the cap plus one request per connection). From `suspending()` (the
 *   engine is about to suspend the guest) to that drain the cap holds nothing: a PV guest
 *   cannot suspend with requests outstanding (its freezer waits for them, and libxl's suspend
 *   times out), so the epoch then takes what the guest's queue still had, past the cap.
 */
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { DiskTap, DiskWrite } from '../backend/types.js';
import type { Disposable } from '../engine/events.js';
import { DEFAULT_BUFFER_LIMIT_MIB } from '../engine/buffer-policy.js';
import type { Logger } from '../util/log.js';
import type { NbdExport } from './nbd/server.js';
import { WrittenBlocks } from './written-blocks.js';

const fsync = promisify(fs.fsync);
const fdatasync = promisify(fs.fdatasync);
const read = promisify(fs.read);

/** The writes of one closed epoch. */
export interface DrainedEpoch {
  epoch: number;
  /** In the order they were issued (and applied to the primary's image). */
  writes: DiskWrite[];
  /**
   * Flushes and FUA writes, as positions in `writes`: a barrier at `i` was completed to the
   * guest only after writes `0 … i-1` were on the primary's stable storage.
   */
  barriers: number[];
  bytes: number;
}

export interface NbdDiskOptions {
  /** The image: a raw file or a block device (an LV). */
  path: string;
  /** NBD export name (default: the image's file name). */
  name?: string;
  log: Logger;
  /** Bytes of writes one epoch may hold before the guest's I/O waits for the next drain (default 16 MiB). */
  epochCapBytes?: number;
  /** Granularity of the written-blocks bitmap (default 4096). */
  blockBytes?: number;
  /** Hold replies from drain() to resumed() (default true; see the file's comment). */
  holdRepliesAtDrain?: boolean;
  /** How the image is made stable (default fsync, fdatasync for FUA); tests watch it. */
  sync?: (fd: number, dataOnly: boolean) => Promise<void>;
}

const realSync = (fd: number, dataOnly: boolean): Promise<void> => (dataOnly ? fdatasync(fd) : fsync(fd));

/** Zeros for NBD_CMD_WRITE_ZEROES: every recorded zero write is a view of this one buffer. */
const ZEROES = Buffer.alloc(1 << 20);

/** A promise and what settles it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

/** The size of an open image: a regular file's length, a block device's from sysfs. */
export function imageSizeBytes(fd: number, file: string): number {
  const st = fs.fstatSync(fd);
  if (st.isFile()) return st.size;
  if (st.isBlockDevice()) {
    const major = Math.floor(st.rdev / 256) & 0xfff;
    const minor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00);
    const sectors = fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim();
    return Number(sectors) * 512;
  }
  throw new Error(`disk image ${file} is neither a regular file nor a block device`);
}

export interface NbdDiskStats {
  writes: number;
  writeBytes: number;
  flushes: number;
  /** Writes that failed on the image (the guest got an I/O error; nothing recorded). */
  failedWrites: number;
  /** Times the epoch cap held the guest's I/O, and for how long in all. */
  capStalls: number;
  capStalledMs: number;
}

export class NbdDisk implements DiskTap, NbdExport {
  readonly name: string;
  readonly sizeBytes: number;
  readonly description: string;
  readonly epochCapBytes: number;
  readonly written: WrittenBlocks;
  readonly stats: NbdDiskStats = { writes: 0, writeBytes: 0, flushes: 0, failedWrites: 0, capStalls: 0, capStalledMs: 0 };
  private fd: number;
  private recording = false;
  private log: DiskWrite[] = [];
  private barriers: number[] = [];
  private bytes = 0;
  private drains = 0;
  private readonly pendingListeners = new Set<() => void>();
  private capped: { promise: Promise<void>; open: () => void; at: number } | null = null;
  /** From `suspending()` to the next drain: the cap holds nothing (the guest must finish its I/O to suspend). */
  private suspendingNow = false;
  private held: { promise: Promise<void>; open: () => void } | null = null;
  private readonly holdReplies: boolean;
  private readonly logger: Logger;
  private readonly sync: (fd: number, dataOnly: boolean) => Promise<void>;

  constructor(o: NbdDiskOptions) {
    this.fd = fs.openSync(o.path, 'r+');
    try {
      this.sizeBytes = imageSizeBytes(this.fd, o.path);
    } catch (err) {
      fs.closeSync(this.fd);
      throw err;
    }
    this.name = o.name ?? path.basename(o.path);
    this.description = `xl-ha replicated disk ${o.path}`;
    this.epochCapBytes = o.epochCapBytes ?? DEFAULT_BUFFER_LIMIT_MIB << 20;
    this.written = new WrittenBlocks(this.sizeBytes, o.blockBytes);
    this.holdReplies = o.holdRepliesAtDrain ?? true;
    this.logger = o.log;
    this.sync = o.sync ?? realSync;
    this.imagePath = o.path;
  }

  readonly imagePath: string;

  // ---- DiskTap -----------------------------------------------------------------------------

  start(): void {
    this.recording = true;
    this.clearLog();
    this.written.reset();
  }

  drain(epoch?: number): DiskWrite[] {
    return this.drainEpoch(epoch).writes;
  }

  /** Closes the open epoch (numbered `epoch`, or by count of drains) and hands over its writes. */
  drainEpoch(epoch?: number): DrainedEpoch {
    this.drains++;
    const e = epoch ?? this.drains;
    const out: DrainedEpoch = { epoch: e, writes: this.log, barriers: this.barriers, bytes: this.bytes };
    this.clearLog();
    this.written.close(e);
    if (this.holdReplies && this.recording && !this.held) this.held = gate();
    this.suspendingNow = false;
    this.uncap();
    return out;
  }

  /** The guest is about to be suspended: requests held at the cap go on, and new ones are taken until the drain. */
  suspending(): void {
    this.suspendingNow = true;
    this.uncap();
  }

  /** The checkpoint's capture is over: held replies go out. */
  resumed(): void {
    const h = this.held;
    this.held = null;
    h?.open();
  }

  /** Checkpoint `epoch` is on the backup: its blocks leave the written-blocks bitmap. */
  committed(epoch: number): void {
    this.written.good(epoch);
  }

  /** Bytes of writes recorded and not yet drained. */
  get pendingBytes(): number {
    return this.bytes;
  }

  stop(): void {
    this.recording = false;
    this.clearLog();
    this.uncap();
    this.resumed();
  }

  onWritePending(listener: () => void): Disposable {
    const own = () => listener();
    this.pendingListeners.add(own);
    return { dispose: () => void this.pendingListeners.delete(own) };
  }

  async readAll(): Promise<{ sizeBytes: number; chunks: AsyncIterable<DiskWrite> }> {
    return { sizeBytes: this.sizeBytes, chunks: this.readRanges([{ offset: 0, length: this.sizeBytes }]) };
  }

  /** The blocks written since the last good checkpoint, as they are now (the resync's disk part). */
  readWritten(): { bytes: number; chunks: AsyncIterable<DiskWrite> } {
    const ranges = [...this.written.ranges()];
    return { bytes: ranges.reduce((n, r) => n + r.length, 0), chunks: this.readRanges(ranges) };
  }

  private async *readRanges(ranges: readonly { offset: number; length: number }[]): AsyncIterable<DiskWrite> {
    const chunk = 1 << 20;
    for (const r of ranges) {
      for (let off = r.offset; off < r.offset + r.length; off += chunk) {
        const data = Buffer.alloc(Math.min(chunk, r.offset + r.length - off));
        let n = 0;
        while (n < data.length) {
          const { bytesRead } = await read(this.fd, data, n, data.length - n, off + n);
          if (bytesRead === 0) break; // a file shorter than its size: zeros
          n += bytesRead;
        }
        yield { offset: off, data };
      }
    }
  }

  private clearLog(): void {
    this.log = [];
    this.barriers = [];
    this.bytes = 0;
  }

  // ---- NbdExport ---------------------------------------------------------------------------

  admit(): Promise<void> | null {
    if (!this.recording || this.suspendingNow || this.bytes < this.epochCapBytes) return null;
    if (!this.capped) {
      const g = gate();
      this.capped = { ...g, at: performance.now() };
      this.stats.capStalls++;
      this.logger.warn('disk writes of this epoch reached the cap: the guest I/O waits for the next checkpoint', { disk: this.name, bytes: this.bytes, capBytes: this.epochCapBytes });
    }
    return this.capped.promise;
  }

  replyGate(): Promise<void> | null {
    return this.held?.promise ?? null;
  }

  private uncap(): void {
    const c = this.capped;
    if (!c) return;
    this.capped = null;
    this.stats.capStalledMs += performance.now() - c.at;
    c.open();
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const data = Buffer.allocUnsafe(length);
    let n = 0;
    while (n < length) {
      const r = fs.readSync(this.fd, data, n, length - n, offset + n);
      if (r === 0) {
        data.fill(0, n); // a sparse file shorter than the export
        break;
      }
      n += r;
    }
    return data;
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.apply(offset, data);
    if (fua) await this.barrier(true);
  }

  async writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    for (let at = 0; at < length; at += ZEROES.length) this.apply(offset + at, ZEROES.subarray(0, Math.min(ZEROES.length, length - at)));
    if (fua) await this.barrier(true);
  }

  /** Advisory, and left undone: the bytes stay as they were, on the primary and the backup alike. */
  async trim(): Promise<void> {}

  async flush(): Promise<void> {
    await this.barrier(false);
  }

  /**
   * Stable storage for every write applied so far. Its place is noted among the epoch's writes
   * when it is issued: the writes it covers are the ones recorded before it, whether or not the
   * epoch is drained before the fsync returns (its reply then waits, as any reply does).
   */
  private async barrier(dataOnly: boolean): Promise<void> {
    this.stats.flushes++;
    if (this.recording && this.barriers.at(-1) !== this.log.length) {
      this.barriers.push(this.log.length);
      // on the wire the barrier goes with the write before it (the backup syncs after that one);
      // one at the start of an epoch covers earlier epochs only, which their commits made stable
      const last = this.log.at(-1);
      if (last) last.flush = true;
    }
    await this.sync(this.fd, dataOnly);
  }

  /** Applies a write to the image at once, then records it (synchronously: issue order is kept). */
  private apply(offset: number, data: Buffer): void {
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done, offset + done);
    } catch (err) {
      this.stats.failedWrites++;
      // the bytes that landed differ from the backup's: a resync must cover them
      if (this.recording) this.written.mark(offset, data.length);
      const e = err as NodeJS.ErrnoException;
      e.message = `${e.message}: writing ${data.length} bytes at offset ${offset} of ${this.imagePath}`;
      throw e;
    }
    this.stats.writes++;
    this.stats.writeBytes += data.length;
    if (!this.recording) return;
    this.log.push({ offset, data });
    this.bytes += data.length;
    this.written.mark(offset, data.length);
    if (this.log.length === 1) for (const l of this.pendingListeners) l();
  }

  /** Stops recording and closes the image. Idempotent. */
  close(): void {
    this.stop();
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
