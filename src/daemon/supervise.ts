/**
 * A protection that comes back by itself. When the engine declares its backup lost (state
 * `lost`: the backup died, or was silent past the primary's tolerance), the domain runs on
 * unprotected and this supervisor reconnects with backoff (0.5 s doubling to 30 s). Each
 * attempt is a new protection: the backup is connected and authenticated anew, and the first
 * checkpoint is a full resynchronisation (precopy of the whole guest, then the dirty pages).
 * Status says `reconnecting`, with the attempts, the last error and the time unprotected; the
 * log says when protection was lost and when it resumed.
 *
 * A stop ends the retries. A domain that is gone ends them too.
 */
import type { Logger } from 'winston';
import { abortableSleep } from '../util/sleep.js';
import { FencedError } from '../witness/witness.js';
import type { Protection } from './protect.js';

export const RECONNECT_FIRST_MS = 500;
export const RECONNECT_MAX_MS = 30_000;

export class SupervisedProtection {
  current: Protection;
  /** Times protection came back after a loss. */
  resumed = 0;
  private attempts = 0;
  private lastError: string | undefined;
  private lostAt = 0;
  private nextAttemptAt = 0;
  private stopped = false;
  private fenced = false;
  private readonly wake = new AbortController();
  private recovering: Promise<void> | null = null;

  constructor(
    first: Protection,
    /** A new protection of the same domain with the same options. */
    private readonly restart: () => Promise<Protection>,
    /** Whether the domain still exists here (retries end when it does not). */
    private readonly domainExists: () => Promise<boolean>,
    private readonly log: Logger,
    /** The witness says another host runs the domain now: this copy must not (it is paused). */
    private readonly fence: () => Promise<void> = async () => {},
    /** After this copy was fenced, either way (the fence command's `fenced` event). */
    private readonly onFenced: () => Promise<void> = async () => {},
    /** What happened, for the domain's history in status: backup lost, protection resumed, fenced. */
    private readonly onEvent: (event: string, detail?: string) => void = () => {},
  ) {
    this.current = first;
    this.watch(first);
  }

  get name(): string {
    return this.current.name;
  }

  get opts(): Protection['opts'] {
    return this.current.opts;
  }

  /** Protecting, or trying to again: a second `protect` of the domain is refused. */
  get active(): boolean {
    return !this.stopped && (this.recovering !== null || ['starting', 'protected', 'stopping'].includes(this.current.engine.state));
  }

  private watch(p: Protection): void {
    void p.done.then((state) => {
      if (state === 'lost' && !this.stopped && this.current === p) this.recovering = this.recover().finally(() => (this.recovering = null));
      if (state === 'fenced') {
        this.onEvent('fenced', 'the backup took the domain over; this copy is paused');
        void this.onFenced();
      }
    });
  }

  private async recover(): Promise<void> {
    this.lostAt = Date.now();
    this.attempts = 0;
    let delay = RECONNECT_FIRST_MS;
    this.onEvent('backup lost', this.current.engine.error?.message);
    this.log.warn('backup lost: the domain runs UNPROTECTED; reconnecting with backoff', { domain: this.name, peer: `${this.opts.peer.host}:${this.opts.peer.port}`, error: this.current.engine.error?.message });
    while (!this.stopped) {
      this.nextAttemptAt = Date.now() + delay;
      try {
        await abortableSleep(delay, this.wake.signal);
      } catch {
        return; // stopped
      }
      this.attempts++;
      try {
        const p = await this.restart();
        if (this.stopped) {
          await p.stop();
          return;
        }
        this.resumed++;
        this.onEvent('protection resumed', `full resynchronisation after ${this.attempts} attempt(s), ${Date.now() - this.lostAt} ms unprotected`);
        this.log.info('protection resumed after backup loss: full resynchronisation done', { domain: this.name, attempts: this.attempts, unprotectedMs: Date.now() - this.lostAt });
        this.current = p;
        this.nextAttemptAt = 0;
        this.lastError = undefined;
        this.watch(p);
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
        if (err instanceof FencedError) {
          this.fenced = true;
          this.nextAttemptAt = 0;
          this.onEvent('fenced', this.lastError);
          await this.fence().catch(() => {});
          void this.onFenced();
          this.log.error('reconnecting ends: the domain was taken over by another host; this copy is PAUSED', { domain: this.name, reason: this.lastError });
          return;
        }
        if (!(await this.domainExists().catch(() => false))) {
          this.log.warn('reconnecting ends: the domain is gone', { domain: this.name });
          this.nextAttemptAt = 0;
          return;
        }
        delay = Math.min(delay * 2, RECONNECT_MAX_MS);
        this.log.warn('reconnecting to the backup failed; the domain still runs UNPROTECTED', { domain: this.name, attempt: this.attempts, error: this.lastError, nextInMs: delay });
      }
    }
  }

  status(): Record<string, unknown> {
    const s = this.current.status();
    const reconnecting = this.recovering !== null && this.nextAttemptAt > 0;
    return {
      ...s,
      ...(reconnecting
        ? {
            state: 'reconnecting',
            reconnect: { attempts: this.attempts, lastError: this.lastError ?? s.error, nextAttemptInMs: Math.max(0, this.nextAttemptAt - Date.now()), unprotectedForMs: Date.now() - this.lostAt },
          }
        : {}),
      ...(this.fenced ? { state: 'fenced', error: this.lastError } : {}),
      resumed: this.resumed,
    };
  }

  async stop(): Promise<string> {
    this.stopped = true;
    this.wake.abort(new Error('protection stopped'));
    await this.recovering;
    return this.current.stop();
  }
}
