/**
 * The life of protected domains on one host, with nothing for the admin to type:
 *
 * - a domain that appears (xenstore @introduceDomain on Xen; any domain running when the
 *   daemon starts, so protection resumes after a daemon restart) is looked up by the
 *   resolution order (src/daemon/resolve.ts) and, when it asks for ha, protected;
 * - a domain whose peer cannot be reached yet (hosts boot in any order) is *waiting for
 *   peer*: attempts go on with backoff (1 s doubling to 60 s) until the peer answers, the
 *   domain goes, or protection is stopped; status shows the attempts and the last error;
 * - a domain that goes (@releaseDomain: xl destroy, shutdown, reboot, migrate, save) ends its
 *   protection cleanly, so the backup drops its replica; its record is kept RECORD_GRACE_MS
 *   for `xl reboot`, which brings the same uuid back;
 * - a domain that failed over to this host is protected again by itself, to the host it came
 *   from once that host's daemon answers, resynchronised (re-protection, as vSphere FT does);
 * - each domain keeps a history (protected, lost, failed over here, re-protected...) for status.
 *
 * The table of what each xl command ends in is in docs/lifecycle.md.
 */
import type { Logger } from 'winston';
import type { DomainInfo, HypervisorBackend } from '../backend/types.js';
import { abortableSleep } from '../util/sleep.js';
import { FencedError } from '../witness/witness.js';
import type { ProtectOptions } from './protect.js';
import { RECORD_GRACE_MS, type DomainRecords, type RecordVia } from './records.js';
import { resolveDomain, type ResolveContext } from './resolve.js';
import type { SupervisedProtection } from './supervise.js';

export const WAIT_FIRST_MS = 1000;
export const WAIT_MAX_MS = 60_000;
/** A new domain must be running within this long to be protected (xl create unpauses it last). */
export const RUNNING_WAIT_MS = 5 * 60_000;
/** xl names a domain it is still receiving (migrate-receive, and xl-ha's replicas on Xen) <name>--incoming. */
export const INCOMING_SUFFIX = '--incoming';
/** Entries kept per domain in its history. */
export const HISTORY_MAX = 50;

export interface HistoryEntry {
  at: string;
  event: string;
  detail?: string;
}

export interface LifecycleHost {
  backend: HypervisorBackend;
  records: DomainRecords;
  resolve: Omit<ResolveContext, 'records'>;
  log: Logger;
  /** Starts (supervised) protection; throws when the first checkpoint does not reach the backup. */
  protect(info: DomainInfo, opts: ProtectOptions): Promise<SupervisedProtection>;
  /** The protection of this domain name on this host, if any. */
  protection(name: string): SupervisedProtection | undefined;
  /** Ends and forgets the protection of a domain that is gone. */
  dropProtection(name: string): Promise<void>;
  /** Whether this domain is a replica here, or the replica that just took over (its backup session decides for it). */
  replicated(uuid: string, domid: number): boolean;
}

/** A domain this host should protect and does not yet. */
interface Wanted {
  info: DomainInfo;
  options: Omit<ProtectOptions, 'domain'>;
  via: RecordVia;
  source: string;
  attempts: number;
  lastError?: string;
  nextAttemptAt: number;
  readonly abort: AbortController;
}

/** Errors after which trying again cannot help: the domain is not this host's to run, or cannot be protected here. */
function hopeless(err: Error & { code?: string }): 'fenced' | 'refused' | null {
  if (err instanceof FencedError || /\(it failed over here\)/.test(err.message)) return 'fenced';
  if (err.code === 'EUNSUPPORTED' || err.code === 'ENODOMAIN' || err.code === 'EMODESETUP') return 'refused';
  return null;
}

export class DomainLifecycle {
  private readonly wanted = new Map<string, Wanted>(); // by uuid
  private readonly alerts = new Map<string, { domain: string; at: string; reason: string }>();
  private readonly histories = new Map<string, HistoryEntry[]>(); // by uuid
  private readonly known = new Map<number, DomainInfo>(); // domid -> the domain as first seen
  /** Domains being waited for until they run (xl create unpauses them once their devices are up). */
  private readonly untilRunning = new Set<number>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private unsubscribe: (() => void) | null = null;
  private stopped = false;
  private readonly stopSignal = new AbortController();

  constructor(private readonly h: LifecycleHost) {}

  /** Watches domains come and go, and takes up the ones running now (resume after a restart). */
  async start(): Promise<void> {
    this.unsubscribe = this.h.backend.onDomainEvent((ev) => {
      if (ev.kind === 'introduce') void this.introduced(ev.domid);
      else void this.released(ev.domid);
    });
    const running = await this.h.backend.listDomains();
    const live = new Set(running.map((d) => d.uuid.toLowerCase()));
    for (const uuid of this.h.records.uuids()) if (!live.has(uuid)) this.forgetLater(uuid, 'its domain does not run here');
    // A domain that is not running yet is waited for as a new one is: at a restart, an `xl create`
    // may be between its introduction (paused) and its unpause, and the watch above may have
    // come too late to see it introduced.
    for (const d of running) if (d.state !== 'replica') void this.introduced(d.domid, d.state === 'running' ? d : undefined);
  }

  history(uuid: string): HistoryEntry[] {
    return this.histories.get(uuid.toLowerCase()) ?? [];
  }

  note(uuid: string, event: string, detail?: string): void {
    const k = uuid.toLowerCase();
    const h = this.histories.get(k) ?? [];
    h.push({ at: new Date().toISOString(), event, ...(detail ? { detail } : {}) });
    if (h.length > HISTORY_MAX) h.splice(0, h.length - HISTORY_MAX);
    this.histories.set(k, h);
  }

  /** The domain stays unprotected; status lists it with `reason`, and the log says so loudly. */
  alertInfo(info: DomainInfo, reason: string): void {
    this.alerts.set(info.uuid.toLowerCase(), { domain: info.name, at: new Date().toISOString(), reason });
    this.note(info.uuid, 'not protected', reason);
    this.h.log.error(`ALERT: domain ${info.name} runs UNPROTECTED: ${reason}`, { domain: info.name, domid: info.domid, uuid: info.uuid });
  }

  private async introduced(domid: number, seen?: DomainInfo): Promise<void> {
    if (this.stopped) return;
    let info = seen;
    let waitedMs = 0;
    if (!info) {
      if (this.untilRunning.has(domid)) return; // the watch and the start-up scan both saw it
      this.untilRunning.add(domid);
      // xl create introduces the domain paused and unpauses it once its devices are up; a
      // domain being received (<name>--incoming: xl migrate-receive) is renamed once complete.
      // Looked at every 250 ms for the first 10 s, then every 2 s (each look lists the domains).
      const t0 = Date.now();
      try {
        for (;;) {
          info = (await this.h.backend.listDomains().catch(() => [])).find((d) => d.domid === domid);
          if (!info || info.state === 'shutdown') return; // gone again (a failed xl create)
          if (info.state === 'replica' || this.h.replicated(info.uuid, info.domid)) return; // this host's own replica
          if ((info.state === 'running' && !info.name.endsWith(INCOMING_SUFFIX)) || Date.now() - t0 > RUNNING_WAIT_MS || this.stopped) break;
          await abortableSleep(Date.now() - t0 < 10_000 ? 250 : 2000, this.stopSignal.signal).catch(() => {});
        }
      } finally {
        this.untilRunning.delete(domid);
      }
      waitedMs = Date.now() - t0;
    }
    if (info.state === 'replica' || this.stopped || this.h.replicated(info.uuid, info.domid)) return;
    this.known.set(domid, info);
    const uuid = info.uuid.toLowerCase();
    const grace = this.graceTimers.get(uuid);
    if (grace) {
      clearTimeout(grace);
      this.graceTimers.delete(uuid);
    }
    if (this.h.protection(info.name)?.active || this.wanted.has(uuid)) return; // already taken up (xl-ha create)
    if (info.name.endsWith(INCOMING_SUFFIX)) {
      this.h.log.debug('domain still being received: not taken up', { domain: info.name });
      return;
    }
    if (info.state !== 'running') {
      this.alertInfo(info, `it is ${info.state}, not running, ${Math.round(waitedMs / 1000)} s after it appeared`);
      return;
    }
    let r;
    try {
      r = await resolveDomain(info, { records: this.h.records, ...this.h.resolve });
    } catch (err) {
      this.alertInfo(info, `its ha settings could not be looked up: ${(err as Error).message}`);
      return;
    }
    if (r.kind === 'none') {
      this.h.log.debug('domain is not protected: it asks for no ha', { domain: info.name, reason: r.reason });
      return;
    }
    if (r.kind === 'alert') return this.alertInfo(info, r.reason);
    this.h.log.info('domain found: starting protection', { domain: info.name, domid: info.domid, mode: r.options.mode, peer: `${r.options.peer.host}:${r.options.peer.port}`, from: r.via, source: r.source });
    void this.want(info, r.options, r.via, r.source).catch(() => {});
  }

  private async released(domid: number): Promise<void> {
    const info = this.known.get(domid);
    if (!info) return;
    this.known.delete(domid);
    const uuid = info.uuid.toLowerCase();
    const w = this.wanted.get(uuid);
    if (w && w.info.domid === domid) {
      w.abort.abort(new Error('domain gone'));
      this.wanted.delete(uuid);
    }
    this.alerts.delete(uuid);
    const p = this.h.protection(info.name);
    if (p && p.current.domid === domid) {
      this.note(uuid, 'domain gone', 'protection ended; the backup drops its replica');
      this.h.log.info('domain is gone: its protection ends and the backup drops its replica', { domain: info.name, domid });
      await this.h.dropProtection(info.name).catch(() => {});
    }
    this.forgetLater(uuid, 'its domain is gone');
  }

  /** A record whose domain does not come back within the grace is deleted. */
  private forgetLater(uuid: string, why: string): void {
    if (this.graceTimers.has(uuid)) return;
    const t = setTimeout(() => {
      this.graceTimers.delete(uuid);
      if ((this.wanted.has(uuid)) || [...this.known.values()].some((d) => d.uuid.toLowerCase() === uuid)) return;
      this.h.records.delete(uuid);
      this.h.log.debug('domain record removed', { uuid, why });
    }, RECORD_GRACE_MS);
    t.unref();
    this.graceTimers.set(uuid, t);
  }

  /**
   * Protects `info` with `options`, recording them first (so a restart resumes it), and trying
   * until the peer answers. Resolves at the first attempt's outcome: the protection, or null
   * while it waits for the peer (it goes on trying); rejects when trying cannot help.
   */
  async want(info: DomainInfo, options: Omit<ProtectOptions, 'domain'>, via: RecordVia, source: string): Promise<SupervisedProtection | null> {
    const uuid = info.uuid.toLowerCase();
    this.known.set(info.domid, info);
    this.alerts.delete(uuid);
    this.h.records.put({ uuid: info.uuid, name: info.name, memoryMiB: info.memoryMiB, vcpus: info.vcpus, via, source, options });
    this.wanted.get(uuid)?.abort.abort(new Error('superseded'));
    const w: Wanted = { info, options, via, source, attempts: 0, nextAttemptAt: 0, abort: new AbortController() };
    this.wanted.set(uuid, w);
    let firstOutcome!: (v: SupervisedProtection | null | Error) => void;
    const first = new Promise<SupervisedProtection | null | Error>((r) => (firstOutcome = r));
    void this.attempts(w, firstOutcome);
    const v = await first;
    if (v instanceof Error) throw v;
    return v;
  }

  private async attempts(w: Wanted, firstOutcome: (v: SupervisedProtection | null | Error) => void): Promise<void> {
    const { info } = w;
    const uuid = info.uuid.toLowerCase();
    let delay = WAIT_FIRST_MS;
    const peer = `${w.options.peer.host}:${w.options.peer.port}`;
    for (;;) {
      if (w.abort.signal.aborted || this.stopped) return firstOutcome(null);
      w.attempts++;
      try {
        const p = await this.h.protect(info, { ...w.options, domain: info.domid });
        if (w.abort.signal.aborted) {
          await p.stop().catch(() => {});
          return firstOutcome(null);
        }
        this.wanted.delete(uuid);
        const again = this.history(uuid).some((e) => e.event === 'failed over here');
        this.note(uuid, again && w.via === 'failover' ? 're-protected' : 'protected', `to ${peer}${w.attempts > 1 ? ` after ${w.attempts} attempts` : ''} (${w.source})`);
        if (w.attempts > 1) this.h.log.info('peer answered: the domain is protected', { domain: info.name, peer, attempts: w.attempts });
        return firstOutcome(p);
      } catch (err) {
        const e = err as Error & { code?: string };
        w.lastError = e.message;
        const why = hopeless(e);
        if (why || w.abort.signal.aborted) {
          this.wanted.delete(uuid);
          if (why === 'fenced') {
            // another host runs this domain now: this copy must not run
            await (this.h.backend.fence ? this.h.backend.fence(info.domid) : this.h.backend.pause(info.domid)).catch(() => {});
            this.alertInfo(info, `another host runs it now, so this copy is PAUSED: ${e.message}`);
          } else if (why) {
            this.alertInfo(info, e.message);
          }
          return firstOutcome(why === 'refused' ? e : null);
        }
        if (!(await this.h.backend.listDomains().catch(() => [])).some((d) => d.domid === info.domid)) {
          this.wanted.delete(uuid);
          return firstOutcome(null);
        }
        if (w.attempts === 1) {
          this.note(uuid, 'waiting for peer', e.message);
          this.h.log.warn('the peer cannot be reached yet: the domain runs UNPROTECTED while the daemon keeps trying', { domain: info.name, peer, error: e.message });
          firstOutcome(null);
        } else {
          this.h.log.warn('still waiting for the peer', { domain: info.name, peer, attempt: w.attempts, error: e.message, nextInMs: delay });
        }
        w.nextAttemptAt = Date.now() + delay;
        try {
          await abortableSleep(delay, AbortSignal.any([w.abort.signal, this.stopSignal.signal]));
        } catch {
          return;
        }
        delay = Math.min(delay * 2, WAIT_MAX_MS);
      }
    }
  }

  /** Stops trying for a domain (xl-ha stop); its record goes. */
  forget(info: Pick<DomainInfo, 'uuid'>): boolean {
    const uuid = info.uuid.toLowerCase();
    const w = this.wanted.get(uuid);
    w?.abort.abort(new Error('protection stopped'));
    this.wanted.delete(uuid);
    this.alerts.delete(uuid);
    this.h.records.delete(uuid);
    return w !== undefined;
  }

  /** The domains waiting for their peer, as status rows. */
  waiting(): Record<string, unknown>[] {
    return [...this.wanted.values()].map((w) => ({
      role: 'primary',
      domain: w.info.name,
      domid: w.info.domid,
      mode: w.options.mode,
      peer: `${w.options.peer.host}:${w.options.peer.port}`,
      state: 'waiting-for-peer',
      waiting: { attempts: w.attempts, ...(w.lastError ? { lastError: w.lastError } : {}), nextAttemptInMs: Math.max(0, w.nextAttemptAt - Date.now()) },
      source: w.source,
      history: this.history(w.info.uuid),
    }));
  }

  isWaiting(name: string): boolean {
    return [...this.wanted.values()].some((w) => w.info.name === name);
  }

  alertList(): { domain: string; at: string; reason: string }[] {
    return [...this.alerts.values()];
  }

  stop(): void {
    this.stopped = true;
    this.stopSignal.abort(new Error('daemon stops'));
    this.unsubscribe?.();
    for (const w of this.wanted.values()) w.abort.abort(new Error('daemon stops'));
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
  }
}
