/**
 * The hosts this host is paired with: one file per peer in the keys directory, holding the
 * pair's pre-shared key (the replication link's TLS 1.3 PSK, src/transport/secure.ts) and this
 * host's own policy for that peer (which of its domains it accepts to replicate).
 *
 *   <keys dir>/<peer>.key, mode 0600, ini:
 *     host    = a                  this host's name in the pair (its TLS PSK identity)
 *     peer    = b                  the other host
 *     key     = 64 hex digits      256 bits, the same in both hosts' files
 *     address = 10.0.0.2:8003      optional: where b accepts replication (picks the key to use)
 *     allow   = web, db-*          domains of b that this host replicates as its backup
 *     disks   = /srv/xen/*.img     disk targets a replica may be given (default none)
 *     bridges = xenbr0             bridges a replica's nics may join (default any)
 *     replica_disks = /srv/xl-ha   where this host keeps replicated disks of b's domains
 *                                  (DIR/<domain>.<vdev>.img; default none: no disk replication)
 *
 * `xl-ha keygen b` writes a's file; copied to b, `xl-ha pair a FILE` writes b's from it.
 * Files are read at every connection, so pairing needs no daemon restart. A key file that
 * its group or others can read, or that another user owns, is refused: at daemon start-up
 * (the daemon does not start) and at every use.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import ini from 'ini';
import { globRegExp } from '../util/glob.js';
import { DOMAIN_NAME_PATTERN, parseHostPort, type HostPort } from '../config/domain.js';

export const KEY_FILE_SUFFIX = '.key';
const SETTINGS = ['host', 'peer', 'key', 'address', 'allow', 'disks', 'bridges', 'replica_disks'];
const KEY_BYTES = 32;

export interface PeerEntry {
  /** The file it came from. */
  file: string;
  /** This host's name in the pair. */
  host: string;
  /** The other host's name: its TLS PSK identity. */
  peer: string;
  key: Buffer;
  address?: HostPort;
  /** Domain-name patterns (`*`, `?`) this host accepts from the peer. Empty: none. */
  allow: string[];
  /** Disk targets (path patterns) a replica of the peer's may be given. Default none. */
  disks: string[];
  /** Bridges (name patterns) its nics may join. Default any. */
  bridges: string[];
  /** Where this host keeps the images of the peer's replicated disks (an absolute directory). Default none. */
  replicaDiskDir?: string;
}

/** A key file or keys directory that cannot be used, with what to do about it. */
export class PeerKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeerKeyError';
  }
}

export function generateKey(): Buffer {
  return crypto.randomBytes(KEY_BYTES);
}

/** Whether `name` may name a peer (it becomes a file name: no path separators, no dot-dot). */
export function isPeerName(name: string): boolean {
  return DOMAIN_NAME_PATTERN.test(name) && name !== '.' && name !== '..';
}

/** Refuses a key file that is not private to its owner, this process's user. */
export function checkPrivate(file: string, st: fs.Stats = fs.statSync(file)): void {
  if (!st.isFile()) throw new PeerKeyError(`key file ${file} is not a regular file`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new PeerKeyError(`key file ${file} is owned by uid ${st.uid}, not by this daemon's user (uid ${uid}): chown it`);
  const mode = st.mode & 0o777;
  if (mode & 0o077) {
    throw new PeerKeyError(`key file ${file} has mode ${mode.toString(8).padStart(4, '0')}: a pre-shared key must be readable by its owner only (chmod 600 ${file})`);
  }
}

/** Parses one key file; every field is checked and a bad one named. */
export function parsePeerFile(file: string, text: string): PeerEntry {
  const o = ini.parse(text) as Record<string, unknown>;
  const field = (k: string): string => {
    const v = o[k];
    if (typeof v !== 'string' || v.trim() === '') throw new PeerKeyError(`key file ${file}: "${k}" is missing (expected ${k} = ...)`);
    return v.trim();
  };
  for (const k of Object.keys(o)) {
    if (!SETTINGS.includes(k)) throw new PeerKeyError(`key file ${file}: unknown setting "${k}" (accepted: ${SETTINGS.join(', ')})`);
  }
  const host = field('host');
  const peer = field('peer');
  for (const [k, v] of [['host', host], ['peer', peer]] as const) {
    if (!isPeerName(v)) throw new PeerKeyError(`key file ${file}: ${k} = "${v}" is not a host name (1 to 64 characters from A-Z a-z 0-9 _ . -)`);
  }
  const hex = field('key');
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new PeerKeyError(`key file ${file}: key must be ${KEY_BYTES * 2} hex digits (${KEY_BYTES * 8} bits), got ${hex.length} characters`);
  const entry: PeerEntry = { file, host, peer, key: Buffer.from(hex, 'hex'), allow: [], disks: [], bridges: ['*'] };
  if (o.address !== undefined) {
    try {
      entry.address = parseHostPort(String(o.address));
    } catch (err) {
      throw new PeerKeyError(`key file ${file}: address = "${String(o.address)}" is not host[:port]: ${(err as Error).message}`);
    }
  }
  if (o.allow !== undefined) entry.allow = parseAllow(String(o.allow), `key file ${file}: allow`);
  if (o.bridges !== undefined) entry.bridges = parseAllow(String(o.bridges), `key file ${file}: bridges`);
  if (o.disks !== undefined) entry.disks = parseDiskPatterns(String(o.disks), `key file ${file}: disks`);
  if (o.replica_disks !== undefined) {
    const d = String(o.replica_disks).trim();
    if (!/^\/[A-Za-z0-9_./+:@-]*$/.test(d) || d.split('/').includes('..')) throw new PeerKeyError(`key file ${file}: replica_disks = "${d}" is not an absolute directory (without "..", no wildcards)`);
    entry.replicaDiskDir = d;
  }
  return entry;
}

/** `web, db-*`: domain names or patterns with `*` and `?`, separated by commas or spaces. */
export function parseAllow(text: string, what = 'allow'): string[] {
  const list = text.split(/[\s,]+/).filter(Boolean);
  for (const p of list) {
    if (!/^[A-Za-z0-9_.*?-]{1,64}$/.test(p)) throw new PeerKeyError(`${what}: "${p}" is not a domain name or pattern (A-Z a-z 0-9 _ . - and the wildcards * ?)`);
  }
  return list;
}

/** `/srv/xen/*.img, /dev/vg0/*`: absolute path patterns, no `..`. */
export function parseDiskPatterns(text: string, what = 'disks'): string[] {
  const list = text.split(/[\s,]+/).filter(Boolean);
  for (const d of list) {
    if (!/^\/[A-Za-z0-9_.*?/+:@-]*$/.test(d) || d.split('/').includes('..')) throw new PeerKeyError(`${what}: "${d}" is not an absolute path pattern (without "..")`);
  }
  return list;
}

export function allows(entry: PeerEntry, domain: string): boolean {
  return entry.allow.some((p) => globRegExp(p).test(domain));
}

export function formatPeerFile(e: Omit<PeerEntry, 'file'>, note: string): string {
  const lines = [
    `; xl-ha: the pairing of host ${e.host} with host ${e.peer}. ${note}`,
    '; The key is the same in both hosts\' files and secret: keep this file mode 0600.',
    `host = ${e.host}`,
    `peer = ${e.peer}`,
    `key = ${e.key.toString('hex')}`,
  ];
  if (e.address) lines.push(`; where ${e.peer} accepts replication streams`, `address = ${e.address.host.includes(':') ? `[${e.address.host}]` : e.address.host}:${e.address.port}`);
  lines.push(`; domains of ${e.peer} that ${e.host} accepts to replicate as its backup (names or patterns; empty: none)`, `allow = ${e.allow.join(', ')}`);
  lines.push('; what a replica may be given on this host (xen): disk targets (path patterns; empty: none), bridges (patterns)');
  lines.push(`disks = ${e.disks.join(', ')}`, `bridges = ${e.bridges.join(', ')}`);
  if (e.replicaDiskDir) lines.push(`; where this host keeps the replicated disks of ${e.peer}'s domains (xen: DIR/<domain>.<vdev>.img)`, `replica_disks = ${e.replicaDiskDir}`);
  return lines.join('\n') + '\n';
}

/** The keys directory of one host. */
export class PeerKeys {
  constructor(
    readonly dir: string,
    readonly hostName: string,
  ) {}

  fileOf(peer: string): string {
    return path.join(this.dir, peer + KEY_FILE_SUFFIX);
  }

  /**
   * Checks every key file at start-up: the daemon does not start with a key that others can
   * read or that does not parse. A missing directory is no peers yet.
   */
  checkAll(): PeerEntry[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new PeerKeyError(`keys directory ${this.dir} cannot be read: ${(err as Error).message}`);
    }
    const dst = fs.statSync(this.dir);
    if (dst.mode & 0o022) throw new PeerKeyError(`keys directory ${this.dir} has mode ${(dst.mode & 0o777).toString(8).padStart(4, '0')}: others could replace its keys (chmod 700 ${this.dir})`);
    return names.filter((n) => n.endsWith(KEY_FILE_SUFFIX)).map((n) => this.loadFile(path.join(this.dir, n)));
  }

  private loadFile(file: string): PeerEntry {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new PeerKeyError(`key file ${file} is a symbolic link: refused`);
      throw new PeerKeyError(`key file ${file} cannot be read: ${code ?? (err as Error).message}`);
    }
    try {
      checkPrivate(file, fs.fstatSync(fd));
      const entry = parsePeerFile(file, fs.readFileSync(fd, 'utf8'));
      if (entry.host !== this.hostName) throw new PeerKeyError(`key file ${file} pairs host ${entry.host} with ${entry.peer}, but this host is ${this.hostName}`);
      if (path.basename(file) !== entry.peer + KEY_FILE_SUFFIX) throw new PeerKeyError(`key file ${file} is for peer ${entry.peer}: it must be named ${entry.peer}${KEY_FILE_SUFFIX}`);
      return entry;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The pairing with `peer`, or a clear error (unknown, unreadable, not private, malformed). */
  load(peer: string): PeerEntry {
    if (!isPeerName(peer)) throw new PeerKeyError(`"${peer.slice(0, 80)}" is not a host name`);
    const file = this.fileOf(peer);
    if (!fs.existsSync(file)) throw new PeerKeyError(`host ${peer} is not paired with ${this.hostName} (no key file ${file}; run xl-ha keygen ${peer}, or xl-ha pair ${peer} FILE)`);
    return this.loadFile(file);
  }

  /**
   * The pairing to use for a connection to `to`: the one whose address is `to` (or its host),
   * else the one named as `to`'s host, else the only one there is.
   */
  forAddress(to: HostPort): PeerEntry {
    const all = this.checkAll();
    const exact = all.filter((e) => e.address && e.address.host === to.host && e.address.port === to.port);
    const hostOnly = all.filter((e) => e.address && e.address.host === to.host);
    const named = all.filter((e) => e.peer === to.host);
    for (const set of [exact, hostOnly, named]) {
      if (set.length === 1) return set[0]!;
      if (set.length > 1) throw new PeerKeyError(`${set.length} key files match ${to.host}:${to.port} (${set.map((e) => e.file).join(', ')}): give each its own address =`);
    }
    if (all.length === 1 && !all[0]!.address) return all[0]!;
    const where = `${to.host}:${to.port}`;
    if (all.length === 0) throw new PeerKeyError(`this host (${this.hostName}) is paired with no host, so it cannot replicate to ${where}: run xl-ha keygen <peer> --address ${where} (keys directory ${this.dir})`);
    throw new PeerKeyError(`no key file in ${this.dir} is for ${where} (paired: ${all.map((e) => e.peer + (e.address ? ` at ${e.address.host}:${e.address.port}` : '')).join(', ')}): set its address = ${where}`);
  }

  /** Writes a pairing (0600, the directory 0700); refuses to replace one unless `force`. */
  write(e: Omit<PeerEntry, 'file' | 'host'>, note: string, force = false): string {
    if (!isPeerName(e.peer)) throw new PeerKeyError(`"${e.peer}" is not a host name (1 to 64 characters from A-Z a-z 0-9 _ . -)`);
    if (e.peer === this.hostName) throw new PeerKeyError(`a host cannot be paired with itself (${e.peer})`);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = this.fileOf(e.peer);
    if (!force && fs.existsSync(file)) throw new PeerKeyError(`host ${this.hostName} is already paired with ${e.peer} (${file}); --force replaces the key`);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, formatPeerFile({ ...e, host: this.hostName }, note), { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
    return file;
  }
}

/**
 * Pairs two hosts whose keys directories are both here (the demo's and the tests' sim hosts):
 * what `xl-ha keygen b` on a and `xl-ha pair a FILE` on b do, in one call.
 */
export function pairLocally(a: PeerKeys, b: PeerKeys, o: { aAddress?: HostPort; bAddress?: HostPort; allow?: string[] } = {}): void {
  const key = generateKey();
  const allow = o.allow ?? ['*'];
  const devices = { disks: [], bridges: ['*'] };
  a.write({ peer: b.hostName, key, allow, ...devices, ...(o.bAddress ? { address: o.bAddress } : {}) }, 'Paired locally.', true);
  b.write({ peer: a.hostName, key, allow, ...devices, ...(o.aAddress ? { address: o.aAddress } : {}) }, 'Paired locally.', true);
}
