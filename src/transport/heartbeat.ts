/**
 * Heartbeats, both ways. Each side sends a HEARTBEAT every `heartbeatMs` and declares its
 * peer dead when nothing at all (heartbeat, checkpoint data or ack) has arrived for
 * `timeoutMs`. A closed connection is not, by itself, a death certificate: the peer is dead
 * when it has been silent for the timeout, whatever the socket says.
 */
import { encodeHeartbeat, XLHA_REC } from './channel-records.js';
import type { Channel } from './channel.js';
import { tcpAcks, type TcpAcks } from './tcp-info.js';

/**
 * Silence tolerated while a full checkpoint is in flight: the whole memory is hashed, parsed
 * and applied then, which takes seconds per GiB on hardware and tens of seconds for 128 MiB
 * under the lab's software emulation (measured: the first checkpoint of a 128 MiB PV guest
 * outran a 10 s grace there).
 */
export const GRACE_TIMEOUT_MS = 120_000;

/**
 * After the first (full) checkpoint both sides let go of the whole memory they held for it,
 * and the garbage collection that follows can stop either process for longer than an
 * aggressive timeout (measured on sim with 256 MiB, 50/150 ms heartbeats and 2048 clients
 * sharing two cores: a 159–167 ms silence right after the first commit, in about one start in
 * five, and the peer declared dead). The grace ends this long after the first checkpoint
 * instead of at once: a peer that dies then is declared dead up to this much later.
 */
export const SETTLE_AFTER_FULL_MS = 1000;

/**
 * The timeout adapts to the silences this peer has shown: a peer whose longest gap between
 * arrivals over the last ADAPT_WINDOW gaps was G is declared dead after max(timeoutMs,
 * ADAPT_FACTOR × G), capped at ADAPT_CAP_MS. On an idle sim pair (gaps of one heartbeat) this is
 * the configured timeout; on a loaded dom0 under emulation, where TLS, libxl and the guest
 * share two emulated CPUs and gaps of 100 to 150 ms are routine, it stretches instead of
 * flapping (measured in the lab: the backup declared a live primary dead after 152 and 163 ms
 * of silence with a 150 ms timeout). A dead peer is then declared dead later, never sooner.
 */
export const ADAPT_FACTOR = 3;
export const ADAPT_WINDOW = 512;
export const ADAPT_CAP_MS = 2000;

/**
 * Until the peer has shown this many gaps outside grace, its silences are not known yet, and
 * the timeout in force is at least WARMUP_TIMEOUT_MS. Gaps inside a grace window are not
 * learned from, so right after the first checkpoint's settling window the detector knew
 * nothing, and under the lab's emulation it declared a live primary dead after 166 ms
 * (timeout 150 ms in force, epoch 1), and after 394 ms on a loaded machine (385 ms in force).
 * On the sim, with 50 ms heartbeats, the warm-up lasts about a second after the settling window.
 */
export const ADAPT_WARMUP_GAPS = 20;
export const WARMUP_TIMEOUT_MS = 1000;

/**
 * A peer that has gone silent while its kernel still acknowledges our heartbeats is stalled,
 * not dead: its process is waiting for a core, stopped, or in a long pause, and its host and
 * the network between us are up (a dead process's kernel closes the connection; a dead host or
 * a cut network acknowledges nothing). Such a silence is waited out up to this long before the
 * peer is declared dead anyway (a daemon hung for good). Measured on the sim with four busy
 * loops beside 8 domains on two cores: a primary's loop stood still for 960 ms, 685 ms of it
 * waiting for a core, and its backup, judging silence alone, declared it dead.
 */
export const STALLED_PEER_MAX_MS = 5000;

export interface HeartbeatOptions {
  heartbeatMs: number;
  timeoutMs: number;
  /** Silence tolerated during `grace()` (default GRACE_TIMEOUT_MS). */
  graceTimeoutMs?: number;
  /** Gaps to learn before the warm-up floor (WARMUP_TIMEOUT_MS) is lifted (default ADAPT_WARMUP_GAPS; 0: none). */
  warmupGaps?: number;
  /**
   * How long a silent peer whose kernel still acknowledges is waited for (default
   * STALLED_PEER_MAX_MS; 0: silence alone decides, as where TCP_INFO cannot be read).
   */
  stalledPeerMaxMs?: number;
  /** Called once per silence that was judged a stall rather than a death. */
  onStalled?: (silentMs: number, acks: TcpAcks) => void;
}

export class HeartbeatMonitor {
  private seq = 0;
  private sendTimer: NodeJS.Timeout | null = null;
  private checkTimer: NodeJS.Timeout | null = null;
  private lastRx = performance.now();
  private lastCheck = performance.now();
  private channel: Channel | null = null;
  private bytesAtCheck = 0;
  private fired = false;
  private graceUntil = 0;
  private graceLimitMs: number | undefined;
  /** The last gaps between arrivals outside grace (ms), a ring. */
  private readonly gaps = new Float64Array(ADAPT_WINDOW);
  private gapCount = 0;
  /** The current silence was judged a stall: its gap is not learned from. */
  private stalled = false;
  /** Silences judged a stall and waited out (or not: the peer may have died during one). */
  stalledSilences = 0;

  constructor(
    private readonly opts: HeartbeatOptions,
    private readonly onDead: (silentMs: number) => void,
    private readonly lastEpoch: () => number,
  ) {}

  /** Starts sending on `channel` (when given) and watching for silence. */
  start(channel: Channel | null): void {
    this.lastRx = performance.now();
    if (channel) this.attach(channel);
    this.checkTimer = setInterval(() => this.check(), Math.max(1, Math.floor(this.opts.heartbeatMs / 4)));
  }

  attach(channel: Channel): void {
    if (this.sendTimer) clearInterval(this.sendTimer);
    this.channel = channel;
    this.bytesAtCheck = channel.bytesReceived;
    const beat = () => {
      if (channel.isClosed) return;
      const e = this.lastEpoch();
      channel.send(XLHA_REC.HEARTBEAT, encodeHeartbeat({ seq: ++this.seq, sentAtMs: Date.now(), lastEpoch: e < 0 ? null : e }));
    };
    beat();
    this.sendTimer = setInterval(beat, this.opts.heartbeatMs);
  }

  /**
   * While a full checkpoint (the whole memory) is in flight either side may be busy for longer
   * than a heartbeat period; until `ms` from now silence is measured against `limitMs` (default
   * the monitor's `graceTimeoutMs`), or the timeout if that is longer.
   */
  grace(ms: number, limitMs?: number): void {
    this.graceUntil = ms > 0 ? performance.now() + ms : 0;
    this.graceLimitMs = limitMs;
  }

  /*
   * Anything received from the peer counts as a sign of life: any byte on the attached channel,
   * even in the middle of a frame. Nothing reads the clock per read (a system call per read
   * under Xen PV without a stable TSC): each check, every heartbeatMs/4, sees whether the
   * channel's byte count moved and stamps it. The peer is thus declared dead between timeoutMs
   * and timeoutMs + heartbeatMs/4 after its last byte, never before.
   */

  /** How long the peer has been silent (what arrived since the last check counts as now). */
  get silentMs(): number {
    const now = performance.now();
    this.observe(now);
    return now - this.lastRx;
  }

  private observe(now: number): void {
    const bytes = this.channel?.bytesReceived ?? 0;
    if (bytes !== this.bytesAtCheck) {
      // A stall is explained by the kernel's acks: learning it would stretch the timeout a
      // real death is judged by (up to ADAPT_CAP_MS) for the next ADAPT_WINDOW gaps.
      if (now >= this.graceUntil && !this.stalled) this.gaps[this.gapCount++ % ADAPT_WINDOW] = now - this.lastRx;
      this.stalled = false;
      this.lastRx = now;
    }
    this.bytesAtCheck = bytes;
  }

  /**
   * The timeout in force now: the configured one, stretched to the peer's recent silences, and
   * at least WARMUP_TIMEOUT_MS while those are not known yet (see ADAPT_WARMUP_GAPS).
   */
  get effectiveTimeoutMs(): number {
    let max = 0;
    const n = Math.min(this.gapCount, ADAPT_WINDOW);
    for (let i = 0; i < n; i++) if (this.gaps[i]! > max) max = this.gaps[i]!;
    const warm = this.gapCount < (this.opts.warmupGaps ?? ADAPT_WARMUP_GAPS);
    return Math.round(Math.max(this.opts.timeoutMs, warm ? WARMUP_TIMEOUT_MS : 0, Math.min(ADAPT_CAP_MS, ADAPT_FACTOR * max)));
  }

  private check(): void {
    if (this.fired) return;
    const now = performance.now();
    // If this process itself was stalled (GC, a long synchronous step), the peer's silence
    // cannot be judged: its heartbeats may sit unread in our socket. Give it a fresh window.
    if (now - this.lastCheck > this.opts.timeoutMs / 2) this.lastRx = Math.max(this.lastRx, now);
    this.lastCheck = now;
    this.observe(now);
    const silent = now - this.lastRx;
    const limit = now < this.graceUntil ? Math.max(this.opts.timeoutMs, this.graceLimitMs ?? this.opts.graceTimeoutMs ?? GRACE_TIMEOUT_MS) : this.effectiveTimeoutMs;
    if (silent >= limit) {
      if (this.peerStalled(silent, limit)) return;
      this.fired = true;
      this.stop();
      this.onDead(silent);
    }
  }

  /**
   * The peer's process is silent but its kernel acknowledged our heartbeats since, and
   * recently: a stall, waited out up to `stalledPeerMaxMs` of silence. The acks must have kept
   * coming for at least a heartbeat period after the peer's last byte (acks that came with its
   * data prove nothing), and the latest within the timeout (a host that died during a stall
   * stops acknowledging, and is then judged by the timeout again).
   */
  private peerStalled(silent: number, limit: number): boolean {
    const max = this.opts.stalledPeerMaxMs ?? STALLED_PEER_MAX_MS;
    if (max <= 0 || silent >= max) return false;
    const a = tcpAcks(this.channel?.socket);
    if (!a || a.lastAckRecvMs >= limit || silent - a.lastAckRecvMs < this.opts.heartbeatMs) return false;
    if (!this.stalled) {
      this.stalled = true;
      this.stalledSilences++;
      this.opts.onStalled?.(silent, a);
    }
    return true;
  }

  /** After a death that turned out false (the peer answered on another path): watch again, from now. */
  rearm(): void {
    this.stop();
    this.fired = false;
    this.start(this.channel);
  }

  stop(): void {
    if (this.sendTimer) clearInterval(this.sendTimer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.sendTimer = this.checkTimer = null;
  }
}
