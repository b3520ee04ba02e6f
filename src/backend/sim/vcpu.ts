/**
 * Host side of a simulated vCPU: starts the worker, pauses and resumes it, delivers packets
 * to the guest and collects its output (net packets and disk writes).
 */
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { once } from 'node:events';
import type { GuestMemory } from './memory.js';
import type { IndexedInput } from '../types.js';
import { REG, REG_COUNT, read64, seedRegs, type Workload } from './guest.js';
import { CTL, RUN } from './vcpu-ctl.js';

export interface VcpuOutput {
  net(conn: number, data: Uint8Array): void;
  disk(offset: number, data: Uint8Array): void;
}

type OutMsg = { k: 0; conn: number; data: Uint8Array } | { k: 1; offset: number; data: Uint8Array };



export class Vcpu {
  readonly regs: Int32Array;
  private readonly ctl = new Int32Array(new SharedArrayBuffer(8 * 4));
  private worker: Worker | null = null;
  private rx!: MessagePort;
  private out!: MessagePort;
  private paused = false;
  /** Input packets delivered since boot (the index of the last one). */
  private delivered = 0;
  /** Delivered and perhaps not yet consumed: what a new ingress listener is handed first. */
  private backlog: IndexedInput[] = [];

  constructor(
    private readonly mem: GuestMemory,
    private readonly workload: Workload,
    private readonly dirtyMiBPerSec: number,
    private readonly sink: VcpuOutput,
    regs?: Int32Array,
    private readonly nondeterminism = 0,
  ) {
    this.regs = new Int32Array(new SharedArrayBuffer(REG_COUNT * 4));
    if (regs) this.regs.set(regs);
  }

  /**
   * Boots (or, for a restored domain, resumes) the guest program. A `standby` vCPU is parked
   * before the guest boots, until `resume()`.
   */
  async start(seed: number, standby = false): Promise<void> {
    if (this.regs[8] === 0) seedRegs(this.regs, seed);
    if (standby) {
      Atomics.store(this.ctl, CTL.STATE, RUN.PAUSED);
      this.paused = true;
    }
    const rxc = new MessageChannel();
    const outc = new MessageChannel();
    this.rx = rxc.port1;
    this.out = outc.port1;
    this.out.on('message', (m: OutMsg[]) => this.route(m));
    const worker = new Worker(new URL('./vcpu-worker.js', import.meta.url), {
      workerData: {
        shared: this.mem.shared,
        ctl: this.ctl.buffer,
        regs: this.regs.buffer,
        rx: rxc.port2,
        out: outc.port2,
        workload: this.workload,
        dirtyMiBPerSec: this.dirtyMiBPerSec,
        nondeterminism: this.nondeterminism,
        standby,
      },
      transferList: [rxc.port2, outc.port2],
      resourceLimits: { maxYoungGenerationSizeMb: 64 },
    });
    this.worker = worker;
    const [msg] = (await once(worker, 'message')) as [{ k: string }];
    if (msg.k !== 'booted') throw new Error(`vCPU failed to boot: ${JSON.stringify(msg)}`);
    worker.on('error', (err) => {
      // A crashed vCPU is a crashed guest; the host keeps running.
      process.emitWarning(`vCPU crashed: ${err.message}`);
    });
  }

  /** Packets from the NIC to the guest, in arrival order; returns them with their input index. */
  deliver(packets: { conn: number; data: Uint8Array }[]): IndexedInput[] {
    if (packets.length === 0) return [];
    const indexed = packets.map((p) => ({ index: ++this.delivered, conn: p.conn, data: p.data }));
    this.rx.postMessage({ gen: Atomics.load(this.ctl, CTL.RX_GEN), packets });
    Atomics.add(this.ctl, CTL.DOORBELL, 1);
    Atomics.notify(this.ctl, CTL.DOORBELL);
    this.trimBacklog();
    this.backlog.push(...indexed);
    return indexed;
  }

  /** Delivered and not yet consumed by the guest, oldest first. */
  pendingInputs(): IndexedInput[] {
    this.trimBacklog();
    return this.backlog.slice();
  }

  /** Drops what the guest has consumed: the backlog is in input order, so that is a prefix. */
  private trimBacklog(): void {
    const handled = this.inputsHandled;
    let k = 0;
    while (k < this.backlog.length && this.backlog[k]!.index <= handled) k++;
    if (k) this.backlog.splice(0, k);
  }

  /** Input packets the guest has consumed (its register, checkpointed with it). */
  get inputsHandled(): number {
    return read64(this.regs, REG.RX_HANDLED_LO);
  }

  /**
   * While paused: everything delivered and not consumed is void, and input resumes after
   * input `handled` (a secondary restored to a checkpoint is fed again from there).
   */
  realignInputs(handled: number): void {
    if (!this.paused) throw new Error('realignInputs needs a paused vCPU');
    Atomics.add(this.ctl, CTL.RX_GEN, 1);
    this.delivered = handled;
    this.backlog = [];
  }

  /** Delivers inputs that already have their index (a secondary fed the primary's input). */
  deliverIndexed(inputs: readonly IndexedInput[]): void {
    const next = inputs.filter((i) => i.index > this.delivered);
    if (next.length === 0) return;
    if (next[0]!.index !== this.delivered + 1) throw new Error(`input ${next[0]!.index} delivered after input ${this.delivered}: a gap in the input stream`);
    this.deliver(next);
  }

  /**
   * Stops the vCPU at its next instruction boundary, then collects the output it issued
   * before stopping, so that everything of the closing epoch has reached the devices.
   */
  pause(timeoutMs = 5000): void {
    if (this.paused || !this.worker) return;
    Atomics.store(this.ctl, CTL.STATE, RUN.PAUSE_REQ);
    Atomics.add(this.ctl, CTL.DOORBELL, 1);
    Atomics.notify(this.ctl, CTL.DOORBELL);
    const deadline = performance.now() + timeoutMs;
    while (Atomics.load(this.ctl, CTL.STATE) === RUN.PAUSE_REQ) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`vCPU did not pause within ${timeoutMs} ms`);
      Atomics.wait(this.ctl, CTL.STATE, RUN.PAUSE_REQ, left);
    }
    this.paused = true;
    this.drainOutput();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    Atomics.store(this.ctl, CTL.STATE, RUN.RUNNING);
    Atomics.notify(this.ctl, CTL.STATE);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  drainOutput(): void {
    for (;;) {
      const m = receiveMessageOnPort(this.out);
      if (!m) break;
      this.route(m.message as OutMsg[]);
    }
  }

  private route(batch: OutMsg[]): void {
    for (const m of batch) {
      if (m.k === 0) this.sink.net(m.conn, m.data);
      else this.sink.disk(m.offset, m.data);
    }
  }

  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    this.paused = false;
    Atomics.store(this.ctl, CTL.STATE, RUN.STOP);
    Atomics.notify(this.ctl, CTL.STATE);
    Atomics.add(this.ctl, CTL.DOORBELL, 1);
    Atomics.notify(this.ctl, CTL.DOORBELL);
    this.out.close();
    this.rx.close();
    await w.terminate();
  }
}
