/**
 * Self-fencing through the hypervisor's watchdog, XenServer-style. While this daemon protects
 * a domain as its primary, it keeps Xen's watchdog for dom0 armed (SCHEDOP_watchdog, the call
 * xenwatchdogd makes) and kicks it from its own event loop. If the daemon hangs, or dies
 * without stopping cleanly, the kicks stop and Xen reboots the host: a primary that can no
 * longer decide anything cannot keep running its copy beside the backup's. A clean stop
 * (SIGTERM, `xl-ha stop` of the last protection) disarms it.
 *
 * The timeout is long against any stall the daemon has shown (the lab's longest event-loop
 * stall under emulation was under 2 s), and the backup does not wait for it: output held on
 * the plug qdisc never leaves a primary whose daemon is hung, and a daemon that comes back
 * finds itself fenced on the witness (docs/fencing.md).
 */
import type { Logger } from 'winston';
import type { HostWatchdog, HypervisorBackend } from '../backend/types.js';

/** Default timeout: xenwatchdogd's own default. */
export const DEFAULT_WATCHDOG_SEC = 30;
export const WATCHDOG_LIMITS = { min: 5, max: 3600 } as const;

export class DaemonWatchdog {
  private dog: HostWatchdog | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastKickAt = 0;
  private armedAt = 0;
  private lastError: string | undefined;

  /** `timeoutSec` 0: off. */
  constructor(
    private readonly backend: HypervisorBackend,
    readonly timeoutSec: number,
    private readonly log: Logger,
  ) {}

  /** Checked at daemon start: a watchdog asked for on a backend that has none is refused. */
  check(): void {
    if (this.timeoutSec > 0 && !this.backend.armWatchdog) {
      throw new Error(`the ${this.backend.kind} backend has no hypervisor watchdog: run the daemon with --watchdog 0`);
    }
  }

  get armed(): boolean {
    return this.dog !== null;
  }

  /** Armed while `protecting` (this host is the primary of at least one domain). */
  update(protecting: boolean): void {
    if (this.timeoutSec <= 0) return;
    if (protecting && !this.dog) this.arm();
    else if (!protecting && this.dog) this.disarm('no domain is protected here any more');
  }

  private arm(): void {
    try {
      this.dog = this.backend.armWatchdog!(this.timeoutSec);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error('hypervisor watchdog NOT armed: a hung daemon will not be reset', { error: this.lastError });
      return;
    }
    this.armedAt = this.lastKickAt = Date.now();
    this.lastError = undefined;
    // three kicks per timeout: one late kick (a GC pause, a slow hypercall) is not a reset
    this.timer = setInterval(() => this.kick(), Math.max(1000, (this.timeoutSec * 1000) / 3));
    this.log.info('hypervisor watchdog armed: if this daemon hangs or dies uncleanly, the host is reset', { id: this.dog.id, timeoutSec: this.timeoutSec });
  }

  private kick(): void {
    try {
      this.dog?.kick();
      this.lastKickAt = Date.now();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error('kicking the hypervisor watchdog failed', { error: this.lastError });
    }
  }

  disarm(why: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const dog = this.dog;
    this.dog = null;
    if (!dog) return;
    try {
      dog.disarm();
      this.log.info('hypervisor watchdog disarmed', { id: dog.id, why });
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error('disarming the hypervisor watchdog failed: the host resets unless it is disarmed', { id: dog.id, error: this.lastError });
    }
  }

  status(): Record<string, unknown> {
    if (this.timeoutSec <= 0) return { armed: false, off: true };
    return {
      armed: this.armed,
      timeoutSec: this.timeoutSec,
      ...(this.dog ? { id: this.dog.id, armedForMs: Date.now() - this.armedAt, lastKickAgoMs: Date.now() - this.lastKickAt } : {}),
      ...(this.lastError ? { error: this.lastError } : {}),
    };
  }
}
