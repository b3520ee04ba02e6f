/**
 * colo-compare: the primary's half of COLO. Every client input that reaches the primary (PVM)
 * is mirrored to the secondary (SVM) over the side channel; every output of the PVM is held
 * and compared with the SVM's output for the same flow, in order. An output both copies
 * produced leaves at once. The first one that differs is an `outputs-diverged` event (the mode
 * takes a checkpoint); from then on everything is held until that checkpoint is acknowledged,
 * and the secondary, restored to the primary's state, is compared again from there.
 *
 * The SVM's output only ever comes here, as side frames: it never reaches a client.
 */
import type { IngressTap, NetPlug } from '../backend/types.js';
import type { Disposable } from '../engine/events.js';
import type { DeviceEvents } from '../engine/events.js';
import type { CheckpointDevice, DeviceContext, SidePort } from '../engine/types.js';
import { COLO_SIDE, decodeColoOutput, encodeColoInput } from '../transport/colo-records.js';

interface Held {
  conn: number;
  data: Uint8Array;
  /** Let out already (the SVM agreed). */
  out: boolean;
}

export class ColoCompareDevice implements CheckpointDevice {
  readonly kind = 'colo-compare';
  private plug: NetPlug | null = null;
  private events: DeviceEvents | null = null;
  private subs: Disposable[] = [];
  /** Outputs of the open epoch, in the order the PVM emitted them. */
  private open: Held[] = [];
  /** Outputs of closed epochs, waiting for their checkpoint's ack. */
  private covered: { epoch: number; held: Held[] }[] = [];
  /** Per flow: the PVM's outputs not yet compared, and the SVM's. */
  private readonly pvm = new Map<number, Held[]>();
  private readonly svm = new Map<number, Uint8Array[]>();
  /** The SVM's outputs count only once it runs from this checkpoint. */
  private compareEpoch = 0;
  private diverged = false;
  outputsCompared = 0;
  divergences = 0;
  inputsMirrored = 0;
  /** Outputs let out because the secondary produced the same, and because a checkpoint covering them was acknowledged. */
  releasedOnMatch = 0;
  releasedAtCommit = 0;

  setup(ctx: DeviceContext): void {
    const plug = ctx.session.net;
    const ingress: IngressTap | null | undefined = ctx.session.ingress;
    if (!plug?.capture || !plug.emit || !ingress) {
      throw new Error(`colo: domain ${ctx.domainName} needs a NIC whose output can be captured and whose input can be tapped`);
    }
    this.plug = plug;
    this.events = ctx.events;
    const side: SidePort = ctx.side;
    side.onMessage((m) => {
      if (m.kind !== COLO_SIDE.OUTPUT) throw new Error(`colo: side frame kind ${m.kind} from the secondary is not an output`);
      this.onSecondary(decodeColoOutput(m.payload));
    });
    this.subs.push(plug.capture((conn, data) => this.onPrimary(conn, data)));
    this.subs.push(
      ingress.onInput((inputs) => {
        this.inputsMirrored += inputs.length;
        // Not awaited: the PVM does not wait for its input to reach the SVM (their outputs are
        // compared anyway); a link lost meanwhile ends protection through the engine.
        side.send(COLO_SIDE.INPUT, encodeColoInput(inputs)).catch(() => {});
      }),
    );
  }

  private onPrimary(conn: number, data: Uint8Array): void {
    const h: Held = { conn, data, out: false };
    this.open.push(h);
    if (this.diverged) return;
    let q = this.pvm.get(conn);
    if (!q) this.pvm.set(conn, (q = []));
    q.push(h);
    this.match(conn);
  }

  private onSecondary(o: { epoch: number; packets: { conn: number; data: Uint8Array }[] }): void {
    if (o.epoch !== this.compareEpoch || this.diverged) return; // from before the secondary's last restore
    for (const p of o.packets) {
      let q = this.svm.get(p.conn);
      if (!q) this.svm.set(p.conn, (q = []));
      q.push(p.data);
      this.match(p.conn);
      if (this.diverged) return;
    }
  }

  /** Compares the heads of one flow's two queues while both have something. */
  private match(conn: number): void {
    const a = this.pvm.get(conn);
    const b = this.svm.get(conn);
    while (a?.length && b?.length) {
      const h = a.shift()!;
      const other = b.shift()!;
      this.outputsCompared++;
      if (!Buffer.from(h.data.buffer, h.data.byteOffset, h.data.length).equals(other)) {
        this.diverge(conn, h.data.length, other.length);
        return;
      }
      h.out = true;
      this.releasedOnMatch++;
      this.plug!.emit!(conn, h.data);
    }
  }

  private diverge(conn: number, pvmBytes: number, svmBytes: number): void {
    this.diverged = true;
    this.divergences++;
    this.pvm.clear();
    this.svm.clear();
    this.events?.emit('outputs-diverged', { device: this.kind, conn, detail: `flow ${conn}: primary sent ${pvmBytes} bytes, secondary ${svmBytes} bytes that differ` });
  }

  /** The guest is suspended: what it emitted and was not let out is covered by checkpoint `epoch`. */
  postsuspend(epoch: number): void {
    const held = this.open.filter((h) => !h.out);
    if (held.length) this.covered.push({ epoch, held });
    this.open = [];
    this.pvm.clear();
    this.svm.clear();
    this.diverged = false;
    this.compareEpoch = epoch;
  }

  commit(epoch: number): void {
    while (this.covered.length && this.covered[0]!.epoch <= epoch) {
      for (const h of this.covered.shift()!.held) {
        this.releasedAtCommit++;
        this.plug!.emit!(h.conn, h.data);
      }
    }
  }

  /** Replication stopped: everything held leaves, and output flows freely again. */
  release(): void {
    for (const s of this.subs) s.dispose();
    this.subs = [];
    const plug = this.plug;
    if (!plug) return;
    for (const c of this.covered) for (const h of c.held) plug.emit!(h.conn, h.data);
    for (const h of this.open) if (!h.out) plug.emit!(h.conn, h.data);
    this.covered = [];
    this.open = [];
  }

  get heldBytes(): number {
    let n = 0;
    for (const c of this.covered) for (const h of c.held) n += h.data.length;
    for (const h of this.open) if (!h.out) n += h.data.length;
    return n;
  }

  teardown(): void {
    this.release();
    this.plug = null;
  }
}
