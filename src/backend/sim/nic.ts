/**
 * Virtual NIC of a simulated domain. Clients reach the guest over real TCP sockets on the
 * domain's service address; each connection is a "flow" the guest answers by id. Guest output
 * leaves through an {@link OutputGate} with the semantics of Linux's sch_plug, which is what
 * the netbuf device drives on real Xen.
 */
import net from 'node:net';
import { FrameSplitter, frame } from './kvproto.js';
import type { NetPlug } from '../types.js';
import type { Disposable } from '../../engine/events.js';

type Entry = { conn: number; data: Uint8Array } | { barrier: number };

/**
 * A held output as it left the gate: `epoch` is the barrier that closed it; null when it left
 * with releaseAll or was let out one by one with `emit` (`emitted`).
 */
export interface GateRelease {
  at: number;
  conn: number;
  bytes: number;
  epoch: number | null;
  emitted?: boolean;
}

export class OutputGate implements NetPlug {
  private buffering = false;
  private queue: Entry[] = [];
  private head = 0;
  private held = 0;
  /** Something of the open epoch is held (the next barrier clears it). */
  private openHeld = false;
  private readonly pendingListeners = new Set<() => void>();
  /** The gate's own event log, when someone (a test) sets it: every held output as it leaves. */
  log: GateRelease[] | null = null;

  constructor(private readonly deliver: (conn: number, data: Uint8Array) => void, private readonly flush: () => void) {}

  /** While set, every guest output goes here instead (colo compares it before it may leave). */
  private captor: ((conn: number, data: Uint8Array) => void) | null = null;

  send(conn: number, data: Uint8Array): void {
    if (this.captor) return this.captor(conn, data);
    if (!this.buffering) return this.deliver(conn, data);
    this.queue.push({ conn, data });
    this.held += data.length;
    if (!this.openHeld) {
      this.openHeld = true;
      for (const l of this.pendingListeners) l();
    }
  }

  capture(listener: (conn: number, data: Uint8Array) => void): Disposable {
    if (this.captor) throw new Error('the output gate is already captured');
    this.captor = listener;
    return { dispose: () => void (this.captor === listener && (this.captor = null)) };
  }

  emit(conn: number, data: Uint8Array): void {
    this.log?.push({ at: performance.now(), conn, bytes: data.length, epoch: null, emitted: true });
    this.deliver(conn, data);
    this.flush();
  }

  onOutputPending(listener: () => void): Disposable {
    const own = () => listener();
    this.pendingListeners.add(own);
    return { dispose: () => void this.pendingListeners.delete(own) };
  }

  startBuffering(): void {
    this.buffering = true;
  }

  barrier(epoch: number): void {
    if (this.buffering) this.queue.push({ barrier: epoch });
    this.openHeld = false;
  }

  release(epoch: number): void {
    const q = this.queue;
    let i = this.head;
    let lastBarrier = -1;
    // Find the barrier of `epoch` (or the last barrier at or below it).
    for (let j = i; j < q.length; j++) {
      const e = q[j]!;
      if ('barrier' in e) {
        if (e.barrier > epoch) break;
        lastBarrier = j;
      }
    }
    if (lastBarrier < 0) return;
    const from = i;
    for (; i <= lastBarrier; i++) {
      const e = q[i]!;
      if (!('barrier' in e)) {
        this.held -= e.data.length;
        this.deliver(e.conn, e.data);
      }
    }
    if (this.log) this.logReleased(q, from, lastBarrier);
    this.head = i;
    if (this.head > 4096 && this.head * 2 > q.length) {
      this.queue = q.slice(this.head);
      this.head = 0;
    }
    this.flush();
  }

  private logReleased(q: Entry[], from: number, to: number): void {
    const at = performance.now();
    let open: { conn: number; data: Uint8Array }[] = [];
    for (let j = from; j <= to; j++) {
      const e = q[j]!;
      if (!('barrier' in e)) open.push(e);
      else {
        for (const o of open) this.log!.push({ at, conn: o.conn, bytes: o.data.length, epoch: e.barrier });
        open = [];
      }
    }
  }

  releaseAll(): void {
    this.buffering = false;
    if (this.log) {
      const at = performance.now();
      for (let i = this.head; i < this.queue.length; i++) {
        const e = this.queue[i]!;
        if (!('barrier' in e)) this.log.push({ at, conn: e.conn, bytes: e.data.length, epoch: null });
      }
    }
    for (let i = this.head; i < this.queue.length; i++) {
      const e = this.queue[i]!;
      if (!('barrier' in e)) this.deliver(e.conn, e.data);
    }
    this.queue = [];
    this.head = 0;
    this.held = 0;
    this.openHeld = false;
    this.flush();
  }

  discardAll(): void {
    this.buffering = false;
    this.queue = [];
    this.head = 0;
    this.held = 0;
    this.openHeld = false;
  }

  get bufferedBytes(): number {
    return this.held;
  }
}

export class SimNic {
  private server: net.Server | null = null;
  private readonly conns = new Map<number, net.Socket>();
  private readonly corked = new Set<net.Socket>();
  private nextConn: number;
  readonly gate: OutputGate;

  /** `firstConn`: the first connection id (a copy that takes over numbers its flows after the ones it has seen). */
  constructor(
    readonly service: { host: string; port: number },
    private readonly toGuest: (packets: { conn: number; data: Uint8Array }[]) => void,
    firstConn = 1,
  ) {
    this.nextConn = firstConn;
    this.gate = new OutputGate(
      (conn, data) => this.write(conn, data),
      () => this.uncork(),
    );
  }

  /** Binds the service address; fails with EADDRINUSE when another host answers there. */
  async listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.service.host, port: this.service.port, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  private accept(sock: net.Socket): void {
    const id = this.nextConn++;
    this.conns.set(id, sock);
    const split = new FrameSplitter();
    sock.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = split.push(chunk);
      } catch {
        sock.destroy();
        return;
      }
      this.toGuest(frames.map((data) => ({ conn: id, data })));
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.conns.delete(id);
      this.corked.delete(sock);
    });
  }

  private write(conn: number, data: Uint8Array): void {
    const sock = this.conns.get(conn);
    if (!sock || sock.destroyed) return; // the flow is gone: the packet is dropped
    if (!this.corked.has(sock)) {
      sock.cork();
      this.corked.add(sock);
      if (this.corked.size === 1) queueMicrotask(() => this.uncork());
    }
    sock.write(frame(data));
  }

  private uncork(): void {
    for (const s of this.corked) s.uncork();
    this.corked.clear();
  }

  /** Ends every flow and frees the service address (listen() takes it again). */
  async close(): Promise<void> {
    for (const s of this.conns.values()) s.destroy();
    this.conns.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
