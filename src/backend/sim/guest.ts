/**
 * The guest programs of the sim backend. They run on the vCPU (a worker thread) and keep all
 * of their state in guest memory or in the vCPU registers, so a checkpoint of memory plus
 * registers is a checkpoint of the guest.
 *
 * Memory map of a `kv` guest (4 KiB pages):
 *   page 0            header: magic "XLHAKV01", slot count, used slots, writes applied
 *   pages 1..256      client table: 4096 × 256-byte records (clientId, last seq, last response)
 *   pages 257..1280   key-value table: 16384 × 256-byte slots, open addressing (FNV-1a)
 *   pages 1281..      free: dirtied by the background writer when `sim_dirty_mibps` > 0
 * A `memstress` guest dirties every page from 1 on. Disk: slot i of the table is also written
 * to byte offset i × 256 of the virtual disk, so the disk mirrors the table.
 */
import { GuestMemory, PAGE_SIZE } from './memory.js';
import { KV_MAX_KEY, KV_MAX_VALUE, KV_OP, KV_STATUS, decodeRequest, encodeResponsePayload } from './kvproto.js';

export const KV_MAGIC = 0x584c4841_4b563031n; // "XLHAKV01" read as big-endian
export const CLIENT_BASE = PAGE_SIZE;
export const CLIENT_SLOTS = 4096;
export const RECORD = 256;
export const KV_BASE = CLIENT_BASE + CLIENT_SLOTS * RECORD;
export const KV_SLOTS = 16384;
export const KV_END = KV_BASE + KV_SLOTS * RECORD;
export const KV_MIN_MEMORY_MIB = Math.ceil(KV_END / (1 << 20)) + 1;
export const KV_DISK_BYTES = KV_SLOTS * RECORD;

/** vCPU register file: what the VCPU_BASIC record carries on sim. */
export const REG = {
  RNG0: 0,
  RNG1: 1,
  RNG2: 2,
  RNG3: 3,
  TICKS_LO: 4,
  TICKS_HI: 5,
  DIRTIED_LO: 6,
  DIRTIED_HI: 7,
  BOOTED: 8,
  /** Input packets the guest has consumed since it booted (colo re-aligns its secondary's input on it). */
  RX_HANDLED_LO: 9,
  RX_HANDLED_HI: 10,
} as const;
export const REG_COUNT = 16;

export type Workload = 'kv' | 'memstress' | 'idle';

export interface GuestOutput {
  net(conn: number, payload: Uint8Array): void;
  disk(offset: number, data: Uint8Array): void;
}

/** Deterministic xorshift128 whose state lives in the registers. */
export function rngNext(regs: Int32Array): number {
  let t = regs[REG.RNG3]!;
  const s = regs[REG.RNG0]!;
  regs[REG.RNG3] = regs[REG.RNG2]!;
  regs[REG.RNG2] = regs[REG.RNG1]!;
  regs[REG.RNG1] = s;
  t ^= t << 11;
  t ^= t >>> 8;
  regs[REG.RNG0] = t ^ s ^ (s >>> 19);
  return regs[REG.RNG0]! >>> 0;
}

export function seedRegs(regs: Int32Array, seed: number): void {
  regs[REG.RNG0] = seed | 1;
  regs[REG.RNG1] = 0x6c078965;
  regs[REG.RNG2] = 0x5bd1e995 ^ seed;
  regs[REG.RNG3] = 0x2545f491;
  for (let i = 0; i < 8; i++) rngNext(regs);
  regs[REG.BOOTED] = 1;
}

export function add64(regs: Int32Array, lo: number, n: number): void {
  const v = (regs[lo]! >>> 0) + n;
  regs[lo] = v >>> 0;
  if (v > 0xffffffff) regs[lo + 1] = (regs[lo + 1]! + 1) | 0;
}

function fnv1a(key: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h >>> 0;
}

export function read64(regs: Int32Array, lo: number): number {
  return (regs[lo]! >>> 0) + (regs[lo + 1]! >>> 0) * 2 ** 32;
}

/**
 * The key-value service. All state is in `mem`; all side effects go through `out`.
 * `nondeterminism` (0..1, `sim_nondeterminism`) is the fraction of PUT responses that carry
 * a random tag the client ignores: two copies of the guest then answer differently, as real
 * guests do (timestamps, scheduling), which colo must detect.
 */
export class KvGuest {
  private readonly dv: DataView;
  constructor(private readonly mem: GuestMemory, private readonly out: GuestOutput, private readonly nondeterminism = 0) {
    this.dv = new DataView(mem.shared.mem);
  }

  /** First boot formats the header; a restored guest finds it in place. */
  boot(): void {
    if (this.dv.getBigUint64(0, false) === KV_MAGIC) return;
    this.dv.setBigUint64(0, KV_MAGIC, false);
    this.dv.setUint32(8, KV_SLOTS, true);
    this.dv.setUint32(12, 0, true);
    this.dv.setUint32(16, 0, true);
    this.dv.setUint32(24, CLIENT_SLOTS, true);
    this.mem.markDirty(0, 32);
  }

  handle(conn: number, payload: Uint8Array): void {
    const req = decodeRequest(payload);
    if (!req || req.clientId === 0) return; // a malformed packet is dropped, as a NIC would
    const c = this.findClient(req.clientId);
    if (c < 0) return this.reply(conn, req.clientId, req.seq, KV_STATUS.BUSY, new Uint8Array(0), -1);
    const lastSeq = this.dv.getUint32(c + 4, true);
    if (req.seq <= lastSeq) {
      if (req.seq === lastSeq) {
        // A retry: answer from the record, do not apply again.
        const len = this.dv.getUint16(c + 8, true);
        this.out.net(conn, this.mem.bytes.slice(c + 16, c + 16 + len));
      }
      return;
    }
    let status: number = KV_STATUS.OK;
    let value: Uint8Array = new Uint8Array(0);
    if (req.op === KV_OP.PUT) status = this.put(req.key, req.value);
    else if (req.op === KV_OP.GET) {
      const v = this.get(req.key);
      if (v) value = v;
      else status = KV_STATUS.NOT_FOUND;
    } else if (req.op === KV_OP.STAT) {
      value = this.mem.bytes.slice(8, 24);
    } else if (req.op !== KV_OP.PING) status = KV_STATUS.BAD_REQUEST;
    if (req.op === KV_OP.PUT && this.nondeterminism > 0 && Math.random() < this.nondeterminism) {
      value = Uint8Array.of(Math.random() * 256, Math.random() * 256, Math.random() * 256, Math.random() * 256);
    }
    this.reply(conn, req.clientId, req.seq, status, value, c);
  }

  private reply(conn: number, clientId: number, seq: number, status: number, value: Uint8Array, c: number): void {
    const payload = encodeResponsePayload({ clientId, seq, status, value });
    if (c >= 0) {
      this.dv.setUint32(c, clientId, true);
      this.dv.setUint32(c + 4, seq, true);
      this.dv.setUint16(c + 8, payload.length, true);
      this.mem.bytes.set(payload, c + 16);
      this.mem.markDirty(c, 16 + payload.length);
    }
    this.out.net(conn, payload);
  }

  private findClient(clientId: number): number {
    let i = Math.imul(clientId, 0x9e3779b1) >>> 20; // 12 bits
    for (let n = 0; n < CLIENT_SLOTS; n++, i = (i + 1) & (CLIENT_SLOTS - 1)) {
      const off = CLIENT_BASE + i * RECORD;
      const id = this.dv.getUint32(off, true);
      if (id === clientId) return off;
      if (id === 0) {
        this.dv.setUint32(off, clientId, true);
        this.dv.setUint32(off + 4, 0, true);
        this.mem.markDirty(off, 8);
        return off;
      }
    }
    return -1;
  }

  private findSlot(key: Uint8Array, create: boolean): number {
    let i = fnv1a(key) & (KV_SLOTS - 1);
    for (let n = 0; n < KV_SLOTS; n++, i = (i + 1) & (KV_SLOTS - 1)) {
      const off = KV_BASE + i * RECORD;
      const state = this.mem.bytes[off]!;
      if (state === 0) return create ? off : -1;
      if (this.mem.bytes[off + 1] === key.length && equal(this.mem.bytes, off + 8, key)) return off;
    }
    return -1;
  }

  private get(key: Uint8Array): Uint8Array | null {
    if (key.length === 0 || key.length > KV_MAX_KEY) return null;
    const off = this.findSlot(key, false);
    if (off < 0) return null;
    const len = this.dv.getUint16(off + 2, true);
    return this.mem.bytes.slice(off + 64, off + 64 + len);
  }

  private put(key: Uint8Array, value: Uint8Array): number {
    if (key.length === 0 || key.length > KV_MAX_KEY || value.length > KV_MAX_VALUE) return KV_STATUS.BAD_REQUEST;
    const off = this.findSlot(key, true);
    if (off < 0) return KV_STATUS.FULL;
    const b = this.mem.bytes;
    if (b[off] === 0) {
      b[off] = 1;
      b[off + 1] = key.length;
      b.set(key, off + 8);
      this.dv.setUint32(12, this.dv.getUint32(12, true) + 1, true);
    }
    this.dv.setUint16(off + 2, value.length, true);
    this.dv.setUint32(off + 4, this.dv.getUint32(off + 4, true) + 1, true);
    b.fill(0, off + 64, off + RECORD);
    b.set(value, off + 64);
    this.mem.markDirty(off, RECORD);
    const applied = this.dv.getUint32(16, true) + 1;
    this.dv.setUint32(16, applied, true);
    if (applied === 0) this.dv.setUint32(20, this.dv.getUint32(20, true) + 1, true);
    this.mem.markDirty(0, 24);
    const slot = (off - KV_BASE) / RECORD;
    this.out.disk(slot * RECORD, b.slice(off, off + RECORD));
    return KV_STATUS.OK;
  }
}

function equal(b: Uint8Array, off: number, key: Uint8Array): boolean {
  for (let i = 0; i < key.length; i++) if (b[off + i] !== key[i]) return false;
  return true;
}

/**
 * Dirties guest pages at a steady rate (MiB/s), choosing pages and contents with the
 * register-held PRNG: 64 bytes at a random offset of a random page, so each touch dirties a
 * whole page as far as the log-dirty bitmap is concerned.
 */
export class Dirtier {
  private readonly firstPfn: number;
  private readonly span: number;
  private readonly pagesPerMs: number;
  private startedAt = 0;
  private done = 0;

  constructor(private readonly mem: GuestMemory, private readonly regs: Int32Array, mibPerSec: number, firstPfn: number) {
    this.firstPfn = Math.min(firstPfn, mem.pages - 1);
    this.span = Math.max(1, mem.pages - this.firstPfn);
    this.pagesPerMs = (mibPerSec * 256) / 1000;
  }

  get active(): boolean {
    return this.pagesPerMs > 0;
  }

  /** Restarts the pacing clock (after a pause, the guest does not catch up on lost time). */
  resetClock(now: number): void {
    this.startedAt = now;
    this.done = 0;
  }

  /** Dirties the pages due by `now`, at most `max`; returns how many. */
  step(now: number, max: number): number {
    if (this.startedAt === 0) this.resetClock(now);
    const due = Math.floor((now - this.startedAt) * this.pagesPerMs) - this.done;
    const n = Math.min(max, due);
    const bytes = this.mem.bytes;
    for (let i = 0; i < n; i++) {
      const pfn = this.firstPfn + (rngNext(this.regs) % this.span);
      const off = pfn * PAGE_SIZE + ((rngNext(this.regs) & 63) << 6);
      for (let k = 0; k < 64; k += 4) {
        const v = rngNext(this.regs);
        bytes[off + k] = v;
        bytes[off + k + 1] = v >>> 8;
        bytes[off + k + 2] = v >>> 16;
        bytes[off + k + 3] = v >>> 24;
      }
      this.mem.markDirty(off, 64);
    }
    if (n > 0) {
      this.done += n;
      add64(this.regs, REG.DIRTIED_LO, n);
    }
    return Math.max(n, 0);
  }
}

export function tick(regs: Int32Array): void {
  add64(regs, REG.TICKS_LO, 1);
}
