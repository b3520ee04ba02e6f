/**
 * Reads libxenguest's pipe into buffers we hand out, and passes each read on as a view: nothing
 * is copied, and the bytes of a read are never written over (the next read takes the rest of
 * the same buffer, or a new one). Reads are up to 1 MiB, so a checkpoint comes in two or three
 * reads instead of 27 of libuv's 64 KiB: under emulation, the stream machinery run per read
 * was a large part of the daemon's CPU per checkpoint.
 */
import net from 'node:net';

/** The buffer reads go into, and the least of it left worth another read. */
export const PIPE_READ_BYTES = 1 << 20;
const PIPE_READ_MIN_BYTES = 64 << 10;

export function readPipe(fd: number, onData: (chunk: Buffer) => void): net.Socket {
  let slab = Buffer.allocUnsafeSlow(PIPE_READ_BYTES);
  let used = 0;
  // (@types/node lists `onread` for connect() only; net.Socket's constructor takes it too)
  const opts: net.SocketConstructorOpts & { onread: unknown } = {
    fd,
    readable: true,
    writable: false,
    onread: {
      buffer: () => {
        if (slab.length - used < PIPE_READ_MIN_BYTES) {
          slab = Buffer.allocUnsafeSlow(PIPE_READ_BYTES);
          used = 0;
        }
        return slab.subarray(used);
      },
      callback: (n: number, buf: Uint8Array) => {
        used += n;
        onData(Buffer.from(buf.buffer, buf.byteOffset, n));
      },
    },
  };
  return new net.Socket(opts);
}
