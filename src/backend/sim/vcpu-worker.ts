/**
 * The vCPU of a simulated domain: a worker thread that runs the guest program until the host
 * pauses it. Pause is cooperative at instruction boundaries (between two requests, or between
 * two batches of page writes), like a VMEXIT: the host raises PAUSE_REQ, the vCPU answers
 * PAUSED and sleeps until the host sets RUNNING again.
 */
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { GuestMemory, type GuestMemoryShared } from './memory.js';
import { Dirtier, KV_END, KvGuest, tick, type Workload } from './guest.js';
import { CTL, RUN } from './vcpu-ctl.js';

interface VcpuInit {
  shared: GuestMemoryShared;
  ctl: SharedArrayBuffer;
  regs: SharedArrayBuffer;
  rx: MessagePort;
  out: MessagePort;
  workload: Workload;
  dirtyMiBPerSec: number;
  standby: boolean;
}

const init = workerData as VcpuInit;
const ctl = new Int32Array(init.ctl);
const regs = new Int32Array(init.regs);
const mem = new GuestMemory(init.shared);

// A standby vCPU (a replica on the backup) is parked before the guest boots: memory and
// registers are filled by checkpoints meanwhile, and activation lets it run.
if (Atomics.load(ctl, CTL.STATE) === RUN.PAUSED) {
  parentPort?.postMessage({ k: 'booted' });
  while (Atomics.load(ctl, CTL.STATE) === RUN.PAUSED) Atomics.wait(ctl, CTL.STATE, RUN.PAUSED);
}

const out = init.out;
const kv =
  init.workload === 'kv'
    ? new KvGuest(mem, {
        net: (conn, payload) => out.postMessage({ k: 0, conn, data: payload }),
        disk: (offset, data) => out.postMessage({ k: 1, offset, data }),
      })
    : null;
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
    continue;
  }
  if (state === RUN.STOP) break;
  tick(regs);
  let busy = false;
  if (kv) {
    for (let i = 0; i < 64; i++) {
      const m = receiveMessageOnPort(init.rx);
      if (!m) break;
      const msg = m.message as { conn: number; data: Uint8Array };
      kv.handle(msg.conn, msg.data);
      busy = true;
    }
  }
  if (dirtier.active && dirtier.step(performance.now(), 32) > 0) busy = true;
  if (!busy) Atomics.wait(ctl, CTL.DOORBELL, bell, dirtier.active ? 1 : 20);
}
Atomics.store(ctl, CTL.STATE, RUN.STOPPED);
Atomics.notify(ctl, CTL.STATE);
