/**
 * Exact-length reads from a socket, for a protocol read one message at a time (NBD).
 *
 * The reader holds what arrived and was not yet asked for, but pauses the socket once that
 * passes `highWaterBytes`, so a client that sends faster than the server serves cannot make it
 * buffer more than that beyond the read in progress (whose length the caller bounds).
 */
import type { Socket } from 'node:net';

/** The stream ended (or failed) before `wanted` bytes: `got` of them had arrived. */
export class ShortReadError extends Error {
  readonly code = 'ESHORTREAD';
  constructor(
    readonly wanted: number,
    readonly got: number,
    override readonly cause?: Error,
  ) {
    super(`the connection ended after ${got} of ${wanted} bytes${cause ? ` (${cause.message})` : ''}`);
  }
}

interface Waiter {
  n: number;
  resolve: () => void;
}

export class SocketReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: Waiter | null = null;
  private ended = false;
  private failure: Error | null = null;

  constructor(
    private readonly sock: Socket,
    private readonly highWaterBytes = 1 << 20,
  ) {
    sock.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.have += b.length;
      if (this.have >= this.highWaterBytes && !(this.waiter && this.waiter.n > this.have)) sock.pause();
      this.wake();
    });
    sock.on('end', () => this.finish(null));
    sock.on('close', () => this.finish(null));
    sock.on('error', (err) => this.finish(err));
  }

  /** Bytes received and not yet read. */
  get bufferedBytes(): number {
    return this.have;
  }

  private finish(err: Error | null): void {
    this.ended = true;
    if (err && !this.failure) this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (w && (this.have >= w.n || this.ended)) {
      this.waiter = null;
      w.resolve();
    }
  }

  private async want(n: number): Promise<void> {
    while (this.have < n) {
      if (this.ended) throw new ShortReadError(n, this.have, this.failure ?? undefined);
      // the read in progress may need more than the high-water mark: let it arrive
      this.sock.resume();
      await new Promise<void>((resolve) => (this.waiter = { n, resolve }));
    }
  }

  /**
   * Exactly `n` bytes. With `copy`, always a buffer of its own (the caller keeps it, e.g. a
   * write's data recorded for replication); otherwise it may be a view of a received chunk.
   */
  async read(n: number, copy = false): Promise<Buffer> {
    await this.want(n);
    const first = this.chunks[0];
    let out: Buffer;
    if (first && first.length >= n && !copy) {
      out = first.subarray(0, n);
      this.drop(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length, n - at);
        c.copy(out, at, 0, take);
        at += take;
        this.drop(take);
      }
    }
    if (this.have < this.highWaterBytes) this.sock.resume();
    return out;
  }

  /** Discards exactly `n` bytes without holding more than a chunk of them. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      await this.want(1);
      const take = Math.min(this.chunks[0]!.length, left);
      this.drop(take);
      left -= take;
    }
    if (this.have < this.highWaterBytes) this.sock.resume();
  }

  private drop(n: number): void {
    const c = this.chunks[0]!;
    if (n === c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(n);
    this.have -= n;
  }
}
