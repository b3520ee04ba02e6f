/**
 * Virtual disk of a simulated domain: a raw image file written synchronously at the guest's
 * request, with a tap that records writes for replication.
 *
 * The host's disk can be filled for fault injection ({@link SimDiskSpace}): writes then fail
 * with ENOSPC, as the image's filesystem would fail them. A backup applies a checkpoint's
 * writes all or none ({@link SimDisk.applyAll}).
 */
import fs from 'node:fs';
import os from 'node:os';
import util from 'node:util';
import type { DiskTap, DiskWrite } from '../types.js';
import type { Disposable } from '../../engine/events.js';
import { WrittenBlocks } from '../../disk/written-blocks.js';

/** An error as node:fs reports a failed system call, naming the file. */
export function fsError(code: 'ENOSPC', syscall: string, path: string): NodeJS.ErrnoException {
  const errno = -os.constants.errno[code];
  const desc = util.getSystemErrorMap().get(errno)?.[1] ?? code;
  return Object.assign(new Error(`${code}: ${desc}, ${syscall} '${path}'`), { errno, code, syscall, path });
}

/** A failed write of node:fs (which names no file) made to name the image. */
function namingPath(err: unknown, path: string): NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && e.code && !e.path) {
    e.path = path;
    e.message = `${e.message} '${path}'`;
  }
  return e;
}

/**
 * The free space of a sim host's disk, where its domains' and replicas' images live: without
 * a limit by default (the files' real filesystem decides). Fault injection (the daemon's
 * `sim-disk` control command, the chaos campaign's `disk-full`) sets how many bytes may still
 * be written; once they are used up, every write fails with ENOSPC after the bytes that still
 * fit (a short write, then the error), and so does creating an image. Every write takes space,
 * overwrites too, as on thin or copy-on-write storage (a sparse or qcow2 image, btrfs, ZFS,
 * LVM thin): a full disk there refuses any write, not only those that extend a file.
 */
export class SimDiskSpace {
  private left: number | null = null;

  /** The disk fills: `leftBytes` more may be written (0: full now). */
  fill(leftBytes = 0): void {
    this.left = Math.max(0, Math.floor(leftBytes));
  }

  /** Room again: no limit. */
  free(): void {
    this.left = null;
  }

  /** Bytes that may still be written; null without a limit. */
  get leftBytes(): number | null {
    return this.left;
  }

  /** Takes room for up to `want` bytes; returns how many fit. */
  take(want: number): number {
    if (this.left === null) return want;
    const n = Math.min(want, this.left);
    this.left -= n;
    return n;
  }
}

const UNLIMITED = new SimDiskSpace();

/** A failed write, and how many of its bytes reached the image before it failed. */
type WriteError = NodeJS.ErrnoException & { written?: number; torn?: boolean };

export class SimDisk implements DiskTap {
  private fd: number;
  private recording = false;
  private log: DiskWrite[] = [];
  private readonly pendingListeners = new Set<() => void>();
  /** Guest writes that failed (the guest's I/O error), and the last one's message. */
  ioErrors = 0;
  lastIoError: string | null = null;
  /** The blocks written since the last checkpoint the backup acknowledged (a resync's disk part). */
  readonly written: WrittenBlocks;

  constructor(readonly path: string, readonly sizeBytes: number, private readonly space: SimDiskSpace = UNLIMITED) {
    const exists = fs.existsSync(path);
    // creating the file takes a block (its directory entry, its inode); growing it does not (sparse)
    if (!exists && space.leftBytes === 0) throw fsError('ENOSPC', 'open', path);
    this.fd = fs.openSync(path, exists ? 'r+' : 'w+');
    if (!exists || fs.fstatSync(this.fd).size < sizeBytes) fs.ftruncateSync(this.fd, sizeBytes);
    this.written = new WrittenBlocks(sizeBytes);
  }

  /** Writes all of `data` at `offset`, or throws (ENOSPC: after the bytes that fit, in `written`). */
  private pwrite(data: Uint8Array, offset: number): void {
    const fit = this.space.take(data.length);
    let done = 0;
    try {
      while (done < fit) done += fs.writeSync(this.fd, data, done, fit - done, offset + done);
    } catch (err) {
      throw Object.assign(namingPath(err, this.path), { written: done });
    }
    if (fit < data.length) throw Object.assign(fsError('ENOSPC', 'write', this.path), { written: done });
  }

  /** The guest's write. When it fails the guest's I/O fails: nothing is recorded for replication. */
  write(offset: number, data: Uint8Array): void {
    if (offset < 0 || offset + data.length > this.sizeBytes) return; // out of range: the I/O fails
    try {
      this.pwrite(data, offset);
    } catch (err) {
      this.ioErrors++;
      this.lastIoError = (err as Error).message;
      // the bytes that reached the image before the failure differ from the backup's copy
      if (this.recording && (err as WriteError).written) this.written.mark(offset, (err as WriteError).written!);
      return;
    }
    if (!this.recording) return;
    this.written.mark(offset, data.length);
    this.log.push({ offset, data: Buffer.from(data.buffer, data.byteOffset, data.length) });
    if (this.log.length === 1) for (const l of this.pendingListeners) l();
  }

  onWritePending(listener: () => void): Disposable {
    const own = () => listener();
    this.pendingListeners.add(own);
    return { dispose: () => void this.pendingListeners.delete(own) };
  }

  start(): void {
    this.recording = true;
    this.log = [];
    this.written.reset();
  }

  /** Epochs drained without a number are counted from 1 (as NbdDisk does). */
  private drains = 0;

  drain(epoch?: number): DiskWrite[] {
    this.drains++;
    const l = this.log;
    this.log = [];
    this.written.close(epoch ?? this.drains);
    return l;
  }

  committed(epoch: number): void {
    this.written.good(epoch);
  }

  stop(): void {
    this.recording = false;
    this.log = [];
    this.written.reset();
  }

  readWritten(): { bytes: number; chunks: AsyncIterable<DiskWrite> } {
    const ranges = [...this.written.ranges()];
    const fd = this.fd;
    const chunk = 1 << 20;
    async function* gen(): AsyncIterable<DiskWrite> {
      for (const r of ranges) {
        for (let off = r.offset; off < r.offset + r.length; off += chunk) {
          const data = Buffer.alloc(Math.min(chunk, r.offset + r.length - off));
          fs.readSync(fd, data, 0, data.length, off);
          yield { offset: off, data };
        }
      }
    }
    return { bytes: ranges.reduce((n, r) => n + r.length, 0), chunks: gen() };
  }

  async readAll(): Promise<{ sizeBytes: number; chunks: AsyncIterable<DiskWrite> }> {
    const fd = this.fd;
    const size = this.sizeBytes;
    const chunk = 1 << 20;
    async function* gen(): AsyncIterable<DiskWrite> {
      for (let off = 0; off < size; off += chunk) {
        const data = Buffer.alloc(Math.min(chunk, size - off));
        fs.readSync(fd, data, 0, data.length, off);
        yield { offset: off, data };
      }
    }
    return { sizeBytes: size, chunks: gen() };
  }

  /**
   * Applies replicated writes (backup side), all or none. The bytes each write replaces are
   * read first; when a write fails (ENOSPC, EIO) the bytes already written are put back, last
   * first, and the error is thrown: the image is as before. When putting them back fails too,
   * the error says the image is torn (`torn: true`): it is then a copy of no checkpoint.
   */
  applyAll(writes: readonly { offset: number; data: Uint8Array }[]): void {
    if (!writes.length) return;
    const before = writes.map((w) => {
      const b = Buffer.alloc(w.data.length);
      let n = 0;
      while (n < b.length) {
        const r = fs.readSync(this.fd, b, n, b.length - n, w.offset + n);
        if (r === 0) break; // beyond the end: zeros
        n += r;
      }
      return b;
    });
    let i = 0;
    try {
      for (; i < writes.length; i++) this.pwrite(writes[i]!.data, writes[i]!.offset);
    } catch (err) {
      const e = err as WriteError;
      const from = (e.written ?? 0) > 0 ? i : i - 1; // the failing write may have landed in part
      try {
        for (let j = from; j >= 0; j--) this.pwrite(before[j]!, writes[j]!.offset);
      } catch (undoErr) {
        e.torn = true;
        e.message = `${e.message}; putting back the ${from + 1} write(s) of this checkpoint already on the image failed too (${(undoErr as Error).message}): the image is torn`;
      }
      throw e;
    }
  }

  sync(): void {
    fs.fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
