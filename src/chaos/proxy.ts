/**
 * A TCP forwarder that injects network faults between two processes: a partition (`cut`:
 * connections die, new ones are refused; `heal` ends it), latency (`delayMs`), and corruption
 * (`corrupt`: one byte in every `corrupt` KiB flipped, client to server).
 */
import net from 'node:net';

export class FaultProxy {
  port = 0;
  delayMs = 0;
  /** 0: off; N: flip one byte every N KiB sent client to server. */
  corrupt = 0;
  private down = false;
  private readonly conns = new Set<net.Socket>();
  private server: net.Server | null = null;
  private sinceFlip = 0;

  constructor(private readonly to: () => number) {}

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
    const send = (dst: net.Socket, d: Buffer) => {
      if (this.delayMs > 0) setTimeout(() => dst.destroyed || dst.write(d), this.delayMs);
      else dst.write(d);
    };
    c.on('data', (d: Buffer) => {
      if (this.corrupt > 0) {
        this.sinceFlip += d.length;
        if (this.sinceFlip >= this.corrupt * 1024) {
          this.sinceFlip = 0;
          d = Buffer.from(d);
          d[d.length >> 1]! ^= 0x10;
        }
      }
      send(s, d);
    });
    s.on('data', (d: Buffer) => send(c, d));
    const end = () => {
      c.destroy();
      s.destroy();
      this.conns.delete(c);
      this.conns.delete(s);
    };
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

  close(): void {
    this.cut();
    this.server?.close();
  }
}
