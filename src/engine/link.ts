/**
 * The primary's end of replication: sends checkpoint content and seals, tracks the backup's
 * acknowledgements, and watches the backup's heartbeats. `BlackholeLink` is `xl-ha remus -b`:
 * checkpoints go nowhere and are acknowledged at once (to measure the checkpoint cost alone).
 */
import type { TcpAcks } from '../transport/tcp-info.js';
import { Channel } from '../transport/channel.js';
import type { Frame } from '../transport/framing.js';
import { XLHA_REC, decodeAck, decodeGoodbye, decodeNack, encodeGoodbye, encodeSeal } from '../transport/channel-records.js';
import { HeartbeatMonitor, SETTLE_AFTER_FULL_MS } from '../transport/heartbeat.js';
import { SideChannel, type SideMessage } from '../transport/side.js';
import { TransferEncoder, type TransferSettings, type TransferStatus } from '../transport/transfer.js';

export class NackError extends Error {
  readonly code = 'ENACK';
  constructor(readonly epoch: number, reason: string) {
    super(`backup rejected checkpoint ${epoch}: ${reason}`);
  }
}

export class ReplicationLostError extends Error {
  readonly code = 'ELOST';
}

export interface ReplicationLink {
  /**
   * One content frame; an array is sent as one frame made of its parts. `onWritten`: as for
   * a ContentSink (the bytes' memory may be reused once it ran).
   */
  sendContent(type: number, body: Buffer | readonly Buffer[], onWritten?: () => void): Promise<void>;
  /**
   * The content that follows belongs to a FULL checkpoint (the first, or a resync): the
   * transfer's stages drop what they hold, as the backup does for a FULL checkpoint.
   */
  startFull?(): void;
  /** Content body bytes handed to the channel so far, after the transfer's stages. */
  readonly contentBytes?: number;
  /** The transfer's figures (each stage's shadow memory), for status; absent with `full`. */
  transferStatus?(): TransferStatus | undefined;
  seal(epoch: number, flags: number): void;
  /** Resolves with the backup's apply time (µs) when it acknowledges `epoch`. */
  waitAck(epoch: number): Promise<number>;
  /** Rejects when the link is lost; never resolves. */
  readonly lost: Promise<never>;
  readonly isLost: boolean;
  /**
   * A full or large checkpoint is (or is no longer) in flight: tolerate a longer silence
   * meanwhile, `silenceMs` at most (default: the heartbeat monitor's grace, GRACE_TIMEOUT_MS).
   */
  slowPhase(on: boolean, silenceMs?: number): void;

  /**
   * A frame outside the checkpoints (colo's mirrored input, llm's input log): resolves once the
   * backup has acknowledged it, rejects when the link is lost first.
   */
  sendSide(kind: number, payload: Buffer): Promise<void>;
  /** Side frames from the backup go to `handler` (a mode that takes them sets it at setup). */
  onSide(handler: (m: SideMessage) => void | Promise<void>): void;
  /** Ends protection cleanly: GOODBYE, then close. */
  goodbye(reason: string): Promise<void>;
  /**
   * The primary gives the backup up while it may still be alive (its buffer is full): the link
   * is lost with `err`, and a GOODBYE tells the backup to drop its replica rather than take over.
   */
  giveUp(err: Error): void;
  close(): void;
  readonly bytesSent: number;
  /** Silences of the backup waited out as stalls (its host still acknowledged), where the link watches for them. */
  readonly peerStalls?: number;
}

type Waiter = { resolve: (us: number) => void; reject: (err: Error) => void; since: number };

/**
 * A backup that keeps sending heartbeats but acknowledges nothing (its apply is stuck: a hung
 * disk, a wedged libxenguest) would hold the primary's output, and with it the clients,
 * forever: a checkpoint not acknowledged this long after its seal (outside a full or large
 * checkpoint's slow phase) loses the link. Far above any ack time measured, on the sim (under
 * 50 ms) or under the lab's emulation (under 2 s).
 */
export const ACK_TIMEOUT_MS = 10_000;

export interface LinkOptions {
  heartbeatMs: number;
  timeoutMs: number;
  /** Default ACK_TIMEOUT_MS. */
  ackTimeoutMs?: number;
  /** The checkpoint transfer agreed in HELLO (default full: the stream goes as it is). */
  transfer?: TransferSettings;
  /** A silent backup whose kernel still acknowledges is waited for this long (default STALLED_PEER_MAX_MS; 0: silence alone). */
  stalledPeerMaxMs?: number;
  /** Called once per silence of the backup judged a stall (its kernel acknowledges). */
  onStalled?: (silentMs: number, acks: TcpAcks) => void;
}

export class ChannelLink implements ReplicationLink {
  private readonly waiters = new Map<number, Waiter>();
  private slow = false;
  private slowEndedAt = 0;
  private readonly early = new Map<number, number | Error>();
  private lostError: Error | null = null;
  private rejectLost!: (err: Error) => void;
  readonly lost: Promise<never>;
  private readonly hb: HeartbeatMonitor;
  private readonly side: SideChannel;
  private sideHandler: ((m: SideMessage) => void | Promise<void>) | null = null;
  /** Side frames are handled one at a time, in order. */
  private sideQueue: Promise<void> = Promise.resolve();
  lastAcked = 0;
  contentBytes = 0;
  /** XEN_STREAM content goes through it (null: full). */
  private readonly encoder: TransferEncoder | null;

  private readonly ackTimer: NodeJS.Timeout;
  private readonly ackTimeoutMs: number;

  constructor(readonly channel: Channel, hb: LinkOptions) {
    this.ackTimeoutMs = hb.ackTimeoutMs ?? ACK_TIMEOUT_MS;
    this.encoder = hb.transfer && hb.transfer.id !== 'full' ? new TransferEncoder(hb.transfer) : null;
    this.ackTimer = setInterval(() => this.checkAcks(), Math.min(1000, Math.max(10, this.ackTimeoutMs / 10)));
    this.ackTimer.unref();
    this.lost = new Promise<never>((_, reject) => (this.rejectLost = reject));
    this.lost.catch(() => {});
    this.hb = new HeartbeatMonitor(
      hb,
      (silent) => this.declareDead(new ReplicationLostError(`backup silent for ${Math.round(silent)} ms (timeout ${hb.timeoutMs} ms): declared dead`)),
      () => this.lastAcked,
    );
    this.side = new SideChannel(channel, (m) => {
      if (!this.sideHandler) throw new Error(`side frame kind ${m.kind} from the backup, which this mode does not take`);
      return this.sideHandler(m);
    });
    channel.onFrame((f) => this.onFrame(f));
    channel.onClose((err) => this.fail(new ReplicationLostError(`replication channel lost: ${err?.message ?? 'closed'}`)));
    this.hb.start(channel);
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  get peerStalls(): number {
    return this.hb.stalledSilences;
  }

  get bytesSent(): number {
    return this.channel.bytesSent;
  }

  private onFrame(f: Frame): void {
    try {
      switch (f.type) {
        case XLHA_REC.CHECKPOINT_ACK: {
          const a = decodeAck(f.body);
          this.lastAcked = Math.max(this.lastAcked, a.epoch);
          this.settle(a.epoch, a.applyMicros);
          break;
        }
        case XLHA_REC.CHECKPOINT_NACK: {
          const n = decodeNack(f.body);
          this.settle(n.epoch, new NackError(n.epoch, n.reason));
          break;
        }
        case XLHA_REC.HEARTBEAT:
          break;
        case XLHA_REC.SIDE:
        case XLHA_REC.SIDE_ACK:
          this.sideQueue = this.sideQueue
            .then(() => this.side.take(f.type, f.body))
            .catch((err: Error) => this.fail(new ReplicationLostError(`protocol error from backup: ${err.message}`)));
          break;
        case XLHA_REC.GOODBYE:
          this.fail(new ReplicationLostError(`backup ended protection (GOODBYE): ${decodeGoodbye(f.body)}`));
          break;
        default:
          throw new Error(`unexpected frame 0x${f.type.toString(16)} from the backup`);
      }
    } catch (err) {
      this.fail(new ReplicationLostError(`protocol error from backup: ${(err as Error).message}`));
    }
  }

  private settle(epoch: number, v: number | Error): void {
    const w = this.waiters.get(epoch);
    if (!w) {
      this.early.set(epoch, v);
      return;
    }
    this.waiters.delete(epoch);
    if (v instanceof Error) w.reject(v);
    else w.resolve(v);
  }

  slowPhase(on: boolean, silenceMs?: number): void {
    if (on) this.hb.grace(60 * 60 * 1000, silenceMs);
    else if (this.slow) {
      this.hb.grace(SETTLE_AFTER_FULL_MS); // once, when the full checkpoint is in
      this.slowEndedAt = performance.now();
    }
    this.slow = on;
  }

  sendContent(type: number, body: Buffer | readonly Buffer[], onWritten?: () => void): Promise<void> {
    if (this.lostError) return Promise.reject(this.lostError);
    // Encoded now, in the order the engine sends (epoch order): the encoder's shadow is then
    // what the backup holds once it has committed everything sent so far.
    // (after the guest resumed: the engine ships a checkpoint only once it runs again)
    const f = this.encoder && type === XLHA_REC.XEN_STREAM ? this.encoder.encode(body) : { type, parts: body };
    const out = f.parts;
    if (Buffer.isBuffer(out)) this.contentBytes += out.length;
    else for (const b of out as readonly Buffer[]) this.contentBytes += b.length;
    return this.channel.sendContent(f.type, out, onWritten);
  }

  startFull(): void {
    this.encoder?.startFull();
  }

  transferStatus(): TransferStatus | undefined {
    return this.encoder?.status();
  }

  sendSide(kind: number, payload: Buffer): Promise<void> {
    if (this.lostError) return Promise.reject(this.lostError);
    return this.side.send(kind, payload);
  }

  onSide(handler: (m: SideMessage) => void | Promise<void>): void {
    this.sideHandler = handler;
  }

  seal(epoch: number, flags: number): void {
    this.encoder?.endCheckpoint();
    this.channel.send(XLHA_REC.CHECKPOINT_SEAL, encodeSeal(this.channel.digest.seal(epoch, flags)));
  }

  waitAck(epoch: number): Promise<number> {
    if (this.lostError) return Promise.reject(this.lostError);
    const e = this.early.get(epoch);
    if (e !== undefined) {
      this.early.delete(epoch);
      return e instanceof Error ? Promise.reject(e) : Promise.resolve(e);
    }
    return new Promise((resolve, reject) => this.waiters.set(epoch, { resolve, reject, since: performance.now() }));
  }

  /** The oldest unacknowledged checkpoint past the ack timeout loses the link (see ACK_TIMEOUT_MS). */
  private checkAcks(): void {
    if (this.lostError || this.slow) return;
    const now = performance.now();
    for (const [epoch, w] of this.waiters) {
      // a slow phase just ended: its checkpoints are timed from then
      if (w.since < this.slowEndedAt) w.since = this.slowEndedAt;
      const waited = now - w.since;
      if (waited >= this.ackTimeoutMs) {
        this.declareDead(
          new ReplicationLostError(`backup has not acknowledged checkpoint ${epoch} for ${Math.round(waited)} ms though it still sends heartbeats (ack timeout ${this.ackTimeoutMs} ms): given up`),
        );
        return;
      }
    }
  }

  /** The primary ends protection itself (the domain is being saved, it went away…): the backup is told why. */
  giveUp(err: Error): void {
    this.farewell(err, err.message);
  }

  fail(err: Error): void {
    if (this.markLost(err)) this.channel.fail(err);
  }

  /**
   * The backup went silent. It may be only stalled: a GOODBYE waits in its socket, so that when
   * it wakes it drops its replica instead of taking over from a primary that still runs.
   * (Against a real partition this is not enough; fencing is.)
   */
  private declareDead(err: Error): void {
    this.farewell(err, `the primary declared this backup dead and runs unprotected: ${err.message}`);
  }

  private farewell(err: Error, why: string): void {
    if (!this.markLost(err)) return;
    this.channel.farewell(XLHA_REC.GOODBYE, encodeGoodbye(why), err);
  }

  /** Records the loss and fails every waiter; false if the link was already lost. */
  private markLost(err: Error): boolean {
    if (this.lostError) return false;
    this.lostError = err;
    this.hb.stop();
    clearInterval(this.ackTimer);
    this.side.close(err);
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
    this.rejectLost(err);
    return true;
  }

  async goodbye(reason: string): Promise<void> {
    if (this.lostError) return;
    this.hb.stop();
    clearInterval(this.ackTimer);
    this.channel.send(XLHA_REC.GOODBYE, encodeGoodbye(reason));
    await this.channel.end();
    this.lostError = new ReplicationLostError('protection ended');
    this.side.close(this.lostError);
  }

  close(): void {
    this.fail(new ReplicationLostError('link closed'));
  }
}

export class BlackholeLink implements ReplicationLink {
  readonly lost = new Promise<never>(() => {});
  readonly isLost = false;
  bytesSent = 0;
  async sendContent(_type: number, body: Buffer | readonly Buffer[], onWritten?: () => void): Promise<void> {
    for (const b of Array.isArray(body) ? (body as readonly Buffer[]) : [body as Buffer]) this.bytesSent += b.length;
    this.bytesSent += 8;
    onWritten?.();
  }
  seal(): void {}
  /** Nothing is on the other side to take it: acknowledged at once, as checkpoints are. */
  async sendSide(_kind: number, payload: Buffer): Promise<void> {
    this.bytesSent += payload.length + 32;
  }
  onSide(): void {}
  slowPhase(): void {}
  async waitAck(): Promise<number> {
    return 0;
  }
  async goodbye(): Promise<void> {}
  giveUp(): void {}
  close(): void {}
}
