/**
 * Network output buffering on Xen: what the guest sends is held in dom0 until the backup has
 * acknowledged the checkpoint that covers it.
 *
 * Plumbing, per vif (set up once with ip/tc, torn down at the end):
 *
 *   guest → netfront → vifD.N (dom0) ─ingress─ matchall, every protocol ─mirred→ xlhabD.N (IFB)
 *                                                        root qdisc: plug ─→ back into the stack
 *
 * Xen's own Remus filters `protocol ip` only, so ARP and IPv6 escape its buffer; the matchall
 * filter here takes every frame. Per checkpoint the plug is driven over rtnetlink through the
 * shim (microseconds, no process spawned).
 *
 * sch_plug knows two epochs only (the one being filled and one closed, waiting for release),
 * while the engine keeps several checkpoints in flight. So a barrier is placed only when the
 * previous one has been released; a checkpoint taken before that adds no barrier and its output
 * stays with the next one. Output is never released before the ack of a checkpoint taken after
 * it was sent; with several checkpoints in flight some of it waits one checkpoint longer.
 *
 * Before the first checkpoint nothing is held (the plug passes everything): until then there
 * is no backup state that output could get ahead of.
 *
 * Output events (kemari): a packet held by the plug is exactly "the guest is about to emit
 * output". While someone listens, the plugs are polled every OUTPUT_POLL_MS for the bytes that
 * ever entered them (let out plus queued, one rtnetlink query per vif); more than at the last
 * barrier is the open epoch's first output, reported once. A checkpoint that could place no
 * barrier leaves that output in the open epoch, so the event is raised again for it.
 */
import fs from 'node:fs';
import { execa } from 'execa';
import type { NetPlug } from '../types.js';
import type { Disposable } from '../../engine/events.js';
import { Shim, XLHA_PLUG } from './shim.js';

/** Bytes sch_plug may hold per vif before it drops (its default is tx_queue_len × MTU: 48 KB). */
export const NETBUF_LIMIT_BYTES = 16 * 1024 * 1024;

export interface XenVif {
  /** The backend interface in dom0 (vifD.N unless the config names it). */
  vif: string;
  /** The IFB that holds its output. */
  ifb: string;
}

/** The vifs of a domain from libxl's JSON configuration (`nics`). */
export function vifsOf(domid: number, configJson: string): XenVif[] {
  let cfg: { nics?: { devid?: number; ifname?: string }[] };
  try {
    cfg = JSON.parse(configJson) as typeof cfg;
  } catch (err) {
    throw new Error(`libxl configuration of domain ${domid} is not JSON: ${(err as Error).message}`);
  }
  return (cfg.nics ?? []).map((n, i) => {
    const devid = n.devid ?? i;
    return { vif: n.ifname || `vif${domid}.${devid}`, ifb: `xlhab${domid}.${devid}` };
  });
}

/** Runs an ip/tc/modprobe command; throws with its stderr. */
export type Runner = (cmd: string, args: string[]) => Promise<void>;

const runTool: Runner = async (cmd, args) => {
  const r = await execa(cmd, args, { reject: false, stdin: 'ignore', timeout: 30_000 });
  if (r.exitCode !== 0) {
    const why = (r.stderr || r.stdout || r.shortMessage || '').trim().split('\n').slice(-2).join(' ');
    throw new Error(`${cmd} ${args.join(' ')} failed: ${why || `exit ${r.exitCode}`}`);
  }
};

/**
 * Fencing's network half: every vif of the domain down (`up` false) or up again. A fenced copy
 * must be off the network, as a host that lost the domain to its backup: a paused guest sends
 * nothing new, and with its vifs down nothing queued leaves and no client reaches it. Each vif
 * is tried; the errors of those that failed are thrown together afterwards.
 */
export async function setVifsLink(vifs: readonly XenVif[], up: boolean, run: Runner = runTool): Promise<void> {
  const errors: string[] = [];
  for (const v of vifs) {
    try {
      await run('ip', ['link', 'set', 'dev', v.vif, up ? 'up' : 'down']);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length) throw new Error(`${up ? 'bringing up' : 'taking down'} the vifs failed: ${errors.join('; ')}`);
}

/** How often the plugs are polled for new output while an output listener is subscribed. */
export const OUTPUT_POLL_MS = 2;

/** The rtnetlink side, a seam for tests. */
export interface PlugControl {
  plug(ifname: string, action: number, limit?: number): void;
  qdiscBacklog(ifname: string): number;
  /** Bytes that ever entered the root qdisc and were not dropped (let out plus queued). */
  qdiscEnqueued(ifname: string): number;
}

export class XenNetPlug implements NetPlug {
  private pendingBarrier: number | null = null;
  private holding = false;
  private discarded = false;
  private made: XenVif[] = [];
  private readonly pendingListeners = new Set<() => void>();
  private poller: NodeJS.Timeout | null = null;
  /** Bytes that had entered the plugs at the last barrier: all of it is covered by a checkpoint. */
  private enqueuedAtBarrier = 0;
  /** No output event raised yet for the open epoch. */
  private armed = true;

  constructor(
    readonly vifs: XenVif[],
    private readonly ctl: PlugControl = Shim.load(),
    private readonly run: Runner = runTool,
    private readonly limitBytes = NETBUF_LIMIT_BYTES,
  ) {}

  async startBuffering(): Promise<void> {
    for (const m of ['ifb', 'sch_plug', 'act_mirred', 'cls_matchall']) {
      // Built in, or loaded already, on many kernels: a failure here shows up as the tc error below.
      await this.run('modprobe', m === 'ifb' ? ['-q', m, 'numifbs=0'] : ['-q', m]).catch(() => {});
    }
    try {
      for (const v of this.vifs) {
        if (!fs.existsSync(`/sys/class/net/${v.vif}`)) {
          throw new Error(`the domain's vif ${v.vif} is not in dom0 (no /sys/class/net/${v.vif})`);
        }
        // A stale IFB of ours (a daemon killed mid-protection) is replaced.
        if (fs.existsSync(`/sys/class/net/${v.ifb}`)) await this.run('ip', ['link', 'del', 'dev', v.ifb]);
        await this.run('ip', ['link', 'add', 'name', v.ifb, 'type', 'ifb']);
        this.made.push(v);
        // dom0's own IPv6 on the IFB (router solicitations, MLD reports) would enter the plug as
        // if the guest had sent it: a spurious output event for kemari (seen in the lab: a sync
        // in 10 s of a guest that sent nothing). A kernel without IPv6 has nothing to turn off.
        await this.run('sysctl', ['-q', '-w', `net/ipv6/conf/${v.ifb}/disable_ipv6=1`]).catch(() => {});
        await this.run('ip', ['link', 'set', 'dev', v.ifb, 'up']);
        await this.run('tc', ['qdisc', 'add', 'dev', v.ifb, 'root', 'plug', 'limit', String(this.limitBytes)]);
        // Nothing is held until the first checkpoint (see above).
        this.ctl.plug(v.ifb, XLHA_PLUG.RELEASE_ALL);
        await this.run('tc', ['qdisc', 'add', 'dev', v.vif, 'ingress']);
        await this.run('tc', [
          'filter', 'add', 'dev', v.vif, 'parent', 'ffff:', 'protocol', 'all', 'prio', '10',
          'matchall', 'action', 'mirred', 'egress', 'redirect', 'dev', v.ifb,
        ]);
      }
    } catch (err) {
      await this.close().catch(() => {});
      throw new Error(`network buffering on xen: ${(err as Error).message}; protect with -n to go without it (unsafe)`);
    }
    this.holding = true;
  }

  barrier(epoch: number): void {
    if (!this.holding) return;
    this.armed = true;
    if (this.pendingBarrier !== null) return; // this output stays with the next checkpoint: the event comes again
    this.each(XLHA_PLUG.BUFFER);
    this.pendingBarrier = epoch;
    // the guest is suspended: nothing enters between the barrier and this count
    if (this.pendingListeners.size) this.enqueuedAtBarrier = this.enqueued();
  }

  onOutputPending(listener: () => void): Disposable {
    const own = () => listener();
    this.pendingListeners.add(own);
    if (!this.poller) {
      this.poller = setInterval(() => this.poll(), OUTPUT_POLL_MS);
      this.poller.unref();
    }
    return {
      dispose: () => {
        this.pendingListeners.delete(own);
        if (this.pendingListeners.size === 0 && this.poller) {
          clearInterval(this.poller);
          this.poller = null;
        }
      },
    };
  }

  private enqueued(): number {
    let n = 0;
    for (const v of this.made) n += this.ctl.qdiscEnqueued(v.ifb);
    return n;
  }

  /** One poll: the open epoch's first output raises the event, once. */
  poll(): void {
    if (!this.holding || !this.armed || this.pendingListeners.size === 0) return;
    let n: number;
    try {
      n = this.enqueued();
    } catch {
      return; // an IFB going away ends protection through the plug's own errors
    }
    if (n <= this.enqueuedAtBarrier) return;
    this.armed = false;
    for (const l of this.pendingListeners) l();
  }

  release(epoch: number): void {
    if (this.pendingBarrier === null || epoch < this.pendingBarrier) return;
    this.each(XLHA_PLUG.RELEASE_ONE);
    this.pendingBarrier = null;
  }

  releaseAll(): void {
    if (this.discarded) return; // fenced: what is held goes with the IFB
    this.holding = false;
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
    this.pendingBarrier = null;
    for (const v of this.made) {
      try {
        this.ctl.plug(v.ifb, XLHA_PLUG.RELEASE_ALL);
      } catch {
        /* the IFB is gone: nothing is held there */
      }
    }
  }

  /** Fencing: nothing held is released; close() then deletes the IFBs with their queues. */
  discardAll(): void {
    this.discarded = true;
    this.holding = false;
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
    this.pendingBarrier = null;
  }

  get bufferedBytes(): number {
    let n = 0;
    for (const v of this.made) {
      try {
        n += this.ctl.qdiscBacklog(v.ifb);
      } catch {
        /* gone */
      }
    }
    return n;
  }

  async close(): Promise<void> {
    if (!this.discarded) this.releaseAll();
    const errors: string[] = [];
    for (const v of this.made.splice(0)) {
      // Removing the ingress qdisc removes the redirect: the vif sends straight to the bridge again.
      await this.run('tc', ['qdisc', 'del', 'dev', v.vif, 'ingress']).catch((e: Error) => {
        if (fs.existsSync(`/sys/class/net/${v.vif}`)) errors.push(e.message);
      });
      await this.run('ip', ['link', 'del', 'dev', v.ifb]).catch((e: Error) => errors.push(e.message));
    }
    if (errors.length) throw new Error(`network buffering teardown: ${errors.join('; ')}`);
  }

  private each(action: number): void {
    // a failure throws: the checkpoint fails, and protection ends with the plug's message
    for (const v of this.made) this.ctl.plug(v.ifb, action);
  }
}
