/**
 * An NBD server (fixed newstyle handshake, simple replies) in front of xl-ha's disk exports.
 *
 * On Xen, dom0's kernel NBD client connects to it over a unix socket and gives blkback a
 * /dev/nbdN; every guest write then passes through an {@link NbdExport} that xl-ha controls
 * (src/disk/nbd-disk.ts). The protocol subset, the errors and the limits are in
 * docs/disk-replication.md.
 *
 * Each connection is served one request at a time, in the order the client sent them: the
 * order in which writes reach the export is the order they are replied to. A client's misstep
 * gets the NBD error the specification names, or, where no reply can be framed (a bad magic, a
 * truncated header, a write payload too large to skip), the connection is closed with a log
 * line that names what was wrong. Nothing a client sends can make the server throw, and what
 * it buffers for one connection is bounded by the largest payload plus the reader's high-water
 * mark.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from '../../util/log.js';
import {
  commandName,
  NBD_CMD,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_ERR,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO,
  NBD_INIT_MAGIC,
  NBD_OPT,
  NBD_OPTION_HEADER_BYTES,
  NBD_OPTS_MAGIC,
  NBD_REP,
  NBD_REP_MAGIC,
  NBD_REQUEST_BYTES,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  nbdErrorOf,
  optionName,
} from './protocol.js';
import { ShortReadError, SocketReader } from './reader.js';

/**
 * What the server serves: a byte range with the NBD operations. The server checks every
 * request's bounds and lengths before calling; a method that throws fails that request only
 * (with the NBD error of its errno, EIO by default).
 */
export interface NbdExport {
  readonly name: string;
  readonly description?: string;
  readonly sizeBytes: number;
  readonly readOnly?: boolean;
  /** Null, or a promise the server awaits before it reads a client's next request (back-pressure). */
  admit?(): Promise<void> | null;
  /** Null, or a promise the server awaits before it sends a reply (replies held while a checkpoint closes). */
  replyGate?(): Promise<void> | null;
  read(offset: number, length: number): Promise<Buffer>;
  /** `data` is the server's own copy: the export may keep it. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
  /** Advisory: the export may leave the bytes as they are. */
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** Resolves once every write replied to before it is on stable storage. */
  flush(): Promise<void>;
}

export interface NbdServerOptions {
  exports: readonly NbdExport[];
  log: Logger;
  /** Largest READ or WRITE payload (default 32 MiB, advertised as the maximum block size). */
  maxPayloadBytes?: number;
  /** Connections served at once; more are closed as they arrive (default 16). */
  maxConnections?: number;
  /** A client that has not finished the handshake by then is dropped (default 10 s). */
  handshakeTimeoutMs?: number;
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 32 << 20;
/** Option data the server reads at all; past it the option is skipped and refused as too big. */
const MAX_OPTION_BYTES = 64 << 10;
/** Past this the option is not worth skipping: the connection is closed. */
const MAX_SKIPPED_OPTION_BYTES = 1 << 20;
/** The preferred block size advertised (NBD_INFO_BLOCK_SIZE). */
const PREFERRED_BLOCK_BYTES = 4096;

const HANDSHAKE_FLAGS = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;
const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/** The client broke the protocol in a way no reply can answer: the connection closes. */
class HangUp extends Error {}

/** Statistics of a server, for tests and status. */
export interface NbdServerStats {
  connections: number;
  /** Connections closed because the client broke the protocol (each logged). */
  protocolErrors: number;
  /** Requests answered with an NBD error. */
  errorReplies: number;
  requests: number;
}

export class NbdServer {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly maxPayload: number;
  private readonly maxConnections: number;
  private readonly handshakeTimeoutMs: number;
  private closing: Promise<void> | null = null;
  readonly stats: NbdServerStats = { connections: 0, protocolErrors: 0, errorReplies: 0, requests: 0 };

  constructor(private readonly o: NbdServerOptions) {
    this.maxPayload = o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.maxConnections = o.maxConnections ?? 16;
    this.handshakeTimeoutMs = o.handshakeTimeoutMs ?? 10_000;
    const names = new Set<string>();
    for (const e of o.exports) {
      if (names.has(e.name)) throw new Error(`NBD export name ${JSON.stringify(e.name)} is given twice`);
      if (Buffer.byteLength(e.name) > 4096) throw new Error(`NBD export name ${JSON.stringify(e.name.slice(0, 40))}… is longer than 4096 bytes`);
      names.add(e.name);
    }
  }

  /** Connections open now. */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** Listens on a unix socket (what `nbd-client -unix PATH` connects to); a stale socket file is replaced. */
  async listenUnix(path: string): Promise<void> {
    try {
      if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
      else throw new Error(`cannot serve NBD on ${path}: it exists and is not a socket`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await this.listen((s) => s.listen(path));
  }

  /** Listens on TCP (default loopback, a free port); resolves with the port. */
  async listenTcp(port = 0, host = '127.0.0.1'): Promise<number> {
    const s = await this.listen((s) => s.listen(port, host));
    return (s.address() as net.AddressInfo).port;
  }

  private listen(start: (s: net.Server) => void): Promise<net.Server> {
    const s = net.createServer((sock) => this.accept(sock));
    return new Promise((resolve, reject) => {
      s.once('error', reject);
      s.once('listening', () => {
        s.off('error', reject);
        s.on('error', (err) => this.o.log.error('NBD server socket failed', { error: err.message }));
        this.servers.push(s);
        resolve(s);
      });
      start(s);
    });
  }

  private accept(sock: net.Socket): void {
    if (this.closing || this.sockets.size >= this.maxConnections) {
      this.o.log.warn('NBD connection refused', { reason: this.closing ? 'server closing' : `already ${this.sockets.size} connections (the limit)` });
      sock.destroy();
      return;
    }
    this.stats.connections++;
    this.sockets.add(sock);
    sock.setNoDelay?.(true);
    const peer = sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort}` : 'unix';
    const conn = new Connection(sock, peer, this, this.o.log);
    conn
      .serve()
      .catch((err: unknown) => {
        // Connection.serve catches what a client can cause; anything else is a bug, logged, never thrown.
        this.o.log.error('NBD connection failed', { peer, error: (err as Error)?.stack ?? String(err) });
      })
      .finally(() => {
        this.sockets.delete(sock);
        sock.destroy();
      });
  }

  /** @internal */
  findExport(name: string): NbdExport | undefined {
    return this.o.exports.find((e) => e.name === name);
  }

  /** @internal */
  get exportList(): readonly NbdExport[] {
    return this.o.exports;
  }

  /** @internal */
  get limits(): { maxPayload: number; handshakeTimeoutMs: number } {
    return { maxPayload: this.maxPayload, handshakeTimeoutMs: this.handshakeTimeoutMs };
  }

  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const s of this.sockets) s.destroy();
      await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    })();
    return this.closing;
  }
}

function hex(n: number | bigint, digits = 8): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

/** One client, from the handshake to the end of transmission. */
class Connection {
  private readonly reader: SocketReader;
  private noZeroes = false;
  private fixed = false;

  constructor(
    private readonly sock: net.Socket,
    private readonly peer: string,
    private readonly server: NbdServer,
    private readonly log: Logger,
  ) {
    this.reader = new SocketReader(sock);
  }

  async serve(): Promise<void> {
    const timer = setTimeout(() => {
      this.log.warn('NBD client dropped: handshake not finished in time', { peer: this.peer, timeoutMs: this.server.limits.handshakeTimeoutMs });
      this.sock.destroy();
    }, this.server.limits.handshakeTimeoutMs);
    let exp: NbdExport | null;
    try {
      exp = await this.handshake();
    } catch (err) {
      this.hungUp(err, 'handshake');
      return;
    } finally {
      clearTimeout(timer);
    }
    if (!exp) return;
    try {
      await this.transmission(exp);
    } catch (err) {
      this.hungUp(err, 'transmission');
    }
  }

  /** A connection that ends because of the client: logged, never thrown. */
  private hungUp(err: unknown, phase: string): void {
    if (err instanceof ShortReadError) {
      // the client went away; mid-message it is worth a warning
      if (err.got > 0) {
        this.server.stats.protocolErrors++;
        this.log.warn(`NBD client closed the connection in the middle of a message: ${err.message}`, { peer: this.peer, phase });
      } else this.log.info('NBD client closed the connection', { peer: this.peer, phase });
      return;
    }
    if (err instanceof HangUp) {
      this.server.stats.protocolErrors++;
      this.log.warn(`NBD protocol error: ${err.message}; connection closed`, { peer: this.peer, phase });
      return;
    }
    throw err;
  }

  private async send(...parts: Buffer[]): Promise<void> {
    if (this.sock.destroyed) throw new ShortReadError(0, 0, new Error('socket closed while replying'));
    // written one by one: a read's data is not copied into one buffer with its header
    let flowing = true;
    for (const p of parts) if (p.length) flowing = this.sock.write(p);
    if (!flowing) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.sock.off('drain', done);
          this.sock.off('close', done);
          resolve();
        };
        this.sock.on('drain', done);
        this.sock.on('close', done);
      });
    }
  }

  // ---- handshake ---------------------------------------------------------------------------

  /** The export chosen (transmission follows), or null when the client aborted. */
  private async handshake(): Promise<NbdExport | null> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBD_INIT_MAGIC, 0);
    hello.writeBigUInt64BE(NBD_OPTS_MAGIC, 8);
    hello.writeUInt16BE(HANDSHAKE_FLAGS, 16);
    await this.send(hello);
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if (clientFlags & ~KNOWN_CLIENT_FLAGS) throw new HangUp(`client flags ${hex(clientFlags)} set bits the server does not know (it knows ${hex(KNOWN_CLIENT_FLAGS)})`);
    this.fixed = (clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
    this.noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
    for (;;) {
      const h = await this.reader.read(NBD_OPTION_HEADER_BYTES);
      const magic = h.readBigUInt64BE(0);
      if (magic !== NBD_OPTS_MAGIC) throw new HangUp(`option magic ${hex(magic, 16)}, expected ${hex(NBD_OPTS_MAGIC, 16)} (IHAVEOPT)`);
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (!this.fixed && opt !== NBD_OPT.EXPORT_NAME) throw new HangUp(`${optionName(opt)} from a client that did not ask for fixed newstyle (only NBD_OPT_EXPORT_NAME is possible)`);
      if (len > MAX_OPTION_BYTES) {
        if (len > MAX_SKIPPED_OPTION_BYTES || opt === NBD_OPT.EXPORT_NAME) throw new HangUp(`${optionName(opt)} with ${len} bytes of data (at most ${MAX_OPTION_BYTES} are read)`);
        await this.reader.skip(len);
        this.log.warn('NBD option refused: too big', { peer: this.peer, option: optionName(opt), bytes: len, limit: MAX_OPTION_BYTES });
        await this.optReply(opt, NBD_REP.ERR_TOO_BIG, `option data of ${len} bytes is longer than the ${MAX_OPTION_BYTES} this server reads`);
        continue;
      }
      const data = await this.reader.read(len);
      switch (opt) {
        case NBD_OPT.EXPORT_NAME: {
          const name = data.toString('utf8');
          const exp = this.server.findExport(name);
          // the option has no error reply: the specification says to terminate the session
          if (!exp) throw new HangUp(`NBD_OPT_EXPORT_NAME asks for export ${JSON.stringify(name)}, which does not exist (exports: ${this.exportNames()})`);
          const r = Buffer.alloc(this.noZeroes ? 10 : 134);
          r.writeBigUInt64BE(BigInt(exp.sizeBytes), 0);
          r.writeUInt16BE(transmissionFlags(exp), 8);
          await this.send(r);
          this.log.info('NBD client connected', { peer: this.peer, export: name, via: 'NBD_OPT_EXPORT_NAME' });
          return exp;
        }
        case NBD_OPT.ABORT:
          await this.optReply(opt, NBD_REP.ACK);
          this.sock.end();
          this.log.info('NBD client aborted the handshake', { peer: this.peer });
          return null;
        case NBD_OPT.LIST:
          if (len !== 0) {
            await this.optReply(opt, NBD_REP.ERR_INVALID, `NBD_OPT_LIST takes no data, got ${len} bytes`);
            break;
          }
          for (const e of this.server.exportList) {
            const name = Buffer.from(e.name);
            const head = Buffer.alloc(4);
            head.writeUInt32BE(name.length, 0);
            await this.optReply(opt, NBD_REP.SERVER, Buffer.concat([head, name, Buffer.from(e.description ?? '')]));
          }
          await this.optReply(opt, NBD_REP.ACK);
          break;
        case NBD_OPT.INFO:
        case NBD_OPT.GO: {
          const exp = await this.infoOrGo(opt, data);
          if (exp && opt === NBD_OPT.GO) {
            this.log.info('NBD client connected', { peer: this.peer, export: exp.name, via: 'NBD_OPT_GO' });
            return exp;
          }
          break;
        }
        default:
          // NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, meta contexts…: simple replies and no TLS
          await this.optReply(opt, NBD_REP.ERR_UNSUP, `${optionName(opt)} is not supported by this server`);
      }
    }
  }

  private exportNames(): string {
    return this.server.exportList.map((e) => JSON.stringify(e.name)).join(', ') || 'none';
  }

  private async optReply(opt: number, type: number, data: Buffer | string = Buffer.alloc(0)): Promise<void> {
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    const h = Buffer.alloc(20);
    h.writeBigUInt64BE(NBD_REP_MAGIC, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(type, 12);
    h.writeUInt32BE(body.length, 16);
    await this.send(h, body);
  }

  /** NBD_OPT_INFO / NBD_OPT_GO: the export's information, then ACK; null after an error reply. */
  private async infoOrGo(opt: number, data: Buffer): Promise<NbdExport | null> {
    const what = optionName(opt);
    if (data.length < 6) {
      await this.optReply(opt, NBD_REP.ERR_INVALID, `${what} data is ${data.length} bytes, shorter than its 6-byte minimum`);
      return null;
    }
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 6) {
      await this.optReply(opt, NBD_REP.ERR_INVALID, `${what} names an export of ${nameLen} bytes in ${data.length} bytes of data`);
      return null;
    }
    const name = data.subarray(4, 4 + nameLen).toString('utf8');
    const nReq = data.readUInt16BE(4 + nameLen);
    if (data.length !== 6 + nameLen + 2 * nReq) {
      await this.optReply(opt, NBD_REP.ERR_INVALID, `${what} announces ${nReq} information requests but carries ${data.length - 6 - nameLen} bytes of them`);
      return null;
    }
    const wanted = new Set<number>();
    for (let i = 0; i < nReq; i++) wanted.add(data.readUInt16BE(6 + nameLen + 2 * i));
    const exp = this.server.findExport(name);
    if (!exp) {
      await this.optReply(opt, NBD_REP.ERR_UNKNOWN, `export ${JSON.stringify(name)} does not exist (exports: ${this.exportNames()})`);
      return null;
    }
    const info = Buffer.alloc(12);
    info.writeUInt16BE(NBD_INFO.EXPORT, 0);
    info.writeBigUInt64BE(BigInt(exp.sizeBytes), 2);
    info.writeUInt16BE(transmissionFlags(exp), 10);
    await this.optReply(opt, NBD_REP.INFO, info);
    if (wanted.has(NBD_INFO.NAME)) await this.optReply(opt, NBD_REP.INFO, Buffer.concat([u16(NBD_INFO.NAME), Buffer.from(exp.name)]));
    if (wanted.has(NBD_INFO.DESCRIPTION) && exp.description) await this.optReply(opt, NBD_REP.INFO, Buffer.concat([u16(NBD_INFO.DESCRIPTION), Buffer.from(exp.description)]));
    if (wanted.has(NBD_INFO.BLOCK_SIZE)) {
      const b = Buffer.alloc(14);
      b.writeUInt16BE(NBD_INFO.BLOCK_SIZE, 0);
      b.writeUInt32BE(1, 2);
      b.writeUInt32BE(PREFERRED_BLOCK_BYTES, 6);
      b.writeUInt32BE(this.server.limits.maxPayload, 10);
      await this.optReply(opt, NBD_REP.INFO, b);
    }
    await this.optReply(opt, NBD_REP.ACK);
    return exp;
  }

  // ---- transmission ------------------------------------------------------------------------

  private async transmission(exp: NbdExport): Promise<void> {
    const { maxPayload } = this.server.limits;
    const size = BigInt(exp.sizeBytes);
    for (;;) {
      await exp.admit?.();
      const h = await this.reader.read(NBD_REQUEST_BYTES);
      const magic = h.readUInt32BE(0);
      if (magic !== NBD_REQUEST_MAGIC) throw new HangUp(`request magic ${hex(magic)}, expected ${hex(NBD_REQUEST_MAGIC)}`);
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const handle = h.subarray(8, 16);
      const offsetBig = h.readBigUInt64BE(16);
      const length = h.readUInt32BE(24);
      const what = commandName(type);
      const beyond = offsetBig + BigInt(length) > size;
      const offset = beyond ? -1 : Number(offsetBig);
      this.server.stats.requests++;
      const refuse = async (err: keyof typeof NBD_ERR, why: string) => {
        this.server.stats.errorReplies++;
        this.log.warn(`NBD request refused with ${err}: ${why}`, { peer: this.peer, command: what, offset: offsetBig.toString(), length });
        await this.reply(exp, handle, NBD_ERR[err]);
      };
      const range = `${length} bytes at offset ${offsetBig} pass the end of the ${exp.sizeBytes}-byte export`;
      switch (type) {
        case NBD_CMD.READ:
          if (length > maxPayload) await refuse('EINVAL', `a read of ${length} bytes is longer than the maximum payload of ${maxPayload}`);
          else if (beyond) await refuse('EINVAL', range);
          else if (flags & ~NBD_CMD_FLAG_FUA) await refuse('EINVAL', `command flags ${hex(flags, 4)} are not valid for a read`);
          else {
            let data: Buffer;
            try {
              data = await exp.read(offset, length);
            } catch (err) {
              await this.failed(exp, handle, what, err);
              break;
            }
            await this.reply(exp, handle, 0, data);
          }
          break;
        case NBD_CMD.WRITE: {
          // its data follows the header: it must be consumed before the next request
          if (length > maxPayload) throw new HangUp(`${what} of ${length} bytes is longer than the maximum payload of ${maxPayload} (its data is not read)`);
          const data = await this.reader.read(length, true);
          if (exp.readOnly) await refuse('EPERM', 'the export is read-only');
          else if (beyond) await refuse('ENOSPC', range);
          else if (flags & ~NBD_CMD_FLAG_FUA) await refuse('EINVAL', `command flags ${hex(flags, 4)} are not valid for a write`);
          else await this.run(exp, handle, what, () => exp.write(offset, data, (flags & NBD_CMD_FLAG_FUA) !== 0));
          break;
        }
        case NBD_CMD.WRITE_ZEROES:
          if (exp.readOnly) await refuse('EPERM', 'the export is read-only');
          else if (beyond) await refuse('ENOSPC', range);
          else if (flags & ~(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE)) await refuse('EINVAL', `command flags ${hex(flags, 4)} are not valid for write zeroes`);
          else await this.run(exp, handle, what, () => exp.writeZeroes(offset, length, (flags & NBD_CMD_FLAG_FUA) !== 0));
          break;
        case NBD_CMD.TRIM:
          if (exp.readOnly) await refuse('EPERM', 'the export is read-only');
          else if (beyond) await refuse('EINVAL', range);
          else await this.run(exp, handle, what, () => exp.trim(offset, length, (flags & NBD_CMD_FLAG_FUA) !== 0));
          break;
        case NBD_CMD.FLUSH:
          await this.run(exp, handle, what, () => exp.flush());
          break;
        case NBD_CMD.DISC:
          this.log.info('NBD client disconnected', { peer: this.peer, export: exp.name });
          this.sock.end();
          return;
        default:
          await refuse('EINVAL', `${what} is not a command this server knows`);
      }
    }
  }

  private async run(exp: NbdExport, handle: Buffer, what: string, op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (err) {
      await this.failed(exp, handle, what, err);
      return;
    }
    await this.reply(exp, handle, 0);
  }

  private async failed(exp: NbdExport, handle: Buffer, what: string, err: unknown): Promise<void> {
    this.server.stats.errorReplies++;
    const code = nbdErrorOf(err);
    this.log.error(`NBD ${what} failed on the export: ${(err as Error)?.message ?? String(err)}`, { peer: this.peer, export: exp.name, nbdError: code });
    await this.reply(exp, handle, code);
  }

  private async reply(exp: NbdExport, handle: Buffer, error: number, data?: Buffer): Promise<void> {
    await exp.replyGate?.();
    const h = Buffer.alloc(16);
    h.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    handle.copy(h, 8);
    if (data) await this.send(h, data);
    else await this.send(h);
  }
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

function transmissionFlags(exp: NbdExport): number {
  let f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN;
  if (exp.readOnly) f |= NBD_FLAG_READ_ONLY;
  else f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  return f;
}
