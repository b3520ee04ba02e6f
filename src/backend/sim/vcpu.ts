/**
 * Host side of a simulated vCPU: starts the worker, pauses and resumes it, delivers packets
 * to the guest and collects its output (net packets and disk writes).
 */
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { once } from 'node:events';
import type { GuestMemory } from './memory.js';
import { REG_COUNT, seedRegs, type Workload } from './guest.js';
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

  constructor(
    private readonly mem: GuestMemory,
    private readonly workload: Workload,
    private readonly dirtyMiBPerSec: number,
    private readonly sink: VcpuOutput,
    regs?: Int32Array,
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

  /** Packets from the NIC to the guest, in arrival order. */
  deliver(packets: { conn: number; data: Uint8Array }[]): void {
    if (packets.length === 0) return;
    this.rx.postMessage(packets);
    Atomics.add(this.ctl, CTL.DOORBELL, 1);
    Atomics.notify(this.ctl, CTL.DOORBELL);
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
