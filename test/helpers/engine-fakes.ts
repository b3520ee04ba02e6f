/**
 * Fakes at the engine's seam, shared by the engine's tests: a replication link that records
 * what the engine sends and lets the test decide when the backup acknowledges, and a raw
 * client of the sim's kv guest.
 */
import net from 'node:net';
import { NackError, ReplicationLostError, type ReplicationLink } from '../../src/engine/link.js';
import { FrameSplitter, decodeResponse, encodeRequest, type KvResponse } from '../../src/backend/sim/kvproto.js';

import fs from 'node:fs';
import type { SimBackend } from '../../src/backend/sim/host.js';
import type { DomainInfo } from '../../src/backend/types.js';
import { freePort } from '../../src/demo/hosts.js';
import type { EngineState } from '../../src/engine/engine.js';

/**
 * One sim host and one 8 MiB kv domain for a test file (vCPU threads are slow to start under
 * tap, so a file's tests share it): created before the first test, gone after the last.
 */
export function kvDomainForFile(
  tap: { before(fn: () => unknown): void; teardown(fn: () => unknown): void },
  backend: SimBackend,
  dir: string,
  seed: number,
): { readonly dom: DomainInfo; readonly port: number } {
  const out = { dom: undefined as unknown as DomainInfo, port: 0 };
  tap.before(async () => {
    out.port = await freePort();
    out.dom = await backend.createDomain({
      name: 'kv',
      memoryMiB: 8,
      vcpus: 1,
      disks: [],
      vifs: [],
      sim: { workload: 'kv', dirtyMiBPerSec: 0, seed, service: { host: '127.0.0.1', port: out.port } },
    });
  });
  tap.teardown(async () => {
    await backend.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return out;
}

/** The parts of a tap test the helpers need. */
export type TT = { teardown(fn: () => unknown): void };

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}


export interface Sealed {
  epoch: number;
  flags: number;
  content: { type: number; body: Buffer }[];
}

type Deferred = { promise: Promise<number>; resolve: (v: number) => void; reject: (e: Error) => void; settled: boolean };

/**
 * A replication link that goes nowhere: it records what the engine sends and lets the test
 * decide, epoch by epoch, whether and when the backup acknowledges.
 */
export class FakeLink implements ReplicationLink {
  readonly sealed: Sealed[] = [];
  readonly events: string[] = [];
  readonly slowCalls: boolean[] = [];
  goodbyes = 0;
  closed = false;
  bytesSent = 0;
  /** What happens to a sealed checkpoint without the test's intervention. */
  auto: (epoch: number) => 'ack' | 'nack' | 'hold' = () => 'ack';
  readonly lost: Promise<never>;
  private lostError: Error | null = null;
  private rejectLost!: (e: Error) => void;
  private pending: { type: number; body: Buffer }[] = [];
  private readonly acks = new Map<number, Deferred>();

  constructor() {
    this.lost = new Promise<never>((_, reject) => (this.rejectLost = reject));
    this.lost.catch(() => {});
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  private deferred(epoch: number): Deferred {
    let d = this.acks.get(epoch);
    if (!d) {
      let resolve!: (v: number) => void;
      let reject!: (e: Error) => void;
      const promise = new Promise<number>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => {});
      d = { promise, resolve, reject, settled: false };
      this.acks.set(epoch, d);
    }
    return d;
  }

  /** onWritten callbacks the engine handed over, and how many ran. */
  writtenAsked = 0;
  writtenRan = 0;

  async sendContent(type: number, body: Buffer | readonly Buffer[], onWritten?: () => void): Promise<void> {
    if (this.lostError) throw this.lostError;
    // A copy: the engine may reuse its buffers once the checkpoint is acknowledged.
    const copy = Buffer.concat(Buffer.isBuffer(body) ? [body] : [...body]);
    this.pending.push({ type, body: copy });
    this.bytesSent += copy.length + 8;
    if (onWritten) {
      this.writtenAsked++;
      queueMicrotask(() => {
        this.writtenRan++;
        onWritten();
      });
    }
  }

  readonly side: Buffer[] = [];
  async sendSide(_kind: number, payload: Buffer): Promise<void> {
    if (this.lostError) throw this.lostError;
    this.side.push(payload);
  }
  onSide(): void {}

  seal(epoch: number, flags: number): void {
    this.sealed.push({ epoch, flags, content: this.pending });
    this.pending = [];
    this.events.push(`seal ${epoch}`);
    const what = this.auto(epoch);
    if (what === 'ack') queueMicrotask(() => this.ack(epoch));
    else if (what === 'nack') queueMicrotask(() => this.nack(epoch, 'test says no'));
  }

  waitAck(epoch: number): Promise<number> {
    if (this.lostError) return Promise.reject(this.lostError);
    return this.deferred(epoch).promise;
  }

  /** performance.now() when each epoch was acknowledged. */
  readonly ackedAt = new Map<number, number>();

  ack(epoch: number): void {
    const d = this.deferred(epoch);
    if (d.settled) return;
    d.settled = true;
    this.ackedAt.set(epoch, performance.now());
    this.events.push(`ack ${epoch}`);
    d.resolve(100);
  }

  /** Acknowledges every sealed epoch up to `epoch`. */
  ackUpTo(epoch: number): void {
    for (const s of this.sealed) if (s.epoch <= epoch) this.ack(s.epoch);
  }

  nack(epoch: number, reason: string): void {
    const d = this.deferred(epoch);
    if (d.settled) return;
    d.settled = true;
    this.events.push(`nack ${epoch}`);
    d.reject(new NackError(epoch, reason));
  }

  lose(reason: string): void {
    if (this.lostError) return;
    this.lostError = new ReplicationLostError(reason);
    this.events.push('lost');
    for (const d of this.acks.values()) if (!d.settled) d.reject(this.lostError);
    this.rejectLost(this.lostError);
  }

  slowPhase(on: boolean): void {
    this.slowCalls.push(on);
  }

  async goodbye(reason: string): Promise<void> {
    this.goodbyes++;
    this.events.push(`goodbye ${reason}`);
  }

  /** Reasons the engine gave up the backup with (buffer full). */
  readonly gaveUp: string[] = [];
  giveUp(err: Error): void {
    this.gaveUp.push(err.message);
    this.lose(err.message);
  }

  close(): void {
    this.closed = true;
  }

  seal_(epoch: number): Sealed | undefined {
    return this.sealed.find((s) => s.epoch === epoch);
  }

  waitSeal(epoch: number, timeoutMs = 5000): Promise<void> {
    return until(`seal of checkpoint ${epoch}`, () => this.sealed.some((s) => s.epoch >= epoch), timeoutMs);
  }
}

/** A raw client of the kv guest. */
export async function rawConn(t: TT, port: number) {
  const sock = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  t.teardown(() => sock.destroy());
  const split = new FrameSplitter();
  const responses: KvResponse[] = [];
  sock.on('data', (chunk: Buffer) => {
    for (const f of split.push(chunk)) responses.push(decodeResponse(Buffer.from(f))!);
  });
  return {
    responses,
    send: (clientId: number, seq: number, op: number, key = '', value = '') =>
      sock.write(encodeRequest({ clientId, seq, op, key: Buffer.from(key), value: Buffer.from(value) })),
    /** Several requests in one write (one burst, as the guest receives it). */
    sendMany: (reqs: { clientId: number; seq: number; op: number; key?: string; value?: string }[]) =>
      sock.write(Buffer.concat(reqs.map((q) => encodeRequest({ clientId: q.clientId, seq: q.seq, op: q.op, key: Buffer.from(q.key ?? ''), value: Buffer.from(q.value ?? '') })))),
    waitFor: (n: number, timeoutMs = 5000) => until(`${n} responses`, () => responses.length >= n, timeoutMs),
  };
}


/**
 * Runs `engine` until the test ends: whatever the test did, the engine is stopped (everything
 * acknowledged) before the next test protects the domain again.
 */
export function startEngine(t: TT, engine: { run(signal: AbortSignal, onProtected?: () => void): Promise<EngineState> }, link: FakeLink) {
  const abort = new AbortController();
  let onProtected!: () => void;
  const protectedP = new Promise<void>((r) => (onProtected = r));
  const done = engine.run(abort.signal, onProtected);
  t.teardown(async () => {
    link.auto = () => 'ack';
    abort.abort(new Error('teardown'));
    link.ackUpTo(Number.MAX_SAFE_INTEGER);
    await done;
  });
  return { abort, done, protectedP };
}

/** Waits for an asynchronous `cond` (one that throws counts as false), polling every `everyMs`; fails naming `what` after `ms`. */
export async function untilAsync(cond: () => Promise<boolean>, ms: number, what: string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
