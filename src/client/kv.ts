/**
 * A client of the sim `kv` guest, as a real client would use it: over TCP to the domain's
 * service address, retrying a request (same client id and sequence number) after a lost
 * connection or a timeout until it is answered. Many logical clients share a few
 * connections; each logical client has one request outstanding.
 *
 * It keeps what the service acknowledged (the last acknowledged value of each key), which is
 * what "no acknowledged write lost" is checked against after a failover.
 */
import net from 'node:net';
import crypto from 'node:crypto';
import { FrameSplitter, KV_OP, KV_STATUS, decodeResponse, encodeRequest, type KvResponse } from '../backend/sim/kvproto.js';

export interface KvClientOptions {
  host: string;
  port: number;
  /** Resend an unanswered request after this long (default 1000 ms). */
  retryMs?: number;
  /** Pause between reconnection attempts (default 10 ms). */
  reconnectMs?: number;
  /** Give up on a request after this long (default 30 s). */
  deadlineMs?: number;
}

interface Pending {
  payload: Buffer;
  resolve: (r: KvResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
  sentAt: number;
  deadline: number;
}

/** One TCP connection that reconnects by itself and resends what is unanswered. */
export class KvConnection {
  private sock: net.Socket | null = null;
  private connecting = false;
  private closed = false;
  private readonly pending = new Map<number, Pending>();
  reconnects = 0;
  retries = 0;
  /** performance.now() when the current socket connected. */
  connectedAt = 0;
  /** Called with the connect time of the socket each answer arrived on. */
  onAnswer: ((connectedAt: number) => void) | null = null;

  constructor(private readonly o: KvClientOptions) {}

  private connect(): void {
    if (this.connecting || this.closed) return;
    this.connecting = true;
    const sock = net.connect({ host: this.o.host, port: this.o.port, noDelay: true });
    const split = new FrameSplitter();
    sock.on('connect', () => {
      this.connecting = false;
      this.connectedAt = performance.now();
      this.sock = sock;
      for (const p of this.pending.values()) this.transmit(p);
    });
    sock.on('data', (chunk: Buffer) => {
      for (const f of split.push(chunk)) {
        const r = decodeResponse(f);
        if (!r) continue;
        const p = this.pending.get(r.clientId);
        if (!p || r.seq !== p.payload.readUInt32LE(8)) continue; // stale duplicate
        this.pending.delete(r.clientId);
        if (p.timer) clearTimeout(p.timer);
        this.onAnswer?.(this.connectedAt);
        p.resolve(r);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.connecting = false;
      if (this.sock === sock) this.sock = null;
      if (this.closed) return;
      this.reconnects++;
      if (this.pending.size > 0) setTimeout(() => this.connect(), this.o.reconnectMs ?? 10);
    });
  }

  private transmit(p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    const now = performance.now();
    if (now > p.deadline) {
      for (const [id, q] of this.pending) if (q === p) this.pending.delete(id);
      p.reject(new Error(`request unanswered for ${this.o.deadlineMs ?? 30000} ms`));
      return;
    }
    p.timer = setTimeout(() => {
      this.retries++;
      if (this.sock) this.transmit(p);
      else this.connect();
    }, this.o.retryMs ?? 1000);
    if (this.sock) this.sock.write(p.payload);
    else this.connect();
  }

  send(payload: Buffer): Promise<KvResponse> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    const clientId = payload.readUInt32LE(4);
    if (this.pending.has(clientId)) return Promise.reject(new Error(`client ${clientId} already has a request outstanding`));
    return new Promise((resolve, reject) => {
      const now = performance.now();
      const p: Pending = { payload, resolve, reject, timer: null, sentAt: now, deadline: now + (this.o.deadlineMs ?? 30000) };
      this.pending.set(clientId, p);
      this.transmit(p);
    });
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new Error('connection closed'));
    }
    this.pending.clear();
    this.sock?.destroy();
  }
}

/** One logical client: its own id, its own sequence, one request at a time. */
export class KvClient {
  readonly clientId: number;
  private seq = 0;

  constructor(private readonly conn: KvConnection, clientId?: number) {
    this.clientId = clientId ?? (crypto.randomBytes(4).readUInt32LE(0) || 1);
  }

  private async call(op: number, key: string, value = ''): Promise<KvResponse> {
    const payload = encodeRequest({ clientId: this.clientId, seq: ++this.seq, op, key: Buffer.from(key), value: Buffer.from(value) });
    return this.conn.send(payload);
  }

  async put(key: string, value: string): Promise<void> {
    const r = await this.call(KV_OP.PUT, key, value);
    if (r.status !== KV_STATUS.OK) throw new Error(`PUT ${key}: status ${r.status}`);
  }

  async get(key: string): Promise<string | null> {
    const r = await this.call(KV_OP.GET, key);
    if (r.status === KV_STATUS.NOT_FOUND) return null;
    if (r.status !== KV_STATUS.OK) throw new Error(`GET ${key}: status ${r.status}`);
    return Buffer.from(r.value).toString();
  }

  /** Writes the guest has applied since it booted (survives failover: it is guest state). */
  async stat(): Promise<{ slotsUsed: number; writesApplied: number }> {
    const r = await this.call(KV_OP.STAT, '');
    const b = Buffer.from(r.value);
    return { slotsUsed: b.readUInt32LE(4), writesApplied: b.readUInt32LE(8) + b.readUInt32LE(12) * 2 ** 32 };
  }

  async ping(): Promise<void> {
    await this.call(KV_OP.PING, '');
  }
}

export interface LoadResult {
  requests: number;
  puts: number;
  latenciesMs: number[];
  errors: string[];
}

/**
 * Closed-loop load: `clients` logical clients over `connections` TCP connections, each
 * writing its own keys (and reading one back every `readEvery` requests) until `until()`
 * says stop. Every acknowledged write is recorded in `acked`.
 */
export class KvLoad {
  readonly conns: KvConnection[] = [];
  readonly clients: KvClient[] = [];
  readonly acked = new Map<string, string>();
  /**
   * A write whose request failed (unanswered, connection lost): it may have been applied or not,
   * so either it or the key's last acknowledged value is a right answer (the client stops there).
   */
  readonly inDoubt = new Map<string, string>();
  puts = 0;
  requests = 0;
  latenciesMs: number[] = [];
  errors: string[] = [];
  lastOkAt = 0;
  /** First answer that came over a connection opened after `since` (see `firstAnswerAfter`). */
  private since = Infinity;
  firstAnswerOnNewConnectionAt = 0;
  private recording = true;

  constructor(
    readonly o: KvClientOptions & {
      clients: number;
      connections: number;
      keysPerClient?: number;
      readEvery?: number;
      /** Open-loop pacing: all clients together send at most this many requests per second. */
      ratePerSec?: number;
    },
  ) {
    for (let i = 0; i < o.connections; i++) this.conns.push(new KvConnection(o));
    for (let i = 0; i < o.clients; i++) this.clients.push(new KvClient(this.conns[i % o.connections]!));
    for (const c of this.conns) {
      c.onAnswer = (connectedAt) => {
        if (connectedAt > this.since && this.firstAnswerOnNewConnectionAt === 0) this.firstAnswerOnNewConnectionAt = performance.now();
      };
    }
  }

  /**
   * Starts watching for the first answer over a connection opened after now: after a host
   * failure, answers still in flight from the dead host arrive on old connections; the first
   * answer on a new one comes from the host that took over.
   */
  watchNewConnections(): void {
    this.since = performance.now();
    this.firstAnswerOnNewConnectionAt = 0;
  }

  /** Latency samples are kept only while recording. */
  record(on: boolean): void {
    this.recording = on;
  }

  resetSamples(): void {
    this.latenciesMs = [];
    this.requests = 0;
  }

  async run(until: () => boolean): Promise<void> {
    const keys = this.o.keysPerClient ?? 8;
    const readEvery = this.o.readEvery ?? 4;
    // With a rate, each client has its own slots `gapMs` apart (offset so that they interleave);
    // latency is measured from the send, so the wait for a slot is not counted.
    const gapMs = this.o.ratePerSec ? (1000 * this.clients.length) / this.o.ratePerSec : 0;
    await Promise.all(
      this.clients.map(async (c, ci) => {
        let n = 0;
        let slot = performance.now() + (gapMs * ci) / this.clients.length;
        while (!until()) {
          if (gapMs) {
            const wait = slot - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            slot = Math.max(slot + gapMs, performance.now() - gapMs); // a late client does not burst to catch up
          }
          const key = `c${c.clientId.toString(16)}-k${n % keys}`;
          const t0 = performance.now();
          let pending: string | null = null;
          try {
            if (n % readEvery === readEvery - 1) {
              const v = await c.get(key);
              const want = this.acked.get(key);
              if (want !== undefined && v !== want) this.errors.push(`read ${key}: got ${v}, acknowledged ${want}`);
            } else {
              const value = `v${ci}.${n}.${crypto.randomBytes(6).toString('hex')}`;
              pending = value;
              await c.put(key, value);
              pending = null;
              this.acked.set(key, value);
              this.puts++;
            }
            const t1 = performance.now();
            this.lastOkAt = t1;
            this.requests++;
            if (this.recording) this.latenciesMs.push(t1 - t0);
          } catch (err) {
            this.errors.push(`${key}: ${(err as Error).message}`);
            if (pending !== null) this.inDoubt.set(key, pending);
            return;
          }
          n++;
        }
      }),
    );
  }

  /**
   * Reads back every acknowledged key; returns the keys whose value is neither the last
   * acknowledged one nor the client's write in doubt after it (`inDoubtApplied`: how many read
   * back as the write in doubt, applied though never answered).
   */
  async verify(): Promise<{ checked: number; lost: string[]; inDoubtApplied: number }> {
    const lost: string[] = [];
    let inDoubtApplied = 0;
    const entries = [...this.acked.entries()];
    const c = this.clients;
    await Promise.all(
      c.map(async (client, i) => {
        for (let k = i; k < entries.length; k += c.length) {
          const [key, want] = entries[k]!;
          const got = await client.get(key);
          if (got === want) continue;
          if (this.inDoubt.get(key) === got) inDoubtApplied++;
          else lost.push(`${key}: acknowledged ${want}, read ${got}${this.inDoubt.has(key) ? ` (the write in doubt was ${this.inDoubt.get(key)})` : ''}`);
        }
      }),
    );
    return { checked: entries.length, lost, inDoubtApplied };
  }

  close(): void {
    for (const c of this.conns) c.close();
  }
}
