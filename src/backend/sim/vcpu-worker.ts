/**
 * The vCPU of a simulated domain: a worker thread that runs the guest program until the host
 * pauses it. Pause is cooperative at instruction boundaries (between two requests, or between
 * two batches of page writes), like a VMEXIT: the host raises PAUSE_REQ, the vCPU answers
 * PAUSED and sleeps until the host sets RUNNING again.
 */
import fs from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { GuestMemory, type GuestMemoryShared } from './memory.js';
import { Dirtier, KV_END, KvGuest, REG, add64, tick, type Workload } from './guest.js';
import { CTL, RUN, VCPU_THREAD_NAME } from './vcpu-ctl.js';

interface VcpuInit {
  shared: GuestMemoryShared;
  ctl: SharedArrayBuffer;
  regs: SharedArrayBuffer;
  rx: MessagePort;
  out: MessagePort;
  workload: Workload;
  dirtyMiBPerSec: number;
  nondeterminism: number;
  standby: boolean;
}

type RxBatch = { gen: number; packets: { conn: number; data: Uint8Array }[] };

const init = workerData as VcpuInit;
const ctl = new Int32Array(init.ctl);
const regs = new Int32Array(init.regs);
const mem = new GuestMemory(init.shared);

// The thread's name: what the host's CPU time spent running the guest is told apart by
// (/proc/<pid>/task/*/comm; src/demo/hosts.ts hostCpu). Linux only; elsewhere it keeps node's.
try {
  fs.writeFileSync('/proc/thread-self/comm', VCPU_THREAD_NAME);
} catch {
  /* not Linux */
}

// A standby vCPU (a replica on the backup) is parked before the guest boots: memory and
// registers are filled by checkpoints meanwhile, and activation lets it run.
if (Atomics.load(ctl, CTL.STATE) === RUN.PAUSED) {
  parentPort?.postMessage({ k: 'booted' });
  while (Atomics.load(ctl, CTL.STATE) === RUN.PAUSED) Atomics.wait(ctl, CTL.STATE, RUN.PAUSED);
}

// Output of one loop iteration goes to the host as one message (fewer thread crossings).
const out = init.out;
let batch: unknown[] = [];
const flush = () => {
  if (batch.length === 0) return;
  out.postMessage(batch);
  batch = [];
};
const kv =
  init.workload === 'kv'
    ? new KvGuest(mem, {
        net: (conn, payload) => batch.push({ k: 0, conn, data: payload }),
        disk: (offset, data) => batch.push({ k: 1, offset, data }),
      }, init.nondeterminism)
    : null;
// Packets the NIC delivered in one batch and the guest has not handled yet.
let rxQueue: { conn: number; data: Uint8Array }[] = [];
let rxHead = 0;
let rxGen = 0;
kv?.boot();
const dirtier = new Dirtier(mem, regs, init.dirtyMiBPerSec, init.workload === 'kv' ? Math.ceil(KV_END / 4096) : 1);

if (!init.standby) parentPort?.postMessage({ k: 'booted' });

for (;;) {
  const bell = Atomics.load(ctl, CTL.DOORBELL);
  const state = Atomics.load(ctl, CTL.STATE);
  if (state === RUN.PAUSE_REQ) {
    Atomics.store(ctl, CTL.STATE, RUN.PAUSED);
    Atomics.notify(ctl, CTL.STATE);
    while (Atomics.load(ctl, CTL.STATE) === RUN.PAUSED) Atomics.wait(ctl, CTL.STATE, RUN.PAUSED);
    dirtier.resetClock(performance.now());
    if (Atomics.load(ctl, CTL.RX_GEN) !== rxGen) {
      // The host re-aligned the input (a secondary restored to a checkpoint): what was queued is void.
      rxQueue = [];
      rxHead = 0;
      rxGen = Atomics.load(ctl, CTL.RX_GEN);
    }
    continue;
  }
  if (state === RUN.STOP) break;
  tick(regs);
  let busy = false;
  if (kv) {
    // Handle packets one by one; a pause request is honoured between any two of them.
    for (let i = 0; i < 256; i++) {
      if (rxHead === rxQueue.length) {
        const m = receiveMessageOnPort(init.rx);
        if (!m) break;
        const b = m.message as RxBatch;
        rxGen = Atomics.load(ctl, CTL.RX_GEN);
        if (b.gen !== rxGen) continue; // sent before a re-alignment
        rxQueue = b.packets;
        rxHead = 0;
        continue;
      }
      const msg = rxQueue[rxHead++]!;
      add64(regs, REG.RX_HANDLED_LO, 1);
      kv.handle(msg.conn, msg.data);
      busy = true;
      if (Atomics.load(ctl, CTL.STATE) !== RUN.RUNNING) break;
    }
    flush();
  }
  if (dirtier.active && dirtier.step(performance.now(), 32) > 0) busy = true;
  if (!busy && rxHead === rxQueue.length) Atomics.wait(ctl, CTL.DOORBELL, bell, dirtier.active ? 1 : 20);
}
Atomics.store(ctl, CTL.STATE, RUN.STOPPED);
Atomics.notify(ctl, CTL.STATE);
