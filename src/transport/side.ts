/**
 * The side channel of a replication link: frames that are not part of a checkpoint (colo's
 * mirrored client input and the secondary's output, llm's input log). They travel on the same
 * connection as checkpoints, in SIDE frames, each with its own sequence number and CRC-32 (the
 * checkpoints' integrity check, over the frame's kind and payload); the receiver acknowledges
 * them with SIDE_ACK, cumulatively. A frame out of sequence (lost, replayed, reordered) or whose
 * CRC does not match is a protocol error: the connection ends, nothing of it is handed on.
 *
 * Both ends of a link hold one {@link SideChannel}; which kinds of side frame a session takes is
 * its mode's business (src/failover/roles.ts on the backup).
 */
import type { Channel } from './channel.js';
import { XLHA_REC, decodeSide, decodeSideAck, encodeSide, encodeSideAck } from './channel-records.js';
import { ProtocolError } from './framing.js';

export interface SideMessage {
  seq: number;
  kind: number;
  payload: Buffer;
}

export class SideChannel {
  private sent = 0;
  private acked = 0;
  private received = 0;
  private readonly waiters = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private closedError: Error | null = null;

  /** `onMessage` runs for each verified side frame, in order; the frame is acknowledged once it returns (or its promise resolves). */
  constructor(
    private readonly channel: Channel,
    private readonly onMessage: (m: SideMessage) => void | Promise<void> = (m) => {
      throw new ProtocolError('EBADTYPE', `side frame kind ${m.kind} is not taken by this session`);
    },
  ) {}

  /** Frames sent and acknowledged so far. */
  get stats(): { sent: number; acked: number; received: number } {
    return { sent: this.sent, acked: this.acked, received: this.received };
  }

  /** Sends one side frame; resolves when the peer has acknowledged it, rejects if the link ends first. */
  send(kind: number, payload: Buffer): Promise<void> {
    if (this.closedError) return Promise.reject(this.closedError);
    const seq = ++this.sent;
    const p = new Promise<void>((resolve, reject) => this.waiters.set(seq, { resolve, reject }));
    this.channel.send(XLHA_REC.SIDE, encodeSide({ seq, kind, payload }));
    return p;
  }

  /**
   * A SIDE or SIDE_ACK frame from the peer (the session routes them here). Throws a
   * ProtocolError for a frame that is out of sequence or fails its CRC.
   */
  async take(type: number, body: Buffer): Promise<void> {
    if (type === XLHA_REC.SIDE_ACK) {
      const { seq } = decodeSideAck(body);
      if (seq > this.sent) throw new ProtocolError('EBADSEQ', `SIDE_ACK ${seq} acknowledges a side frame never sent (sent ${this.sent})`);
      for (let s = this.acked + 1; s <= seq; s++) {
        this.waiters.get(s)?.resolve();
        this.waiters.delete(s);
      }
      this.acked = Math.max(this.acked, seq);
      return;
    }
    const m = decodeSide(body); // checks the CRC
    if (m.seq !== this.received + 1) {
      throw new ProtocolError('EBADSEQ', `side frame ${m.seq} out of sequence: expected ${this.received + 1} (lost, replayed or reordered)`);
    }
    this.received = m.seq;
    await this.onMessage(m);
    this.channel.send(XLHA_REC.SIDE_ACK, encodeSideAck({ seq: m.seq }));
  }

  /** The link ended: every unacknowledged send rejects with `err`. */
  close(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }
}
