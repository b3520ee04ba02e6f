/**
 * What the kernel knows of a TCP connection (getsockopt TCP_INFO, through koffi): whether the
 * peer's kernel is still acknowledging what we send. That separates a peer whose *process* is
 * stalled (waiting for a core, stopped, in a long GC: its kernel still ACKs our heartbeats)
 * from a peer whose host or network is gone (nothing ACKs) or whose process died (the kernel
 * closed the connection). The heartbeat monitor uses it to wait out the first kind instead of
 * declaring a live peer dead (src/transport/heartbeat.ts).
 *
 * Linux only; anywhere it cannot be read (another OS, koffi missing, a socket without a file
 * descriptor) `tcpAcks` returns null and the monitor judges silence alone, as before.
 */
import type net from 'node:net';
import { createRequire } from 'node:module';

/** struct tcp_info (linux/tcp.h): the fields read here and their byte offsets. */
const TCPI_STATE = 0; // u8
const TCPI_UNACKED = 24; // u32
const TCPI_LAST_DATA_SENT = 44; // u32, ms
const TCPI_LAST_ACK_RECV = 56; // u32, ms
/** Enough for every field above (the kernel fills at most what we offer). */
const TCP_INFO_LEN = 104;
const SOL_TCP = 6;
const TCP_INFO = 11;
const TCP_ESTABLISHED = 1;

export interface TcpAcks {
  /** Segments sent and not yet acknowledged. */
  unacked: number;
  /** Milliseconds since we last sent data on it. */
  lastDataSentMs: number;
  /** Milliseconds since the peer's kernel last acknowledged anything. */
  lastAckRecvMs: number;
}

type GetSockOpt = (fd: number, level: number, name: number, buf: Buffer, len: number[]) => number;
let getsockopt: GetSockOpt | null | undefined;

/** Loads getsockopt from libc once; null where that cannot be done (then `tcpAcks` is null). */
export function loadTcpInfo(): GetSockOpt | null {
  if (getsockopt !== undefined) return getsockopt;
  getsockopt = null;
  if (process.platform !== 'linux') return null;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *buf, _Inout_ uint32_t *len)') as GetSockOpt;
  } catch {
    getsockopt = null;
  }
  return getsockopt;
}

/** The file descriptor under a net or TLS socket (TLSWrap carries its TCP handle's fd). */
function fdOf(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/**
 * The ack state of `socket`'s connection, or null when it cannot be read or the connection is
 * not ESTABLISHED (closed, closing: then silence alone decides).
 */
export function tcpAcks(socket: net.Socket | undefined): TcpAcks | null {
  if (!socket || socket.destroyed) return null;
  const f = loadTcpInfo();
  if (!f) return null;
  const fd = fdOf(socket);
  if (fd < 0) return null;
  const buf = Buffer.alloc(TCP_INFO_LEN);
  const len = [TCP_INFO_LEN];
  if (f(fd, SOL_TCP, TCP_INFO, buf, len) !== 0 || len[0]! < TCPI_LAST_ACK_RECV + 4) return null;
  if (buf[TCPI_STATE] !== TCP_ESTABLISHED) return null;
  return {
    unacked: buf.readUInt32LE(TCPI_UNACKED),
    lastDataSentMs: buf.readUInt32LE(TCPI_LAST_DATA_SENT),
    lastAckRecvMs: buf.readUInt32LE(TCPI_LAST_ACK_RECV),
  };
}
