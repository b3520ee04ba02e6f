/**
 * Virtual disk of a simulated domain: a raw image file written synchronously at the guest's
 * request, with a tap that records writes for replication.
 */
import fs from 'node:fs';
import type { DiskTap, DiskWrite } from '../types.js';
import type { Disposable } from '../../engine/events.js';

export class SimDisk implements DiskTap {
  private fd: number;
  private recording = false;
  private log: DiskWrite[] = [];
  private readonly pendingListeners = new Set<() => void>();

  constructor(readonly path: string, readonly sizeBytes: number) {
    const exists = fs.existsSync(path);
    this.fd = fs.openSync(path, exists ? 'r+' : 'w+');
    if (!exists || fs.fstatSync(this.fd).size < sizeBytes) fs.ftruncateSync(this.fd, sizeBytes);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset < 0 || offset + data.length > this.sizeBytes) return; // out of range: the I/O fails
    fs.writeSync(this.fd, data, 0, data.length, offset);
    if (!this.recording) return;
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
  }

  drain(): DiskWrite[] {
    const l = this.log;
    this.log = [];
    return l;
  }

  stop(): void {
    this.recording = false;
    this.log = [];
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

  /** Applies replicated writes (backup side). */
  applyAll(writes: DiskWrite[]): void {
    for (const w of writes) fs.writeSync(this.fd, w.data, 0, w.data.length, w.offset);
  }

  sync(): void {
    fs.fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
