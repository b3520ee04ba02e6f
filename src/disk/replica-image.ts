/**
 * The backup's copy of a replicated disk: an image (a regular file, or a block device such as an
 * LV) whose path this host's own policy gives, of the size the primary's disk has. It takes a
 * checkpoint's DISK_WRITES all or none at commit: the bytes each write replaces are read first,
 * the writes go in their recorded order, then `fdatasync`; a write that fails puts the replaced
 * bytes back (last first), so the image is the previous checkpoint's. Only if that fails too is
 * the image torn (`torn`): a copy of no checkpoint, which must never be run.
 *
 * The first checkpoint carries the whole disk (the primary's `readAll`), so a new image starts
 * as zeros and is filled by it; nothing of a checkpoint that is rejected reaches the image,
 * because the backup calls `applyAll` only for a checkpoint whose seal verified.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { DiskWrite } from '../backend/types.js';
import { imageSizeBytes } from './nbd-disk.js';

const fdatasync = promisify(fs.fdatasync);

/** A failed apply; `torn` when the image could not be put back either. */
export type ImageApplyError = NodeJS.ErrnoException & { torn?: boolean };

/** How the image is written and made stable (tests inject failures). */
export interface ImageIo {
  write(fd: number, data: Uint8Array, offset: number): void;
  sync(fd: number): Promise<void>;
}

const realIo: ImageIo = {
  write(fd, data, offset) {
    let n = 0;
    while (n < data.length) n += fs.writeSync(fd, data, n, data.length - n, offset + n);
  },
  sync: (fd) => fdatasync(fd),
};

export class ReplicaImage {
  private fd: number;
  /** Why the image is a copy of no checkpoint, or null. */
  torn: string | null = null;
  /** Checkpoints applied, and bytes written by them. */
  applied = 0;
  bytesWritten = 0;
  /** Syncs at the guest's barriers inside a checkpoint (besides the one after each). */
  barrierSyncs = 0;

  private constructor(
    readonly path: string,
    readonly sizeBytes: number,
    fd: number,
    private readonly io: ImageIo,
  ) {
    this.fd = fd;
  }

  /**
   * Opens (a block device, or an existing file) or creates (a file) the image at `file` for a disk of
   * `sizeBytes`. A regular file is made exactly that size (sparse); a block device must be at least
   * that size. Errors name the path and what is wrong.
   */
  static open(file: string, sizeBytes: number, io: ImageIo = realIo): ReplicaImage {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new Error(`replica disk ${file}: size ${sizeBytes} is not a positive number of bytes`);
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      e.message = `cannot open the replica disk ${file}: ${e.message}`;
      throw e;
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.isFile()) {
        if (st.size !== sizeBytes) fs.ftruncateSync(fd, sizeBytes);
      } else if (st.isBlockDevice()) {
        const have = imageSizeBytes(fd, file);
        if (have < sizeBytes) throw new Error(`replica disk ${file} is a block device of ${have} bytes, smaller than the primary's disk of ${sizeBytes}`);
      } else {
        throw new Error(`replica disk ${file} is neither a regular file nor a block device`);
      }
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return new ReplicaImage(file, sizeBytes, fd, io);
  }

  /** Throws, naming the write, when one of `writes` lies outside the disk (before anything is written). */
  check(writes: readonly DiskWrite[], what: string): void {
    for (const w of writes) {
      if (!Number.isSafeInteger(w.offset) || w.offset < 0 || w.offset + w.data.length > this.sizeBytes) {
        throw new Error(`${what}: disk write at ${w.offset}+${w.data.length} is beyond the ${this.sizeBytes}-byte disk`);
      }
    }
  }

  private pread(b: Buffer, offset: number): void {
    let n = 0;
    while (n < b.length) {
      const r = fs.readSync(this.fd, b, n, b.length - n, offset + n);
      if (r === 0) break;
      n += r;
    }
  }

  private pwrite(data: Uint8Array, offset: number): void {
    this.io.write(this.fd, data, offset);
  }

  /**
   * Applies one checkpoint's writes, in order, all or none, then makes them stable (fdatasync):
   * once this resolves, the image is that checkpoint's disk, on stable storage. A write marked
   * `flush` (the guest flushed after it) is followed by a sync before the next write, so a crash
   * of this host in the middle leaves a state the guest's own crash could have left: a prefix of
   * its writes that honours every flush it waited for.
   */
  async applyAll(writes: readonly DiskWrite[], epoch: number): Promise<void> {
    if (this.torn) throw new Error(`replica disk ${this.path} is torn (${this.torn}): it takes no more checkpoints`);
    if (this.fd < 0) throw new Error(`replica disk ${this.path} is closed`);
    this.check(writes, `checkpoint ${epoch}`);
    if (!writes.length) return;
    const before = writes.map((w) => {
      const b = Buffer.alloc(w.data.length);
      this.pread(b, w.offset);
      return b;
    });
    let i = 0;
    try {
      for (; i < writes.length; i++) {
        this.pwrite(writes[i]!.data, writes[i]!.offset);
        // the guest's barrier: what it flushed is stable before anything it wrote after
        if (writes[i]!.flush && i < writes.length - 1) {
          await this.io.sync(this.fd);
          this.barrierSyncs++;
        }
      }
      await this.io.sync(this.fd);
    } catch (err) {
      const e = err as ImageApplyError;
      const last = Math.min(i, writes.length - 1); // the failing write may have landed in part
      try {
        for (let j = last; j >= 0; j--) this.pwrite(before[j]!, writes[j]!.offset);
        await this.io.sync(this.fd);
      } catch (undoErr) {
        e.torn = true;
        this.torn = `checkpoint ${epoch}: ${e.message}; putting back failed too: ${(undoErr as Error).message}`;
      }
      e.message = `writing checkpoint ${epoch}'s disk writes to ${this.path}: ${e.message}${e.torn ? ' (the image is torn)' : ' (the image is as before)'}`;
      if (!e.path) e.path = this.path;
      throw e;
    }
    this.applied++;
    for (const w of writes) this.bytesWritten += w.data.length;
  }

  /** Reads `length` bytes at `offset` (tests, diagnostics). */
  read(offset: number, length: number): Buffer {
    const b = Buffer.alloc(length);
    this.pread(b, offset);
    return b;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
