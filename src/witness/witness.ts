/**
 * The witness: an etcd cluster both hosts can reach, so that the backup activates only when it
 * can prove the primary is gone, and a primary that lost its backup runs on alone only when it
 * can prove the backup did not take over. etcd's transactions are linearizable, so of two
 * hosts racing for the same domain exactly one wins. No home-made quorum.
 *
 * Per domain (by uuid), under /xl-ha/domains/<uuid>/:
 *   owner   {host, state, backup?}  who runs the domain and how:
 *           `protected` (host runs it, `backup` replicates it), `unprotected` (host runs it
 *           alone after losing its backup), `active` (host took it over by failover)
 *   beat    the primary's second heartbeat path: rewritten every heartbeat while it protects
 *
 * Decisions are compare-and-swap on the owner key's revision:
 *   - the primary claims the domain when protection starts (absent, or already its own);
 *   - a primary that lost its backup moves `protected` to `unprotected` before releasing
 *     anything, and a backup that lost its primary moves `protected` to `active` before it
 *     activates. Only one of the two swaps can succeed: the loser fences itself (the primary
 *     pauses its domain and drops the output it held; the backup keeps its replica);
 *   - the winning swap's revision is the fencing token that goes with the activation.
 *
 * Every call has a deadline (`timeoutMs`); an unreachable witness is an error, never a wait.
 */
import { Etcd3, type IOptions } from 'etcd3';
import { noop } from 'cockatiel';
export { parseWitnessEndpoints } from './endpoints.js';

export type OwnerState = 'protected' | 'unprotected' | 'active';

export interface OwnerRecord {
  host: string;
  state: OwnerState;
  backup?: string;
}

export interface Owned {
  record: OwnerRecord;
  /** The owner key's mod revision: what the next swap compares against. */
  revision: number;
}

/** A swap lost to the other host: the caller must not run (or must stop running) the domain. */
export class FencedError extends Error {
  constructor(
    message: string,
    readonly owner: Owned | null,
  ) {
    super(message);
    this.name = 'FencedError';
  }
}

export class WitnessUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WitnessUnreachableError';
  }
}

const PREFIX = '/xl-ha/domains/';

/** The primary beats on the witness every heartbeat, but not more often than this. */
export const WITNESS_BEAT_MIN_MS = 50;


export class Witness {
  private readonly client: Etcd3;

  constructor(
    readonly endpoints: string[],
    readonly timeoutMs = 1000,
  ) {
    const opts: IOptions = {
      hosts: endpoints,
      dialTimeout: timeoutMs,
      // one attempt per call, no circuit breaker: a decision is taken now or reported as not
      // possible now; the caller retries on its own schedule
      faultHandling: { host: () => noop, global: noop },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
    };
    this.client = new Etcd3(opts);
  }

  get label(): string {
    return this.endpoints.join(',');
  }

  private async call<T>(what: string, p: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new WitnessUnreachableError(`witness ${this.label}: ${what} got no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
        }),
      ]);
    } catch (err) {
      if (err instanceof WitnessUnreachableError || err instanceof FencedError) throw err;
      throw new WitnessUnreachableError(`witness ${this.label}: ${what} failed: ${(err as Error).message.split('\n')[0]}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private ownerKey(uuid: string): string {
    return `${PREFIX}${uuid}/owner`;
  }

  private beatKey(uuid: string): string {
    return `${PREFIX}${uuid}/beat`;
  }

  async owner(uuid: string): Promise<Owned | null> {
    const r = await this.call('reading the owner', () => this.client.get(this.ownerKey(uuid)).exec());
    const kv = r.kvs[0];
    if (!kv) return null;
    return { record: JSON.parse(kv.value.toString()) as OwnerRecord, revision: Number(kv.mod_revision) };
  }

  /**
   * The primary starts protecting: the domain becomes `protected` by `host` with `backup`, if
   * nobody owns it or `host` already does. A domain that another host took over is a FencedError.
   */
  async claim(uuid: string, host: string, backup: string): Promise<Owned> {
    const record: OwnerRecord = { host, state: 'protected', backup };
    for (let i = 0; i < 3; i++) {
      const cur = await this.owner(uuid);
      if (cur && cur.record.host !== host) {
        throw new FencedError(`domain ${uuid} belongs to host ${cur.record.host} (${cur.record.state}, revision ${cur.revision}) on the witness: this host must not run it`, cur);
      }
      const revision = await this.swap(uuid, cur?.revision ?? 0, record);
      if (revision !== null) return { record, revision };
    }
    throw new WitnessUnreachableError(`witness ${this.label}: the owner of ${uuid} kept changing while host ${host} claimed it`);
  }

  /** Compare-and-swap: writes `record` if the owner key is still at `expect` (0: absent); the new revision, or null. */
  async swap(uuid: string, expect: number, record: OwnerRecord): Promise<number | null> {
    const key = this.ownerKey(uuid);
    const r = await this.call('swapping the owner', () =>
      this.client
        .if(key, 'Mod', '==', expect)
        .then(this.client.put(key).value(JSON.stringify(record)))
        .commit(),
    );
    return r.succeeded ? Number(r.header.revision) : null;
  }

  /**
   * Moves the domain from `protected` (by `from`, replicated to `expectBackup`) to `record`.
   * Who calls it lost the other host: the primary to run on `unprotected`, the backup to go
   * `active`. Throws FencedError when the other host moved first.
   */
  async takeFrom(uuid: string, from: string, expectBackup: string, record: OwnerRecord): Promise<number> {
    const cur = await this.owner(uuid);
    if (!cur) throw new FencedError(`domain ${uuid} has no owner on the witness: it was not protected by ${from}, or its protection was ended`, null);
    const r = cur.record;
    if (r.host === record.host && r.state === record.state) return cur.revision; // already done (a retry)
    if (r.host !== from || r.state !== 'protected' || r.backup !== expectBackup) {
      throw new FencedError(`domain ${uuid} is ${r.state} by host ${r.host}${r.backup ? ` (backup ${r.backup})` : ''} on the witness (revision ${cur.revision})`, cur);
    }
    const revision = await this.swap(uuid, cur.revision, record);
    if (revision === null) {
      const now = await this.owner(uuid);
      throw new FencedError(`domain ${uuid} changed on the witness while ${record.host} took it: now ${now ? `${now.record.state} by ${now.record.host}` : 'no owner'}`, now);
    }
    return revision;
  }

  /** The primary's heartbeat on the witness path. */
  async beat(uuid: string, host: string, seq: number): Promise<void> {
    await this.call('a heartbeat', () => this.client.put(this.beatKey(uuid)).value(`${host} ${seq}`).exec());
  }

  /** The beat key's mod revision (0: none): a backup that sees it change knows the primary is alive. */
  async beatRevision(uuid: string): Promise<number> {
    const r = await this.call('reading the heartbeat', () => this.client.get(this.beatKey(uuid)).exec());
    return r.kvs[0] ? Number(r.kvs[0].mod_revision) : 0;
  }

  /** A clean stop: the domain is nobody's any more (only if `host` owns it). */
  async release(uuid: string, host: string): Promise<void> {
    const cur = await this.owner(uuid);
    if (!cur || cur.record.host !== host) return;
    await this.call('releasing the owner', () =>
      this.client
        .if(this.ownerKey(uuid), 'Mod', '==', cur.revision)
        .then(this.client.delete().key(this.ownerKey(uuid)), this.client.delete().key(this.beatKey(uuid)))
        .commit(),
    );
  }

  close(): void {
    this.client.close();
  }
}
