/**
 * netbuf: holds the guest's network output of epoch N until the backup has acknowledged
 * checkpoint N (Xen's own Remus releases without such an ack; xl-ha does not). Drives the
 * backend's {@link NetPlug}: a sch_plug qdisc on Xen, the virtual NIC's gate on sim. Where the
 * plug reports it, the first packet held in an epoch is an `output-pending` event.
 */
import type { NetPlug } from '../backend/types.js';
import type { Disposable } from '../engine/events.js';
import type { CheckpointDevice, DeviceContext } from '../engine/types.js';

export class NetbufDevice implements CheckpointDevice {
  readonly kind = 'netbuf';
  private plug: NetPlug | null = null;
  private sub: Disposable | null = null;

  async setup(ctx: DeviceContext): Promise<void> {
    this.plug = ctx.session.net;
    if (!this.plug) return; // a domain without a NIC has no network output to hold
    this.sub = this.plug.onOutputPending?.(() => ctx.events.emit('output-pending', { device: this.kind, at: performance.now() })) ?? null;
    await this.plug.startBuffering();
  }

  postsuspend(epoch: number): void {
    this.plug?.barrier(epoch);
  }

  commit(epoch: number): void {
    this.plug?.release(epoch);
  }

  release(): void {
    this.plug?.releaseAll();
  }

  discard(): void {
    this.plug?.discardAll?.();
  }

  get heldBytes(): number {
    return this.plug?.bufferedBytes ?? 0;
  }

  async teardown(): Promise<void> {
    this.sub?.dispose();
    this.sub = null;
    this.release();
    const plug = this.plug;
    this.plug = null;
    await plug?.close?.();
  }
}
