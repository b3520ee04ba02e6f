/**
 * Reads libxenguest's pipe in large reads (src/util/slab-reads.ts): a checkpoint arrives in two
 * or three reads instead of 27 of libuv's 64 KiB, each passed on as a view, never copied.
 */
import type net from 'node:net';
import { SLAB_READ_BYTES, slabReadFd } from '../../util/slab-reads.js';

export const PIPE_READ_BYTES = SLAB_READ_BYTES;

export function readPipe(fd: number, onData: (chunk: Buffer) => void): net.Socket {
  return slabReadFd(fd, onData);
}
