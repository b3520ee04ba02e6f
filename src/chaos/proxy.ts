/**
 * A TCP forwarder that injects network faults between two processes:
 *   - a partition (`cut`: connections die, new ones are refused; `heal` ends it);
 *   - latency (`delayMs`, each way);
 *   - corruption (`corrupt`: one byte in every `corrupt` KiB flipped, client to server);
 *   - loss (`loss`: each chunk read, either way, dropped with that probability);
 *   - reordering (`reorder`: with that probability a chunk is held and sent after the next one,
 *     either way; a held chunk with nothing after it goes after 50 ms);
 *   - truncation (`truncate`: with that probability a chunk, client to server, is cut: a part
 *     of it is sent, then the connection is closed mid-record).
 * The unit is a chunk as a read gives it, not a packet: TCP retransmits a lost packet (to the
 * ends that is latency, the `delay` fault), so a chunk missing here is a gap in the byte
 * stream, as a broken middlebox makes one. Over the replication link's TLS 1.3
 * (src/transport/secure.ts) a gap, a swap, a flipped byte or a cut record fails the record's
 * authentication or framing: the connection ends, and nothing of it reaches xl-ha.
 * The random faults draw from `rand` (seeded by the chaos campaign, so a run replays).
 */
import net from 'node:net';

const REORDER_FLUSH_MS = 50;

export class FaultProxy {
  port = 0;
  delayMs = 0;
  /** 0: off; N: flip one byte every N KiB sent client to server. */
  corrupt = 0;
  /** Probability (0 to 1) that a chunk, either way, is dropped. */
  loss = 0;
  /** Probability (0 to 1) that a chunk, either way, is held and sent after the next one. */
  reorder = 0;
  /** Probability (0 to 1) that a chunk, client to server, is cut short and the connection closed. */
  truncate = 0;
  /** What the faults did, since the start. */
  readonly stats = { dropped: 0, reordered: 0, truncated: 0, flipped: 0 };
  private down = false;
  private readonly conns = new Set<net.Socket>();
  private server: net.Server | null = null;
  private sinceFlip = 0;

  constructor(private readonly to: () => number, private readonly rand: () => number = Math.random) {}

  async start(): Promise<this> {
    const server = net.createServer((c) => this.accept(c));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this;
  }

  private accept(c: net.Socket): void {
    if (this.down) {
      c.destroy();
      return;
    }
    const s = net.connect(this.to(), '127.0.0.1');
    this.conns.add(c);
    this.conns.add(s);
    const end = () => {
      c.destroy();
      s.destroy();
      this.conns.delete(c);
      this.conns.delete(s);
    };
    const send = (dst: net.Socket, d: Buffer) => {
      if (this.delayMs > 0) setTimeout(() => dst.destroyed || dst.write(d), this.delayMs);
      else if (!dst.destroyed) dst.write(d);
    };
    /** One direction: loss and reordering, then (client to server) truncation and corruption. */
    const pipe = (src: net.Socket, dst: net.Socket, clientToServer: boolean) => {
      let held: Buffer | null = null;
      let flush: NodeJS.Timeout | null = null;
      const release = () => {
        if (flush) clearTimeout(flush);
        flush = null;
        const h = held;
        held = null;
        if (h) send(dst, h);
      };
      src.on('data', (d: Buffer) => {
        if (this.loss > 0 && this.rand() < this.loss) {
          this.stats.dropped++;
          return;
        }
        if (clientToServer && this.truncate > 0 && d.length > 1 && this.rand() < this.truncate) {
          this.stats.truncated++;
          release();
          const part = d.subarray(0, 1 + Math.floor(this.rand() * (d.length - 1)));
          // what is written goes out before the close: the far end reads a record cut short
          if (this.delayMs > 0) setTimeout(() => dst.destroyed || dst.end(part, end), this.delayMs);
          else dst.end(part, end);
          src.pause();
          return;
        }
        if (clientToServer && this.corrupt > 0) {
          this.sinceFlip += d.length;
          if (this.sinceFlip >= this.corrupt * 1024) {
            this.sinceFlip = 0;
            this.stats.flipped++;
            d = Buffer.from(d);
            d[d.length >> 1]! ^= 0x10;
          }
        }
        if (held) {
          const h = held;
          held = null;
          if (flush) clearTimeout(flush);
          flush = null;
          send(dst, d);
          send(dst, h);
          return;
        }
        if (this.reorder > 0 && this.rand() < this.reorder) {
          this.stats.reordered++;
          held = d;
          flush = setTimeout(release, REORDER_FLUSH_MS);
          return;
        }
        send(dst, d);
      });
      src.on('close', () => flush && clearTimeout(flush));
    };
    pipe(c, s, true);
    pipe(s, c, false);
    c.on('error', end).on('close', end);
    s.on('error', end).on('close', end);
  }

  cut(): void {
    this.down = true;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
  }

  heal(): void {
    this.down = false;
  }

  /** Every fault off (a partition is healed too). */
  clear(): void {
    this.delayMs = 0;
    this.corrupt = 0;
    this.loss = 0;
    this.reorder = 0;
    this.truncate = 0;
    this.heal();
  }

  close(): void {
    this.cut();
    this.server?.close();
  }
}
