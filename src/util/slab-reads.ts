/**
 * Large reads into buffers we hand to libuv (net.Socket's `onread`). Each read is passed on as a
 * view: nothing is copied, and the bytes of a read are never written over (the next read takes
 * the rest of the same buffer, or a new one). Reads are up to {@link SLAB_READ_BYTES}, so a
 * checkpoint of a few MB comes in a handful of reads instead of one per 64 KiB (libuv's
 * default), with none of the stream machinery run per read: under the lab's emulation that
 * machinery was a large part of the daemons' CPU per checkpoint.
 */
import net from 'node:net';

/** The buffer reads go into, and the least of it left worth another read. */
export const SLAB_READ_BYTES = 1 << 20;
const SLAB_READ_MIN_BYTES = 64 << 10;

interface SlabState {
  /** Bytes read into the slab and passed on. */
  delivered: number;
  /** Bytes the consumer gave back ({@link SlabPool.release}). */
  released: number;
  /** No more reads go into it. */
  retired: boolean;
}

/**
 * Read buffers that come back for reuse once every byte read into them was given back.
 *
 * Each fresh 1 MiB buffer is memory outside V8's heap; a relay that allocates one per MiB it
 * reads makes V8 run a full mark-compact every few seconds to free them (the lab's daemons: a
 * 100-290 ms main-thread pause and as much again on V8's helper threads, every 4-10 s, with
 * the heap itself never above 9 MB). With a pool, a steady relay cycles through a handful of
 * buffers and allocates nothing.
 *
 * The consumer calls {@link release} for every byte it was handed, exactly once, when nothing
 * refers to those bytes any longer (e.g. the checkpoint they belong to is acknowledged). A
 * buffer whose bytes are not all given back is never reused: the garbage collector frees it
 * as before. Giving back more bytes than a buffer received marks it never to be reused.
 */
export class SlabPool {
  private readonly free: ArrayBufferLike[] = [];
  private readonly state = new WeakMap<ArrayBufferLike, SlabState>();
  allocated = 0;
  reused = 0;
  /** Buffers given back more bytes than they held (a consumer's bug; they are not reused). */
  overReleased = 0;

  constructor(
    readonly slabBytes = SLAB_READ_BYTES,
    /** Free buffers kept at most; more are left to the garbage collector. */
    readonly keepFree = 16,
  ) {}

  /** A buffer to read into: a free one, or a new one. */
  take(): Buffer {
    const ab = this.free.pop();
    if (ab) {
      this.reused++;
      this.state.set(ab, { delivered: 0, released: 0, retired: false });
      return Buffer.from(ab as ArrayBuffer);
    }
    this.allocated++;
    const slab = Buffer.allocUnsafeSlow(this.slabBytes);
    this.state.set(slab.buffer, { delivered: 0, released: 0, retired: false });
    return slab;
  }

  /** `n` more bytes of `slab` were passed on. */
  delivered(slab: ArrayBufferLike, n: number): void {
    const st = this.state.get(slab);
    if (st) st.delivered += n;
  }

  /** No more reads go into `slab`. */
  retire(slab: ArrayBufferLike): void {
    const st = this.state.get(slab);
    if (!st) return;
    st.retired = true;
    this.maybeFree(slab, st);
  }

  /** The bytes of `view` (read into one of this pool's buffers) are no longer referred to. */
  release(view: Uint8Array): void {
    const st = this.state.get(view.buffer);
    if (!st || !view.length) return;
    st.released += view.length;
    if (st.released > st.delivered) {
      this.overReleased++;
      this.state.delete(view.buffer); // never reused
      return;
    }
    this.maybeFree(view.buffer, st);
  }

  get freeCount(): number {
    return this.free.length;
  }

  private maybeFree(slab: ArrayBufferLike, st: SlabState): void {
    if (!st.retired || st.released !== st.delivered) return;
    this.state.delete(slab);
    if (this.free.length < this.keepFree) this.free.push(slab);
  }
}

/**
 * The `onread` option of net.Socket / net.connect that passes each read to `onData`. With a
 * `pool`, its buffers come from the pool, and the consumer gives every byte back to it.
 */
export function slabReads(onData: (chunk: Buffer) => void, pool?: SlabPool): { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => void } {
  const fresh = () => (pool ? pool.take() : Buffer.allocUnsafeSlow(SLAB_READ_BYTES));
  let slab = fresh();
  let used = 0;
  return {
    buffer: () => {
      if (slab.length - used < SLAB_READ_MIN_BYTES) {
        pool?.retire(slab.buffer);
        slab = fresh();
        used = 0;
      }
      return slab.subarray(used);
    },
    callback: (n: number, buf: Uint8Array) => {
      used += n;
      if (n > 0) pool?.delivered(buf.buffer, n);
      onData(Buffer.from(buf.buffer, buf.byteOffset, n));
    },
  };
}

/** net.Socket's constructor takes `onread` and `handle` too (@types/node lists them for connect() only). */
type SocketOptsWithOnread = net.SocketConstructorOpts & { onread: unknown; handle?: unknown };

/** A socket reading the fd `fd` (a pipe: readable only) in large reads. */
export function slabReadFd(fd: number, onData: (chunk: Buffer) => void, pool?: SlabPool): net.Socket {
  const opts: SocketOptsWithOnread = { fd, readable: true, writable: false, onread: slabReads(onData, pool) };
  return new net.Socket(opts);
}

/**
 * The connection `accepted` (from a server created with `pauseOnConnect`, so nothing was read
 * yet) as a socket that reads in large reads: net.Server cannot give its connections `onread`,
 * so the connection's handle moves to a new socket, and the old one, which no longer owns it,
 * is destroyed (the server's connection count goes down with it). Returns null when this
 * Node keeps no `_handle` on its sockets; the caller then reads `accepted` as it is.
 */
export function slabReadAccepted(accepted: net.Socket, onData: (chunk: Buffer) => void, pool?: SlabPool): net.Socket | null {
  const holder = accepted as unknown as { _handle?: unknown };
  const handle = holder._handle;
  if (!handle || typeof handle !== 'object' || !('readStart' in handle)) return null;
  holder._handle = null;
  const opts: SocketOptsWithOnread = { handle, readable: true, writable: true, onread: slabReads(onData, pool) };
  const sock = new net.Socket(opts);
  accepted.destroy();
  return sock;
}
