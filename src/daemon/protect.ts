/**
 * Starting protection of one running domain on the primary: set up the mode (which chooses
 * its devices, in-flight depth and phase order), connect to the backup, agree in HELLO, and
 * run the engine with the mode's plan. This is the `xl-ha remus|kemari <Domain> <host>` of the
 * daemon; it chooses nothing for a mode.
 */
import fs from 'node:fs';
import type { Logger } from 'winston';
import type { DomainInfo, HypervisorBackend } from '../backend/types.js';
import { CheckpointEngine, type EngineState } from '../engine/engine.js';
import { BlackholeLink, ChannelLink, type ReplicationLink } from '../engine/link.js';
import { STALLED_PEER_MAX_MS } from '../transport/heartbeat.js';
import { createMode, type ModeId } from '../engine/modes/index.js';
import { isModeId, MODE_IDS } from '../engine/modes/ids.js';
import { DeviceEvents } from '../engine/events.js';
import type { Mode, ModePlan } from '../engine/types.js';
import { Channel } from '../transport/channel.js';
import { connectSecure } from '../transport/secure.js';
import type { PeerKeys } from '../security/peers.js';
import { FencedError, WITNESS_BEAT_MIN_MS, type Witness } from '../witness/witness.js';
import { sleep } from '../util/sleep.js';
import { XLHA_REC, decodeHelloAck, encodeHello } from '../transport/channel-records.js';
import { PROTOCOL_VERSION, type HelloBody } from '../transport/hello.js';
import { round } from '../util/samples.js';
import { LIMITS } from '../config/domain.js';
import { BUFFER_FULL_POLICIES, type BufferFullPolicy } from '../engine/buffer-policy.js';
import { checkTransferRuns, fgbiParams, parseTransfer, transferStages, type TransferId, type TransferSettings } from '../transport/transfer.js';
import { isValidBlockBytes } from '../transport/fgbi.js';

export interface ProtectOptions {
  domain: string | number;
  mode: ModeId;
  peer: { host: string; port: number };
  intervalMs: number;
  /** kemari: events within this gap coalesce into one sync (`--min-gap`, `ha_kemari_min_gap_ms`). */
  minGapMs?: number;
  /** colo: a checkpoint at the latest this long after the previous one (`--max-interval`, `ha_colo_max_interval_ms`). */
  maxIntervalMs?: number;
  netbuf: boolean;
  disk: boolean;
  blackhole: boolean;
  heartbeatMs: number;
  failoverTimeoutMs: number;
  /** Checkpoints in flight at most (`--in-flight`); the mode's plan decides, by default the backend's maxInFlight. */
  inFlight?: number;
  /** Output held for the backup before `onBufferFull` acts, MiB (`--buffer-limit`, `ha_buffer_limit_mib`). */
  bufferLimitMiB?: number;
  /** `--on-buffer-full`, `ha_on_buffer_full` (default throttle). */
  onBufferFull?: BufferFullPolicy;
  /** Checkpoint transfer (`--transfer`, `ha_transfer`; default full). */
  transfer?: TransferId;
  /** fgbi's block size in bytes (`--fgbi-block-bytes`, `ha_fgbi_block_bytes`; default 64). */
  fgbiBlockBytes?: number;
  /** The bound of each side's fgbi shadow, MiB (`--fgbi-shadow-mib`, `ha_fgbi_shadow_mib`; default 64). */
  fgbiShadowMiB?: number;
  /** -F: allow -n, -d and -b, which let output reach clients before it is replicated. */
  allowUnsafe?: boolean;
}

/**
 * Protect options from a control client: each field checked against the same limits as the
 * CLI's, and a bad one named (the control socket is input like any other).
 */
export function parseProtectOptions(v: unknown): ProtectOptions {
  const bad = (k: string, want: string, got: unknown): never => {
    throw new Error(`protect: option ${k} ${got === undefined ? 'is missing' : `= ${JSON.stringify(got).slice(0, 80)} is not valid`}: expected ${want}`);
  };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('options', 'an object', v);
  const o = v as Record<string, unknown>;
  const int = (k: string, r: { min: number; max: number }, optional = false): number | undefined => {
    const x = o[k];
    if (x === undefined && optional) return undefined;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < r.min || x > r.max) bad(k, `an integer from ${r.min} to ${r.max}`, x);
    return x as number;
  };
  const bool = (k: string, optional = false): boolean | undefined => {
    const x = o[k];
    if (x === undefined && optional) return undefined;
    if (typeof x !== 'boolean') bad(k, 'true or false', x);
    return x as boolean;
  };
  const domain = o.domain;
  if (!((typeof domain === 'string' && domain.length > 0 && domain.length <= 64) || (typeof domain === 'number' && Number.isInteger(domain) && domain > 0))) bad('domain', 'a domain name or domid', domain);
  if (!isModeId(o.mode)) bad('mode', MODE_IDS.join(', '), o.mode);
  const peer = o.peer as Record<string, unknown> | undefined;
  if (typeof peer !== 'object' || peer === null || typeof peer.host !== 'string' || !peer.host || typeof peer.port !== 'number' || !Number.isInteger(peer.port) || peer.port < 1 || peer.port > 65535) {
    bad('peer', '{host, port}', peer);
  }
  const heartbeatMs = int('heartbeatMs', LIMITS.heartbeatMs)!;
  const failoverTimeoutMs = int('failoverTimeoutMs', LIMITS.failoverTimeoutMs)!;
  if (failoverTimeoutMs <= heartbeatMs) bad('failoverTimeoutMs', `more than heartbeatMs (${heartbeatMs})`, failoverTimeoutMs);
  const minGapMs = int('minGapMs', LIMITS.kemariMinGapMs, true);
  const maxIntervalMs = int('maxIntervalMs', LIMITS.coloMaxIntervalMs, true);
  const inFlight = int('inFlight', LIMITS.inFlight, true);
  const allowUnsafe = bool('allowUnsafe', true);
  const bufferLimitMiB = int('bufferLimitMiB', LIMITS.bufferLimitMiB, true);
  let transfer: TransferId | undefined;
  if (o.transfer !== undefined) {
    const t = typeof o.transfer === 'string' ? parseTransfer(o.transfer) : null;
    if (!t?.ok) bad('transfer', t ? t.reason.replace(/^.*; expected /, '') : 'a string', o.transfer);
    transfer = t!.ok ? t!.id : undefined;
  }
  const fgbiBlockBytes = o.fgbiBlockBytes;
  if (fgbiBlockBytes !== undefined && !(typeof fgbiBlockBytes === 'number' && isValidBlockBytes(fgbiBlockBytes))) bad('fgbiBlockBytes', 'a power of two from 16 to 2048', fgbiBlockBytes);
  const fgbiShadowMiB = int('fgbiShadowMiB', LIMITS.fgbiShadowMiB, true);
  const onBufferFull = o.onBufferFull;
  if (onBufferFull !== undefined && !(BUFFER_FULL_POLICIES as readonly unknown[]).includes(onBufferFull)) bad('onBufferFull', BUFFER_FULL_POLICIES.join(' or '), onBufferFull);
  return {
    domain: domain as string | number,
    mode: o.mode as ModeId,
    peer: { host: peer!.host as string, port: peer!.port as number },
    intervalMs: int('intervalMs', LIMITS.intervalMs)!,
    ...(minGapMs !== undefined ? { minGapMs } : {}),
    ...(maxIntervalMs !== undefined ? { maxIntervalMs } : {}),
    netbuf: bool('netbuf')!,
    disk: bool('disk')!,
    blackhole: bool('blackhole')!,
    heartbeatMs,
    failoverTimeoutMs,
    ...(inFlight !== undefined ? { inFlight } : {}),
    ...(allowUnsafe !== undefined ? { allowUnsafe } : {}),
    ...(bufferLimitMiB !== undefined ? { bufferLimitMiB } : {}),
    ...(onBufferFull !== undefined ? { onBufferFull: onBufferFull as BufferFullPolicy } : {}),
    ...(transfer !== undefined ? { transfer } : {}),
    ...(fgbiBlockBytes !== undefined ? { fgbiBlockBytes: fgbiBlockBytes as number } : {}),
    ...(fgbiShadowMiB !== undefined ? { fgbiShadowMiB } : {}),
  };
}

/** The transfer a protection asks for, with its parameters. */
export function transferSettings(opts: Pick<ProtectOptions, 'transfer' | 'fgbiBlockBytes' | 'fgbiShadowMiB'>): TransferSettings {
  const id = opts.transfer ?? 'full';
  return { id, ...(transferStages(id).includes('fgbi') ? { fgbi: fgbiParams(opts.fgbiBlockBytes, opts.fgbiShadowMiB) } : {}) };
}

/** How long the backup may be silent before the primary gives up protection. */
export function backupLossTimeoutMs(opts: Pick<ProtectOptions, 'failoverTimeoutMs'>): number {
  return Math.max(opts.failoverTimeoutMs, BACKUP_LOSS_MIN_MS);
}

/** Where a protection's checkpoints go, for logs and status. */
function peerLabel(opts: ProtectOptions): string {
  return opts.blackhole ? 'blackhole' : `${opts.peer.host}:${opts.peer.port}`;
}

export class Protection {
  done!: Promise<EngineState>;
  startedAt = Date.now();
  /** Beats on the witness that failed in a row (status). */
  witnessBeatFailures = 0;
  uuid = '';
  /** The guest's memory, the size of the initial copy (bytes). */
  memoryBytes = 0;
  /** For bytes/s in status: the link's bytes sent at the previous status call, and when. */
  private rate = { at: performance.now(), bytes: 0, perSec: 0 };

  constructor(
    readonly opts: ProtectOptions,
    readonly domid: number,
    readonly name: string,
    readonly engine: CheckpointEngine,
    readonly link: ReplicationLink,
    readonly mode: Mode,
    readonly plan: ModePlan,
    readonly abort = new AbortController(),
  ) {}

  status(): Record<string, unknown> {
    const s = this.engine.stats;
    const elapsed = (performance.now() - (s.firstCheckpointAt || performance.now())) / 1000;
    const pause = s.pauseMs.summary();
    const now = performance.now();
    const sent = this.link.bytesSent;
    if (now - this.rate.at >= 1000) {
      this.rate = { at: now, bytes: sent, perSec: Math.round(((sent - this.rate.bytes) * 1000) / (now - this.rate.at)) };
    }
    return {
      role: 'primary',
      domain: this.name,
      domid: this.domid,
      mode: this.opts.mode,
      state: this.engine.state,
      peer: peerLabel(this.opts),
      ...(this.opts.mode === 'remus' ? { intervalMs: this.opts.intervalMs } : {}),
      ...(this.opts.mode === 'kemari' && this.opts.minGapMs !== undefined ? { minGapMs: this.opts.minGapMs } : {}),
      ...(this.opts.mode === 'colo' && this.opts.maxIntervalMs !== undefined ? { maxIntervalMs: this.opts.maxIntervalMs } : {}),
      inFlight: this.engine.maxInFlight,
      backupLossTimeoutMs: backupLossTimeoutMs(this.opts),
      phaseOrder: this.plan.phaseOrder,
      outputRule: this.plan.outputRule,
      devices: this.plan.devices.map((d) => d.kind),
      transfer: this.link.transferStatus?.() ?? { id: this.opts.transfer ?? 'full' },
      checkpointsTaken: s.epoch,
      ...this.mode.stats?.(),
      epoch: s.epoch,
      committed: s.committed,
      checkpointsPerSec: elapsed > 0 ? round(Math.max(0, s.committed - 1) / elapsed, 2) : 0,
      pauseMsP50: round(pause.p50),
      pauseMsP99: round(pause.p99),
      pauseMsMax: round(pause.max),
      firstPauseMs: round(s.firstPauseMs),
      ackMsP50: round(s.ackMs.percentile(50)),
      suspendMsP99: round(s.suspendMs.percentile(99)),
      captureMsP99: round(s.captureMs.percentile(99)),
      suspendMsP50: round(s.suspendMs.percentile(50)),
      captureMsP50: round(s.captureMs.percentile(50)),
      backendStepsMsP50: this.engine.backendTimings(),
      bytesPerCheckpointP50: round(s.bytesPerCheckpoint.percentile(50), 0),
      capturedBytesPerCheckpointP50: round(s.capturedBytesPerCheckpoint.percentile(50), 0),
      pagesPerCheckpointP50: round(s.pagesPerCheckpoint.percentile(50), 0),
      precopyPages: s.precopyPages,
      resyncs: s.resyncs,
      bufferedBytes: this.engine.heldBytes,
      buffer: { limitBytes: this.engine.bufferLimitBytes, onFull: this.engine.bufferFullPolicy, maxHeldBytes: s.maxHeldBytes, throttles: s.throttles, throttledMs: Math.round(s.throttledMs) },
      bytesSent: sent,
      bytesPerSec: this.rate.perSec,
      ...(s.lastAckAt ? { lastAckAgeMs: Math.round(now - s.lastAckAt) } : {}),
      ...(this.engine.state === 'starting' ? { precopy: this.precopy(now) } : {}),
      ...(this.witnessBeatFailures ? { witnessBeatFailures: this.witnessBeatFailures } : {}),
      ...(this.link.peerStalls ? { backupStalls: this.link.peerStalls } : {}),
      error: this.engine.error?.message,
    };
  }

  /** The initial copy of the memory, while it runs: bytes sent of the guest's, rate and ETA. */
  precopy(now = performance.now()): { sentBytes: number; totalBytes: number; bytesPerSec: number; etaSec: number | null } {
    const sentBytes = Math.min(this.link.bytesSent, this.memoryBytes);
    const secs = (now - this.engine.stats.startedAt) / 1000;
    const bytesPerSec = secs > 0 ? Math.round(sentBytes / secs) : 0;
    return { sentBytes, totalBytes: this.memoryBytes, bytesPerSec, etaSec: bytesPerSec > 0 ? Math.round((this.memoryBytes - sentBytes) / bytesPerSec) : null };
  }

  /** Clean stop: in-flight checkpoints commit, the backup drops its replica. */
  async stop(): Promise<EngineState> {
    this.abort.abort(new Error('protection stopped'));
    return this.done;
  }
}

/**
 * The backup is lost (engine `onLost`): this host may run the domain on alone only if the
 * witness lets it move the domain from `protected` to `unprotected`, which it refuses when the
 * backup took the domain over first. Without an answer the domain is paused (lost both the
 * backup and the witness: it must not run, and let out nothing, while the backup may be
 * taking over) and the witness is asked again every 500 ms. A stop meanwhile leaves it paused.
 */
async function decideAlone(backend: HypervisorBackend, info: DomainInfo, witness: Witness, me: string, backup: string, log: Logger, signal: AbortSignal): Promise<'release' | 'fence'> {
  let paused = false;
  const fence = () => (backend.fence ? backend.fence(info.domid) : backend.pause(info.domid));
  for (;;) {
    try {
      const token = await witness.takeFrom(info.uuid, me, backup, { host: me, state: 'unprotected' });
      if (paused) await (backend.unfence ? backend.unfence(info.domid) : backend.unpause(info.domid));
      log.warn('backup lost; the witness confirms this host keeps the domain: it runs on UNPROTECTED', { backup, revision: token, wasPaused: paused });
      return 'release';
    } catch (err) {
      if (err instanceof FencedError) {
        if (!paused) await fence().catch(() => {});
        log.error('the backup took the domain over: this copy is PAUSED and the output it held is dropped', { reason: err.message });
        return 'fence';
      }
      if (!paused) {
        paused = await fence().then(
          () => true,
          () => false,
        );
        log.error('lost both the backup and the witness: the domain is PAUSED until the witness answers', { error: (err as Error).message });
      }
      if (signal.aborted) return 'fence';
      await sleep(500);
    }
  }
}

/**
 * Diagnostics for tests: with XLHA_DEBUG_DIGESTS=<file>, the primary appends the sha256 of the
 * guest memory captured in every checkpoint (computed while the guest is suspended) and every
 * committed epoch, so a test can compare the backup's memory with a checkpoint byte for byte.
 */
function debugDigestHooks(backend: HypervisorBackend, domid: number): { onCaptured?: (e: number) => void; onCommit?: (e: number) => void } {
  const file = process.env.XLHA_DEBUG_DIGESTS;
  const sim = backend as unknown as { memoryDigestSync?: (domid: number) => string };
  if (!file || !sim.memoryDigestSync) return {};
  return {
    onCaptured: (e) => fs.appendFileSync(file, `captured ${e} ${sim.memoryDigestSync!(domid)}\n`),
    onCommit: (e) => fs.appendFileSync(file, `committed ${e}\n`),
  };
}

/** The initial copy in the log: a line every PRECOPY_LOG_MS with the share sent, the rate and the ETA. */
export const PRECOPY_LOG_MS = 5000;

function precopyLog(p: Protection, log: Logger): NodeJS.Timeout {
  const t = setInterval(() => {
    if (p.engine.state !== 'starting') return;
    const c = p.precopy();
    const mib = (b: number) => Math.round(b / 104857.6) / 10;
    log.info('initial copy of the memory', {
      percent: c.totalBytes ? Math.round((c.sentBytes * 100) / c.totalBytes) : 0,
      sentMiB: mib(c.sentBytes),
      totalMiB: mib(c.totalBytes),
      MiBPerSec: mib(c.bytesPerSec),
      etaSec: c.etaSec,
    });
  }, PRECOPY_LOG_MS);
  t.unref();
  return t;
}

/**
 * The primary gives up protection only after the backup has been silent this long, or the
 * failover timeout if that is longer; its output stays held meanwhile. A backup that only
 * stalls (a 155 ms stall ended protection for good in the lab at the default 50/150 ms; garbage
 * collection and libxl pauses are of that order) is not dropped, at the price of holding output
 * up to this long when the backup really died. The backup's own failover timeout is unchanged.
 */
export const BACKUP_LOSS_MIN_MS = 2000;

/** A backup silent this long (or the failover timeout, if longer) after HELLO has failed it. */
export const HELLO_SILENCE_MS = 5000;
/** However long a backup that keeps sending HEARTBEATs takes to answer HELLO, at most this. */
export const HELLO_MAX_WAIT_MS = 10 * 60_000;

/**
 * Sends HELLO and waits for HELLO_ACK. The backup may need a while to prepare its replica (it
 * may first remove the previous one); meanwhile it sends HEARTBEATs, and the wait goes on as
 * long as it is heard from: `silenceMs` without a frame is the error, not a slow answer.
 */
async function handshake(channel: Channel, hello: HelloBody, silenceMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => reject(new Error(`backup did not answer HELLO: silent for ${silenceMs} ms`)), silenceMs);
    };
    const cap = setTimeout(() => {
      clearTimeout(timer);
      reject(new Error(`backup did not answer HELLO within ${HELLO_MAX_WAIT_MS / 1000} s, though it kept sending heartbeats`));
    }, HELLO_MAX_WAIT_MS);
    const done = () => {
      clearTimeout(timer);
      clearTimeout(cap);
    };
    arm();
    channel.onClose((err) => {
      done();
      reject(new Error(`backup closed the connection during the handshake: ${err?.message ?? 'closed'}`));
    });
    channel.onFrame((f) => {
      if (f.type === XLHA_REC.HEARTBEAT) return arm(); // still preparing the replica
      done();
      try {
        if (f.type !== XLHA_REC.HELLO_ACK) throw new Error(`expected HELLO_ACK from the backup, got frame 0x${f.type.toString(16)}`);
        const ack = decodeHelloAck(f.body);
        if (ack.ok !== true) throw new Error(`backup refused protection: ${String(ack.error ?? 'no reason given')}`);
        // A backup older than the transfer ignores it: it would take what it cannot decode.
        if (hello.transfer !== 'full' && ack.transfer !== hello.transfer) {
          throw new Error(`backup did not accept transfer ${hello.transfer} (it answered ${ack.transfer === undefined ? 'nothing about the transfer: an xl-ha without it' : JSON.stringify(ack.transfer)}): use full`);
        }
        resolve(ack);
      } catch (err) {
        reject(err);
      }
    });
    channel.send(XLHA_REC.HELLO, encodeHello(hello as unknown as Record<string, unknown>));
  });
}

/**
 * Connects, shakes hands and starts the engine. Resolves once the first checkpoint is
 * acknowledged (the domain is protected); rejects with a clear error otherwise, leaving the
 * domain running as it was.
 */
/**
 * `keys` is this host's pairings (its name is the HELLO's host): the backup must prove the
 * pair's key before anything of the domain leaves (src/transport/secure.ts).
 */
export async function startProtection(backend: HypervisorBackend, opts: ProtectOptions, log: Logger, keys: PeerKeys, witness?: Witness, onStarting?: (p: Protection) => void): Promise<Protection> {
  if ((!opts.netbuf || !opts.disk || opts.blackhole) && !opts.allowUnsafe) {
    const what = [!opts.netbuf && '-n (no network buffering)', !opts.disk && '-d (no disk replication)', opts.blackhole && '-b (blackhole)'].filter(Boolean).join(', ');
    throw new Error(`${what} lets output reach clients before it is replicated: add -F to run in unsafe mode`);
  }
  if (opts.inFlight !== undefined && !(Number.isInteger(opts.inFlight) && opts.inFlight >= LIMITS.inFlight.min && opts.inFlight <= LIMITS.inFlight.max)) {
    throw new Error(`checkpoints in flight must be an integer from ${LIMITS.inFlight.min} to ${LIMITS.inFlight.max}, got ${JSON.stringify(opts.inFlight)}`);
  }
  // a transfer this release or this backend cannot run is refused before anything is touched
  checkTransferRuns(transferSettings(opts), backend);
  const t0 = performance.now();
  const info = await backend.findDomain(opts.domain);
  // The disk to replicate, if any: a disk the backend cannot replicate is named here, before
  // anything is connected (xen: a disk not on block-ha needs -d).
  const diskBytes = opts.disk && backend.replicatedDiskBytes ? await backend.replicatedDiskBytes(info.domid) : 0;
  // The mode chooses its devices, depth and phase order; what this backend cannot run fails
  // here, before anything is connected.
  const mode = createMode(opts.mode, {
    intervalMs: opts.intervalMs,
    ...(opts.minGapMs !== undefined ? { minGapMs: opts.minGapMs } : {}),
    ...(opts.maxIntervalMs !== undefined ? { maxIntervalMs: opts.maxIntervalMs } : {}),
  });
  const elog = log.child({ module: 'engine', domid: info.domid, domain: info.name, mode: opts.mode });
  const events = new DeviceEvents((err, kind) => elog.error('device event listener failed', { event: kind, error: err.message }));
  let plan: ModePlan;
  try {
    plan = mode.setup({
      features: backend.features,
      backendKind: backend.kind,
      netbuf: opts.netbuf,
      disk: opts.disk,
      ...(opts.inFlight !== undefined ? { inFlight: opts.inFlight } : {}),
      events,
    });
  } catch (err) {
    mode.dispose?.();
    throw err;
  }
  try {
    return await connectAndRun(backend, opts, log, keys, witness, { info, mode, plan, events, elog, t0, diskBytes, ...(onStarting ? { onStarting } : {}) });
  } catch (err) {
    mode.dispose?.();
    throw err;
  }
}

async function connectAndRun(
  backend: HypervisorBackend,
  opts: ProtectOptions,
  log: Logger,
  keys: PeerKeys,
  witness: Witness | undefined,
  m: { info: DomainInfo; mode: Mode; plan: ModePlan; events: DeviceEvents; elog: Logger; t0: number; diskBytes: number; onStarting?: (p: Protection) => void },
): Promise<Protection> {
  const { info, mode, plan, events, elog, t0 } = m;
  const cfg = await backend.getDomainConfig(info.domid);
  const backendConfig = await backend.getBackendConfig?.(info.domid);
  const t1 = performance.now();
  let link: ReplicationLink;
  let backupName = '';
  if (opts.blackhole) {
    link = new BlackholeLink();
  } else {
    const { socket, peer } = await connectSecure(opts.peer, keys);
    const channel = new Channel(socket);
    log.debug('backup authenticated', { peer: peer.peer, at: peerLabel(opts) });
    backupName = peer.peer;
    if (witness) {
      try {
        // the domain is this host's to protect, or another host took it over (FencedError)
        await witness.claim(info.uuid, keys.hostName, peer.peer);
      } catch (err) {
        channel.dispose();
        throw err;
      }
    }
    try {
      await handshake(
        channel,
        {
          protocol: PROTOCOL_VERSION,
          host: keys.hostName,
          mode: opts.mode,
          uuid: info.uuid,
          domain: cfg,
          intervalMs: opts.intervalMs,
          heartbeatMs: opts.heartbeatMs,
          failoverTimeoutMs: opts.failoverTimeoutMs,
          transfer: transferSettings(opts).id,
          ...(transferSettings(opts).fgbi ? { fgbi: transferSettings(opts).fgbi! } : {}),
          netbuf: opts.netbuf,
          disk: opts.disk,
          ...(m.diskBytes ? { diskBytes: m.diskBytes } : {}),
          ...(backendConfig ? { backendConfig } : {}),
        },
        Math.max(HELLO_SILENCE_MS, opts.failoverTimeoutMs),
      );
    } catch (err) {
      channel.dispose();
      throw err;
    }
    link = new ChannelLink(channel, {
      heartbeatMs: opts.heartbeatMs,
      timeoutMs: backupLossTimeoutMs(opts),
      transfer: transferSettings(opts),
      onStalled: (silent, a) =>
        log.warn('backup silent but its host acknowledges: a stall, waited out', {
          domain: info.name,
          silentMs: Math.round(silent),
          lastAckMs: a.lastAckRecvMs,
          waitsUpToMs: STALLED_PEER_MAX_MS,
        }),
    });
  }
  // where the time to protection goes before the precopy: the domain and its configuration,
  // then the backup's answer (it builds the incoming domain first)
  const setup = { domainMs: Math.round(t1 - t0), handshakeMs: Math.round(performance.now() - t1) };
  log.info('protection starting: backup accepted, precopy begins', { domain: info.name, domid: info.domid, mode: opts.mode, peer: peerLabel(opts), ...setup });
  const session = await backend.openSave(info.domid);
  if (m.diskBytes && !session.disk) {
    // the backup was told of a disk that nothing would fill: its copy would be zeros
    await session.close().catch(() => {});
    link.close();
    throw new Error(`the disk of ${info.name} (${m.diskBytes} bytes) was checked for replication but its export went away before protection started`);
  }
  const debug = debugDigestHooks(backend, info.domid);
  const abort = new AbortController();
  const onLost = witness && !opts.blackhole ? () => decideAlone(backend, info, witness, keys.hostName, backupName, elog, abort.signal) : undefined;
  const engine = new CheckpointEngine({
    ...debug,
    session,
    link,
    mode,
    plan,
    events,
    domainName: info.name,
    log: elog,
    ...(onLost ? { onLost } : {}),
    ...(opts.bufferLimitMiB !== undefined ? { bufferLimitBytes: opts.bufferLimitMiB * 1048576 } : {}),
    ...(opts.onBufferFull !== undefined ? { onBufferFull: opts.onBufferFull } : {}),
  });
  const p = new Protection(opts, info.domid, info.name, engine, link, mode, plan, abort);
  p.uuid = info.uuid;
  p.memoryBytes = info.memoryMiB * 1048576;
  let protectedResolve!: () => void;
  const protectedP = new Promise<void>((r) => (protectedResolve = r));
  p.done = engine.run(p.abort.signal, protectedResolve);
  m.onStarting?.(p);
  const progress = precopyLog(p, elog);
  void protectedP.finally(() => clearInterval(progress));
  void p.done.finally(() => clearInterval(progress));
  if (witness && !opts.blackhole) {
    // the second heartbeat path: the backup fails over only when these stop too
    let seq = 0;
    const beat = setInterval(() => {
      witness.beat(info.uuid, keys.hostName, ++seq).then(
        () => (p.witnessBeatFailures = 0),
        () => p.witnessBeatFailures++,
      );
    }, Math.max(opts.heartbeatMs, WITNESS_BEAT_MIN_MS));
    void p.done.then(async (state) => {
      clearInterval(beat);
      if (state === 'stopped') await witness.release(info.uuid, keys.hostName).catch((err: Error) => elog.warn('could not release the domain on the witness', { error: err.message }));
    });
  }
  const first = await Promise.race([protectedP.then(() => 'ok' as const), p.done]);
  if (first !== 'ok') throw new Error(`protection of ${info.name} failed to start: ${engine.error?.message ?? first}`);
  elog.info('domain protected', { peer: peerLabel(opts), intervalMs: opts.intervalMs });
  return p;
}
