/**
 * The backup's end of one protected domain. It builds a replica from the first checkpoint,
 * applies each later checkpoint only once it is complete (its SEAL arrived and the byte count,
 * frame count and CRC-32 of its content verify) and valid (the Xen stream parses), and
 * acknowledges it. A torn or corrupt checkpoint is discarded and the previous one stays in
 * force; after a rejection only a FULL checkpoint is accepted.
 *
 * Failover: when the primary has been silent for the failover timeout, the replica is
 * activated from its last applied checkpoint. A closed connection alone does not trigger it
 * before the timeout, and `failoverNow()` lets an admin declare the primary dead.
 *
 * Bounds: the content of one checkpoint is held until its SEAL, at most what the HELLO's
 * guest can need (a peer going past that breaks the protocol) and at most what this host can
 * hold (`maxPendingBytes`, by default half its memory): a checkpoint past that is discarded as
 * it arrives and refused at its SEAL, the previous one staying in force.
 *
 * A disk that cannot take a checkpoint's writes (ENOSPC: full; EIO, EROFS, EDQUOT): the replica
 * cannot be kept up to date, so this backup ends replication of the domain (NACK and GOODBYE
 * with the reason: the primary runs on unprotected and reconnects with backoff) and drops the
 * replica, which never had any of that checkpoint (the backend applies disk writes first, all
 * or none) and never activates. Until the disk has room, new HELLOs are refused with the error.
 */
import fs from 'node:fs';
import os from 'node:os';
import type { Logger } from 'winston';
import type { DiskWrite, HypervisorBackend, ReplicaDomain, ReplicaPolicy } from '../backend/types.js';
import { Channel } from '../transport/channel.js';
import { DEFAULT_MAX_FRAME_BYTES, frameParts, ProtocolError, type Frame } from '../transport/framing.js';
import {
  XLHA_REC,
  decodeDiskWrites,
  decodeHello,
  decodeSeal,
  encodeAck,
  encodeGoodbye,
  encodeHeartbeat,
  encodeHelloAck,
  encodeNack,
  SEAL_FLAG,
} from '../transport/channel-records.js';
import { CheckpointDigest } from '../transport/digest.js';
import { XenStreamParser } from '../transport/xenstream.js';
import { HeartbeatMonitor, SETTLE_AFTER_FULL_MS, STALLED_PEER_MAX_MS } from '../transport/heartbeat.js';
import { helloTransfer, maxSealContentBytes, parseHello, PROTOCOL_VERSION, SEAL_CONTENT_BOUND_TEXT, type HelloBody } from '../transport/hello.js';
import { checkTransferRuns, TransferDecoder, type StreamFrame } from '../transport/transfer.js';
import { SideChannel } from '../transport/side.js';
import { createRole, type BackupRole } from './roles.js';
import { FencedError, WITNESS_BEAT_MIN_MS, type Witness } from '../witness/witness.js';
import { sleep } from '../util/sleep.js';
import { runFenceCommand } from './fence-hook.js';

/**
 * `halted`: the primary broke the protocol. It was alive a moment ago, so failing over on
 * its silence could run two copies; the replica is kept and only an admin's failover
 * activates it.
 */
export type BackupState = 'handshake' | 'replicating' | 'halted' | 'failing-over' | 'active' | 'stopped' | 'failed';

/** How long a stopping daemon waits for each replica to be destroyed (libxl takes seconds under TCG). */
export const SHUTDOWN_DROP_MS = 30_000;

export interface BackupEvents {
  onState?: (s: BackupSession) => void;
  /**
   * Before a replica is built for `hello`: may retire a stale session or refuse (throw), and
   * gives this host's policy for what the replica may have.
   */
  beforeReplica?: (s: BackupSession, hello: HelloBody) => Promise<ReplicaPolicy | void>;
  /** Silence tolerated until the first checkpoint is applied (default GRACE_TIMEOUT_MS). */
  graceTimeoutMs?: number;
  /** A silent primary whose kernel still acknowledges is waited for this long (default STALLED_PEER_MAX_MS; 0: silence alone). */
  stalledPeerMaxMs?: number;
  /**
   * With a witness the backup fails over only when the primary is silent on both paths (the
   * link, and its beats on the witness) and it wins the domain on the witness.
   */
  witness?: Witness;
  /** `--fence-command`: must succeed before the replica activates (src/failover/fence-hook.ts). */
  fenceCommand?: string;
  /**
   * The most of one checkpoint's content this host holds before its SEAL (default
   * {@link defaultMaxPendingBytes}: a share of its memory).
   */
  maxPendingBytes?: number;
}

/** Of this host's memory, the share one checkpoint's content may take before its SEAL by default. */
export const MAX_PENDING_MEMORY_SHARE = 0.5;

export function defaultMaxPendingBytes(): number {
  return Math.floor(os.totalmem() * MAX_PENDING_MEMORY_SHARE);
}

const mib = (n: number) => `${Math.round((n / 1048576) * 10) / 10} MiB`;

/** errno codes of a disk that cannot take the replica's writes. */
const DISK_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EFBIG']);

/** The errno of a disk that cannot take writes, from `err` or its causes; null for another error. */
export function diskErrno(err: unknown): string | null {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let i = 0; e && typeof e === 'object' && i < 4; i++, e = e.cause as typeof e) {
    if (typeof e.code === 'string' && DISK_ERRNOS.has(e.code)) return e.code;
  }
  return null;
}

function diskReason(code: string, err: Error): string {
  return `${code === 'ENOSPC' || code === 'EDQUOT' ? 'backup disk full' : 'backup disk error'}: ${err.message}`;
}

/** With a fencing token, how long activation waits for the old copy to let go of its address. */
export const ACTIVATE_ADDRESS_WAIT_MS = 15_000;

export class BackupSession {
  state: BackupState = 'handshake';
  hello: HelloBody | null = null;
  /** The part this backup plays for the HELLO's mode. */
  role: BackupRole | null = null;
  replica: ReplicaDomain | null = null;
  error: string | null = null;
  checkpointsApplied = 0;
  checkpointsRejected = 0;
  failoverStartedAt = 0;
  failoverMs = 0;
  /** The witness revision this host won the domain at: it goes with the activation. */
  fencingToken: number | null = null;
  /** Why the witness has not let this backup fail over yet (status). */
  witnessWait: string | null = null;
  private gating = false;
  private parser = new XenStreamParser();
  /** Undoes the transfer's stages on each sealed checkpoint (null: full). */
  private decoder: TransferDecoder | null = null;
  private digest = new CheckpointDigest();
  private xen: Buffer[] = [];
  /** The same bytes frame by frame (a compressed chunk is one frame), for the transfer's decoder. */
  private xenFrames: StreamFrame[] = [];
  private disk: Buffer[] = [];
  private pendingBytes = 0;
  /** What the HELLO's guest can need in one checkpoint: more is a protocol error. */
  private maxPendingBytes = 0;
  /** What this host holds of one checkpoint: more is discarded, and the checkpoint refused. */
  private readonly hostMaxPendingBytes: number;
  private readonly hostLimitSource: string;
  /** Why the checkpoint arriving now will be refused (it went past hostMaxPendingBytes). */
  private overLimit: string | null = null;
  private awaitingFull = false;
  /** Bytes of the first checkpoint went into the replica before its seal was verified. */
  private preloaded = false;
  private hb: HeartbeatMonitor | null = null;
  private applying: Promise<void> = Promise.resolve();
  private queue: Promise<void> = Promise.resolve();
  private droppingReplica: Promise<void> = Promise.resolve();
  private readonly side: SideChannel;

  constructor(
    private readonly backend: HypervisorBackend,
    private channel: Channel | null,
    private readonly log: Logger,
    private readonly hostName: string,
    private readonly events: BackupEvents = {},
  ) {
    this.hostMaxPendingBytes = events.maxPendingBytes ?? defaultMaxPendingBytes();
    this.hostLimitSource =
      events.maxPendingBytes !== undefined
        ? `the backup's maxPendingBytes, ${mib(this.hostMaxPendingBytes)}`
        : `${MAX_PENDING_MEMORY_SHARE * 100}% of this host's ${mib(os.totalmem())} of memory`;
    this.side = new SideChannel(channel!, (m) => {
      if (!this.role?.onSide) throw new ProtocolError('EBADTYPE', `side frame kind ${m.kind}: mode ${this.hello?.mode ?? '(before HELLO)'} takes no side frames`);
      return this.role.onSide(m);
    });
    channel!.onFrame((f) => this.enqueue(f));
    channel!.onClose((err) => this.onChannelClosed(err));
  }

  get domainName(): string | undefined {
    return this.hello?.domain.name;
  }

  /** Frames are handled one at a time, in order, even when handling awaits. */
  private enqueue(f: Frame): void {
    this.queue = this.queue.then(() => this.onFrame(f)).catch((err: Error) => this.abort(err));
  }

  private async onFrame(f: Frame): Promise<void> {
    if (this.state !== 'handshake' && this.state !== 'replicating') return;
    switch (f.type) {
      case XLHA_REC.HELLO:
        return this.onHello(f.body);
      case XLHA_REC.XEN_STREAM_Z:
        if (this.decoder?.streamType !== XLHA_REC.XEN_STREAM_Z) throw new ProtocolError('EBADTYPE', `XEN_STREAM_Z frame (a compressed stream chunk), but compress was not agreed in HELLO (transfer ${this.hello?.transfer ?? 'not yet agreed'})`);
        return this.onContent(f);
      case XLHA_REC.XEN_STREAM:
      case XLHA_REC.DISK_WRITES:
        return this.onContent(f);
      case XLHA_REC.CHECKPOINT_SEAL:
        return this.onSeal(f.body);
      case XLHA_REC.HEARTBEAT:
        return;
      case XLHA_REC.SIDE:
      case XLHA_REC.SIDE_ACK:
        if (!this.hello) throw new Error('side frame before HELLO');
        return this.side.take(f.type, f.body);
      case XLHA_REC.GOODBYE:
        return this.onGoodbye(f.body.toString('utf8'));
      default:
        throw new Error(`unexpected frame 0x${f.type.toString(16)} from the primary`);
    }
  }

  private async onHello(body: Buffer): Promise<void> {
    if (this.hello) throw new Error('second HELLO on one connection');
    let hello: HelloBody;
    try {
      hello = parseHello(decodeHello(body));
      this.role = createRole(hello.mode, this.backend.features, this.backend.kind, this.hostName);
      if (hello.transfer !== 'full') {
        checkTransferRuns(helloTransfer(hello), this.backend);
        this.decoder = new TransferDecoder(helloTransfer(hello));
      }
    } catch (err) {
      this.refuseHello(err as Error);
    }
    // Before anything is built for it: the first checkpoint holds at least the whole memory
    // (and disk), and this host must be able to hold it until its SEAL.
    const first = hello.domain.memoryMiB * 1048576 + (hello.diskBytes ?? 0);
    if (first > this.hostMaxPendingBytes) {
      this.refuseHello(
        new Error(
          `domain ${hello.domain.name} has ${hello.domain.memoryMiB} MiB of memory${hello.diskBytes ? ` and ${mib(hello.diskBytes)} of disk` : ''}: ` +
            `its first checkpoint cannot fit in what this backup (${this.hostName}) holds of one checkpoint before its SEAL, ${this.hostMaxPendingBytes} bytes (${this.hostLimitSource})`,
        ),
      );
    }
    // Preparing the replica can take a while (removing the previous one of a stream just
    // stopped, building the incoming domain: seconds under emulation). Until HELLO_ACK the
    // primary hears HEARTBEATs, and waits as long as it does.
    const keepalive = setInterval(
      () => this.reply(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: 0, sentAtMs: Date.now(), lastEpoch: null })),
      Math.min(Math.max(hello.heartbeatMs, 10), 1000),
    );
    try {
      const policy = await this.events.beforeReplica?.(this, hello);
      this.replica = await this.backend.createReplica({
        domain: hello.domain,
        ...(policy ? { policy } : {}),
        uuid: hello.uuid,
        ...(hello.backendConfig ? { backendConfig: hello.backendConfig } : {}),
        ...(hello.disk && hello.diskBytes ? { diskBytes: hello.diskBytes } : {}),
      });
    } catch (err) {
      const code = diskErrno(err);
      if (code) {
        const e = err as NodeJS.ErrnoException;
        const reason = `${diskReason(code, e)}; no replica of ${hello.domain.name} on ${this.hostName} until its disk has room`;
        this.log.error(reason, { domain: hello.domain.name, errno: code, path: e.path });
        this.refuseHello(new Error(reason));
      }
      this.refuseHello(err as Error);
    } finally {
      clearInterval(keepalive);
    }
    if (this.state !== 'handshake') {
      // The connection ended (or the session was disposed) while the replica was being built:
      // nothing will fill it and the daemon has let go of this session. Left there, its name
      // would refuse the primary's next HELLO ("already has a domain named ...").
      const r = this.replica;
      this.replica = null;
      await r.destroy();
      this.log.warn('the connection ended while the replica was being built: replica dropped', { domain: hello.domain.name, reason: this.error });
      return;
    }
    try {
      this.role!.start?.({ replica: this.replica, sendSide: (kind, payload) => this.side.send(kind, payload), log: this.log });
    } catch (err) {
      await this.replica.destroy();
      this.refuseHello(err as Error);
    }
    this.hello = hello;
    // Content of one checkpoint may not exceed what the primary can send before a SEAL.
    this.maxPendingBytes = maxSealContentBytes(hello.domain.memoryMiB, hello.diskBytes ?? 0);
    this.state = 'replicating';
    this.reply(XLHA_REC.HELLO_ACK, encodeHelloAck({ ok: true, protocol: PROTOCOL_VERSION, host: this.hostName, domid: this.replica.domid, transfer: hello.transfer }));
    this.hb = new HeartbeatMonitor(
      {
        heartbeatMs: hello.heartbeatMs,
        timeoutMs: hello.failoverTimeoutMs,
        ...(this.events.graceTimeoutMs !== undefined ? { graceTimeoutMs: this.events.graceTimeoutMs } : {}),
        ...(this.events.stalledPeerMaxMs !== undefined ? { stalledPeerMaxMs: this.events.stalledPeerMaxMs } : {}),
        onStalled: (silent, a) =>
          this.log.warn('primary silent but its host acknowledges: a stall, waited out before any failover', {
            domain: hello.domain.name,
            silentMs: Math.round(silent),
            lastAckMs: a.lastAckRecvMs,
            waitsUpToMs: this.events.stalledPeerMaxMs ?? STALLED_PEER_MAX_MS,
          }),
      },
      (silent) => void this.failover(`primary silent for ${Math.round(silent)} ms (timeout ${this.hb?.effectiveTimeoutMs ?? hello.failoverTimeoutMs} ms in force, ${hello.failoverTimeoutMs} ms configured)`),
      () => this.replica?.lastEpoch ?? 0,
    );
    this.hb.start(this.channel);
    // Until the first (full) checkpoint is applied, silence is judged against GRACE_TIMEOUT_MS.
    this.hb.grace(60 * 60 * 1000);
    this.log.info('replicating', { domain: hello.domain.name, mode: hello.mode, domid: this.replica.domid, from: hello.host });
    this.events.onState?.(this);
  }

  private async onContent(f: Frame): Promise<void> {
    if (!this.hello) throw new Error('checkpoint data before HELLO');
    const parts = frameParts(f); // a checkpoint's pages are not joined on their way to libxc
    this.digest.update(parts);
    for (const b of parts) this.pendingBytes += b.length;
    if (this.pendingBytes > this.maxPendingBytes) {
      throw new Error(
        `checkpoint content exceeds ${this.maxPendingBytes} bytes without a SEAL (at most ${SEAL_CONTENT_BOUND_TEXT} for the HELLO's ${this.hello.domain.memoryMiB} MiB guest)`,
      );
    }
    if (this.overLimit || this.pendingBytes > this.hostMaxPendingBytes) {
      // Past what this host holds: the content goes as it arrives (the digest still covers it,
      // so the stream stays in step) and the checkpoint is refused at its SEAL.
      if (!this.overLimit) this.overflow();
      if (f.type !== XLHA_REC.DISK_WRITES) this.release(parts);
      return;
    }
    if (f.type !== XLHA_REC.DISK_WRITES) {
      this.xen.push(...parts);
      if (this.decoder) this.xenFrames.push({ type: f.type, parts });
    } else this.disk.push(f.body); // decoded one frame at a time
    // Before the first checkpoint there is nothing to protect: a replica that can build while
    // the precopy streams gets the bytes now (they count only once the seal verifies).
    // (Not with a transfer: its bytes are decoded only once the seal verifies.)
    if (f.type === XLHA_REC.XEN_STREAM && this.replica?.preload && !this.decoder && this.replica.lastEpoch === 0 && !this.awaitingFull) {
      this.preloaded = true;
      await this.replica.preload(parts);
    }
  }

  /** The checkpoint arriving went past what this host holds: what it had of it goes now. */
  private overflow(): void {
    this.overLimit =
      `its content went past ${this.hostMaxPendingBytes} bytes before its SEAL, more than this backup holds of one checkpoint (${this.hostLimitSource}); ` +
      `the replica keeps checkpoint ${this.replica?.lastEpoch ?? 0}`;
    this.log.error('checkpoint too large for this host: discarding it as it arrives, it will be refused', {
      domain: this.domainName,
      limitBytes: this.hostMaxPendingBytes,
      limit: this.hostLimitSource,
      kept: this.replica?.lastEpoch ?? 0,
    });
    this.release(this.xen);
    this.xen = [];
    this.xenFrames = [];
    this.disk = [];
  }

  /** Read buffers nothing refers to any more go back to the channel's pool (a replica that keeps no input). */
  private release(bufs: readonly Buffer[]): void {
    const pool = this.replica?.keepsNoInput ? this.channel?.pool : null;
    if (pool) for (const b of bufs) pool.release(b);
  }

  private async onSeal(body: Buffer): Promise<void> {
    if (!this.hello || !this.replica) throw new Error('SEAL before HELLO');
    const seal = decodeSeal(body);
    const xen = this.xen;
    const xenFrames = this.xenFrames;
    const disk = this.disk;
    const overLimit = this.overLimit;
    this.xen = [];
    this.xenFrames = [];
    this.disk = [];
    this.pendingBytes = 0;
    this.overLimit = null;
    const full = (seal.flags & SEAL_FLAG.FULL) !== 0;
    // Once applied or discarded, nothing refers to the content any longer (for a replica that
    // keeps no input): its read buffers take new reads instead of new ones being allocated.
    const pool = this.replica.keepsNoInput ? this.channel?.pool : null;
    const giveBack = () => {
      if (pool) for (const b of xen) pool.release(b);
    };
    const reject = (reason: string) => {
      giveBack();
      this.checkpointsRejected++;
      this.awaitingFull = true;
      this.log.warn('checkpoint discarded; the previous one stays in force', { epoch: seal.epoch, reason, kept: this.replica?.lastEpoch });
      this.reply(XLHA_REC.CHECKPOINT_NACK, encodeNack({ epoch: seal.epoch, reason }));
      if (this.preloaded && this.replica?.lastEpoch === 0) {
        // The replica already consumed the rejected bytes: it cannot become a good copy.
        throw new Error(`the first checkpoint was rejected after it had been streamed into the replica (${reason})`);
      }
    };
    try {
      this.digest.verify(seal);
    } catch (err) {
      const e = err as ProtocolError;
      return reject(e.code === 'ECHECKSUM' ? `checksum mismatch, the content is corrupt: ${e.message}` : `torn checkpoint: ${e.message}`);
    }
    if (overLimit) return reject(`checkpoint ${seal.epoch} is too large for this backup: ${overLimit}`);
    if (this.awaitingFull && !full) return reject(`waiting for a full checkpoint after a rejected one (have ${this.replica.lastEpoch})`);
    if (seal.epoch <= this.replica.lastEpoch) return reject(`epoch ${seal.epoch} is not after the applied ${this.replica.lastEpoch}`);
    const tParse = performance.now();
    let parsed;
    let diskWrites: DiskWrite[];
    // The transfer's stages undone (fgbi: whole pages rebuilt from the shadow); the shadow
    // takes this checkpoint's pages only once it is applied (commitTransfer).
    let stream: readonly Buffer[] = xen;
    let commitTransfer = () => {};
    try {
      if (this.decoder) {
        // compress: each chunk may decompress to at most a frame's limit, and the checkpoint to
        // at most what this backup holds of one (the HELLO's bound and this host's)
        const held = Math.min(this.maxPendingBytes, this.hostMaxPendingBytes);
        const d = await this.decoder.decode(xenFrames, full, {
          maxChunkBytes: DEFAULT_MAX_FRAME_BYTES,
          maxCheckpointBytes: held,
          checkpointLimitSource: held === this.hostMaxPendingBytes ? this.hostLimitSource : `${SEAL_CONTENT_BOUND_TEXT} for the HELLO's ${this.hello.domain.memoryMiB} MiB guest`,
        });
        stream = d.parts;
        commitTransfer = d.commit;
      }
      // in slices: the other domains this host replicates keep their heartbeats meanwhile
      parsed = await this.parser.parseCheckpointAsync(stream, { pages: !this.replica.takesRawStream });
      diskWrites = disk.flatMap((b) => decodeDiskWrites(b));
    } catch (err) {
      return reject(`invalid stream: ${(err as Error).message}`);
    }
    const t0 = performance.now();
    const apply = this.replica.applyCheckpoint({ epoch: seal.epoch, xen: stream as Buffer[], pages: parsed.pages, vcpus: parsed.vcpus, diskWrites });
    this.applying = apply.catch(() => {});
    try {
      await apply;
    } catch (err) {
      const code = diskErrno(err);
      if (code) {
        giveBack();
        return this.endOnDiskError(seal.epoch, code, err as Error);
      }
      return reject(`cannot apply: ${(err as Error).message}`);
    }
    commitTransfer(); // before the read buffers go back: the shadow copies what it keeps
    giveBack();
    this.awaitingFull = false;
    this.checkpointsApplied++;
    if (this.checkpointsApplied === 1) {
      this.hb?.grace(SETTLE_AFTER_FULL_MS);
      this.log.info('first checkpoint applied', {
        epoch: seal.epoch,
        bytes: xen.reduce((n, b) => n + b.length, 0),
        parseMs: Math.round(t0 - tParse),
        applyMs: Math.round(performance.now() - t0),
      });
    }
    await this.role?.afterApply?.(seal.epoch);
    this.reply(XLHA_REC.CHECKPOINT_ACK, encodeAck({ epoch: seal.epoch, applyMicros: Math.round((performance.now() - t0) * 1000) }));
  }

  /**
   * Checkpoint `epoch`'s disk writes cannot be applied here (the disk is full, or fails). The
   * replica had none of it (the backend applies disk writes first, all or none; one whose image
   * could not be put back refuses to activate), but it can no longer follow the primary, and
   * a copy left behind must not stay ready to take over. The checkpoint is refused, then
   * replication of the domain ends with a GOODBYE giving the reason (the primary runs on
   * unprotected and reconnects with backoff, rather than take this host for dead), and the
   * replica is dropped. During a failover the failover decides.
   */
  private async endOnDiskError(epoch: number, code: string, err: Error): Promise<void> {
    const e = err as NodeJS.ErrnoException;
    const fields = { domain: this.domainName, epoch, errno: code, path: e.path, keptEpoch: this.replica?.lastEpoch };
    this.checkpointsRejected++;
    if (this.state !== 'replicating') {
      this.log.error(`${diskReason(code, e)}; checkpoint ${epoch} not applied; the failover under way goes on from checkpoint ${this.replica?.lastEpoch ?? 0}`, fields);
      return;
    }
    const reason = `${diskReason(code, e)}; checkpoint ${epoch} not applied, replica of ${this.domainName} on ${this.hostName} dropped: the primary runs unprotected until this host's disk takes writes again`;
    this.error = reason;
    this.log.error(reason, fields);
    this.state = 'stopped';
    this.hb?.stop();
    this.reply(XLHA_REC.CHECKPOINT_NACK, encodeNack({ epoch, reason }));
    this.channel?.farewell(XLHA_REC.GOODBYE, encodeGoodbye(reason), new Error(reason));
    this.droppingReplica = (async () => {
      await this.replica?.destroy();
      this.events.onState?.(this);
    })();
    await this.droppingReplica;
  }

  private async onGoodbye(reason: string): Promise<void> {
    this.log.info('protection ended by the primary', { domain: this.domainName, reason });
    this.state = 'stopped';
    this.hb?.stop();
    this.droppingReplica = (async () => {
      await this.replica?.destroy();
      this.channel?.dispose();
      this.events.onState?.(this);
    })();
    await this.droppingReplica;
  }

  /**
   * Resolves once a stopped session's replica is gone. (On Xen, ending a restore takes libxl
   * seconds; a new stream for the same domain must not build its replica before that.)
   */
  replicaDropped(): Promise<void> {
    return this.droppingReplica.catch(() => {});
  }

  /** HELLO_ACK with the reason the protection is refused, then the error ends the session. */
  private refuseHello(err: Error): never {
    this.reply(XLHA_REC.HELLO_ACK, encodeHelloAck({ ok: false, error: err.message }));
    throw err;
  }

  private reply(type: number, body: Buffer): void {
    this.channel?.send(type, body);
  }

  /** True once the connection to the primary is gone. */
  get disconnected(): boolean {
    return this.channel?.isClosed ?? true;
  }

  private onChannelClosed(err?: Error): void {
    this.side.close(err ?? new Error('replication channel closed'));
    if (this.state === 'replicating' && err instanceof ProtocolError) {
      this.halt(err);
    } else if (this.state === 'replicating') {
      this.log.warn('replication channel closed; waiting for the failover timeout', { domain: this.domainName, reason: err?.message });
    } else if (this.state === 'handshake') {
      this.state = 'failed';
      this.error = err?.message ?? 'closed during handshake';
      this.events.onState?.(this);
    }
  }

  private abort(err: Error): void {
    this.log.error('replication stream error', { domain: this.domainName, error: err.message });
    this.error = err.message;
    if (this.state === 'handshake') {
      this.state = 'failed';
      this.channel?.fail(err);
      this.events.onState?.(this);
      return;
    }
    this.halt(err);
  }

  /** The primary misbehaved: keep the last good checkpoint, stop watching, do not fail over. */
  private halt(err: Error): void {
    if (this.state !== 'replicating') return;
    this.hb?.stop();
    this.state = 'halted';
    this.error =
      `stream error from the primary: ${err.message}; replica kept at checkpoint ${this.replica?.lastEpoch ?? 0}; ` +
      'no automatic failover (the primary was alive): run xl-ha failover to activate it';
    this.log.error(this.error, { domain: this.domainName });
    this.channel?.fail(err);
    this.events.onState?.(this);
  }

  /** Drops this session and its replica (a newer connection from the primary supersedes it). */
  async retire(reason: string): Promise<void> {
    this.log.warn('replica superseded', { domain: this.domainName, reason });
    this.hb?.stop();
    this.state = 'stopped';
    this.channel?.dispose();
    await this.replica?.destroy();
    this.events.onState?.(this);
  }

  /**
   * With a witness: whether this backup may activate. The primary must be silent on the witness
   * too (its beat revision does not move for two beats), and this host must win the domain
   * there: the swap's revision is the fencing token. A primary alive on the witness re-arms the
   * monitor; a domain the primary kept (it runs on alone) drops the replica; an unreachable
   * witness is retried, the replica kept, until one of those is known.
   */
  private async witnessGate(): Promise<'go' | 'alive' | 'fenced' | 'stopped'> {
    const w = this.events.witness!;
    const hello = this.hello!;
    const beatWindow = 2 * Math.max(hello.heartbeatMs, WITNESS_BEAT_MIN_MS) + 50;
    for (;;) {
      if (this.state !== 'replicating' && this.state !== 'halted') return 'stopped';
      try {
        const r0 = await w.beatRevision(hello.uuid);
        await sleep(beatWindow);
        const r1 = await w.beatRevision(hello.uuid);
        if (r1 !== r0) {
          this.log.warn('the primary is silent on the link but beats on the witness: not failing over', { domain: this.domainName, witness: w.label });
          this.witnessWait = null;
          return 'alive';
        }
        this.fencingToken = await w.takeFrom(hello.uuid, hello.host, this.hostName, { host: this.hostName, state: 'active' });
        this.witnessWait = null;
        return 'go';
      } catch (err) {
        if (err instanceof FencedError) {
          this.witnessWait = null;
          this.error = `not failing over: ${err.message}`;
          this.log.warn('the witness says the primary kept the domain: dropping the replica', { domain: this.domainName, reason: err.message });
          return 'fenced';
        }
        this.witnessWait = (err as Error).message;
        this.log.error('cannot reach the witness: not failing over until it answers (the replica is kept)', { domain: this.domainName, error: this.witnessWait });
        await sleep(500);
      }
    }
  }

  /** Declares the primary dead and runs the domain from the last applied checkpoint. */
  async failover(reason: string, byAdmin = false): Promise<void> {
    if (this.state !== 'replicating' && this.state !== 'halted') {
      throw new Error(`cannot fail over domain ${this.domainName ?? '?'}: replication is ${this.state}`);
    }
    if (this.events.witness && this.hello && !this.gating) {
      this.gating = true;
      let verdict: Awaited<ReturnType<BackupSession['witnessGate']>>;
      try {
        verdict = await this.witnessGate();
      } finally {
        this.gating = false;
      }
      if (verdict === 'alive') {
        if (byAdmin) throw new Error(`the primary of ${this.domainName} (${this.hello.host}) still beats on the witness: refusing to fail over (split brain)`);
        this.hb?.rearm();
        return;
      }
      if (verdict === 'fenced') {
        this.hb?.stop();
        this.channel?.dispose();
        await this.replica?.destroy();
        this.state = 'stopped';
        this.events.onState?.(this);
        if (byAdmin) throw new Error(this.error ?? 'fenced');
        return;
      }
      if (verdict === 'stopped') return;
    } else if (this.events.witness && this.gating) {
      return; // a decision is being taken
    }
    this.state = 'failing-over';
    this.failoverStartedAt = performance.now();
    this.hb?.stop();
    this.channel?.fail(new Error(`failover: ${reason}`));
    this.events.onState?.(this);
    await this.applying; // a checkpoint being applied completes first
    const replica = this.replica!;
    this.log.warn('primary declared dead: failing over', { domain: this.domainName, reason, epoch: replica.lastEpoch });
    if (replica.lastEpoch === 0) {
      this.state = 'failed';
      this.error = 'primary lost before the first checkpoint completed: nothing to fail over to';
      await replica.destroy();
      this.log.error(this.error, { domain: this.domainName });
      this.events.onState?.(this);
      return;
    }
    if (process.env.XLHA_DEBUG_DIGESTS) {
      fs.appendFileSync(process.env.XLHA_DEBUG_DIGESTS, `activated ${replica.lastEpoch} ${await replica.memoryDigest()}\n`);
    }
    try {
      if (this.events.fenceCommand) {
        await runFenceCommand(this.events.fenceCommand, { event: 'activate', domain: this.domainName ?? '?', uuid: this.hello?.uuid ?? '', peer: this.hello?.host ?? '', token: this.fencingToken });
        this.log.warn('fence command done: activating', { domain: this.domainName, command: this.events.fenceCommand });
      }
      // with a fencing token the old copy stands down (or is dead): wait for what it still holds
      await replica.activate(this.fencingToken !== null ? { addressWaitMs: ACTIVATE_ADDRESS_WAIT_MS } : {});
      this.state = 'active';
      this.failoverMs = performance.now() - this.failoverStartedAt;
      this.log.warn('failover complete: domain running on this host', { domain: this.domainName, epoch: replica.lastEpoch, ms: Math.round(this.failoverMs), ...(this.fencingToken !== null ? { fencingToken: this.fencingToken } : {}) });
    } catch (err) {
      // The replica stays parked with its checkpoint: the admin can fail over again.
      this.state = 'halted';
      this.error = `activation failed: ${(err as Error).message}; replica kept at checkpoint ${replica.lastEpoch}`;
      this.log.error(this.error, { domain: this.domainName });
    }
    this.events.onState?.(this);
  }

  /**
   * An admin's `xl-ha failover`: no waiting for the timeout. While the primary is still
   * connected and heard from within the failover timeout, it is refused unless forced: two
   * running copies are worse than a late failover.
   */
  async failoverNow(force = false): Promise<void> {
    if (!force && this.state === 'replicating' && !this.disconnected && this.hb && this.hb.silentMs < (this.hello?.failoverTimeoutMs ?? 0)) {
      throw new Error(
        `the primary of ${this.domainName} (${this.hello?.host}) is connected and was heard from ${Math.round(this.hb.silentMs)} ms ago: ` +
          'refusing to fail over while it is alive (split brain); use --force if it is really dead',
      );
    }
    return this.failover('declared dead by the administrator', true);
  }

  status(): Record<string, unknown> {
    return {
      role: 'backup',
      domain: this.domainName,
      mode: this.hello?.mode,
      plays: this.role?.name,
      ...this.role?.stats?.(),
      state: this.state,
      primary: this.hello?.host,
      domid: this.replica?.domid,
      epoch: this.replica?.lastEpoch ?? 0,
      checkpointsApplied: this.checkpointsApplied,
      checkpointsRejected: this.checkpointsRejected,
      ...(this.decoder ? { transfer: this.decoder.status() } : {}),
      ...(this.fencingToken !== null ? { fencingToken: this.fencingToken } : {}),
      ...(this.witnessWait ? { waitingForWitness: this.witnessWait } : {}),
      primarySilentMs: this.hb ? Math.round(this.hb.silentMs) : undefined,
      ...(this.hb?.stalledSilences ? { primaryStalls: this.hb.stalledSilences } : {}),
      failoverTimeoutInForceMs: this.hb?.effectiveTimeoutMs,
      failoverMs: this.failoverMs ? Math.round(this.failoverMs) : undefined,
      error: this.error ?? undefined,
    };
  }

  /**
   * The daemon stops. A replica that is not running as the domain cannot outlive this process
   * (on Xen its libxl restore runs in it, and a restore cut off leaves a half-built
   * `<name>--incoming` that blocks the next replica of that name), so it is destroyed, and one
   * already being dropped (after GOODBYE) is waited for, either up to `timeoutMs`. A domain that
   * failed over here runs on.
   */
  async shutdown(timeoutMs = SHUTDOWN_DROP_MS): Promise<void> {
    const replica = this.replica;
    const state = this.state;
    this.dispose();
    let work: Promise<unknown> = Promise.resolve();
    if (state === 'stopped') work = this.droppingReplica;
    else if (replica && state !== 'active' && state !== 'failing-over') {
      this.log.warn('the daemon stops: the replica is dropped (it cannot outlive this daemon; the primary builds a new one when it reconnects)', {
        domain: this.domainName,
        state,
        epoch: replica.lastEpoch,
      });
      work = replica.destroy();
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([work.catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  dispose(): void {
    if (this.state === 'replicating' || this.state === 'handshake') this.state = 'stopped';
    this.hb?.stop();
    this.role?.dispose?.();
    this.side.close(new Error('session disposed'));
    this.channel?.dispose();
  }
}
