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

/** The `onread` option of net.Socket / net.connect that passes each read to `onData`. */
export function slabReads(onData: (chunk: Buffer) => void): { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => void } {
  let slab = Buffer.allocUnsafeSlow(SLAB_READ_BYTES);
  let used = 0;
  return {
    buffer: () => {
      if (slab.length - used < SLAB_READ_MIN_BYTES) {
        slab = Buffer.allocUnsafeSlow(SLAB_READ_BYTES);
        used = 0;
      }
      return slab.subarray(used);
    },
    callback: (n: number, buf: Uint8Array) => {
      used += n;
      onData(Buffer.from(buf.buffer, buf.byteOffset, n));
    },
  };
}

/** net.Socket's constructor takes `onread` and `handle` too (@types/node lists them for connect() only). */
type SocketOptsWithOnread = net.SocketConstructorOpts & { onread: unknown; handle?: unknown };

/** A socket reading the fd `fd` (a pipe: readable only) in large reads. */
export function slabReadFd(fd: number, onData: (chunk: Buffer) => void): net.Socket {
  const opts: SocketOptsWithOnread = { fd, readable: true, writable: false, onread: slabReads(onData) };
  return new net.Socket(opts);
}

/**
 * The connection `accepted` (from a server created with `pauseOnConnect`, so nothing was read
 * yet) as a socket that reads in large reads: net.Server cannot give its connections `onread`,
 * so the connection's handle moves to a new socket, and the old one, which no longer owns it,
 * is destroyed (the server's connection count goes down with it). Returns null when this
 * Node keeps no `_handle` on its sockets; the caller then reads `accepted` as it is.
 */
export function slabReadAccepted(accepted: net.Socket, onData: (chunk: Buffer) => void): net.Socket | null {
  const holder = accepted as unknown as { _handle?: unknown };
  const handle = holder._handle;
  if (!handle || typeof handle !== 'object' || !('readStart' in handle)) return null;
  holder._handle = null;
  const opts: SocketOptsWithOnread = { handle, readable: true, writable: true, onread: slabReads(onData) };
  const sock = new net.Socket(opts);
  accepted.destroy();
  return sock;
}
