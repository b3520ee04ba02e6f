/**
 * The sim backend: a simulated Xen host in this process. Domains have guest memory with
 * log-dirty tracking, a vCPU thread running a guest program, a virtual NIC reachable over
 * loopback TCP and a virtual disk in a file. Save sessions emit, and replicas consume, the
 * Xen migration stream v2 records, so everything above the backend is the code that runs on
 * real Xen.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { DomainConfig } from '../../config/domain.js';
import {
  BackendUnsupportedError,
  DomainNotFoundError,
  pickDomain,
  type BackendFeatures,
  type CaptureResult,
  type ContentSink,
  type DomainEvent,
  type DomainInfo,
  type HostWatchdog,
  type HypervisorBackend,
  type IndexedInput,
  type IngressTap,
  type ReplicaDomain,
  type SecondaryReplica,
  type ReplicaSpec,
  type SaveOptions,
  type SaveSession,
  type VerifiedCheckpoint,
} from '../types.js';
import { GuestMemory, PAGE_SIZE } from './memory.js';
import { KV_DISK_BYTES, KV_MIN_MEMORY_MIB, REG, REG_COUNT, read64, type Workload } from './guest.js';
import { Vcpu } from './vcpu.js';
import { SimNic, type OutputGate } from './nic.js';
import { armSimWatchdog } from './watchdog.js';
import { SimDisk, SimDiskSpace, fsError } from './disk.js';
import { XenStreamWriter } from '../../transport/xenstream.js';
import { PRECOPY_MAX_PASSES } from '../../transport/hello.js';
import { TimeSlicer } from '../../util/slicer.js';

/** Domain type written in the libxc domain header by the sim backend. */
export const DHDR_TYPE_SIM = 0xffff0001;

const SIM_FEATURES: BackendFeatures = {
  outputBuffering: true,
  outputEvents: true,
  ingressTap: true,
  runnableReplica: true,
  diskReplication: true,
  maxInFlight: 8,
  fgbi: true,
  compress: true,
};

export interface SimBackendOptions {
  hostName: string;
  stateDir: string;
}

function workloadOf(cfg: DomainConfig): { workload: Workload; dirtyMiBPerSec: number; seed: number } {
  return {
    workload: cfg.sim?.workload ?? 'idle',
    dirtyMiBPerSec: cfg.sim?.dirtyMiBPerSec ?? 0,
    seed: cfg.sim?.seed ?? 1,
  };
}

function diskBytesOf(cfg: DomainConfig): number {
  return workloadOf(cfg).workload === 'kv' ? KV_DISK_BYTES : 1 << 20;
}

class SimDomain {
  state: DomainInfo['state'] = 'paused';
  nic: SimNic | null = null;
  vcpu!: Vcpu;
  disk!: SimDisk;
  /** colo's secondary: where its network output goes while it is not the active copy (never to a client). */
  secondaryOut: ((conn: number, data: Uint8Array) => void) | null = null;
  /** colo's secondary: its disk writes since the last checkpoint; the next one discards them, failover writes them. */
  diskOverlay: { offset: number; data: Uint8Array }[] | null = null;
  /** The highest flow id the guest has seen: a copy that takes over numbers new flows after it. */
  maxConn = 0;
  /** The toolstack's userdata (the daemon's `sim-xl-create` keeps the cfg as `xl`, as after xl config-update). */
  readonly userdata = new Map<string, string>();
  private readonly ingressListeners = new Set<(inputs: IndexedInput[]) => void>();
  readonly ingress: IngressTap = {
    onInput: (listener) => {
      const pending = this.vcpu.pendingInputs();
      if (pending.length) listener(pending);
      const own = (inputs: IndexedInput[]) => listener(inputs);
      this.ingressListeners.add(own);
      return { dispose: () => void this.ingressListeners.delete(own) };
    },
  };

  constructor(
    readonly domid: number,
    readonly cfg: DomainConfig,
    readonly uuid: string,
    readonly mem: GuestMemory,
  ) {}

  info(): DomainInfo {
    return {
      domid: this.domid,
      name: this.cfg.name,
      uuid: this.uuid,
      memoryMiB: this.cfg.memoryMiB,
      vcpus: this.cfg.vcpus,
      state: this.state,
      ...(this.cfg.sim?.service ? { service: this.cfg.sim.service } : {}),
    };
  }

  /** Wires the disk and the vCPU. A `standby` domain (a replica) is parked until `go()`. */
  async prepare(diskPath: string, standby: boolean, space?: SimDiskSpace): Promise<void> {
    const w = workloadOf(this.cfg);
    this.disk = new SimDisk(diskPath, diskBytesOf(this.cfg), space);
    this.vcpu = new Vcpu(
      this.mem,
      w.workload,
      w.dirtyMiBPerSec,
      {
        net: (conn, data) => (this.secondaryOut ? this.secondaryOut(conn, data) : this.nic?.gate.send(conn, data)),
        disk: (offset, data) => (this.diskOverlay ? void this.diskOverlay.push({ offset, data }) : this.disk.write(offset, data)),
      },
      undefined,
      this.cfg.sim?.nondeterminism ?? 0,
    );
    await this.vcpu.start(w.seed, standby);
  }

  /**
   * Brings up the NIC on the service address and lets the vCPU run. An address in use is
   * retried for `addressWaitMs` (a fenced copy letting go of it), then refused.
   */
  async go(addressWaitMs = 0): Promise<void> {
    if (this.cfg.sim?.service) {
      const nic = new SimNic(this.cfg.sim.service, (packets) => this.input(packets), this.maxConn + 1);
      const deadline = performance.now() + addressWaitMs;
      try {
        for (;;) {
          try {
            await nic.listen();
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || performance.now() >= deadline) throw err;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EADDRINUSE') {
          throw Object.assign(
            new Error(
              `service address ${this.cfg.sim.service.host}:${this.cfg.sim.service.port} of domain ${this.cfg.name} is in use: another copy of the domain may be running`,
            ),
            { code: 'EADDRINUSE' },
          );
        }
        throw err;
      }
      this.nic = nic;
    }
    this.vcpu.resume();
    this.state = 'running';
  }

  /** Client input from the NIC: to the vCPU, and to whoever taps it (colo mirrors it). */
  input(packets: { conn: number; data: Uint8Array }[]): void {
    const indexed = this.vcpu.deliver(packets);
    for (const p of packets) if (p.conn > this.maxConn) this.maxConn = p.conn;
    for (const l of this.ingressListeners) l(indexed);
  }

  async destroy(): Promise<void> {
    this.state = 'shutdown';
    await this.vcpu?.stop();
    await this.nic?.close();
    this.disk?.close();
  }
}

/**
 * Reused memory for the records of one checkpoint: bump allocation in an arena taken from a
 * free list and given back when the checkpoint is acknowledged.
 */
class ArenaPool {
  private free: Buffer[] = [];
  constructor(private readonly arenaBytes = 8 << 20, private readonly keep = 4) {}

  take(): { alloc: (n: number) => Buffer; release: () => void } {
    const arena = this.free.pop() ?? Buffer.allocUnsafeSlow(this.arenaBytes);
    let off = 0;
    let released = false;
    return {
      alloc: (n) => {
        if (off + n > arena.length) return Buffer.allocUnsafe(n); // too big for the arena
        const b = arena.subarray(off, off + n);
        off += (n + 7) & ~7;
        return b;
      },
      release: () => {
        if (released) return;
        released = true;
        if (this.free.length < this.keep) this.free.push(arena);
      },
    };
  }
}

class SimSaveSession implements SaveSession {
  private readonly writer = new XenStreamWriter();
  private readonly arenas = new ArenaPool();
  private closed = false;

  constructor(private readonly dom: SimDomain, private readonly opts: SaveOptions) {}

  get domid(): number {
    return this.dom.domid;
  }
  get net() {
    return this.dom.nic?.gate ?? null;
  }
  get disk() {
    return this.dom.disk;
  }
  get ingress(): IngressTap | null {
    return this.dom.nic ? this.dom.ingress : null;
  }

  async begin(sink: ContentSink): Promise<{ pages: number; rounds: number }> {
    const mem = this.dom.mem;
    mem.clearDirty(); // enable log-dirty: from here on every write is tracked
    await sink(this.writer.begin({ domainType: DHDR_TYPE_SIM, xenMajor: 4, xenMinor: 17 }));
    // Round 0: every page, while the guest runs.
    let sent = await this.sendAllPages(sink);
    const batch = 1024;
    // Further rounds: what was dirtied meanwhile, until it is small, at most PRECOPY_MAX_PASSES
    // passes in all (what the backup's bound allows for, with the final copy).
    const maxRounds = Math.min(this.opts.maxPrecopyRounds ?? PRECOPY_MAX_PASSES, PRECOPY_MAX_PASSES);
    let rounds = 1;
    const slicer = new TimeSlicer();
    for (; rounds < maxRounds; rounds++) {
      if (mem.dirtyCount() < 256) break;
      const pfns = mem.readAndClearDirty();
      for (let i = 0; i < pfns.length; i += batch) {
        const part = pfns.subarray(i, i + batch);
        await sink(this.writer.pageData(part, (k) => mem.page(part[k]!)));
        await slicer.maybeYield();
      }
      sent += pfns.length;
    }
    return { pages: sent, rounds };
  }

  async resync(sink: ContentSink): Promise<{ pages: number }> {
    return { pages: await this.sendAllPages(sink) };
  }

  /** Every page of the guest, in PAGE_DATA records of 1024 pages, while the guest runs. */
  private async sendAllPages(sink: ContentSink): Promise<number> {
    const mem = this.dom.mem;
    // a sink that does not wait (the socket takes it) lets no timer run: slices of time
    const slicer = new TimeSlicer();
    for (let pfn = 0; pfn < mem.pages; pfn += 1024) {
      const n = Math.min(1024, mem.pages - pfn);
      const pfns = new Uint32Array(n);
      for (let i = 0; i < n; i++) pfns[i] = pfn + i;
      await sink(this.writer.pageData(pfns, (i) => mem.page(pfns[i]!)));
      await slicer.maybeYield();
    }
    return mem.pages;
  }

  async suspend(): Promise<void> {
    this.dom.vcpu.pause();
    this.dom.state = 'suspended';
  }

  async capture(): Promise<CaptureResult> {
    const mem = this.dom.mem;
    const pfns = mem.readAndClearDirty();
    const chunks: Buffer[] = [];
    const arena = this.arenas.take();
    this.writer.alloc = arena.alloc;
    // A large dirty set (colo's or kemari's checkpoint after seconds) is copied in slices of
    // time (src/util/slicer.ts), so that heartbeats still leave while the guest is suspended:
    // an 80 MiB copy in one go silenced the primary past the backup's 150 ms failover timeout.
    const slicer = new TimeSlicer();
    for (let i = 0; i < pfns.length; i += 1024) {
      const part = pfns.subarray(i, i + 1024);
      chunks.push(...this.writer.pageDataRecords(part, (k) => mem.page(part[k]!)));
      await slicer.maybeYield();
    }
    this.writer.alloc = Buffer.allocUnsafe;
    const regs = Buffer.from(new Uint8Array(this.dom.vcpu.regs.buffer).slice());
    chunks.push(this.writer.vcpuBasic(0, regs));
    chunks.push(this.writer.checkpoint());
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    return { chunks, pages: pfns.length, bytes, release: arena.release };
  }

  async resume(): Promise<void> {
    if (this.dom.state === 'shutdown') return;
    this.dom.vcpu.resume();
    this.dom.state = 'running';
  }

  async throttle(on: boolean): Promise<void> {
    if (this.dom.state !== 'running') return;
    if (on) this.dom.vcpu.pause();
    else this.dom.vcpu.resume();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // a checkpoint's suspension ends here; a domain paused on purpose (fencing) stays paused
    if (this.dom.vcpu.isPaused && this.dom.state !== 'paused') await this.resume();
  }
}

class SimReplica implements ReplicaDomain {
  private epoch = 0;
  private activated = false;
  /** Set when a checkpoint's disk writes failed and could not be undone: the image is a copy of no checkpoint. */
  private torn: string | null = null;
  /** While it runs as colo's secondary: memory and registers as of the last checkpoint. */
  private cache: Buffer | null = null;
  private cacheRegs: Int32Array | null = null;

  constructor(
    private readonly host: SimBackend,
    private readonly dom: SimDomain,
  ) {}

  /** A parked domain: memory, registers and disk are filled by checkpoints. */
  static async create(host: SimBackend, domid: number, cfg: DomainConfig, uuid: string, diskPath: string): Promise<SimReplica> {
    const dom = new SimDomain(domid, cfg, uuid, GuestMemory.allocate(cfg.memoryMiB));
    try {
      await dom.prepare(diskPath, true, host.diskSpace);
    } catch (err) {
      await dom.destroy();
      throw err;
    }
    dom.state = 'replica';
    return new SimReplica(host, dom);
  }

  get domid(): number {
    return this.dom.domid;
  }
  get name(): string {
    return this.dom.cfg.name;
  }
  get lastEpoch(): number {
    return this.epoch;
  }

  /** A replica until activated, even while its vCPU runs as colo's secondary (its output goes nowhere). */
  info(): DomainInfo {
    const i = this.dom.info();
    return this.activated ? i : { ...i, state: 'replica' };
  }

  /** True once it runs as colo's secondary. */
  get runsAsSecondary(): boolean {
    return this.cache !== null;
  }

  readonly secondary: SecondaryReplica = (() => {
    const self = this;
    return {
      start(onOutput: (conn: number, data: Uint8Array) => void): void {
        if (self.epoch === 0) throw new Error(`domain ${self.name} has no checkpoint to run from`);
        if (self.cache) return;
        self.cache = Buffer.from(self.dom.mem.bytes);
        self.cacheRegs = self.dom.vcpu.regs.slice();
        self.dom.secondaryOut = onOutput;
        self.dom.diskOverlay = [];
        self.dom.mem.clearDirty();
        self.dom.vcpu.realignInputs(self.dom.vcpu.inputsHandled);
      },
      get inputsHandled(): number {
        return self.dom.vcpu.inputsHandled;
      },
      deliver(inputs: readonly IndexedInput[]): void {
        for (const i of inputs) if (i.conn > self.dom.maxConn) self.dom.maxConn = i.conn;
        self.dom.vcpu.deliverIndexed(inputs);
      },
      resume(): void {
        self.dom.vcpu.resume();
        self.dom.state = 'running';
      },
    };
  })();

  /** Checks a checkpoint against this domain before anything of it is applied. */
  private validate(cp: VerifiedCheckpoint): void {
    const mem = this.dom.mem;
    const disk = this.dom.disk;
    for (const p of cp.pages) {
      if (p.pfn >= mem.pages) throw new Error(`checkpoint ${cp.epoch}: pfn ${p.pfn} is beyond the domain's ${mem.pages} pages`);
      if (p.data.length !== PAGE_SIZE && p.data.length !== 0) throw new Error(`checkpoint ${cp.epoch}: page ${p.pfn} has ${p.data.length} bytes`);
    }
    for (const v of cp.vcpus) {
      if (v.id !== 0 || v.context.length !== REG_COUNT * 4) throw new Error(`checkpoint ${cp.epoch}: vCPU context ${v.id} of ${v.context.length} bytes is not a sim register file`);
    }
    for (const w of cp.diskWrites) {
      if (w.offset < 0 || w.offset + w.data.length > disk.sizeBytes) throw new Error(`checkpoint ${cp.epoch}: disk write at ${w.offset}+${w.data.length} is beyond the ${disk.sizeBytes}-byte disk`);
    }
  }

  /** Pages into `into` (guest memory, or the secondary's cache), registers into `regs`. */
  private async applyState(cp: VerifiedCheckpoint, into: Uint8Array, regs: Int32Array): Promise<void> {
    // Large checkpoints are applied in slices of time so the daemon keeps answering heartbeats
    // (slices of 8192 pages took 130 ms into memory not yet touched); a failover waits for the
    // apply to finish, so no one sees the half-applied state.
    const slicer = new TimeSlicer();
    for (let i = 0; i < cp.pages.length; i++) {
      const p = cp.pages[i]!;
      if (p.data.length) into.set(p.data, p.pfn * PAGE_SIZE);
      else into.fill(0, p.pfn * PAGE_SIZE, (p.pfn + 1) * PAGE_SIZE);
      if ((i & 63) === 63) await slicer.maybeYield();
    }
    for (const v of cp.vcpus) {
      for (let r = 0; r < REG_COUNT; r++) regs[r] = v.context.readInt32LE(r * 4);
    }
  }

  /**
   * The checkpoint's disk writes, first and all or none (SimDisk.applyAll): when they fail
   * (ENOSPC: the host's disk is full) memory and registers are not touched yet, so the replica
   * is still the previous checkpoint; if the image could not be put back it is torn, and the
   * replica takes no more checkpoints and never activates.
   */
  private applyDisk(cp: VerifiedCheckpoint): void {
    try {
      this.dom.disk.applyAll(cp.diskWrites);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { torn?: boolean };
      if (e.torn) this.torn = `checkpoint ${cp.epoch}: ${e.message}`;
      throw e;
    }
  }

  async applyCheckpoint(cp: VerifiedCheckpoint): Promise<void> {
    if (this.activated) throw new Error(`domain ${this.name} is active; it takes no more checkpoints`);
    if (this.torn) throw new Error(`the replica of ${this.name} takes no more checkpoints: its disk image is torn (${this.torn})`);
    this.validate(cp); // a bad checkpoint changes nothing
    this.applyDisk(cp); // nothing else changed when this throws
    if (!this.cache) {
      await this.applyState(cp, this.dom.mem.bytes, this.dom.vcpu.regs);
      this.epoch = cp.epoch;
      return;
    }
    // colo's secondary: it stops, takes the primary's state (its cache, then every page either
    // copy changed since the last checkpoint) and stays paused until its input is re-aligned.
    // (Its own disk writes went to the overlay: the image held the last checkpoint's disk.)
    const vcpu = this.dom.vcpu;
    vcpu.pause();
    this.dom.state = 'paused';
    await this.applyState(cp, this.cache, this.cacheRegs!);
    const mem = this.dom.mem;
    const own = mem.readAndClearDirty();
    for (const pfn of own) mem.bytes.set(this.cache.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE), pfn * PAGE_SIZE);
    for (const p of cp.pages) mem.bytes.set(this.cache.subarray(p.pfn * PAGE_SIZE, (p.pfn + 1) * PAGE_SIZE), p.pfn * PAGE_SIZE);
    vcpu.regs.set(this.cacheRegs!);
    this.dom.diskOverlay = []; // the secondary's own writes since the last checkpoint are void
    vcpu.realignInputs(vcpu.inputsHandled);
    this.epoch = cp.epoch;
  }

  async activate(opts: { addressWaitMs?: number } = {}): Promise<DomainInfo> {
    if (this.activated) return this.dom.info();
    if (this.epoch === 0) throw new Error(`domain ${this.name} has no complete checkpoint to run from`);
    if (this.torn) throw new Error(`the replica of ${this.name} cannot be activated: its disk image ${this.dom.disk.path} is torn (${this.torn})`);
    if (this.cache) {
      // colo's secondary goes on from where it is: its output to clients from now on, and its
      // disk writes since the last checkpoint onto the disk, all or none (a full disk refuses
      // the activation: the secondary stays as it was, for another try).
      try {
        this.dom.disk.applyAll(this.dom.diskOverlay ?? []);
      } catch (err) {
        const e = err as Error & { torn?: boolean };
        if (e.torn) this.torn = `activation: ${e.message}`;
        throw new Error(`cannot write the colo secondary's own disk writes to ${this.dom.disk.path}: ${e.message}`, { cause: e });
      }
      this.dom.secondaryOut = null;
      this.dom.diskOverlay = null;
      this.cache = null;
      this.cacheRegs = null;
    }
    await this.dom.go(opts.addressWaitMs ?? 0); // on failure (address in use) the replica stays parked and intact
    this.activated = true;
    this.host.adopt(this.domid, this.dom);
    return this.dom.info();
  }

  async destroy(): Promise<void> {
    this.host.forget(this.domid);
    await this.dom.destroy();
  }

  async memoryDigest(): Promise<string> {
    return crypto.createHash('sha256').update(this.dom.mem.bytes).digest('hex');
  }
}

/** What {@link SimBackend.guestCounters} says of one guest. */
export interface SimGuestCounters {
  domid: number;
  name: string;
  /** Input packets (kv requests) the guest consumed. */
  inputsHandled: number;
  /** Page writes of its background writer (`sim_dirty_mibps`); a paused guest does not catch up. */
  dirtiedPages: number;
}

export class SimBackend implements HypervisorBackend {
  readonly kind = 'sim' as const;
  readonly features = SIM_FEATURES;
  private readonly domains = new Map<number, SimDomain>();
  private readonly replicas = new Map<number, SimReplica>();
  private readonly listeners = new Set<(ev: DomainEvent) => void>();
  private nextDomid = 1;
  /** The free space of this host's disk: unlimited unless a fault fills it ({@link diskFault}). */
  readonly diskSpace = new SimDiskSpace();

  constructor(readonly opts: SimBackendOptions) {
    fs.mkdirSync(opts.stateDir, { recursive: true });
  }

  async listDomains(): Promise<DomainInfo[]> {
    const out: DomainInfo[] = [];
    for (const d of this.domains.values()) out.push(d.info());
    for (const r of this.replicas.values()) if (!this.domains.has(r.domid)) out.push(r.info());
    return out.sort((a, b) => a.domid - b.domid);
  }

  async findDomain(ref: string | number): Promise<DomainInfo> {
    return pickDomain(await this.listDomains(), ref);
  }

  private domain(domid: number): SimDomain {
    const d = this.domains.get(domid);
    if (!d || d.state === 'shutdown') throw new DomainNotFoundError(domid);
    return d;
  }

  async getDomainConfig(domid: number): Promise<DomainConfig> {
    return this.domain(domid).cfg;
  }

  async getUserdata(domid: number, key: string): Promise<string | null> {
    return this.domain(domid).userdata.get(key) ?? null;
  }

  /** Test hook: sets a domain's userdata. */
  setUserdata(domid: number, key: string, text: string): void {
    this.domain(domid).userdata.set(key, text);
  }

  async createDomain(cfg: DomainConfig, opts: { userdata?: Record<string, string> } = {}): Promise<DomainInfo> {
    const all = await this.listDomains();
    if (all.some((d) => d.name === cfg.name)) throw new Error(`a domain named ${cfg.name} already exists on host ${this.opts.hostName}`);
    const w = workloadOf(cfg);
    if (w.workload === 'kv' && cfg.memoryMiB < KV_MIN_MEMORY_MIB) {
      throw new Error(`memory = ${cfg.memoryMiB} is too small for sim_workload "kv": it needs at least ${KV_MIN_MEMORY_MIB} MiB`);
    }
    if (cfg.vcpus !== 1) throw new BackendUnsupportedError(`vcpus = ${cfg.vcpus}: the sim backend runs 1 vCPU per domain`);
    const domid = this.nextDomid++;
    const dom = new SimDomain(domid, cfg, cfg.uuid ?? crypto.randomUUID(), GuestMemory.allocate(cfg.memoryMiB));
    for (const [k, v] of Object.entries(opts.userdata ?? {})) dom.userdata.set(k, v);
    // the guest's disk: the first that is not a cdrom (an empty cdrom has no target)
    const disk = cfg.disks.find((d) => d.devtype !== 'cdrom' && d.target !== '');
    await dom.prepare(disk?.target ?? path.join(this.opts.stateDir, `${cfg.name}.img`), false, this.diskSpace);
    try {
      await dom.go();
    } catch (err) {
      await dom.destroy();
      throw err;
    }
    this.domains.set(domid, dom);
    this.emit({ kind: 'introduce', domid });
    return dom.info();
  }

  async destroyDomain(domid: number): Promise<void> {
    const r = this.replicas.get(domid);
    if (r) return r.destroy();
    const d = this.domain(domid);
    this.domains.delete(domid);
    await d.destroy();
    this.emit({ kind: 'release', domid });
  }

  async pause(domid: number): Promise<void> {
    const d = this.domain(domid);
    d.vcpu.pause();
    d.state = 'paused';
  }

  /** A worker thread counts down; if this process stops kicking, it SIGKILLs the process (src/backend/sim/watchdog.ts). */
  armWatchdog(timeoutSec: number): HostWatchdog {
    return armSimWatchdog(timeoutSec);
  }

  async unpause(domid: number): Promise<void> {
    const d = this.domain(domid);
    d.vcpu.resume();
    d.state = 'running';
  }

  /**
   * Fencing: paused, and gone from the network (nothing answers at its service address, its
   * flows end), as a host that lost the domain's address to its backup.
   */
  async fence(domid: number): Promise<void> {
    const d = this.domain(domid);
    await this.pause(domid);
    await d.nic?.close();
  }

  /** Back on the network and running (the witness let this host keep the domain). */
  async unfence(domid: number): Promise<void> {
    const d = this.domain(domid);
    await d.nic?.listen();
    await this.unpause(domid);
  }

  async openSave(domid: number, opts: SaveOptions = {}): Promise<SaveSession> {
    const d = this.domain(domid);
    if (d.state !== 'running') throw new Error(`domain ${d.cfg.name} is ${d.state}; only a running domain can be protected`);
    return new SimSaveSession(d, opts);
  }

  async createReplica(spec: ReplicaSpec): Promise<ReplicaDomain> {
    const all = await this.listDomains();
    const clash = all.find((d) => d.name === spec.domain.name);
    if (clash) throw new Error(`host ${this.opts.hostName} already has a domain named ${spec.domain.name} (domid ${clash.domid})`);
    const diskPath = spec.diskPaths?.[0] ?? path.join(this.opts.stateDir, `${spec.domain.name}.replica.img`);
    this.checkRoom(spec.domain.name, diskPath, diskBytesOf(spec.domain));
    const domid = this.nextDomid++;
    const r = await SimReplica.create(this, domid, spec.domain, spec.uuid, diskPath);
    this.replicas.set(domid, r);
    return r;
  }

  /**
   * Fault injection (the daemon's `sim-disk` command): this host's disk fills, `leftBytes`
   * more bytes writable (0 by default), or has room again (`full: false`). See SimDiskSpace.
   */
  diskFault(o: { full: boolean; leftBytes?: number }): { full: boolean; leftBytes: number | null } {
    if (o.full) this.diskSpace.fill(o.leftBytes ?? 0);
    else this.diskSpace.free();
    return { full: this.diskSpace.leftBytes !== null, leftBytes: this.diskSpace.leftBytes };
  }

  /**
   * A replica's image must fit before the replica is built: its first checkpoint writes the
   * whole disk. Too little room (the injected limit, or the filesystem's own free space as
   * statfs tells it, less what an image left there already holds) refuses it with ENOSPC.
   */
  private checkRoom(name: string, diskPath: string, bytes: number): void {
    const refuse = (free: number) => {
      const e = fsError('ENOSPC', 'open', diskPath);
      e.message = `${e.message}: the replica of ${name} needs ${bytes} bytes there (its first checkpoint writes the whole disk), ${free} free`;
      return e;
    };
    const left = this.diskSpace.leftBytes;
    if (left !== null && left < bytes) throw refuse(left);
    let held = 0;
    try {
      held = fs.statSync(diskPath).blocks * 512;
    } catch {
      /* no image yet */
    }
    let free = Infinity;
    try {
      const st = fs.statfsSync(path.dirname(diskPath));
      free = st.bavail * st.bsize;
    } catch {
      /* no statfs there: the writes will tell */
    }
    if (free < bytes - held) throw refuse(free);
  }

  /** A replica that was activated becomes an ordinary domain of this host. */
  adopt(domid: number, dom: SimDomain): void {
    dom.state = 'running';
    this.replicas.delete(domid);
    this.domains.set(domid, dom);
    this.emit({ kind: 'introduce', domid });
  }

  forget(domid: number): void {
    this.replicas.delete(domid);
    this.domains.delete(domid);
  }

  /** The output gate of a running domain's NIC, or null when it has none (tests: its own log). */
  outputGate(domid: number): OutputGate | null {
    return this.domains.get(domid)?.nic?.gate ?? null;
  }

  /**
   * The running guests' own counters, from their vCPU registers: the work each did since it
   * booted (the bench's guest progress; diagnostics). Replicas are left out: their registers
   * are the primary's, as of the last checkpoint.
   */
  guestCounters(): SimGuestCounters[] {
    return [...this.domains.values()]
      .filter((d) => d.state !== 'shutdown')
      .map((d) => ({ domid: d.domid, name: d.cfg.name, inputsHandled: read64(d.vcpu.regs, REG.RX_HANDLED_LO), dirtiedPages: read64(d.vcpu.regs, REG.DIRTIED_LO) }));
  }

  /** sha256 of a domain's memory as it stands (tests, diagnostics). */
  async memoryDigest(domid: number): Promise<string> {
    return this.memoryDigestSync(domid);
  }

  memoryDigestSync(domid: number): string {
    const d = this.domain(domid);
    return crypto.createHash('sha256').update(d.mem.bytes).digest('hex');
  }

  onDomainEvent(listener: (ev: DomainEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(ev: DomainEvent): void {
    for (const l of this.listeners) l(ev);
  }

  async dispose(): Promise<void> {
    for (const d of this.domains.values()) await d.destroy();
    for (const r of this.replicas.values()) await r.destroy();
    this.domains.clear();
    this.replicas.clear();
  }
}
