/**
 * The daemon's own record of each domain it protects, by uuid, in `<state dir>/domains/`. It is
 * the first place the daemon looks for a domain's ha settings (design.md, "How the daemon finds
 * a domain's ha keys"): a domain started or protected through xl-ha (`xl-ha create`, `xl-ha
 * remus`, a cfg found once, a failover here) is protected again after a daemon restart, and
 * after `xl reboot` (same uuid, new domid), with the settings it had.
 *
 * A record goes when protection is stopped on purpose (`xl-ha stop`), and when its domain is
 * gone for RECORD_GRACE_MS (destroyed, shut down, migrated or failed over away). A record that
 * cannot be read is an error that names the file; the daemon then leaves that domain
 * unprotected with an alert rather than guess.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ProtectOptions } from './protect.js';

/** A released domain's record is kept this long, for `xl reboot` (the same uuid comes back). */
export const RECORD_GRACE_MS = 120_000;

/** How the daemon came to protect a domain. */
export type RecordVia = 'create' | 'protect' | 'userdata' | 'config_dirs' | 'failover';

export interface DomainRecord {
  version: 1;
  uuid: string;
  name: string;
  /** What libxl said when protection started (the mismatch check of a cfg found later). */
  memoryMiB: number;
  vcpus: number;
  via: RecordVia;
  /** Where the settings came from, for messages: a cfg path, `xl-ha remus`, `failover from H`. */
  source: string;
  options: Omit<ProtectOptions, 'domain'>;
  savedAt: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class DomainRecordError extends Error {
  constructor(
    readonly file: string,
    why: string,
  ) {
    super(`domain record ${file} cannot be used: ${why}`);
  }
}

export class DomainRecords {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'domains');
  }

  private file(uuid: string): string {
    if (!UUID.test(uuid)) throw new Error(`domain uuid ${JSON.stringify(uuid)} is not a uuid`);
    return path.join(this.dir, `${uuid.toLowerCase()}.json`);
  }

  /** Written whole (a temporary file renamed over), private to the daemon's user. */
  put(r: Omit<DomainRecord, 'version' | 'savedAt'>): DomainRecord {
    const rec: DomainRecord = { version: 1, ...r, savedAt: new Date().toISOString() };
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const f = this.file(r.uuid);
    const tmp = `${f}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, f);
    return rec;
  }

  /** The record of `uuid`, null when there is none; a record that does not read is a DomainRecordError. */
  get(uuid: string): DomainRecord | null {
    const f = this.file(uuid);
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new DomainRecordError(f, (err as Error).message);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new DomainRecordError(f, `not JSON (${(err as Error).message})`);
    }
    const r = v as Partial<DomainRecord>;
    if (typeof r !== 'object' || r === null || r.version !== 1) throw new DomainRecordError(f, `version ${JSON.stringify(r?.version)} is not 1`);
    if (r.uuid?.toLowerCase() !== uuid.toLowerCase()) throw new DomainRecordError(f, `it is for uuid ${JSON.stringify(r.uuid)}`);
    for (const k of ['name', 'via', 'source'] as const) if (typeof r[k] !== 'string') throw new DomainRecordError(f, `${k} is not a string`);
    if (typeof r.options !== 'object' || r.options === null) throw new DomainRecordError(f, 'options are missing');
    return r as DomainRecord;
  }

  delete(uuid: string): void {
    try {
      fs.unlinkSync(this.file(uuid));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** The uuids that have a record. */
  uuids(): string[] {
    try {
      return fs
        .readdirSync(this.dir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5))
        .filter((u) => UUID.test(u));
    } catch {
      return [];
    }
  }
}
