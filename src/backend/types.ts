/**
 * The hypervisor backend seam.
 *
 * One interface, two implementations chosen once at start-up: `sim` (a simulated Xen
 * host, src/backend/sim) and `xen` (libxl-shim through koffi, issue #3). The engine, the
 * devices and the transport only ever see these types, so the code paths above the backend
 * are the same on both.
 *
 * Primary side: a {@link SaveSession} is a checkpointed save of one running domain. It emits
 * the Xen migration stream v2 bytes (libxl header, libxc image header, PAGE_DATA, vCPU
 * context, CHECKPOINT, CHECKPOINT_END) and exposes the domain's output devices
 * ({@link NetPlug}, {@link DiskTap}) so that devices can buffer and replicate side effects.
 *
 * Backup side: a {@link ReplicaDomain} is built from a stream's first checkpoint, takes
 * complete verified checkpoints, and is activated on failover.
 */
import type { DomainConfig } from '../config/domain.js';
import type { Disposable } from '../engine/events.js';

export type BackendKind = 'sim' | 'xen';

export type DomainState = 'running' | 'paused' | 'suspended' | 'replica' | 'shutdown';

export interface DomainInfo {
  domid: number;
  name: string;
  uuid: string;
  memoryMiB: number;
  vcpus: number;
  state: DomainState;
  /** Where clients reach the domain's service, when the backend knows (sim: `sim_service`). */
  service?: { host: string; port: number };
}

/**
 * What a backend can do, as features rather than mode ids: each mode checks at setup for the
 * features it needs and names what is missing.
 */
export interface BackendFeatures {
  /** Output buffering: the domain's network output can be held per epoch ({@link NetPlug}). */
  outputBuffering: boolean;
  /** Output events: the NetPlug and DiskTap report the first output of an epoch before it leaves (kemari). */
  outputEvents: boolean;
  /** Ingress tap: client inputs to the domain can be observed and copied (colo, llm). */
  ingressTap: boolean;
  /** A replica that can run while it takes checkpoints (colo's secondary). */
  runnableReplica: boolean;
  /** Replication of the domain's disk writes ({@link DiskTap}). */
  diskReplication: boolean;
  /**
   * How many checkpoints may be in flight (sent, not yet acknowledged) at once by default. Linux's
   * sch_plug tracks only the current and the previous epoch, so Xen's netbuf allows 2.
   */
  maxInFlight: number;
  /**
   * `ha_transfer` fgbi runs on this backend: its save stream may be block-encoded at the link and
   * its replica takes the pages rebuilt from that (verified on sim; not yet on Xen).
   */
  fgbi?: boolean;
  /**
   * `ha_transfer` compress runs on this backend: its save stream may be compressed at the link
   * and decompressed before its replica takes it (verified on sim; not yet on Xen).
   */
  compress?: boolean;
}

/** A write to a domain's virtual disk (and, in DISK_WRITES frames, on the wire). */
export interface DiskWrite {
  offset: number;
  data: Buffer;
  /**
   * A flush (or FUA write) of the guest came after this write and before the next one: every
   * write up to this one must be on stable storage before a later one is applied (the backup
   * syncs there). On the wire: bit 0 of the entry's flags (DISK_WRITE_FLUSH).
   */
  flush?: boolean;
}

/**
 * The output gate of a domain's virtual NIC, with the semantics of Linux's sch_plug:
 * while buffering, guest output is queued; `barrier(epoch)` closes the output of `epoch`;
 * `release(epoch)` lets out everything up to that epoch's barrier; `releaseAll()` stops
 * buffering and lets everything out.
 */
export interface NetPlug {
  /** May set up plumbing first (xen: an IFB and a plug qdisc per vif). */
  startBuffering(): void | Promise<void>;
  barrier(epoch: number): void;
  release(epoch: number): void;
  releaseAll(): void;
  /** Drops what is held (fencing); later releases and close let nothing of it out. */
  discardAll?(): void;
  /** Bytes currently held back. */
  readonly bufferedBytes: number;
  /** Optional: removes what startBuffering set up (after releaseAll). */
  close?(): Promise<void>;
  /**
   * With the `outputEvents` feature: `listener` runs when the first output of an open epoch is
   * held (once per epoch: the next barrier re-arms it), before that output can leave.
   */
  onOutputPending?(listener: () => void): Disposable;
  /**
   * With the `ingressTap` feature (colo): while captured, every guest output goes to `listener`
   * instead of leaving or being queued; `emit` lets one out. Disposing ends the capture.
   */
  capture?(listener: (conn: number, data: Uint8Array) => void): Disposable;
  emit?(conn: number, data: Uint8Array): void;
}

/** A client input with its place in the domain's input stream (1 = the first it ever got). */
export interface IndexedInput {
  index: number;
  /** The flow (connection) it arrived on. */
  conn: number;
  data: Uint8Array;
}

/**
 * With the `ingressTap` feature: the client inputs that reach the domain, as they reach it.
 * A new listener is first handed what was delivered and not yet consumed.
 */
export interface IngressTap {
  onInput(listener: (inputs: IndexedInput[]) => void): Disposable;
}

/**
 * A tap on a domain's virtual disk: records every write the guest issues once `start()` was
 * called. `drain()` hands over the writes recorded since the previous drain, in issue order;
 * called while the domain is suspended, it returns exactly the writes of the closing epoch.
 */
export interface DiskTap {
  start(): void;
  /** `epoch`: the checkpoint the drained writes go with (a tap may tag them with it). */
  drain(epoch?: number): DiskWrite[];
  /**
   * Optional: the guest is about to be suspended. A tap that holds guest I/O back (an epoch cap)
   * takes every request again until the next `drain`: the guest cannot suspend with requests
   * outstanding. What arrives meanwhile (at most the guest's queue) goes past the cap.
   */
  suspending?(): void;
  /** The disk's whole content, for the initial synchronisation of the backup. */
  readAll(): Promise<{ sizeBytes: number; chunks: AsyncIterable<DiskWrite> }>;
  /**
   * Optional: the blocks written since the last checkpoint the backup acknowledged (`committed`),
   * as they are now: the disk part of a full resync to a backup that still holds its copy of
   * that checkpoint (a rejected checkpoint never reaches the backup's disk). Recording goes on:
   * what the guest writes meanwhile is in the log as well, applied after these blocks.
   */
  readWritten?(): { bytes: number; chunks: AsyncIterable<DiskWrite> };
  stop(): void;
  /** With the `outputEvents` feature: `listener` runs at the first write recorded since the last drain. */
  onWritePending?(listener: () => void): Disposable;
  /**
   * Optional: the checkpoint whose writes were last drained is captured and the guest is about to
   * run again. A tap whose guest I/O completes asynchronously (NBD) holds completions from
   * `drain` until then, so that no completion drained in epoch N+1 is in checkpoint N's memory.
   */
  resumed?(): void;
  /** Optional: checkpoint `epoch` is on the backup (the tap forgets its written blocks). */
  committed?(epoch: number): void;
  /** Optional: bytes of writes recorded and not yet drained (they count against the buffer limit). */
  readonly pendingBytes?: number;
}

export interface CaptureResult {
  /** Xen stream bytes of this checkpoint (PAGE_DATA…, vCPU context, CHECKPOINT, CHECKPOINT_END). */
  chunks: Buffer[];
  pages: number;
  bytes: number;
  /** The checkpoint is on the backup (or abandoned): its buffers may be reused. */
  release?: () => void;
}

/**
 * Where a save session sends stream bytes: one content frame per call. `onWritten`, when given,
 * is called once the frame's bytes have left for the kernel (or were dropped with a lost link):
 * from then on their memory may be reused. It is not called when the send fails up front.
 */
export type ContentSink = (chunk: Buffer | readonly Buffer[], onWritten?: () => void) => Promise<void>;

/** Primary side: a checkpointed (Remus/COLO) save of one running domain. */
export interface SaveSession {
  readonly domid: number;
  /**
   * The Xen stream's leading headers plus the live precopy of all memory, sent to `sink` (each
   * call one content frame: a buffer, or several sent as one without joining them).
   */
  begin(sink: ContentSink): Promise<{ pages: number; rounds: number }>;
  /** Every page again, sent live (after the backup rejected a checkpoint and needs a full one). */
  resync(sink: ContentSink): Promise<{ pages: number }>;
  /** Stops the guest's vCPUs at an instruction boundary and quiesces its devices. */
  suspend(): Promise<void>;
  /** While suspended: the dirty pages since the previous capture and the vCPU context. */
  capture(): Promise<CaptureResult>;
  /** Lets the guest run again (speculatively: the checkpoint may still be in flight). */
  resume(): Promise<void>;
  /**
   * Between checkpoints (never during one): pauses the running guest (`true`) or lets it run
   * again (`false`), so that the engine can hold it back while the backup catches up.
   */
  throttle(on: boolean): Promise<void>;
  readonly net: NetPlug | null;
  readonly disk: DiskTap | null;
  /** With the `ingressTap` feature and a NIC: the domain's client inputs. */
  readonly ingress?: IngressTap | null;
  /** Ends log-dirty mode; the domain keeps running. Idempotent. */
  close(): Promise<void>;
  /** Optional: median milliseconds of the backend's own steps of a checkpoint (diagnostics). */
  timings?(): Record<string, number>;
}

export interface SaveOptions {
  /** Live precopy rounds before the first checkpoint (round 0 sends every page). */
  maxPrecopyRounds?: number;
}

/** What the backup needs to build a replica, from the HELLO record. */
/**
 * What this host lets a replica of `peer`'s domain have (from the peer's key file): the
 * backend refuses a configuration that asks for more.
 */
export interface ReplicaPolicy {
  peer: string;
  /** Where the policy is written, for messages. */
  source: string;
  /** Disk targets (paths) a replica may be given: patterns with * and ?. */
  disks: string[];
  /** Bridges a replica's nics may join: patterns. */
  bridges: string[];
  /** Where this host keeps the images of replicated disks (`replica_disks`): DIR/<domain>.<vdev>.img. */
  replicaDiskDir?: string;
}

export interface ReplicaSpec {
  domain: DomainConfig;
  /** The backup's own policy; a backend that builds devices from the primary's description checks it. */
  policy?: ReplicaPolicy;
  /** Primary's uuid of the domain; the replica keeps it. */
  uuid: string;
  /** Disk image path on the backup for each of the domain's disks (same order). */
  diskPaths?: string[];
  /** The backend's own description of the domain (xen: libxl's JSON configuration). */
  backendConfig?: string;
  /**
   * The size of the disk the primary replicates (HELLO `diskBytes`), when it replicates one:
   * the replica's disk is then an image of this size that this host's policy names, never a
   * path from the primary (xen).
   */
  diskBytes?: number;
}

/** A complete, verified checkpoint, ready to apply. */
export interface VerifiedCheckpoint {
  epoch: number;
  /** Raw Xen stream bytes, as received (the xen backend feeds these to libxc). */
  xen: Buffer[];
  /** The same bytes, parsed and validated (empty for a replica that `takesRawStream`). */
  pages: { pfn: number; type: number; data: Buffer }[];
  vcpus: { id: number; context: Buffer }[];
  diskWrites: DiskWrite[];
}

/**
 * With the `runnableReplica` feature: a replica that runs as colo's secondary between
 * checkpoints, fed the primary's input. Its output goes to `start`'s listener, never to a
 * client, and its disk writes to an overlay that each checkpoint discards (failover keeps it).
 */
export interface SecondaryReplica {
  /** After the first checkpoint: the replica runs from it. */
  start(onOutput: (conn: number, data: Uint8Array) => void): void;
  /** Input packets consumed so far (after a checkpoint: as of that checkpoint). */
  readonly inputsHandled: number;
  /** The primary's inputs, in order, from `inputsHandled + 1` on. */
  deliver(inputs: readonly IndexedInput[]): void;
  /** After a checkpoint was applied (the replica is paused then) and its input re-delivered. */
  resume(): void;
}

/** Backup side: a domain that is being built from checkpoints and not yet running. */
export interface ReplicaDomain {
  /** Present when the replica can run as a secondary (colo). */
  readonly secondary?: SecondaryReplica;
  readonly domid: number;
  readonly name: string;
  /** Applies a checkpoint whole. On failure the previous checkpoint stays in force. */
  applyCheckpoint(cp: VerifiedCheckpoint): Promise<void>;
  /**
   * True when `applyCheckpoint` uses only the raw `xen` bytes (libxc reads them again): the
   * backup then validates every record but lists no pages.
   */
  readonly takesRawStream?: boolean;
  /**
   * True when nothing refers to a checkpoint's `xen` buffers (nor to what `preload` got) once
   * `applyCheckpoint` resolved: the bytes were copied or written out. The backup then gives
   * them back to the channel's read buffers for reuse (src/util/slab-reads.ts SlabPool).
   */
  readonly keepsNoInput?: boolean;
  /**
   * Optional: the xen-stream bytes of the *first* checkpoint as they arrive, before its seal is
   * verified, so the domain builds while the precopy streams (libxl restores as it reads).
   * They count for nothing until `applyCheckpoint` of epoch 1, whose `xen` holds the same
   * bytes again (already delivered). If the first checkpoint is rejected, the backup drops
   * this replica.
   */
  preload?(chunk: Buffer | readonly Buffer[]): Promise<void>;
  /**
   * Failover: the domain runs from the last applied checkpoint. `addressWaitMs`: the old copy
   * is known to stand down (the witness fenced it), so a service address it still holds is
   * waited for this long rather than refused at once (sim).
   */
  activate(opts?: { addressWaitMs?: number }): Promise<DomainInfo>;
  /** Drops the replica (protection stopped cleanly). */
  destroy(): Promise<void>;
  /** sha256 of guest memory as it stands (tests and diagnostics). */
  memoryDigest(): Promise<string>;
  readonly lastEpoch: number;
}

/** Where dom0's NBD client reaches a disk served through xl-ha ({@link HypervisorBackend.serveDisk}). */
export interface ServedDiskAnswer {
  /** The unix socket (`nbd-client -unix`). */
  socket: string;
  /** The export (`nbd-client -N`). */
  exportName: string;
  sizeBytes: number;
}

export type DomainEvent =
  | { kind: 'introduce'; domid: number }
  | { kind: 'release'; domid: number };

/** An armed hypervisor watchdog (see HypervisorBackend.armWatchdog). */
export interface HostWatchdog {
  /** The hypervisor's id for it (xen: 1 or 2). */
  readonly id: number;
  readonly timeoutSec: number;
  /** Restarts its countdown. */
  kick(): void;
  /** Stops it for good (a clean daemon stop). */
  disarm(): void;
}

export interface HypervisorBackend {
  readonly kind: BackendKind;
  readonly features: BackendFeatures;
  listDomains(): Promise<DomainInfo[]>;
  /** By name or domid; throws {@link DomainNotFoundError}. */
  findDomain(ref: string | number): Promise<DomainInfo>;
  /** The domain's configuration as the toolstack holds it (sent to the backup in HELLO). */
  getDomainConfig(domid: number): Promise<DomainConfig>;
  /** What the backup's backend needs beyond DomainConfig to rebuild the domain (xen: libxl JSON). */
  getBackendConfig?(domid: number): Promise<string>;
  /** `userdata`: what the toolstack keeps with the domain, by key (sim: as xl's userdata; xen creates with xl). */
  createDomain(cfg: DomainConfig, opts?: { userdata?: Record<string, string> }): Promise<DomainInfo>;
  /**
   * Optional: the toolstack's userdata of a domain under `key`, null when none (xen: libxl's
   * /var/lib/xen/userdata-d.<domid>.<uuid>.<key>; `xl` holds the cfg text after `xl config-update`).
   */
  getUserdata?(domid: number, key: string): Promise<string | null>;
  destroyDomain(domid: number): Promise<void>;
  pause(domid: number): Promise<void>;
  unpause(domid: number): Promise<void>;
  /**
   * Optional: fencing, a pause that also takes the domain off the network, for a copy that may
   * have lost the domain to its backup; `unfence` undoes it. Without them, pause and unpause.
   */
  fence?(domid: number): Promise<void>;
  unfence?(domid: number): Promise<void>;
  openSave(domid: number, opts?: SaveOptions): Promise<SaveSession>;
  createReplica(spec: ReplicaSpec): Promise<ReplicaDomain>;
  /**
   * Arms the hypervisor's watchdog for this host: unless it is kicked at least every
   * `timeoutSec`, the host is reset (xen: SCHEDOP_watchdog on dom0, as xenwatchdogd uses; Xen
   * then reboots the machine). Throws when the hypervisor has no free watchdog.
   */
  armWatchdog?(timeoutSec: number): HostWatchdog;
  /**
   * Optional (xen, hooks/block-ha `add`): serves disk `devid` of domain `domid` from `target` (its
   * image or LV) for dom0's block backend, through xl-ha, so that its writes can be replicated.
   * The answer is what dom0's NBD client connects to. Throws naming what is wrong.
   */
  serveDisk?(domid: number, devid: number, target: string): Promise<ServedDiskAnswer>;
  /** Optional (block-ha `remove`, after its client disconnected): stops serving it. False when it was not served. */
  unserveDisk?(domid: number, devid: number): Promise<boolean>;
  /** Optional: the disks served now, for status. */
  servedDisks?(): unknown[];
  /**
   * Optional: the size in bytes of the disk a protection of `domid` replicates (0: the domain has
   * none). Throws, naming the disk, when the domain has a disk this backend cannot replicate:
   * such a domain is protected only with -d.
   */
  replicatedDiskBytes?(domid: number): Promise<number>;
  onDomainEvent(listener: (ev: DomainEvent) => void): () => void;
  dispose(): Promise<void>;
}

/** The domain `ref` (a name or a domid, as text or number) among `all`, or DomainNotFoundError. */
export function pickDomain(all: readonly DomainInfo[], ref: string | number): DomainInfo {
  const byId = typeof ref === 'number' || /^\d+$/.test(ref) ? Number(ref) : NaN;
  const hit = all.find((d) => d.domid === byId || d.name === ref);
  if (!hit) throw new DomainNotFoundError(ref);
  return hit;
}

export class DomainNotFoundError extends Error {
  readonly code = 'ENODOMAIN';
  constructor(ref: string | number) {
    super(`domain ${JSON.stringify(String(ref))} does not exist`);
  }
}

export class BackendUnsupportedError extends Error {
  readonly code = 'EUNSUPPORTED';
}
