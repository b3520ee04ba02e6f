/**
 * One `vif = [...]` entry, read as xl reads it (xl-network-configuration(5), xl's
 * parse_nic_config and libxlu_vif.c).
 *
 * xl splits the spec at commas (empty pieces are skipped), drops the spaces before each
 * piece and matches `key=` prefixes. What xl refuses (it exits) is refused here: a bad
 * `rate=`, a `devid=`/`mtu=` that is not a number. What xl only warns about and then goes
 * on without is a warning here, so that a config xl creates is never refused: an unknown
 * key (a newer xl may know it), `accel=`, the deprecated `netdev=`. A `mac=` or `type=` xl
 * cannot read is refused here although xl only warns: xl then runs the guest with a
 * half-set address or the default type, which is never what the config meant.
 */

import { orList, suggest } from './suggest.js';

export const VIF_TYPES = ['vif', 'ioemu'] as const;
export type VifType = (typeof VIF_TYPES)[number];

/** COLO proxy keys of a vif (passed to libxl as strings). */
const COLO_KEYS = [
  'forwarddev',
  ...['mirror', 'compare_sec_in', 'redirector0', 'redirector1', 'redirector2', 'compare_pri_in', 'compare_notify', 'sec_redirector0', 'sec_redirector1'].flatMap((s) =>
    ['id', 'ip', 'port'].map((p) => `colo_sock_${s}_${p}`),
  ),
  'colo_filter_mirror_queue',
  'colo_filter_mirror_outdev',
  ...['redirector0', 'redirector1', 'sec_redirector0', 'sec_redirector1'].flatMap((s) => ['queue', 'indev', 'outdev'].map((p) => `colo_filter_${s}_${p}`)),
  'colo_filter_sec_rewriter0_queue',
  'colo_compare_pri_in',
  'colo_compare_sec_in',
  'colo_compare_out',
  'colo_compare_notify_dev',
  'colo_checkpoint_host',
  'colo_checkpoint_port',
] as const;

/** Keys taken as plain strings. */
const STRING_KEYS = ['bridge', 'gatewaydev', 'ip', 'script', 'backend', 'vifname', 'model'] as const;

/** Every key of a vif spec xl knows. */
export const VIF_KEYS = ['mac', 'bridge', 'gatewaydev', 'type', 'model', 'vifname', 'script', 'ip', 'backend', 'rate', 'devid', 'mtu', 'netdev', 'accel', ...COLO_KEYS] as const;

/** The keys named in messages (the COLO ones are many and rarely wanted). */
const MAIN_KEYS = VIF_KEYS.filter((k) => !k.startsWith('colo_') && k !== 'forwarddev');

export interface VifRate {
  /** As written, e.g. "10Mb/s@20ms". */
  text: string;
  bytesPerSec: number;
  intervalUsecs: number;
  /** Credit per interval (what libxl gets). */
  bytesPerInterval: number;
}

export interface VifSpec {
  /** Lower-case, two digits per byte. */
  mac?: string;
  bridge?: string;
  gatewaydev?: string;
  type?: VifType;
  model?: string;
  vifname?: string;
  script?: string;
  ip?: string;
  backend?: string;
  rate?: VifRate;
  devid?: number;
  mtu?: number;
  /** forwarddev and colo_* keys, by name. */
  colo?: Record<string, string>;
}

export interface ParsedVif {
  vif: VifSpec;
  /** What xl would warn about and ignore. */
  warnings: string[];
}

/** Thrown by `parseVifSpec`; `reason` explains what is wrong (without the spec). */
export class VifSpecError extends Error {
  readonly spec: string;
  readonly reason: string;
  constructor(spec: string, reason: string) {
    super(`invalid vif spec ${JSON.stringify(spec)}: ${reason}`);
    this.name = 'VifSpecError';
    this.spec = spec;
    this.reason = reason;
  }
}

const UINT32_MAX = 0xffff_ffff;
/** Warnings about unknown keys, at most, per vif spec (the rest are summed up in one). */
const MAX_UNKNOWN_WARNINGS = 10;

/** strtoull(…, 0) over the leading digits: decimal, or octal with a leading 0. */
function cLeadingInteger(text: string): { value: number; rest: string } {
  const m = /^[0-9]+/.exec(text)!;
  const digits = m[0];
  let value: number;
  if (digits.length > 1 && digits.startsWith('0')) {
    const oct = /^0[0-7]*/.exec(digits)![0];
    return { value: parseInt(oct, 8), rest: text.slice(oct.length) };
  }
  value = Number(digits);
  return { value, rest: text.slice(digits.length) };
}

/** xlu_vif_parse_rate: RATE[@INTERVAL]. */
function parseRate(text: string): VifRate | string {
  const at = text.indexOf('@');
  const ratePart = at < 0 ? text : text.slice(0, at);
  const intervalPart = at < 0 ? undefined : text.slice(at + 1);
  const accepted = 'expected RATE[@INTERVAL], RATE a number with B/s, KB/s, MB/s, GB/s (bytes) or b/s, Kb/s, Mb/s, Gb/s (bits), INTERVAL a number with us, ms or s (default 50ms), e.g. rate=10Mb/s@20ms';
  if (ratePart === '') return `no rate before the interval: ${accepted}`;
  if (!/^[0-9]+[GMK]?[Bb]\/s$/.test(ratePart)) return `invalid rate ${JSON.stringify(ratePart)}: ${accepted}`;
  const { value: n, rest } = cLeadingInteger(ratePart);
  if (n === 0 || n > UINT32_MAX) return `rate ${JSON.stringify(ratePart)} is out of range: expected 1 to ${UINT32_MAX} per second before the unit`;
  let bytesPerSec = n * ({ G: 1e9, M: 1e6, K: 1e3 }[rest[0]!] ?? 1);
  if (rest[0] === 'b' || rest[1] === 'b') bytesPerSec = Math.floor(bytesPerSec / 8);
  let intervalUsecs = 50_000;
  if (intervalPart !== undefined) {
    if (!/^[0-9]+[mu]?s?$/.test(intervalPart)) return `invalid replenishment interval ${JSON.stringify(intervalPart)}: ${accepted}`;
    const { value: i, rest: unit } = cLeadingInteger(intervalPart);
    if (i === 0 || i > UINT32_MAX) return `replenishment interval ${JSON.stringify(intervalPart)} is out of range`;
    intervalUsecs = unit === '' || unit[0] === 's' ? i * 1e6 : unit[0] === 'm' ? i * 1e3 : i;
    if (intervalUsecs > UINT32_MAX) return `replenishment interval ${JSON.stringify(intervalPart)} is out of range: at most ${UINT32_MAX} microseconds`;
  }
  return { text, bytesPerSec, intervalUsecs, bytesPerInterval: Math.floor((bytesPerSec * intervalUsecs) / 1e6) };
}

/** xl's parse_ulong: leading decimal digits (the rest is ignored). */
function parseUlong(key: string, value: string, warnings: string[]): number | string {
  const m = /^[ \t]*\+?([0-9]+)/.exec(value);
  if (!m) return `${key} ${JSON.stringify(value)} is not a number: expected a non-negative integer`;
  const n = Number(m[1]);
  if (!Number.isSafeInteger(n)) return `${key} ${JSON.stringify(value)} is too large`;
  if (m[0].length < value.length) warnings.push(`${key}=${value}: xl reads ${n} and ignores ${JSON.stringify(value.slice(m[0].length))}`);
  return n;
}

/** xl's mac parsing: six hex bytes, each followed by one separator character. */
function parseMac(value: string): string | undefined {
  const bytes: string[] = [];
  let rest = value;
  for (let i = 0; i < 6; i++) {
    const m = /^[0-9a-fA-F]+/.exec(rest);
    if (!m) return undefined;
    const b = parseInt(m[0], 16);
    if (b > 255) return undefined;
    bytes.push(b.toString(16).padStart(2, '0'));
    rest = rest.slice(m[0].length + 1);
  }
  return bytes.join(':');
}

/**
 * Parse one vif spec as xl does. Unknown keys are warnings, as in xl.
 * @throws VifSpecError for what xl refuses (and for a mac or type it cannot read)
 */
export function parseVifSpec(spec: string): ParsedVif {
  const vif: VifSpec = {};
  const warnings: string[] = [];
  let unknown = 0;
  let firstUnlisted: string | undefined;
  const fail: (reason: string) => never = (reason) => {
    throw new VifSpecError(spec, reason);
  };
  for (const piece of spec.split(',')) {
    if (piece === '') continue; // strtok skips empty pieces
    const token = piece.replace(/^ +/, '');
    const eq = token.indexOf('=');
    const key = eq < 0 ? undefined : token.slice(0, eq);
    const value = eq < 0 ? '' : token.slice(eq + 1);
    if (key === undefined || !(VIF_KEYS as readonly string[]).includes(key)) {
      if (++unknown > MAX_UNKNOWN_WARNINGS) {
        firstUnlisted ??= token;
        continue;
      }
      const word = key ?? token;
      const hint = suggest(word, VIF_KEYS);
      warnings.push(
        `unknown vif parameter ${JSON.stringify(token)}${hint ? ` (did you mean ${hint}=?)` : ''}: xl warns "unrecognized argument" and ignores it; the vif keys are ${MAIN_KEYS.join(', ')} and COLO's colo_*`,
      );
      continue;
    }
    switch (key) {
      case 'type':
        if (!(VIF_TYPES as readonly string[]).includes(value)) fail(`unknown type ${JSON.stringify(value)}: expected ${orList(VIF_TYPES, false)} (xl would ignore it and use the default)`);
        vif.type = value as VifType;
        break;
      case 'mac': {
        const mac = parseMac(value);
        if (mac === undefined) fail(`mac ${JSON.stringify(value)} is not a MAC address: expected six hex bytes separated by ':', e.g. 00:16:3e:12:34:56 (xl would go on with a half-set address)`);
        vif.mac = mac;
        break;
      }
      case 'netdev':
        warnings.push(`netdev=${value} is deprecated: write gatewaydev=${value}`);
        vif.gatewaydev = value;
        break;
      case 'accel':
        warnings.push(`accel=${value} is not supported by xl, which ignores it`);
        break;
      case 'rate': {
        const r = parseRate(value);
        if (typeof r === 'string') fail(r);
        vif.rate = r;
        break;
      }
      case 'devid':
      case 'mtu': {
        const n = parseUlong(key, value, warnings);
        if (typeof n === 'string') fail(n);
        vif[key] = n;
        break;
      }
      default:
        if ((STRING_KEYS as readonly string[]).includes(key)) vif[key as (typeof STRING_KEYS)[number]] = value;
        else (vif.colo ??= {})[key] = value;
    }
  }
  if (firstUnlisted !== undefined) {
    const more = unknown - MAX_UNKNOWN_WARNINGS;
    warnings.push(`and ${more} more unknown vif parameter${more === 1 ? '' : 's'} from ${JSON.stringify(firstUnlisted.slice(0, 40))} on: xl ignores them too`);
  }
  return { vif, warnings };
}

/** Render a parsed vif for people: "bridge=xenbr0 mac=00:16:3e:00:00:01". */
export function describeVif(v: VifSpec): string {
  const parts: string[] = [];
  for (const k of ['mac', 'bridge', 'type', 'model', 'vifname', 'ip', 'script', 'gatewaydev', 'backend', 'devid', 'mtu'] as const) {
    if (v[k] !== undefined) parts.push(`${k}=${v[k]}`);
  }
  if (v.rate) parts.push(`rate=${v.rate.text}`);
  if (v.colo) parts.push(...Object.entries(v.colo).map(([k, x]) => `${k}=${x}`));
  return parts.length ? parts.join(' ') : '(defaults)';
}
