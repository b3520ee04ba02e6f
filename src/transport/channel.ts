/**
 * The replication channel: one TCP connection between the primary's and the backup's daemon,
 * carrying xl-ha channel frames (docs/protocol.md). Content frames (Xen stream bytes, disk
 * writes) are hashed as they are sent or received; a SEAL closes a checkpoint with the byte
 * count, frame count and CRC-32 of its content, so the backup can tell a complete checkpoint
 * from a torn or corrupt one.
 *
 * Owns its socket: `dispose()` destroys it. `onClose` fires once, with the error if any.
 */
import net from 'node:net';
import { FrameReader } from './reader.js';
import { SlabPool, slabReadAccepted } from '../util/slab-reads.js';
import { encodeFrameHeader, paddedLength, type Frame } from './framing.js';
import { CheckpointDigest } from './digest.js';
import { TimeSlicer } from '../util/slicer.js';

const PAD = Buffer.alloc(8);
const EMPTY = Buffer.alloc(0);

/**
 * A content body above this goes out in slices of it, the event loop turning between them
 * each time a slice of time (src/util/slicer.ts) is spent, or when the socket asks to drain.
 * - TLS encrypts each write synchronously: a 32 MiB frame written at once kept the loop (and
 *   the heartbeats) away for 79 ms here, and for seconds under the lab's emulation, where the
 *   backup declared the primary dead.
 * - A plain socket writes synchronously as much as the kernel takes, and on loopback that is
 *   as much as the reader's window: with 8 domains on the sim one writev of the buffered frames
 *   held the primary's loop for 264-387 ms on a core (daemon.loop and a CPU profile).
 */
export const WRITE_SLICE = 256 << 10;

export class Channel {
  private readonly reader: FrameReader;
  /** Digest of the content sent since the last seal. */
  readonly digest = new CheckpointDigest();
  private frameListener: ((f: Frame) => void) | null = null;
  private closeListeners: ((err?: Error) => void)[] = [];
  private closed = false;
  private closeError: Error | undefined;
  /** A sliced frame is being written: other frames wait, in order, until it is whole. */
  private slicing = false;
  private readonly waiting: (() => void)[] = [];
  bytesSent = 0;
  bytesReceived = 0;
  /** Whether reads go into large buffers of our own (see {@link Channel.accept}). */
  readonly largeReads: boolean;
  /**
   * Where those buffers come from, when they do: the reader gives back what it is done with
   * (headers, padding, control frames); whoever holds a content frame's body gives it back
   * with `pool.release` once nothing refers to it, or leaves it to the garbage collector.
   */
  readonly pool: SlabPool | null;

  /**
   * A channel over `socket`, read through its 'data' events. (`largeReads` is for
   * Channel.accept alone: its socket was made with `onread`, which hands each read to onChunk.)
   */
  constructor(readonly socket: net.Socket, opts: { maxFrameBytes?: number; largeReads?: boolean; pool?: SlabPool } = {}) {
    this.pool = opts.pool ?? null;
    const pool = this.pool;
    this.reader = new FrameReader({
      ...(opts.maxFrameBytes !== undefined ? { maxFrameBytes: opts.maxFrameBytes } : {}),
      ...(pool ? { release: (b: Buffer) => pool.release(b) } : {}),
    });
    this.largeReads = opts.largeReads ?? false;
    socket.setNoDelay(true);
    if (!this.largeReads) socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(this.closeError ?? new Error('connection closed by peer')));
  }

  /**
   * A channel over a connection accepted by a server created with `pauseOnConnect`: its reads
   * go into 1 MiB buffers of our own (src/util/slab-reads.ts), so a checkpoint of a few MB is
   * a handful of reads rather than one per 64 KiB, each through the stream machinery. Falls
   * back to the socket's 'data' events when that cannot be done (see `largeReads`).
   */
  static accept(accepted: net.Socket, opts: { maxFrameBytes?: number } = {}): Channel {
    let channel: Channel | null = null;
    const pool = new SlabPool();
    const sock = slabReadAccepted(accepted, (chunk) => channel!.onChunk(chunk), pool); // reads come later, from libuv
    if (!sock) {
      accepted.resume();
      return new Channel(accepted, opts);
    }
    channel = new Channel(sock, { ...opts, largeReads: true, pool });
    return channel;
  }

  /** One read from the socket: the frames it completes go to the listener, in order. */
  private onChunk(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const f of frames) {
      if (this.closed) return;
      this.frameListener?.(f);
    }
  }

  static async connect(host: string, port: number, timeoutMs = 5000): Promise<Channel> {
    return new Channel(await connectTcp({ host, port }, timeoutMs));
  }


  get isClosed(): boolean {
    return this.closed;
  }

  get error(): Error | undefined {
    return this.closeError;
  }

  onFrame(listener: (f: Frame) => void): void {
    this.frameListener = listener;
  }

  onClose(listener: (err?: Error) => void): void {
    if (this.closed) queueMicrotask(() => listener(this.closeError));
    else this.closeListeners.push(listener);
  }

  /**
   * Writes one frame whose body is `body`, or the concatenation of `body` parts (written
   * vectored, not copied); returns false when the socket's buffer is full. `onWritten` runs
   * once the socket is done with the frame's bytes (written to the kernel, or discarded when
   * the socket failed), not when the channel was already closed.
   */
  send(type: number, body: Uint8Array | readonly Uint8Array[] = PAD.subarray(0, 0), onWritten?: () => void): boolean {
    if (this.closed) return false;
    if (this.slicing) {
      this.waiting.push(() => void this.send(type, body, onWritten));
      return true;
    }
    return this.writeFrame(type, body, onWritten);
  }

  /** One whole frame into the socket, now. */
  private writeFrame(type: number, body: Uint8Array | readonly Uint8Array[], onWritten?: () => void): boolean {
    const parts = body instanceof Uint8Array ? [body] : body;
    let length = 0;
    for (const p of parts) length += p.length;
    const hdr = encodeFrameHeader(type >>> 0, length);
    const pad = paddedLength(length) - length;
    this.socket.cork();
    let ok = this.socket.write(hdr);
    for (const p of parts) if (p.length) ok = this.socket.write(p);
    if (pad) ok = this.socket.write(PAD.subarray(0, pad));
    // a stream calls its write callbacks in order, each once its chunk (and all before it) is
    // written or dropped: an empty write after the frame says when all of it is
    if (onWritten) this.socket.write(EMPTY, () => onWritten());
    this.socket.uncork();
    this.bytesSent += 8 + length + pad;
    return ok;
  }

  /** Sends a content frame of the current checkpoint, waiting for the socket to drain. */
  async sendContent(type: number, body: Uint8Array | readonly Uint8Array[], onWritten?: () => void): Promise<void> {
    if (this.closed) throw this.closeError ?? new Error('channel closed');
    this.digest.update(body);
    const parts = body instanceof Uint8Array ? [body] : body;
    let length = 0;
    for (const p of parts) length += p.length;
    if (length <= WRITE_SLICE || this.slicing) {
      if (!this.send(type, body, onWritten)) await this.drained();
      return;
    }
    this.slicing = true;
    try {
      this.socket.write(encodeFrameHeader(type >>> 0, length));
      const slicer = new TimeSlicer();
      for (const p of parts) {
        for (let o = 0; o < p.length; o += WRITE_SLICE) {
          this.socket.write(p.subarray(o, o + WRITE_SLICE));
          // the socket's own drain: a farewell meanwhile closes the channel, not the frame,
          // which is finished so that the farewell after it reads as a frame
          if (this.socket.writableNeedDrain) await this.socketDrained();
          else await slicer.maybeYield();
        }
      }
      const pad = paddedLength(length) - length;
      if (pad) this.socket.write(PAD.subarray(0, pad));
      if (onWritten) this.socket.write(EMPTY, () => onWritten());
      this.bytesSent += 8 + length + pad;
    } finally {
      this.slicing = false;
      const f = this.pendingFarewell;
      this.pendingFarewell = null;
      if (f) this.writeFarewell(f.type, f.body, f.lingerMs);
      else for (const w of this.waiting.splice(0)) w();
    }
  }

  /** Resolves at the socket's next drain; rejects when the socket closes first. */
  private socketDrained(): Promise<void> {
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    if (this.socket.destroyed) return Promise.reject(this.closeError ?? new Error('channel closed'));
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = () => {
        cleanup();
        reject(this.closeError ?? new Error('channel closed'));
      };
      const cleanup = () => {
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
      };
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  drained(): Promise<void> {
    if (this.closed) return Promise.reject(this.closeError ?? new Error('channel closed'));
    return this.socketDrained();
  }

  /** Ends the channel with an error (protocol violation, timeout) or cleanly. */
  fail(err?: Error): void {
    if (this.closed) return;
    this.socket.destroy();
    this.markClosed(err);
  }

  /**
   * Sends one last frame and closes without waiting for it to leave. A peer that is only
   * stalled (stopped, swapping, starved) finds the frame in its socket when it wakes; the
   * socket is destroyed after `lingerMs` if it has not drained by then.
   */
  farewell(type: number, body: Buffer, err: Error, lingerMs = 60_000): void {
    if (this.closed) return;
    if (this.slicing) {
      // a large frame is half written: the farewell goes right after it (cut short, the peer
      // would read the farewell as the frame's data); frames queued behind it are not sent
      this.pendingFarewell = { type, body, lingerMs };
      this.waiting.length = 0;
    } else this.writeFarewell(type, body, lingerMs);
    this.markClosed(err);
  }

  private pendingFarewell: { type: number; body: Buffer; lingerMs: number } | null = null;

  private writeFarewell(type: number, body: Buffer, lingerMs: number): void {
    if (this.socket.destroyed) return;
    this.writeFrame(type, body);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), lingerMs).unref();
  }

  /** The channel is closed (however the socket goes): tell the listeners, once. */
  private markClosed(err?: Error): void {
    this.closed = true;
    this.closeError = err;
    const ls = this.closeListeners;
    this.closeListeners = [];
    for (const l of ls) l(err);
  }

  /** Flushes what was written, then closes. */
  async end(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      this.socket.end(() => resolve());
      setTimeout(resolve, 1000).unref();
    });
    this.fail(new Error('channel closed locally'));
  }

  dispose(): void {
    this.fail(new Error('channel disposed'));
  }
}

/** A TCP connection to `to`, or an error naming the address (refused, or no answer within `timeoutMs`). */
export function connectTcp(to: { host: string; port: number }, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: to.host, port: to.port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`connecting to ${to.host}:${to.port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to ${to.host}:${to.port}: ${err.message}`));
    });
  });
}
