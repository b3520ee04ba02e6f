/**
 * Turns a parsed xl domain config (`XlCfg`) into a typed, validated
 * `DomainConfig` plus the optional high-availability settings (`HaConfig`).
 *
 * All problems are collected and reported together in one `ConfigError`,
 * one problem per line, each naming the key, the offending value and what
 * would have been accepted.
 *
 * xl-ha owns the `ha` keys (and the sim's `sim_*` keys); every config `xl create`
 * accepts must stay acceptable here. So the keys of xl are read only where xl-ha needs
 * them (name, uuid, memory, vcpus, disk, vif), and then as xl reads them: `disk` and `vif`
 * entries follow xl-disk-configuration(5) and xl-network-configuration(5) in full
 * (src/config/disk.ts, src/config/vif.ts), memory defaults to libxl's 32 MiB. Every other
 * key is ignored, as xl ignores keys it does not know, except keys in xl-ha's own
 * namespaces (`ha_*`, `sim_*`), where a typo would otherwise silently change behaviour.
 * What xl would only warn about comes back in `ParsedDomainConfig.warnings`.
 */

import { isIPv4, isIPv6 } from 'node:net';
import { formatXlValue, type XlCfg, type XlCfgEntry, type XlValue } from './xlcfg.js';
import { DiskSpecError, parseDiskSpec, vdevNumber, type DiskSpec } from './disk.js';
import { parseVifSpec, VifSpecError } from './vif.js';
import { suggest } from './suggest.js';

export { suggest } from './suggest.js';
export {
  DISK_ACCESS_IDS,
  DISK_FORMAT_IDS,
  DiskSpecError,
  parseDiskSpec,
  type DiskAccess,
  type DiskFormat,
  type DiskSpec,
} from './disk.js';

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** Default TCP port of the replication channel (receiver side). */
export const DEFAULT_REPLICATION_PORT = 7720;
/** Default checkpoint interval. */
export const DEFAULT_INTERVAL_MS = 25;
/** kemari: output events within this gap coalesce into one sync (`ha_kemari_min_gap_ms`, `--min-gap`). */
export const DEFAULT_KEMARI_MIN_GAP_MS = 2;
/** colo: a checkpoint at the latest this long after the previous one (`ha_colo_max_interval_ms`, `--max-interval`). */
export const DEFAULT_COLO_MAX_INTERVAL_MS = 5000;
/** Default heartbeat interval. */
export const DEFAULT_HEARTBEAT_MS = 50;
/** Failover timeout defaults to this many heartbeats. */
export const FAILOVER_TIMEOUT_FACTOR = 3;
/** Highest domid a real domain can have (DOMID_FIRST_RESERVED - 1). */
export const MAX_DOMID = 0x7fef;
/** Memory of a domain whose cfg sets neither memory nor maxmem (libxl's default). */
export const DEFAULT_MEMORY_MIB = 32;

import { MODE_IDS, type ModeId } from '../engine/modes/ids.js';
import { BUFFER_FULL_POLICIES, DEFAULT_BUFFER_LIMIT_MIB, type BufferFullPolicy } from '../engine/buffer-policy.js';
import { parseTransfer, TRANSFER_WORDS, transferStages, type TransferId } from '../transport/transfer.js';
import { FGBI_BLOCK_BYTES, isValidBlockBytes } from '../transport/fgbi.js';

/** The words of `ha_transfer` (full alone, or a comma list of the stages: src/transport/transfer.ts). */
export const TRANSFER_IDS = TRANSFER_WORDS;
/** A transfer in canonical form (`full`, `fgbi`, `compress`, `fgbi,compress`). */
export type TransferMode = TransferId;

/** Simulated guest workloads (`sim_workload`). */
export const SIM_WORKLOAD_IDS = ['kv', 'memstress', 'idle'] as const;
export type SimWorkload = (typeof SIM_WORKLOAD_IDS)[number];

/** Words accepted as booleans (case-insensitive), besides the numbers 1 and 0. */
export const BOOL_TRUE_WORDS = ['on', '1', 'true', 'yes'] as const;
export const BOOL_FALSE_WORDS = ['off', '0', 'false', 'no'] as const;

/** Domain (and HA group) names. */
export const DOMAIN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const DOMAIN_NAME_RULE = '1 to 64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit';

/** Inclusive numeric ranges of the integer/number settings. */
export const LIMITS = {
  memoryMiB: { min: 1, max: 1_048_576 },
  vcpus: { min: 1, max: 128 },
  intervalMs: { min: 1, max: 60_000 },
  kemariMinGapMs: { min: 0, max: 10_000 },
  coloMaxIntervalMs: { min: 10, max: 600_000 },
  heartbeatMs: { min: 5, max: 10_000 },
  failoverTimeoutMs: { min: 1, max: 600_000 },
  inFlight: { min: 1, max: 16 },
  bufferLimitMiB: { min: 1, max: 4096 },
  fgbiShadowMiB: { min: 1, max: 65_536 },
  simDirtyMiBPerSec: { min: 0, max: 4096 },
  simSeed: { min: 0, max: 0xffff_ffff },
  simNondeterminism: { min: 0, max: 1 },
  port: { min: 1, max: 65_535 },
} as const;

/** Keys of xl that xl-ha reads (every other key of xl is ignored). */
export const DOMAIN_KEYS = ['name', 'uuid', 'memory', 'maxmem', 'vcpus', 'disk', 'vif'] as const;
/** Every key of the `ha` namespace. */
export const HA_KEYS = [
  'ha',
  'ha_peer',
  'ha_interval_ms',
  'ha_kemari_min_gap_ms',
  'ha_colo_max_interval_ms',
  'ha_transfer',
  'ha_fgbi_block_bytes',
  'ha_fgbi_shadow_mib',
  'ha_group',
  'ha_netbuf',
  'ha_disk',
  'ha_heartbeat_ms',
  'ha_failover_timeout_ms',
  'ha_buffer_limit_mib',
  'ha_on_buffer_full',
] as const;
export type HaKey = (typeof HA_KEYS)[number];
/** Every key of the `sim` namespace. */
export const SIM_KEYS = ['sim_workload', 'sim_dirty_mibps', 'sim_service', 'sim_seed', 'sim_nondeterminism'] as const;

/** Why `ha_group` is refused (group protection does not exist yet). */
export const HA_GROUP_UNAVAILABLE = 'group protection (ha_group) is not available yet: remove ha_group (each domain is protected on its own for now)';

/** Keys used by some modes only; every other ha key applies to every mode. */
export const HA_KEY_MODES: Readonly<Partial<Record<HaKey, readonly ModeId[]>>> = {
  ha_interval_ms: ['remus', 'llm'],
  ha_kemari_min_gap_ms: ['kemari'],
  ha_colo_max_interval_ms: ['colo'],
};

/** Does `mode` use `key`? */
export function haKeyUsedBy(key: HaKey, mode: ModeId): boolean {
  const modes = HA_KEY_MODES[key];
  return modes === undefined || modes.includes(mode);
}

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

export interface HostPort {
  /** Host name or address; IPv6 addresses without brackets. */
  host: string;
  port: number;
}

export interface SimConfig {
  workload: SimWorkload;
  dirtyMiBPerSec: number;
  service?: HostPort;
  seed: number;
  /** Fraction of kv PUT responses that differ between two copies of the guest (0..1; colo's divergence). */
  nondeterminism?: number;
}

export interface DomainConfig {
  name: string;
  /** Lower-case canonical 8-4-4-4-12 form. */
  uuid?: string;
  memoryMiB: number;
  vcpus: number;
  /** Parsed disk specs, in cfg order (the sim's image is the first disk's target). */
  disks: DiskSpec[];
  /** vif specs as written (each checked with parseVifSpec). */
  vifs: string[];
  /** Present only when some `sim_*` key is set. */
  sim?: SimConfig;
}

export interface HaConfig {
  mode: ModeId;
  peer: HostPort;
  /** remus: checkpoint interval. */
  intervalMs: number;
  /** kemari only: output events within this gap coalesce into one sync. */
  minGapMs?: number;
  /** colo only: a checkpoint at the latest this long after the previous one. */
  maxIntervalMs?: number;
  transfer: TransferMode;
  /** fgbi's block size, bytes (`ha_fgbi_block_bytes`; unset: 64). Only with fgbi in `transfer`. */
  fgbiBlockBytes?: number;
  /** The bound of each side's fgbi shadow, MiB (`ha_fgbi_shadow_mib`; unset: 64). Only with fgbi. */
  fgbiShadowMiB?: number;
  netbuf: boolean;
  disk: boolean;
  heartbeatMs: number;
  failoverTimeoutMs: number;
  /** Output held for the backup before `onBufferFull` acts (`ha_buffer_limit_mib`; unset: 16 MiB). */
  bufferLimitMiB?: number;
  /** `ha_on_buffer_full`: throttle (pause the guest until the backup catches up) or degrade (give protection up). */
  onBufferFull?: BufferFullPolicy;
}

export interface ParsedDomainConfig {
  domain: DomainConfig;
  /** null when the config has no `ha` key. */
  ha: HaConfig | null;
  /** What xl would only warn about (the config is valid), in line order. */
  warnings: ConfigIssue[];
}

/** One problem with one key. */
export interface ConfigIssue {
  key: string;
  /** The offending value; undefined when the key is missing. */
  value?: XlValue;
  /** Line of the key in the cfg file, when known. */
  line?: number;
  /** Full description: names the key, the value and what is accepted. */
  message: string;
}

/** Invalid domain configuration; lists every issue found, one per line. */
export class ConfigError extends Error {
  readonly errors: ConfigIssue[];
  /** Key of the first issue. */
  readonly key: string;
  /** Value of the first issue (undefined if that key was missing). */
  readonly value: XlValue | undefined;
  readonly source: string | undefined;

  constructor(errors: ConfigIssue[], source?: string) {
    if (errors.length === 0) throw new TypeError('ConfigError needs at least one issue');
    const lines = errors.map((e) => formatIssue(e, source));
    const message =
      lines.length === 1
        ? lines[0]!
        : `${source ?? 'domain config'}: ${lines.length} configuration errors:\n${lines.join('\n')}`;
    super(message);
    this.name = 'ConfigError';
    this.errors = errors;
    this.key = errors[0]!.key;
    this.value = errors[0]!.value;
    this.source = source;
  }
}

/** `file:line: message` (or `file: message` when the line is unknown). */
export function formatIssue(issue: ConfigIssue, source: string | undefined): string {
  const where =
    source !== undefined && issue.line !== undefined && issue.line > 0
      ? `${source}:${issue.line}: `
      : source !== undefined
        ? `${source}: `
        : '';
  return where + issue.message;
}

// ---------------------------------------------------------------------------
// Small parsers shared with the CLI
// ---------------------------------------------------------------------------

/** Thrown by `parseHostPort`; `reason` is the message without the input. */
export class HostPortError extends Error {
  readonly input: string;
  readonly reason: string;
  constructor(input: string, reason: string) {
    super(`invalid address ${JSON.stringify(input)}: ${reason}`);
    this.name = 'HostPortError';
    this.input = input;
    this.reason = reason;
  }
}

const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** True for an IPv4 address or a DNS host name (RFC 1123 labels). */
export function isValidHostName(host: string): boolean {
  if (isIPv4(host)) return true;
  if (host.length === 0 || host.length > 253) return false;
  const labels = (host.endsWith('.') ? host.slice(0, -1) : host).split('.');
  if (!labels.every((l) => HOST_LABEL.test(l))) return false;
  // All-numeric names that are not valid IPv4 (e.g. 300.1.1.1) are typos.
  if (labels.every((l) => /^[0-9]+$/.test(l))) return false;
  return true;
}

function parsePort(text: string, input: string): number {
  if (!/^[0-9]+$/.test(text)) {
    throw new HostPortError(input, `port ${JSON.stringify(text)} is not a number (expected ${LIMITS.port.min} to ${LIMITS.port.max})`);
  }
  const port = Number(text);
  if (port < LIMITS.port.min || port > LIMITS.port.max) {
    throw new HostPortError(input, `port ${text} is out of range (expected ${LIMITS.port.min} to ${LIMITS.port.max})`);
  }
  return port;
}

/**
 * Parse `host[:port]`, `[ipv6][:port]` or a bare IPv6 address.
 * Without `defaultPort` the port is mandatory.
 * The returned host never has brackets.
 * @throws HostPortError naming the input and the problem
 */
export function parseHostPort(text: string, defaultPort?: number): HostPort {
  const input = text.trim();
  if (input === '') throw new HostPortError(text, 'empty address: expected host[:port]');

  let host: string;
  let portText: string | undefined;

  if (input.startsWith('[')) {
    const close = input.indexOf(']');
    if (close < 0) throw new HostPortError(text, "missing ']' after the IPv6 address");
    host = input.slice(1, close);
    const rest = input.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) {
        throw new HostPortError(text, `unexpected ${JSON.stringify(rest)} after ']': expected :port`);
      }
      portText = rest.slice(1);
    }
    if (!isIPv6(host)) throw new HostPortError(text, `${JSON.stringify(host)} is not an IPv6 address`);
  } else {
    const colons = input.split(':').length - 1;
    if (colons > 1) {
      if (isIPv6(input)) {
        host = input;
      } else {
        throw new HostPortError(text, 'IPv6 addresses with a port must be written in brackets, e.g. [fe80::1]:7720');
      }
    } else if (colons === 1) {
      const i = input.indexOf(':');
      host = input.slice(0, i);
      portText = input.slice(i + 1);
      if (host === '') throw new HostPortError(text, 'missing host before ":"');
    } else {
      host = input;
    }
    if (!isIPv6(host) && !isValidHostName(host)) {
      throw new HostPortError(text, `${JSON.stringify(host)} is not a valid host name or IP address`);
    }
  }

  let port: number;
  if (portText !== undefined) {
    port = parsePort(portText, text);
  } else if (defaultPort !== undefined) {
    port = defaultPort;
  } else {
    throw new HostPortError(text, 'missing port');
  }
  return { host, port };
}

/** Inverse of `parseHostPort` (brackets IPv6 hosts). */
export function formatHostPort(hp: HostPort): string {
  return `${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}`;
}

/**
 * Interpret on/off/1/0/true/false/yes/no (case-insensitive) or the numbers 1/0.
 * Returns undefined for anything else.
 */
export function parseBoolWord(word: string | number): boolean | undefined {
  if (typeof word === 'number') return word === 1 ? true : word === 0 ? false : undefined;
  const w = word.trim().toLowerCase();
  if ((BOOL_TRUE_WORDS as readonly string[]).includes(w)) return true;
  if ((BOOL_FALSE_WORDS as readonly string[]).includes(w)) return false;
  return undefined;
}

/** True if `name` is acceptable as a domain or group name. */
export function isValidDomainName(name: string): boolean {
  return DOMAIN_NAME_PATTERN.test(name) && !/^[0-9]+$/.test(name);
}

/** Why `name` is not a valid domain name (undefined if it is). */
export function domainNameProblem(name: string): string | undefined {
  if (!DOMAIN_NAME_PATTERN.test(name)) return `expected a name of ${DOMAIN_NAME_RULE}`;
  if (/^[0-9]+$/.test(name)) return 'a name must not be all digits (it would be taken for a domid)';
  return undefined;
}

// ---------------------------------------------------------------------------
// Value checks (shared with xl-ha.conf's [defaults])
// ---------------------------------------------------------------------------

/** A value read, or why it is not valid ("expected …"). */
export type Checked<T> = { ok: true; value: T } | { ok: false; detail: string };

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const no = <T>(detail: string): Checked<T> => ({ ok: false, detail });

/**
 * An integer as xl reads one (C's strtol with base 0): a number, or a string of an
 * optionally signed decimal, 0x hex or 0 octal integer (surrounding blanks allowed).
 */
export function toInteger(v: XlValue): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))\s*$/.exec(v);
  if (!m) return undefined;
  const n = m[2] !== undefined ? parseInt(m[2], 16) : m[3] !== undefined ? parseInt(m[3], 8) : Number(m[4]);
  if (!Number.isSafeInteger(n)) return undefined;
  return m[1] === '-' && n !== 0 ? -n : n;
}

function toNumber(v: XlValue): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*$/.test(v)) return Number(v.trim());
  return undefined;
}

function oneOf(ids: readonly string[]): string {
  return ids.length === 1 ? `"${ids[0]}"` : `one of ${ids.map((id) => `"${id}"`).join(', ')}`;
}

export function checkInt(v: XlValue, range: { min: number; max: number }, unit: string): Checked<number> {
  const n = toInteger(v);
  return n === undefined || n < range.min || n > range.max ? no(`expected an integer from ${range.min} to ${range.max} (${unit})`) : ok(n);
}

export function checkNumber(v: XlValue, range: { min: number; max: number }, unit: string): Checked<number> {
  const n = toNumber(v);
  return n === undefined || n < range.min || n > range.max ? no(`expected a number from ${range.min} to ${range.max} (${unit})`) : ok(n);
}

export function checkChoice<T extends string>(v: XlValue, ids: readonly T[]): Checked<T> {
  return typeof v === 'string' && (ids as readonly string[]).includes(v) ? ok(v as T) : no(`expected ${oneOf(ids)}`);
}

/** `ha_transfer`: full, or a comma list of stages in any order, each once; canonical form out. */
export function checkTransfer(v: XlValue): Checked<TransferId> {
  if (typeof v !== 'string') return no('expected a quoted string: full, or a comma list of fgbi and compress (e.g. "fgbi,compress")');
  const t = parseTransfer(v);
  return t.ok ? ok(t.id) : no(t.reason);
}

export function checkBool(v: XlValue): Checked<boolean> {
  const b = Array.isArray(v) ? undefined : parseBoolWord(v);
  return b === undefined ? no('expected on/off, 1/0, true/false or yes/no') : ok(b);
}

export function checkHostPort(v: XlValue, defaultPort: number | undefined, example: string): Checked<HostPort> {
  const form = defaultPort === undefined ? 'host:port' : `host[:port] (port defaults to ${defaultPort})`;
  if (typeof v !== 'string') return no(`expected a quoted string ${form}, e.g. "${example}"`);
  try {
    return ok(parseHostPort(v, defaultPort));
  } catch (err) {
    const reason = err instanceof HostPortError ? err.reason : String(err);
    return no(`${reason}; expected ${form}, e.g. "${example}"`);
  }
}

/**
 * Check one value of an ha key on its own (`ha_failover_timeout_ms` must also exceed the
 * heartbeat, which is checked with both). Used for cfg files and xl-ha.conf's [defaults].
 */
export function checkHaValue(key: HaKey, v: XlValue): Checked<unknown> {
  switch (key) {
    case 'ha':
      return checkChoice(v, MODE_IDS);
    case 'ha_peer':
      return checkHostPort(v, DEFAULT_REPLICATION_PORT, `backup-host:${DEFAULT_REPLICATION_PORT}`);
    case 'ha_interval_ms':
      return checkInt(v, LIMITS.intervalMs, 'milliseconds');
    case 'ha_kemari_min_gap_ms':
      return checkInt(v, LIMITS.kemariMinGapMs, 'milliseconds');
    case 'ha_colo_max_interval_ms':
      return checkInt(v, LIMITS.coloMaxIntervalMs, 'milliseconds');
    case 'ha_transfer':
      return checkTransfer(v);
    case 'ha_fgbi_block_bytes': {
      const n = toInteger(v);
      return n !== undefined && isValidBlockBytes(n) ? ok(n) : no(`expected a power of two from ${FGBI_BLOCK_BYTES.min} to ${FGBI_BLOCK_BYTES.max} (bytes), e.g. 64`);
    }
    case 'ha_fgbi_shadow_mib':
      return checkInt(v, LIMITS.fgbiShadowMiB, 'MiB');
    case 'ha_group':
      return no(HA_GROUP_UNAVAILABLE);
    case 'ha_netbuf':
    case 'ha_disk':
      return checkBool(v);
    case 'ha_heartbeat_ms':
      return checkInt(v, LIMITS.heartbeatMs, 'milliseconds');
    case 'ha_failover_timeout_ms':
      return checkInt(v, LIMITS.failoverTimeoutMs, 'milliseconds');
    case 'ha_buffer_limit_mib':
      return checkInt(v, LIMITS.bufferLimitMiB, 'MiB');
    case 'ha_on_buffer_full':
      return checkChoice(v, BUFFER_FULL_POLICIES);
  }
}

/** Keys whose value is read as a number: xl refuses `+=` for those. */
const NUMERIC_KEYS = new Set<string>([
  'memory',
  'maxmem',
  'vcpus',
  'ha_interval_ms',
  'ha_kemari_min_gap_ms',
  'ha_colo_max_interval_ms',
  'ha_fgbi_block_bytes',
  'ha_fgbi_shadow_mib',
  'ha_heartbeat_ms',
  'ha_failover_timeout_ms',
  'ha_buffer_limit_mib',
  'sim_dirty_mibps',
  'sim_seed',
  'sim_nondeterminism',
]);

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/** Collects issues while reading keys from a cfg. */
class Reader {
  readonly issues: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  constructor(private readonly cfg: XlCfg) {}

  has(key: string): boolean {
    return this.cfg.entries.has(key);
  }

  entry(key: string): XlCfgEntry | undefined {
    return this.cfg.entries.get(key);
  }

  value(key: string): XlValue | undefined {
    return this.cfg.entries.get(key)?.value;
  }

  private line(key: string): number | undefined {
    return this.cfg.entries.get(key)?.line;
  }

  /** " (from /etc/xen/xl-ha.conf:7 [defaults])" for a value that is not written in the cfg. */
  private from(key: string): string {
    const origin = this.cfg.entries.get(key)?.origin;
    return origin ? ` (from ${origin})` : '';
  }

  /** Record "<key> = <value> is not valid: <detail>". */
  bad(key: string, detail: string, shownKey: string = key, value: XlValue | undefined = this.value(key)): void {
    const shown = value === undefined ? '' : ` = ${formatXlValue(value)}`;
    this.issues.push({ key, value, line: this.line(key), message: `${shownKey}${shown}${this.from(key)} is not valid: ${detail}` });
  }

  /** Record an issue with a free-form message. */
  issue(key: string, message: string): void {
    this.issues.push({ key, value: this.value(key), line: this.line(key), message });
  }

  warn(key: string, message: string, line: number | undefined = this.line(key), value: XlValue | undefined = this.value(key)): void {
    this.warnings.push({ key, value, line, message });
  }

  missing(key: string, expected: string, why = 'is required'): void {
    this.issues.push({ key, line: undefined, message: `${key} ${why}: ${expected}` });
  }

  /** The value of a key read as a number, unless it was built with `+=` (xl refuses that). */
  private numeric(key: string): XlValue | undefined {
    const e = this.entry(key);
    if (e?.appended && NUMERIC_KEYS.has(key)) {
      this.bad(key, `xl does not accept += for a number (it would ignore ${key}): write ${key} = <number>`);
      return undefined;
    }
    return e?.value;
  }

  /** Record the outcome of a check; undefined when it failed. */
  take<T>(key: string, c: Checked<T>): T | undefined {
    if (c.ok) return c.value;
    this.bad(key, c.detail);
    return undefined;
  }

  /** Integer setting (numbers, or strings of integers as xl allows). */
  int(key: string, range: { min: number; max: number }, unit: string, fallback: number): number | undefined;
  int(key: string, range: { min: number; max: number }, unit: string, fallback?: undefined): number | undefined;
  int(key: string, range: { min: number; max: number }, unit: string, fallback?: number): number | undefined {
    if (!this.has(key)) return fallback;
    const v = this.numeric(key);
    return v === undefined ? undefined : this.take(key, checkInt(v, range, unit));
  }

  /** Real-number setting. */
  num(key: string, range: { min: number; max: number }, unit: string, fallback: number): number | undefined {
    if (!this.has(key)) return fallback;
    const v = this.numeric(key);
    return v === undefined ? undefined : this.take(key, checkNumber(v, range, unit));
  }

  /** Enumerated string setting. */
  choice<T extends string>(key: string, ids: readonly T[], fallback: T): T | undefined {
    const v = this.value(key);
    return v === undefined ? fallback : this.take(key, checkChoice(v, ids));
  }

  bool(key: string, fallback: boolean): boolean | undefined {
    const v = this.value(key);
    return v === undefined ? fallback : this.take(key, checkBool(v));
  }

  str(key: string, what: string): string | undefined {
    const v = this.value(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') {
      this.bad(key, `expected a quoted string (${what})`);
      return undefined;
    }
    return v;
  }

  hostPort(key: string, defaultPort: number | undefined, example: string): HostPort | undefined {
    const v = this.value(key);
    return v === undefined ? undefined : this.take(key, checkHostPort(v, defaultPort, example));
  }

  /** A list key (`disk`, `vif`): its string entries, with their index; other entries are issues. */
  specs(key: string, example: string): { spec: string; index: number; raw: XlValue }[] {
    const v = this.value(key);
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      this.bad(key, `expected a list of ${key} specs, e.g. [${example}]`);
      return [];
    }
    const out: { spec: string; index: number; raw: XlValue }[] = [];
    for (const [index, spec] of v.entries()) {
      if (Array.isArray(spec)) {
        // xl stops reading the list at the first entry that is not a string.
        this.bad(key, `expected a quoted ${key} spec like ${example}, not a list (xl would silently ignore it and every ${key} after it)`, `${key}[${index}]`, spec);
        break;
      }
      // xl keeps a number as its text, and reads it as a spec.
      out.push({ spec: String(spec), index, raw: spec });
    }
    return out;
  }
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function unknownKeyMessage(key: string, known: readonly string[], namespace: string): string {
  const hint = suggest(key, known);
  return `${key} is not a known key${hint ? ` (did you mean ${hint}?)` : ''}: the known ${namespace} keys are ${known.join(', ')}`;
}

/**
 * Validate a parsed cfg.
 * @throws ConfigError listing every problem found
 */
export function domainConfigFromCfg(cfg: XlCfg): ParsedDomainConfig {
  const r = new Reader(cfg);

  // --- unknown keys in our namespaces
  for (const key of cfg.entries.keys()) {
    if (key.startsWith('ha_') && !(HA_KEYS as readonly string[]).includes(key)) {
      r.issue(key, unknownKeyMessage(key, HA_KEYS, 'ha'));
    } else if (key.startsWith('sim_') && !(SIM_KEYS as readonly string[]).includes(key)) {
      r.issue(key, unknownKeyMessage(key, SIM_KEYS, 'sim'));
    }
  }
  for (const d of cfg.duplicates ?? []) {
    if (d.previousLine > 0) r.warn(d.key, `${d.key} is set twice, on lines ${d.previousLine} and ${d.line}: the later one counts (as in xl)`, d.line);
  }

  // --- domain
  let name = r.str('name', 'the domain name');
  if (name === undefined && !r.has('name')) {
    r.missing('name', `expected a domain name of ${DOMAIN_NAME_RULE}, e.g. name = "vm1"`);
  } else if (name !== undefined) {
    const problem = domainNameProblem(name);
    if (problem) {
      r.bad('name', problem);
      name = undefined;
    }
  }

  let uuid = r.str('uuid', 'a UUID like "3f2504e0-4f89-11d3-9a0c-0305e82c3301"');
  if (uuid !== undefined) {
    if (UUID_PATTERN.test(uuid)) uuid = uuid.toLowerCase();
    else {
      r.bad('uuid', 'expected a UUID in 8-4-4-4-12 hex form, e.g. "3f2504e0-4f89-11d3-9a0c-0305e82c3301"');
      uuid = undefined;
    }
  }

  // memory is the guest's memory at start; without it libxl takes maxmem, or 32 MiB.
  let memoryMiB: number | undefined;
  if (r.has('memory')) memoryMiB = r.int('memory', LIMITS.memoryMiB, 'MiB');
  else if (r.has('maxmem')) {
    memoryMiB = r.int('maxmem', LIMITS.memoryMiB, 'MiB');
    if (memoryMiB !== undefined) r.warn('maxmem', `memory is not set: the domain starts with maxmem, ${memoryMiB} MiB (as in libxl)`);
  } else {
    memoryMiB = DEFAULT_MEMORY_MIB;
    r.warn('memory', `memory is not set: the domain gets ${DEFAULT_MEMORY_MIB} MiB, libxl's default (set memory = <MiB>)`);
  }
  const vcpus = r.int('vcpus', LIMITS.vcpus, 'virtual CPUs', 1);

  const disks: DiskSpec[] = [];
  const vdevs = new Map<number, { index: number; vdev: string }>();
  for (const { spec, index, raw } of r.specs('disk', `'/srv/vm.img,raw,xvda,rw'`)) {
    try {
      const disk = parseDiskSpec(spec);
      const number = vdevNumber(disk.vdev)!;
      const prev = vdevs.get(number);
      if (prev !== undefined) {
        const same = prev.vdev === disk.vdev ? `vdev ${disk.vdev}` : `vdev ${disk.vdev} (the same device as ${prev.vdev})`;
        r.bad('disk', `${same} is already used by disk[${prev.index}]: expected a distinct vdev per disk`, `disk[${index}]`, raw);
        continue;
      }
      vdevs.set(number, { index, vdev: disk.vdev });
      disks.push(disk);
    } catch (err) {
      const reason = err instanceof DiskSpecError ? err.reason : String(err);
      r.bad('disk', reason, `disk[${index}]`, raw);
    }
  }

  const vifs: string[] = [];
  for (const { spec, index, raw } of r.specs('vif', `'bridge=xenbr0'`)) {
    try {
      const { warnings } = parseVifSpec(spec);
      for (const w of warnings) r.warn('vif', `vif[${index}] = ${formatXlValue(raw)}: ${w}`, r.entry('vif')?.line, raw);
      vifs.push(spec);
    } catch (err) {
      const reason = err instanceof VifSpecError ? err.reason : String(err);
      r.bad('vif', reason, `vif[${index}]`, raw);
    }
  }

  // --- sim
  let sim: SimConfig | undefined;
  const anySim = [...cfg.entries.keys()].some((k) => k.startsWith('sim_'));
  if (anySim) {
    const workload = r.choice('sim_workload', SIM_WORKLOAD_IDS, 'kv');
    const dirty = r.num('sim_dirty_mibps', LIMITS.simDirtyMiBPerSec, 'MiB per second', 0);
    const service = r.hostPort('sim_service', undefined, '127.0.0.1:7000');
    const seed = r.int('sim_seed', LIMITS.simSeed, 'an unsigned 32-bit seed', 1);
    const nondeterminism = r.num('sim_nondeterminism', LIMITS.simNondeterminism, 'the fraction of PUT responses that differ between two copies', 0);
    if (workload !== undefined && dirty !== undefined && seed !== undefined && nondeterminism !== undefined) {
      sim = { workload, dirtyMiBPerSec: dirty, seed };
      if (service) sim.service = service;
      if (nondeterminism > 0) sim.nondeterminism = nondeterminism;
    }
  }

  // --- ha
  let ha: HaConfig | null = null;
  if (r.has('ha_group')) r.take('ha_group', checkHaValue('ha_group', r.value('ha_group')!)); // refused, whatever the rest says
  if (!r.has('ha')) {
    for (const key of cfg.entries.keys()) {
      if ((HA_KEYS as readonly string[]).includes(key) && key !== 'ha_group') {
        r.issue(key, `${key} is set but ha is not: add ha = "remus" (or another of ${MODE_IDS.join(', ')}) to enable high availability, or remove ${key}`);
      }
    }
  } else {
    const mode = r.choice<ModeId>('ha', MODE_IDS, 'remus');
    const peer = r.hostPort('ha_peer', DEFAULT_REPLICATION_PORT, `backup-host:${DEFAULT_REPLICATION_PORT}`);
    if (!r.has('ha_peer')) {
      r.missing(
        'ha_peer',
        `expected host[:port] of the backup (port defaults to ${DEFAULT_REPLICATION_PORT}), e.g. ha_peer = "backup-host"`,
        'is required when ha is set',
      );
    }
    const intervalMs = r.int('ha_interval_ms', LIMITS.intervalMs, 'milliseconds', DEFAULT_INTERVAL_MS);
    const minGapMs = r.int('ha_kemari_min_gap_ms', LIMITS.kemariMinGapMs, 'milliseconds', DEFAULT_KEMARI_MIN_GAP_MS);
    // A key the mode does not use would be parsed and then ignored: refused instead.
    if (mode !== undefined && mode !== 'kemari' && r.has('ha_kemari_min_gap_ms')) {
      r.issue('ha_kemari_min_gap_ms', `ha_kemari_min_gap_ms is used only by ha = "kemari", not by ha = "${mode}": remove it`);
    }
    if (mode === 'kemari' && r.has('ha_interval_ms')) {
      r.issue('ha_interval_ms', 'ha_interval_ms is not used by ha = "kemari", which syncs when the guest emits output: remove it, or set ha_kemari_min_gap_ms');
    }
    const maxIntervalMs = r.int('ha_colo_max_interval_ms', LIMITS.coloMaxIntervalMs, 'milliseconds', DEFAULT_COLO_MAX_INTERVAL_MS);
    if (mode !== undefined && mode !== 'colo' && r.has('ha_colo_max_interval_ms')) {
      r.issue('ha_colo_max_interval_ms', `ha_colo_max_interval_ms is used only by ha = "colo", not by ha = "${mode}": remove it`);
    }
    if (mode === 'colo' && r.has('ha_interval_ms')) {
      r.issue('ha_interval_ms', 'ha_interval_ms is not used by ha = "colo", which checkpoints when the two copies\' outputs differ: remove it, or set ha_colo_max_interval_ms');
    }
    const transfer = r.has('ha_transfer') ? r.take('ha_transfer', checkTransfer(r.value('ha_transfer')!)) : 'full';
    const fgbiBlockBytes = r.has('ha_fgbi_block_bytes') ? r.take('ha_fgbi_block_bytes', checkHaValue('ha_fgbi_block_bytes', r.value('ha_fgbi_block_bytes')!) as Checked<number>) : undefined;
    const fgbiShadowMiB = r.int('ha_fgbi_shadow_mib', LIMITS.fgbiShadowMiB, 'MiB');
    // fgbi's keys without fgbi would be parsed and then ignored: refused instead
    if (transfer !== undefined && !transferStages(transfer).includes('fgbi')) {
      for (const key of ['ha_fgbi_block_bytes', 'ha_fgbi_shadow_mib'] as const) {
        if (r.has(key) && !r.entry(key)!.origin) r.issue(key, `${key} is used only when ha_transfer includes fgbi, not with ha_transfer = "${transfer}": remove it, or set ha_transfer = "fgbi"`);
      }
    }
    const groupOk = !r.has('ha_group');
    const netbuf = r.bool('ha_netbuf', true);
    const disk = r.bool('ha_disk', true);
    const heartbeatMs = r.int('ha_heartbeat_ms', LIMITS.heartbeatMs, 'milliseconds', DEFAULT_HEARTBEAT_MS);
    const bufferLimitMiB = r.has('ha_buffer_limit_mib') ? r.int('ha_buffer_limit_mib', LIMITS.bufferLimitMiB, 'MiB', DEFAULT_BUFFER_LIMIT_MIB) : undefined;
    const onBufferFull = r.has('ha_on_buffer_full') ? r.choice<BufferFullPolicy>('ha_on_buffer_full', BUFFER_FULL_POLICIES, 'throttle') : undefined;
    let failoverTimeoutMs: number | undefined;
    if (r.has('ha_failover_timeout_ms')) {
      const lim = LIMITS.failoverTimeoutMs;
      const raw = r.entry('ha_failover_timeout_ms')!;
      const v = raw.appended ? undefined : toInteger(raw.value);
      const floor = heartbeatMs !== undefined ? heartbeatMs + 1 : lim.min;
      if (v === undefined || v < floor || v > lim.max) {
        r.bad(
          'ha_failover_timeout_ms',
          heartbeatMs !== undefined
            ? `expected an integer greater than ha_heartbeat_ms (${heartbeatMs}${r.entry('ha_heartbeat_ms')?.origin ? `, from ${r.entry('ha_heartbeat_ms')!.origin}` : ''}) and at most ${lim.max} (milliseconds)`
            : `expected an integer from ${lim.min} to ${lim.max} (milliseconds), greater than ha_heartbeat_ms`,
        );
      } else {
        failoverTimeoutMs = v;
      }
    } else if (heartbeatMs !== undefined) {
      failoverTimeoutMs = FAILOVER_TIMEOUT_FACTOR * heartbeatMs;
    }
    if (
      mode !== undefined &&
      peer !== undefined &&
      intervalMs !== undefined &&
      transfer !== undefined &&
      groupOk &&
      netbuf !== undefined &&
      disk !== undefined &&
      heartbeatMs !== undefined &&
      failoverTimeoutMs !== undefined
    ) {
      ha = { mode, peer, intervalMs, transfer, netbuf, disk, heartbeatMs, failoverTimeoutMs };
      if (mode === 'kemari' && minGapMs !== undefined) ha.minGapMs = minGapMs;
      if (mode === 'colo' && maxIntervalMs !== undefined) ha.maxIntervalMs = maxIntervalMs;
      if (bufferLimitMiB !== undefined) ha.bufferLimitMiB = bufferLimitMiB;
      if (onBufferFull !== undefined) ha.onBufferFull = onBufferFull;
      if (fgbiBlockBytes !== undefined) ha.fgbiBlockBytes = fgbiBlockBytes;
      if (fgbiShadowMiB !== undefined) ha.fgbiShadowMiB = fgbiShadowMiB;
    }
  }

  const byLine = (list: ConfigIssue[]) => [...list].sort((a, b) => (a.line || Infinity) - (b.line || Infinity));
  if (r.issues.length > 0) {
    // An issue about a value from xl-ha.conf has no line here: it sorts last.
    throw new ConfigError(byLine(r.issues), cfg.source);
  }

  const domain: DomainConfig = {
    name: name!,
    memoryMiB: memoryMiB!,
    vcpus: vcpus!,
    disks,
    vifs,
  };
  if (uuid !== undefined) domain.uuid = uuid;
  if (sim) domain.sim = sim;
  return { domain, ha, warnings: byLine(r.warnings) };
}
