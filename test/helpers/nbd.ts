/**
 * NBD test helpers: a server over an image in a temporary directory, a raw client that speaks
 * the protocol byte by byte (so tests can also break it), and whether qemu-utils are here.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { NbdDisk, type NbdDiskOptions } from '../../src/disk/nbd-disk.js';
import { NbdServer, type NbdServerOptions } from '../../src/disk/nbd/server.js';
import { NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_OPT, NBD_OPTS_MAGIC, NBD_REQUEST_MAGIC } from '../../src/disk/nbd/protocol.js';
import { SocketReader } from '../../src/disk/nbd/reader.js';
import { recordingLogger, type LogLine } from './log.js';

/** Why a tool cannot be used here, or false when it can (a tap `skip` value). */
export function missingTool(cmd: string, pkg: string): string | false {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    return `${cmd} is not installed here (apt-get install -y --no-install-recommends ${pkg})`;
  }
}

export interface Served {
  dir: string;
  image: string;
  socket: string;
  disk: NbdDisk;
  server: NbdServer;
  lines: LogLine[];
  /** nbd+unix URI of the export, for qemu-io / qemu-img / nbdinfo. */
  uri: string;
  close(): Promise<void>;
}

/** An image of `sizeBytes` (filled by `fill`, zeros by default) served on a unix socket as export `vm`. */
export async function serveImage(
  sizeBytes: number,
  o: { fill?: Buffer; disk?: Partial<NbdDiskOptions>; server?: Partial<NbdServerOptions> } = {},
): Promise<Served> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-nbd-'));
  const image = path.join(dir, 'vm.img');
  fs.writeFileSync(image, o.fill ?? Buffer.alloc(sizeBytes));
  const { log, lines } = recordingLogger();
  const disk = new NbdDisk({ path: image, name: 'vm', log, ...o.disk });
  const server = new NbdServer({ exports: [disk], log, ...o.server });
  const socket = path.join(dir, 'nbd.sock');
  await server.listenUnix(socket);
  return {
    dir,
    image,
    socket,
    disk,
    server,
    lines,
    uri: `nbd+unix:///vm?socket=${socket}`,
    async close() {
      await server.close();
      disk.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface SimpleReply {
  error: number;
  handle: bigint;
  data?: Buffer;
}

/** A client that does the handshake itself and sends requests as told. */
export class RawClient {
  readonly reader: SocketReader;
  private nextHandle = 1n;
  closed: Promise<void>;

  private constructor(readonly sock: net.Socket) {
    this.reader = new SocketReader(sock);
    this.closed = new Promise((r) => sock.on('close', () => r()));
  }

  static async connect(socket: string): Promise<RawClient> {
    const sock = net.connect(socket);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return new RawClient(sock);
  }

  /** Reads the server's greeting; returns its handshake flags. */
  async greeting(): Promise<number> {
    const g = await this.reader.read(18);
    if (g.readBigUInt64BE(0) !== 0x4e42444d41474943n || g.readBigUInt64BE(8) !== NBD_OPTS_MAGIC) throw new Error('not an NBD newstyle greeting');
    return g.readUInt16BE(16);
  }

  clientFlags(flags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags >>> 0, 0);
    this.sock.write(b);
  }

  option(opt: number, data: Buffer = Buffer.alloc(0), magic = NBD_OPTS_MAGIC, length = data.length): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(length >>> 0, 12);
    this.sock.write(Buffer.concat([h, data]));
  }

  /** One option reply: the option it answers, its type and data. */
  async optionReply(): Promise<{ opt: number; type: number; data: Buffer }> {
    const h = await this.reader.read(20);
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { opt: h.readUInt32BE(8), type: h.readUInt32BE(12), data: len ? await this.reader.read(len, true) : Buffer.alloc(0) };
  }

  /** Option replies up to and including the final one (ACK or an error). */
  async optionReplies(): Promise<{ opt: number; type: number; data: Buffer }[]> {
    const all = [];
    for (;;) {
      const r = await this.optionReply();
      all.push(r);
      if (r.type === 1 || r.type & 0x80000000) return all;
    }
  }

  /** The whole handshake through NBD_OPT_GO for `name`; returns the export's size and transmission flags. */
  async go(name = 'vm'): Promise<{ sizeBytes: number; flags: number }> {
    await this.greeting();
    this.clientFlags();
    const n = Buffer.from(name);
    const d = Buffer.alloc(4 + n.length + 2);
    d.writeUInt32BE(n.length, 0);
    n.copy(d, 4);
    this.option(NBD_OPT.GO, d);
    const replies = await this.optionReplies();
    const last = replies.at(-1)!;
    if (last.type !== 1) throw new Error(`NBD_OPT_GO refused: type ${last.type.toString(16)} ${last.data.toString()}`);
    const info = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
    return { sizeBytes: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10) };
  }

  /** Sends a request; returns its handle. */
  request(type: number, offset: bigint | number, length: number, o: { flags?: number; data?: Buffer; magic?: number } = {}): bigint {
    const h = Buffer.alloc(28);
    const handle = this.nextHandle++;
    h.writeUInt32BE(o.magic ?? NBD_REQUEST_MAGIC, 0);
    h.writeUInt16BE(o.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length >>> 0, 24);
    this.sock.write(o.data ? Buffer.concat([h, o.data]) : h);
    return handle;
  }

  /** A simple reply; `dataBytes`: the payload that follows it when it succeeded (a read). */
  async reply(dataBytes = 0): Promise<SimpleReply> {
    const h = await this.reader.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error(`bad reply magic ${h.readUInt32BE(0).toString(16)}`);
    const error = h.readUInt32BE(4);
    const handle = h.readBigUInt64BE(8);
    if (error || !dataBytes) return { error, handle };
    return { error, handle, data: await this.reader.read(dataBytes, true) };
  }

  /** A request and its reply. */
  async call(type: number, offset: bigint | number, length: number, o: { flags?: number; data?: Buffer } = {}): Promise<SimpleReply> {
    const handle = this.request(type, offset, length, o);
    const r = await this.reply(type === 0 ? length : 0);
    if (r.handle !== handle) throw new Error(`reply for handle ${r.handle}, expected ${handle}`);
    return r;
  }

  end(): void {
    this.sock.destroy();
  }
}

/** Resolves true if `p` settles within `ms`, false otherwise. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true, () => true), t]);
  } finally {
    clearTimeout(timer);
  }
}
