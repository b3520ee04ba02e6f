/**
 * A primary the test writes frame by frame: it speaks the replication link to a real
 * BackupSession (HELLO, Xen stream content, SEAL, heartbeats) so that a test can send what the
 * engine never would (a cut frame, a SEAL that lies, a stream that stops) and read each answer.
 */
import zlib from 'node:zlib';
import { Channel } from '../../src/transport/channel.js';
import type { Frame } from '../../src/transport/framing.js';
import { DOMAIN_TYPE, PAGE_TYPE } from '../../src/transport/xen-records.js';
import { XLHA_REC, encodeHeartbeat, encodeHello, encodeSeal } from '../../src/transport/channel-records.js';
import { XenStreamWriter } from '../../src/transport/xenstream.js';
import { until, type TT } from './engine-fakes.js';

const PAGE = 4096;

export class CraftedPrimary {
  /** Every frame from the backup but heartbeats, in order, until {@link next} takes it. */
  readonly frames: Frame[] = [];
  /** When each heartbeat from the backup arrived (performance.now()). */
  readonly heartbeatsAt: number[] = [];
  closed = false;
  private readonly writer = new XenStreamWriter();
  private headerSent = false;
  private hb: NodeJS.Timeout | null = null;

  private constructor(readonly ch: Channel) {
    ch.onFrame((f) => (f.type === XLHA_REC.HEARTBEAT ? this.heartbeatsAt.push(performance.now()) : this.frames.push(f)));
    ch.onClose(() => (this.closed = true));
  }

  /** Connects to the backup on `port`; with `heartbeatMs` it sends heartbeats at once. Closed at the test's end. */
  static async connect(t: TT, port: number, o: { heartbeatMs?: number } = {}): Promise<CraftedPrimary> {
    const p = new CraftedPrimary(await Channel.connect('127.0.0.1', port));
    if (o.heartbeatMs) p.heartbeats(o.heartbeatMs);
    t.teardown(() => p.close());
    return p;
  }

  /** The next frame from the backup; fails after `timeoutMs`. */
  async next(timeoutMs = 10_000): Promise<Frame> {
    await until('a frame from the backup', () => this.frames.length > 0, timeoutMs);
    return this.frames.shift()!;
  }

  hello(body: Record<string, unknown>): void {
    this.ch.send(XLHA_REC.HELLO, encodeHello(body));
  }

  /** Xen stream bytes of one checkpoint writing `pages` ([pfn, fill byte]); the first also carries the stream's header. */
  checkpointBytes(pages: [number, number][]): Buffer {
    const parts: Buffer[] = [];
    if (!this.headerSent) {
      parts.push(this.writer.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 }));
      this.headerSent = true;
    }
    parts.push(this.writer.pageData(pages.map(([p]) => p), Buffer.concat(pages.map(([, fill]) => Buffer.alloc(PAGE, fill)))));
    parts.push(this.writer.vcpuBasic(0, bootedRegs()), this.writer.checkpoint());
    return Buffer.concat(parts);
  }

  /**
   * A first checkpoint of `entries` page entries over the guest's `pages` pages, in PAGE_DATA
   * records of 1024: one page in 64 carries data, the others are XTAB entries (no data), so
   * that the parse is long (it costs per entry) while the test holds little memory.
   */
  firstCheckpoint(entries: number, pages: number): Buffer[] {
    const parts = [this.writer.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 })];
    this.headerSent = true;
    const data = Buffer.alloc(PAGE, 0x5a);
    for (let i = 0; i < entries; i += 1024) {
      const n = Math.min(1024, entries - i);
      const pfns = Array.from({ length: n }, (_, k) => (i + k) % pages);
      const types = pfns.map((_, k) => ((i + k) % 64 === 0 ? PAGE_TYPE.NOTAB : PAGE_TYPE.XTAB));
      parts.push(...this.writer.pageDataRecords(pfns, () => data, types));
    }
    parts.push(this.writer.vcpuBasic(0, bootedRegs()), this.writer.checkpoint());
    return parts;
  }

  /**
   * Sends `sent` as content frames (waiting on the socket's drain), then a SEAL describing
   * `sealed` (by default the same frames), so that a test can make the SEAL lie.
   */
  async checkpoint(epoch: number, sent: Buffer[], o: { flags?: number; sealed?: Buffer[] } = {}): Promise<void> {
    const sealed = o.sealed ?? sent;
    for (const b of sent) if (!this.ch.send(XLHA_REC.XEN_STREAM, b)) await this.ch.drained();
    let crc = 0;
    for (const b of sealed) crc = zlib.crc32(b, crc);
    this.ch.send(
      XLHA_REC.CHECKPOINT_SEAL,
      encodeSeal({ epoch, flags: o.flags ?? 0, contentBytes: sealed.reduce((s, b) => s + b.length, 0), contentFrames: sealed.length, crc32: crc }),
    );
  }

  heartbeats(ms: number): void {
    this.stopHeartbeats();
    let seq = 0;
    this.hb = setInterval(() => this.ch.send(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: ++seq, sentAtMs: Date.now(), lastEpoch: null })), ms);
  }

  stopHeartbeats(): void {
    if (this.hb) clearInterval(this.hb);
    this.hb = null;
  }

  close(): void {
    this.stopHeartbeats();
    this.ch.dispose();
  }
}

/** vCPU 0's basic registers with the booted flag set. */
function bootedRegs(): Buffer {
  const regs = Buffer.alloc(64);
  regs.writeInt32LE(1, 8 * 4);
  return regs;
}
