/**
 * The shape of the daemon's answer to the control request `status`, as the CLI (`xl-ha status`,
 * `xl-ha top`, the precopy progress bar) and the metrics endpoint read it. It is JSON that
 * crossed a socket: every figure is optional, and readers show a missing one as `-` (or leave
 * the series out) rather than trusting it is there.
 *
 * Written from what produces it: `Daemon.dispatch` `case 'status'` (src/daemon/daemon.ts),
 * `Protection.status()` (src/daemon/protect.ts) with `SupervisedProtection.status()` on top
 * (src/daemon/supervise.ts), `BackupSession.status()` (src/failover/backup.ts),
 * `DaemonWatchdog.status()` (src/daemon/watchdog.ts) and the lifecycle's waiting protections,
 * histories and alerts (src/daemon/lifecycle.ts). A mode's or a role's own figures
 * (`Mode.stats()`, `ReplicaRole.stats()`) are spread into the same objects as extra numbers and
 * are not listed here. Type-only: importing this module loads nothing.
 */

import type { TransferStatus } from '../transport/transfer.js';

/** `EngineState` (src/engine/engine.ts), plus what the supervisor and the daemon say on top. */
export type ProtectionState =
  | 'starting'
  | 'waiting-for-peer'
  | 'protected'
  | 'reconnecting'
  | 'stopping'
  | 'stopped'
  | 'lost'
  | 'fenced'
  | 'failed';

/** Every protection state, in the order a protection goes through them (metrics emit each). */
export const PROTECTION_STATES: readonly ProtectionState[] = ['starting', 'waiting-for-peer', 'protected', 'reconnecting', 'stopping', 'stopped', 'lost', 'fenced', 'failed'];

/** `BackupState` (src/failover/backup.ts). */
export type ReplicaState = 'handshake' | 'replicating' | 'halted' | 'failing-over' | 'active' | 'stopped' | 'failed';

export const REPLICA_STATES: readonly ReplicaState[] = ['handshake', 'replicating', 'halted', 'failing-over', 'active', 'stopped', 'failed'];

/** The initial copy of the whole memory, while a protection is `starting`. */
export interface PrecopyProgressJson {
  sentBytes: number;
  totalBytes: number;
  bytesPerSec: number;
  /** Seconds left at the current rate; null before a rate is known. */
  etaSec: number | null;
}

/** One line of a protection's recent history (oldest first). */
export interface HistoryEntryJson {
  /** ISO 8601 time. */
  at: string;
  event: string;
  detail?: string;
}

/**
 * The checkpoint transfer (src/transport/transfer.ts `TransferStatus`): with fgbi, the memory of
 * this side's shadow (page bytes held, memory allocated, its bound) and, on the primary, how
 * pages went.
 * One type: the JSON is what `status()` returns.
 */
export type TransferStatusJson = TransferStatus;

export interface ProtectionStatusJson {
  role?: 'primary';
  domain: string;
  domid?: number;
  /** A mode id (src/engine/modes/ids.ts). */
  mode?: string;
  /** A {@link ProtectionState}; a newer daemon may say something else. */
  state: ProtectionState | (string & {});
  /** `host:port` of the backup, or `blackhole`. */
  peer?: string;
  intervalMs?: number;
  minGapMs?: number;
  maxIntervalMs?: number;
  inFlight?: number;
  backupLossTimeoutMs?: number;
  phaseOrder?: string;
  outputRule?: string;
  devices?: string[];
  transfer?: TransferStatusJson;
  checkpointsTaken?: number;
  epoch?: number;
  committed?: number;
  checkpointsPerSec?: number;
  pauseMsP50?: number;
  pauseMsP99?: number;
  pauseMsMax?: number;
  firstPauseMs?: number;
  ackMsP50?: number;
  suspendMsP50?: number;
  suspendMsP99?: number;
  captureMsP50?: number;
  captureMsP99?: number;
  /** The backend's own steps (xen), median ms each. */
  backendStepsMsP50?: Record<string, number>;
  /** Content bytes sent per checkpoint, after the transfer's stages. */
  bytesPerCheckpointP50?: number;
  /** Content bytes captured per checkpoint, before them. */
  capturedBytesPerCheckpointP50?: number;
  pagesPerCheckpointP50?: number;
  precopyPages?: number;
  resyncs?: number;
  /** Output held for the backup now. */
  bufferedBytes?: number;
  buffer?: { limitBytes?: number; onFull?: string; maxHeldBytes?: number; throttles?: number; throttledMs?: number };
  bytesSent?: number;
  /** Since the last checkpoint acknowledgement. */
  lastAckAgeMs?: number;
  /** Replication traffic, recent rate. */
  bytesPerSec?: number;
  /** While `starting`: the initial memory copy. */
  precopy?: PrecopyProgressJson;
  witnessBeatFailures?: number;
  /**
   * Silences of the backup past the failure timeout that were waited out because its host still
   * acknowledged (TCP_INFO): stalls, not deaths (docs/fencing.md). Absent when none.
   */
  backupStalls?: number;
  /** While `reconnecting` (SupervisedProtection). */
  reconnect?: { attempts: number; lastError?: string; nextAttemptInMs: number; unprotectedForMs: number };
  /** While `waiting-for-peer`. */
  waiting?: { attempts: number; lastError?: string; nextAttemptInMs: number };
  /** Times protection came back after a loss. */
  resumed?: number;
  /** Where the protection was asked for (a cfg file, the command line), while waiting for the peer. */
  source?: string;
  history?: HistoryEntryJson[];
  error?: string;
}

export interface ReplicaStatusJson {
  role?: 'backup';
  /** Absent until the primary's HELLO named it. */
  domain?: string;
  mode?: string;
  /** The part this host plays (`replica`, colo's `secondary`). */
  plays?: string;
  /** A {@link ReplicaState}; a newer daemon may say something else. */
  state: ReplicaState | (string & {});
  /** The primary's host name (from its HELLO). */
  primary?: string;
  domid?: number;
  epoch?: number;
  checkpointsApplied?: number;
  checkpointsRejected?: number;
  /** Present when the transfer is not full. */
  transfer?: TransferStatusJson;
  fencingToken?: number;
  waitingForWitness?: string;
  primarySilentMs?: number;
  /** Silences of the primary waited out as stalls (its host still acknowledged), not failed over. Absent when none. */
  primaryStalls?: number;
  failoverTimeoutInForceMs?: number;
  failoverMs?: number;
  history?: HistoryEntryJson[];
  error?: string;
}

/** `daemonStatus()` (src/daemon/daemon.ts). */
export interface DaemonProcessJson {
  pid?: number;
  uptimeSecs?: number;
  threadPool?: number;
  rssMiB?: number;
  maxRssMiB?: number;
  heapUsedMiB?: number;
  externalMiB?: number;
  /** The main thread's garbage collections since start (src/daemon/gc-stats.ts). */
  gc?: { minor: number; minorMs: number; major: number; majorMs: number; maxMs: number };
  /** The main thread's stalls (src/daemon/loop-stalls.ts). */
  loop?: { lagP99Ms: number; maxMs: number; stalls: number; stallMs: number; recent: { at: string; ms: number; gcMs: number; runMs: number | null; waitMs: number | null }[] };
}

/** `DaemonWatchdog.status()`. */
export interface WatchdogStatusJson {
  armed: boolean;
  /** The watchdog is configured off (`--watchdog 0`). */
  off?: boolean;
  timeoutSec?: number;
  id?: number;
  armedForMs?: number;
  lastKickAgoMs?: number;
  error?: string;
}

export interface DaemonStatusJson {
  host: string;
  /** `sim` or `xen`. */
  backend: string;
  daemon?: DaemonProcessJson;
  watchdog?: WatchdogStatusJson;
  protections: ProtectionStatusJson[];
  replicas: ReplicaStatusJson[];
  /** Domains that run unprotected and should not (src/daemon/lifecycle.ts alerts). */
  unprotected?: { domain: string; at: string; reason: string }[];
}
