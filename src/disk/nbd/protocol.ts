/**
 * NBD wire constants: the subset of the protocol xl-ha's server speaks (docs/disk-replication.md
 * lists it). Values from the NBD protocol specification (NetworkBlockDevice/nbd doc/proto.md);
 * every number on the wire is big-endian.
 */

/** 'NBDMAGIC', the first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': the server's second magic, and the magic of every option the client sends. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Magic of the server's option replies (fixed newstyle). */
export const NBD_REP_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

/** Handshake flags (server, 16 bits). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flags (32 bits): any other bit set makes the server drop the connection. */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags (16 bits). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

export const NBD_OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;

export const NBD_REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  /** Error replies have bit 31 set. */
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_TOO_BIG: 0x80000009,
} as const;

/** Information types of NBD_REP_INFO (and of the requests in NBD_OPT_INFO/GO). */
export const NBD_INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const NBD_CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  WRITE_ZEROES: 6,
} as const;

/** Command flags (16 bits). */
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;

/** Error values of simple replies (the spec's subset of errno, Linux numbering). */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrName = keyof typeof NBD_ERR;

/** The request header: magic, flags, type, handle, offset, length. */
export const NBD_REQUEST_BYTES = 28;
/** The option header: magic, option, length. */
export const NBD_OPTION_HEADER_BYTES = 16;

const CMD_NAMES = new Map<number, string>(Object.entries(NBD_CMD).map(([k, v]) => [v, `NBD_CMD_${k}`]));
const OPT_NAMES = new Map<number, string>(Object.entries(NBD_OPT).map(([k, v]) => [v, `NBD_OPT_${k}`]));

/** `NBD_CMD_WRITE`, or `command 9` for one the server does not know (log lines). */
export function commandName(type: number): string {
  return CMD_NAMES.get(type) ?? `command ${type}`;
}

export function optionName(opt: number): string {
  return OPT_NAMES.get(opt) ?? `option ${opt}`;
}

/** The NBD error for a failed system call on the image (errno code as node:fs reports it). */
export function nbdErrorOf(err: unknown): number {
  switch ((err as NodeJS.ErrnoException | null)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return NBD_ERR.ENOSPC;
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return NBD_ERR.EPERM;
    case 'ENOMEM':
      return NBD_ERR.ENOMEM;
    case 'EINVAL':
      return NBD_ERR.EINVAL;
    default:
      return NBD_ERR.EIO;
  }
}
