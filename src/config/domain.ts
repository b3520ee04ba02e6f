/**
 * Turns a parsed xl domain config (`XlCfg`) into a typed, validated
 * `DomainConfig` plus the optional high-availability settings (`HaConfig`).
 *
 * All problems are collected and reported together in one `ConfigError`,
 * one problem per line, each naming the key, the offending value and what
 * would have been accepted.
 *
 * Keys that xl-ha does not know are ignored (as xl does), except keys in
 * xl-ha's own namespaces (`ha_*`, `sim_*`), where a typo would otherwise
 * silently change behaviour.
 */

import { isIPv4, isIPv6 } from 'node:net';
import { formatXlValue, type XlCfg, type XlValue } from './xlcfg.js';

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

import { MODE_IDS, type ModeId } from '../engine/modes/ids.js';
import { BUFFER_FULL_POLICIES, DEFAULT_BUFFER_LIMIT_MIB, type BufferFullPolicy } from '../engine/buffer-policy.js';

/** Checkpoint transfer encodings (`ha_transfer`). */
export const TRANSFER_IDS = ['full', 'compress', 'fgbi'] as const;
export type TransferMode = (typeof TRANSFER_IDS)[number];

/** Simulated guest workloads (`sim_workload`). */
export const SIM_WORKLOAD_IDS = ['kv', 'memstress', 'idle'] as const;
export type SimWorkload = (typeof SIM_WORKLOAD_IDS)[number];

/** Disk image formats supported so far. */
export const DISK_FORMAT_IDS = ['raw'] as const;
export type DiskFormat = (typeof DISK_FORMAT_IDS)[number];
/** Disk formats xl knows about but xl-ha cannot replicate yet. */
export const UNSUPPORTED_DISK_FORMATS = ['qcow', 'qcow2', 'vhd', 'qed', 'empty'] as const;

/** Canonical disk access modes (xl also accepts `w` and `r`). */
export const DISK_ACCESS_IDS = ['rw', 'ro'] as const;
export type DiskAccess = (typeof DISK_ACCESS_IDS)[number];

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
  simDirtyMiBPerSec: { min: 0, max: 4096 },
  simSeed: { min: 0, max: 0xffff_ffff },
  simNondeterminism: { min: 0, max: 1 },
  port: { min: 1, max: 65_535 },
} as const;

/** Keys that describe the domain itself (others, e.g. `kernel`, are ignored). */
export const DOMAIN_KEYS = ['name', 'uuid', 'memory', 'vcpus', 'disk', 'vif'] as const;
/** Every key of the `ha` namespace. */
export const HA_KEYS = [
  'ha',
  'ha_peer',
  'ha_interval_ms',
  'ha_kemari_min_gap_ms',
  'ha_colo_max_interval_ms',
  'ha_transfer',
  'ha_group',
  'ha_netbuf',
  'ha_disk',
  'ha_heartbeat_ms',
  'ha_failover_timeout_ms',
  'ha_buffer_limit_mib',
  'ha_on_buffer_full',
] as const;
/** Every key of the `sim` namespace. */
export const SIM_KEYS = ['sim_workload', 'sim_dirty_mibps', 'sim_service', 'sim_seed', 'sim_nondeterminism'] as const;

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

export interface HostPort {
  /** Host name or address; IPv6 addresses without brackets. */
  host: string;
  port: number;
}

export interface DiskSpec {
  target: string;
  vdev: string;
  format: DiskFormat;
  access: DiskAccess;
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
  disks: DiskSpec[];
  /** vif specs, passed through unparsed. */
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
  group?: string;
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

function formatIssue(issue: ConfigIssue, source: string | undefined): string {
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

/** Thrown by `parseDiskSpec`; `reason` explains what is wrong. */
export class DiskSpecError extends Error {
  readonly spec: string;
  readonly reason: string;
  constructor(spec: string, reason: string) {
    super(`invalid disk spec ${JSON.stringify(spec)}: ${reason}`);
    this.name = 'DiskSpecError';
    this.spec = spec;
    this.reason = reason;
  }
}

const DISK_PARAMS = ['target', 'format', 'vdev', 'access'] as const;
type DiskParam = (typeof DISK_PARAMS)[number];
const VDEV_PATTERN = /^(?:(?:xvd|hd|sd)[a-z]{1,3}[0-9]*|d[0-9]+(?:p[0-9]+)?)$/;

/**
 * Parse one xl disk spec: positional `target,format,vdev,access` (empty
 * fields take defaults) and/or `key=value` parameters; `target=` takes the
 * rest of the spec (it may contain commas) so it must come last.
 * Defaults: format raw, access rw. target and vdev are required.
 * @throws DiskSpecError
 */
export function parseDiskSpec(spec: string): DiskSpec {
  const got: Partial<Record<DiskParam, string>> = {};
  const set = (param: DiskParam, value: string): void => {
    if (got[param] !== undefined && got[param] !== '') {
      throw new DiskSpecError(spec, `${param} is given more than once`);
    }
    got[param] = value;
  };

  let positional = 0;
  let rest = spec;
  for (;;) {
    const trimmedStart = rest.replace(/^\s+/, '');
    if (/^target\s*=/.test(trimmedStart)) {
      set('target', trimmedStart.slice(trimmedStart.indexOf('=') + 1));
      break;
    }
    const comma = rest.indexOf(',');
    const field = (comma < 0 ? rest : rest.slice(0, comma)).trim();
    const eq = field.indexOf('=');
    if (eq >= 0) {
      const key = field.slice(0, eq).trim();
      const value = field.slice(eq + 1).trim();
      if (!(DISK_PARAMS as readonly string[]).includes(key)) {
        throw new DiskSpecError(spec, `unsupported parameter ${JSON.stringify(key)} (supported: ${DISK_PARAMS.join(', ')})`);
      }
      set(key as DiskParam, value);
    } else {
      if (positional >= DISK_PARAMS.length) {
        throw new DiskSpecError(spec, `too many positional fields (expected at most 4: ${DISK_PARAMS.join(',')})`);
      }
      if (field !== '') set(DISK_PARAMS[positional]!, field);
      positional++;
    }
    if (comma < 0) break;
    rest = rest.slice(comma + 1);
  }

  const target = got.target ?? '';
  if (target.trim() === '') throw new DiskSpecError(spec, 'missing target (the image file or device path)');

  const vdev = got.vdev ?? '';
  if (vdev === '') throw new DiskSpecError(spec, 'missing vdev (the guest device name, e.g. xvda)');
  if (!VDEV_PATTERN.test(vdev)) {
    throw new DiskSpecError(spec, `vdev ${JSON.stringify(vdev)} is not a virtual device name (expected e.g. xvda, xvdb1, hda, sda or d0p1)`);
  }

  const formatText = (got.format ?? '').toLowerCase() || 'raw';
  if (!(DISK_FORMAT_IDS as readonly string[]).includes(formatText)) {
    const known = (UNSUPPORTED_DISK_FORMATS as readonly string[]).includes(formatText);
    throw new DiskSpecError(
      spec,
      `format ${JSON.stringify(got.format)} is ${known ? 'not supported yet' : 'unknown'}: expected ${DISK_FORMAT_IDS.join(', ')} (the only format supported for now)`,
    );
  }

  const accessText = (got.access ?? '').toLowerCase() || 'rw';
  let access: DiskAccess;
  if (accessText === 'rw' || accessText === 'w') access = 'rw';
  else if (accessText === 'ro' || accessText === 'r') access = 'ro';
  else throw new DiskSpecError(spec, `access ${JSON.stringify(got.access)} is not valid: expected rw (or w) or ro (or r)`);

  return { target, vdev, format: 'raw', access };
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate to `word`, if it is plausibly a typo of it. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best !== undefined && bestDist <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined;
}

function oneOf(ids: readonly string[]): string {
  return ids.length === 1 ? `"${ids[0]}"` : `one of ${ids.map((id) => `"${id}"`).join(', ')}`;
}

/** Collects issues while reading keys from a cfg. */
class Reader {
  readonly issues: ConfigIssue[] = [];
  constructor(private readonly cfg: XlCfg) {}

  has(key: string): boolean {
    return this.cfg.entries.has(key);
  }

  value(key: string): XlValue | undefined {
    return this.cfg.entries.get(key)?.value;
  }

  private line(key: string): number | undefined {
    return this.cfg.entries.get(key)?.line;
  }

  /** Record "<key> = <value> is not valid: <detail>". */
  bad(key: string, detail: string, shownKey: string = key, value: XlValue | undefined = this.value(key)): void {
    const shown = value === undefined ? '' : ` = ${formatXlValue(value)}`;
    this.issues.push({ key, value, line: this.line(key), message: `${shownKey}${shown} is not valid: ${detail}` });
  }

  /** Record an issue with a free-form message. */
  issue(key: string, message: string): void {
    this.issues.push({ key, value: this.value(key), line: this.line(key), message });
  }

  missing(key: string, expected: string, why = 'is required'): void {
    this.issues.push({ key, line: undefined, message: `${key} ${why}: ${expected}` });
  }

  /** Integer setting (numbers, or strings of decimal digits as xl allows). */
  int(key: string, range: { min: number; max: number }, unit: string, fallback: number): number;
  int(key: string, range: { min: number; max: number }, unit: string, fallback?: undefined): number | undefined;
  int(key: string, range: { min: number; max: number }, unit: string, fallback?: number): number | undefined {
    const v = this.value(key);
    if (v === undefined) return fallback;
    const expected = `expected an integer from ${range.min} to ${range.max} (${unit})`;
    const n = toInteger(v);
    if (n === undefined || n < range.min || n > range.max) {
      this.bad(key, expected);
      return undefined;
    }
    return n;
  }

  /** Real-number setting. */
  num(key: string, range: { min: number; max: number }, unit: string, fallback: number): number | undefined {
    const v = this.value(key);
    if (v === undefined) return fallback;
    const n = toNumber(v);
    if (n === undefined || n < range.min || n > range.max) {
      this.bad(key, `expected a number from ${range.min} to ${range.max} (${unit})`);
      return undefined;
    }
    return n;
  }

  /** Enumerated string setting. */
  choice<T extends string>(key: string, ids: readonly T[], fallback: T): T | undefined {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (typeof v === 'string' && (ids as readonly string[]).includes(v)) return v as T;
    this.bad(key, `expected ${oneOf(ids)}`);
    return undefined;
  }

  bool(key: string, fallback: boolean): boolean | undefined {
    const v = this.value(key);
    if (v === undefined) return fallback;
    const b = Array.isArray(v) ? undefined : parseBoolWord(v);
    if (b === undefined) {
      this.bad(key, `expected on/off, 1/0, true/false or yes/no`);
    }
    return b;
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
    if (v === undefined) return undefined;
    const form = defaultPort === undefined ? 'host:port' : `host[:port] (port defaults to ${defaultPort})`;
    if (typeof v !== 'string') {
      this.bad(key, `expected a quoted string ${form}, e.g. "${example}"`);
      return undefined;
    }
    try {
      return parseHostPort(v, defaultPort);
    } catch (err) {
      const reason = err instanceof HostPortError ? err.reason : String(err);
      this.bad(key, `${reason}; expected ${form}, e.g. "${example}"`);
      return undefined;
    }
  }
}

function toInteger(v: XlValue): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) ? v : undefined;
  if (typeof v === 'string' && /^\s*[+-]?[0-9]+\s*$/.test(v)) {
    const n = Number(v.trim());
    return Number.isSafeInteger(n) ? n : undefined;
  }
  return undefined;
}

function toNumber(v: XlValue): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && /^\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*$/.test(v)) return Number(v.trim());
  return undefined;
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

  const memoryMiB = r.int('memory', LIMITS.memoryMiB, 'MiB');
  if (!r.has('memory')) {
    r.missing('memory', `expected an integer from ${LIMITS.memoryMiB.min} to ${LIMITS.memoryMiB.max} (MiB), e.g. memory = 512`);
  }
  const vcpus = r.int('vcpus', LIMITS.vcpus, 'virtual CPUs', 1);

  const disks: DiskSpec[] = [];
  const diskValue = r.value('disk');
  if (diskValue !== undefined) {
    if (!Array.isArray(diskValue)) {
      r.bad('disk', `expected a list of disk specs, e.g. ['/srv/vm.img,raw,xvda,rw']`);
    } else {
      const vdevs = new Map<string, number>();
      diskValue.forEach((spec, i) => {
        if (typeof spec !== 'string') {
          r.bad('disk', `expected a quoted disk spec like '/srv/vm.img,raw,xvda,rw'`, `disk[${i}]`, spec);
          return;
        }
        try {
          const disk = parseDiskSpec(spec);
          const prev = vdevs.get(disk.vdev);
          if (prev !== undefined) {
            r.bad('disk', `vdev ${disk.vdev} is already used by disk[${prev}]: expected a distinct vdev per disk`, `disk[${i}]`, spec);
            return;
          }
          vdevs.set(disk.vdev, i);
          disks.push(disk);
        } catch (err) {
          const reason = err instanceof DiskSpecError ? err.reason : String(err);
          r.bad(
            'disk',
            `${reason}; expected 'target,format,vdev,access' or 'format=raw, vdev=xvda, access=rw, target=/path'`,
            `disk[${i}]`,
            spec,
          );
        }
      });
    }
  }

  const vifs: string[] = [];
  const vifValue = r.value('vif');
  if (vifValue !== undefined) {
    if (!Array.isArray(vifValue)) {
      r.bad('vif', `expected a list of vif specs, e.g. ['bridge=xenbr0']`);
    } else {
      vifValue.forEach((spec, i) => {
        if (typeof spec === 'string') vifs.push(spec);
        else r.bad('vif', `expected a quoted vif spec like 'bridge=xenbr0'`, `vif[${i}]`, spec);
      });
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
  if (!r.has('ha')) {
    for (const key of cfg.entries.keys()) {
      if ((HA_KEYS as readonly string[]).includes(key)) {
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
    const transfer = r.choice<TransferMode>('ha_transfer', TRANSFER_IDS, 'full');
    let group = r.str('ha_group', 'a group name');
    if (group !== undefined) {
      const problem = domainNameProblem(group);
      if (problem) {
        r.bad('ha_group', problem);
        group = undefined;
      }
    }
    const groupOk = group !== undefined || !r.has('ha_group');
    const netbuf = r.bool('ha_netbuf', true);
    const disk = r.bool('ha_disk', true);
    const heartbeatMs = r.int('ha_heartbeat_ms', LIMITS.heartbeatMs, 'milliseconds', DEFAULT_HEARTBEAT_MS);
    const bufferLimitMiB = r.has('ha_buffer_limit_mib') ? r.int('ha_buffer_limit_mib', LIMITS.bufferLimitMiB, 'MiB', DEFAULT_BUFFER_LIMIT_MIB) : undefined;
    const onBufferFull = r.has('ha_on_buffer_full') ? r.choice<BufferFullPolicy>('ha_on_buffer_full', BUFFER_FULL_POLICIES, 'throttle') : undefined;
    let failoverTimeoutMs: number | undefined;
    if (r.has('ha_failover_timeout_ms')) {
      const lim = LIMITS.failoverTimeoutMs;
      const v = toInteger(r.value('ha_failover_timeout_ms')!);
      const floor = heartbeatMs !== undefined ? heartbeatMs + 1 : lim.min;
      if (v === undefined || v < floor || v > lim.max) {
        r.bad(
          'ha_failover_timeout_ms',
          heartbeatMs !== undefined
            ? `expected an integer greater than ha_heartbeat_ms (${heartbeatMs}) and at most ${lim.max} (milliseconds)`
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
      if (group !== undefined) ha.group = group;
      if (bufferLimitMiB !== undefined) ha.bufferLimitMiB = bufferLimitMiB;
      if (onBufferFull !== undefined) ha.onBufferFull = onBufferFull;
    }
  }

  if (r.issues.length > 0) {
    const byLine = [...r.issues].sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    throw new ConfigError(byLine, cfg.source);
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
  return { domain, ha };
}
