/**
 * One `disk = [...]` entry, read as xl reads it (xl-disk-configuration(5)).
 *
 * xl's own reader is a flex scanner (libxlu_disk_l.l): at each position the longest
 * match of its rules wins, the earlier rule on a tie, and trailing context (`phy:` is a
 * prefix only when something follows) counts towards the length. `scan` below applies
 * the same rules in the same order, so that every spec xl accepts is accepted here with
 * the same meaning, and every spec xl refuses is refused, with a message that says what
 * is accepted instead. After the scan come the checks that make `xl create` fail later
 * in libxl: a vdev libxl cannot number, a missing target, `backendtype=phy` with a
 * format other than raw.
 *
 * Forms (all equivalent):
 *   /dev/vg/guest,,hda                                 positional target,format,vdev,access
 *   /dev/vg/guest,raw,hda,rw
 *   format=raw, vdev=hda, access=rw, target=/dev/vg/guest   (target= takes the rest)
 *   raw:/dev/vg/guest,hda,w                            deprecated prefix form
 *   ,hdc:cdrom,r                                       deprecated empty cdrom
 */

import { orList, suggest } from './suggest.js';

/** Image formats xl knows (`format=`; `empty` is an empty cdrom drive). */
export const DISK_FORMAT_IDS = ['raw', 'qcow', 'qcow2', 'vhd', 'qed', 'empty'] as const;
export type DiskFormat = (typeof DISK_FORMAT_IDS)[number];

/** Canonical access modes (xl also accepts `w` and `r`). */
export const DISK_ACCESS_IDS = ['rw', 'ro'] as const;
export type DiskAccess = (typeof DISK_ACCESS_IDS)[number];

/** `backendtype=` values. */
export const DISK_BACKEND_TYPES = ['phy', 'tap', 'qdisk', 'standalone'] as const;
export type DiskBackendType = (typeof DISK_BACKEND_TYPES)[number];

/** `specification=` values. */
export const DISK_SPECIFICATIONS = ['xen', 'virtio'] as const;
export type DiskSpecification = (typeof DISK_SPECIFICATIONS)[number];

/** Every `key=` parameter and flag of a disk spec. */
export const DISK_PARAMETERS = [
  'target',
  'format',
  'vdev',
  'access',
  'devtype',
  'backend',
  'backendtype',
  'specification',
  'script',
  'cdrom',
  'direct-io-safe',
  'discard',
  'no-discard',
  'colo',
  'no-colo',
  'colo-host',
  'colo-port',
  'colo-export',
  'active-disk',
  'hidden-disk',
  'trusted',
  'untrusted',
  'grant_usage',
] as const;

/** Deprecated prefixes (`phy:/dev/vg/x,xvda,w`) and what each means. */
export const DISK_PREFIXES = ['raw:', 'qcow:', 'qcow2:', 'vhd:', 'iscsi:', 'nbd:', 'enbd:', 'drbd:', 'tapdisk:', 'tap:', 'tap2:', 'aio:', 'ioemu:', 'file:', 'phy:'] as const;

export interface DiskSpec {
  /** Image file or device path; '' for an empty cdrom drive. */
  target: string;
  /** Device as the guest sees it (xvda, hdc, sda1, d0p1, or a device number). */
  vdev: string;
  format: DiskFormat;
  /** rw or ro; a cdrom is always ro. */
  access: DiskAccess;
  /** Set for a cdrom (`cdrom`, `devtype=cdrom`, or `vdev:cdrom`). */
  devtype?: 'cdrom';
  backendtype?: DiskBackendType;
  /** Backend (driver) domain name (`backend=`). */
  backend?: string;
  specification?: DiskSpecification;
  /** Block script (`script=`, or `block-<x>` from an iscsi:/nbd:/enbd:/drbd: prefix). */
  script?: string;
  /** `discard` (true) / `no-discard` (false). */
  discard?: boolean;
  directIoSafe?: true;
  /** `trusted` / `untrusted`. */
  trusted?: boolean;
  /** `grant_usage=1` / `grant_usage=0`. */
  grantUsage?: boolean;
  /** COLO block replication (`colo`, `colo-host=` …). */
  colo?: boolean;
  coloHost?: string;
  coloPort?: number;
  coloExport?: string;
  activeDisk?: string;
  hiddenDisk?: string;
  /** Deprecated prefixes given (`phy:`, `tap:` …), in order; they change nothing else. */
  prefixes?: string[];
}

/** Thrown by `parseDiskSpec`; `reason` explains what is wrong (without the spec). */
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

/** What a disk spec looks like, for messages. */
export const DISK_SPEC_FORMS =
  "'target,format,vdev,access' (e.g. '/srv/vm.img,raw,xvda,rw') or 'key=value' parameters with target= last (e.g. 'format=qcow2, vdev=xvda, target=/srv/vm.qcow2'), see xl-disk-configuration(5)";

// ---------------------------------------------------------------------------
// Virtual device names (libxl__device_disk_dev_number)
// ---------------------------------------------------------------------------

/** What libxl accepts as a vdev, for messages. */
export const VDEV_FORMS = 'xvd<letters>[<partition 1-255>] (e.g. xvda, xvdb1, xvdaa), hd[a-d][<partition 1-63>], sd[a-p][<partition 1-15>], d<disk>p<partition> or a device number';

/** Decode `<prefix><letters>[<partition>]` as libxl does; undefined if it does not match. */
function virtdisk(vdev: string, prefix: string, maxIndex: number, maxPartition: number): { disk: number; partition: number } | undefined {
  if (!vdev.startsWith(prefix)) return undefined;
  let i = prefix.length;
  let index = -1;
  while (i < vdev.length && vdev[i]! >= 'a' && vdev[i]! <= 'z') {
    index = (index + 1) * 26 + (vdev.charCodeAt(i) - 97);
    if (index > maxIndex) return undefined;
    i++;
  }
  if (index < 0) return undefined; // no drive letter: libxl would make up a number
  const rest = vdev.slice(i);
  if (rest === '') return { disk: index, partition: 0 };
  if (!/^[1-9][0-9]*$/.test(rest)) return undefined; // no leading zeroes, digits only
  const partition = Number(rest);
  return partition <= maxPartition ? { disk: index, partition } : undefined;
}

/** A C `%i`/`strtoul(…, 0)` integer: decimal, 0x hex or 0 octal. */
function cInteger(text: string): number | undefined {
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) return parseInt(text.slice(2), 16);
  if (/^0[0-7]*$/.test(text)) return parseInt(text, 8);
  if (/^[1-9][0-9]*$/.test(text)) return Number(text);
  return undefined;
}

/**
 * The device number libxl gives a vdev (libxl__device_disk_dev_number), or undefined
 * when libxl would refuse it ("Invalid or unsupported virtual disk identifier").
 */
export function vdevNumber(vdev: string): number | undefined {
  const d = /^d(0[xX][0-9a-fA-F]+|[0-9]+)p(0[xX][0-9a-fA-F]+|[0-9]+)$/.exec(vdev);
  let x: { disk: number; partition: number } | undefined;
  if (d) {
    const disk = cInteger(d[1]!);
    const partition = cInteger(d[2]!);
    if (disk !== undefined && partition !== undefined && disk < 1 << 20 && partition < 256) x = { disk, partition };
  }
  x ??= virtdisk(vdev, 'xvd', (1 << 20) - 1, 255);
  if (x) return x.disk <= 15 && x.partition <= 15 ? (202 << 8) | (x.disk << 4) | x.partition : (1 << 28) | (x.disk << 8) | x.partition;
  const n = cInteger(vdev);
  if (n !== undefined && n <= 0x7fffffff) return n;
  const hd = virtdisk(vdev, 'hd', 3, 63);
  if (hd) return ((hd.disk < 2 ? 3 : 22) << 8) | ((hd.disk & 1) << 6) | hd.partition;
  const sd = virtdisk(vdev, 'sd', 15, 15);
  if (sd) return (8 << 8) | (sd.disk << 4) | sd.partition;
  return undefined;
}

// ---------------------------------------------------------------------------
// The scanner
// ---------------------------------------------------------------------------

type Action =
  | 'ws'
  | 'format'
  | 'cdrom'
  | 'devtype-disk'
  | 'devtype-bad'
  | 'access'
  | 'backend'
  | 'backendtype'
  | 'specification'
  | 'vdev'
  | 'script'
  | 'direct-io-safe'
  | 'discard'
  | 'no-discard'
  | 'colo'
  | 'no-colo'
  | 'colo-host'
  | 'colo-port'
  | 'colo-export'
  | 'active-disk'
  | 'hidden-disk'
  | 'trusted'
  | 'untrusted'
  | 'grant-usage-1'
  | 'grant-usage-0'
  | 'target'
  | 'unknown-parameter'
  | 'prefix-format'
  | 'prefix-script'
  | 'prefix-ignored'
  | 'prefix-unknown'
  | 'positional'
  | 'bad';

/**
 * Trailing contexts of the rules (counted for the longest match, then left to the next
 * rule), computed rather than matched so that a long spec costs linear time:
 *   rest     `.*`                  the rest of the line
 *   ws-rest  `([^ \t\n].*)?`       the rest of the line after the blanks
 *   not-alnum `([^a-z0-9].*)?`     one character that is not [a-z0-9], then the rest of its line
 */
type Context = 'rest' | 'ws-rest' | 'not-alnum';

interface Rule {
  action: Action;
  /** The text the rule consumes (sticky). */
  head: RegExp;
  context?: Context;
}

const rule = (action: Action, head: string, context?: Context): Rule => ({ action, head: new RegExp(head, 'y'), ...(context ? { context } : {}) });
const param = (action: Action, name: string): Rule => rule(action, `${name}=[^,]*,?`);
const flag = (action: Action, name: string): Rule => rule(action, `${name},?`);

/** libxlu_disk_l.l's rules, in its order. */
const RULES: readonly Rule[] = [
  rule('ws', '[ \\t\\n]+', 'ws-rest'),
  param('format', 'format'),
  flag('cdrom', 'cdrom'),
  flag('cdrom', 'devtype=cdrom'),
  flag('devtype-disk', 'devtype=disk'),
  param('devtype-bad', 'devtype'),
  param('access', 'access'),
  param('backend', 'backend'),
  param('backendtype', 'backendtype'),
  param('specification', 'specification'),
  param('vdev', 'vdev'),
  param('script', 'script'),
  flag('direct-io-safe', 'direct-io-safe'),
  flag('discard', 'discard'),
  flag('no-discard', 'no-discard'),
  flag('colo', 'colo'),
  flag('no-colo', 'no-colo'),
  param('colo-host', 'colo-host'),
  param('colo-port', 'colo-port'),
  param('colo-export', 'colo-export'),
  param('active-disk', 'active-disk'),
  param('hidden-disk', 'hidden-disk'),
  flag('trusted', 'trusted'),
  flag('untrusted', 'untrusted'),
  flag('grant-usage-1', 'grant_usage=1'),
  flag('grant-usage-0', 'grant_usage=0'),
  rule('target', 'target=[^\\n]*'),
  rule('unknown-parameter', '[a-z][-a-z0-9]*=[^,],?'),
  rule('prefix-format', '(?:raw|qcow2?|vhd):', 'rest'),
  rule('prefix-script', '(?:iscsi|e?nbd|drbd):', 'rest'),
  rule('prefix-ignored', 'tapdisk:', 'rest'),
  rule('prefix-ignored', 'tap2?:', 'rest'),
  rule('prefix-ignored', 'aio:', 'rest'),
  rule('prefix-ignored', 'ioemu:', 'rest'),
  rule('prefix-ignored', 'file:', 'rest'),
  rule('prefix-ignored', 'phy:', 'rest'),
  rule('prefix-unknown', '[a-z][a-z0-9]*:', 'not-alnum'),
  // `[^=,]*,|[^=,]+,?`: its length is computed from the next '=' or ',' (positionalLength)
  { action: 'positional', head: /(?:)/y },
  rule('bad', '[^\\n]'),
];

function matchAt(re: RegExp, text: string, pos: number): number {
  re.lastIndex = pos;
  const m = re.exec(text);
  return m ? m[0].length : -1;
}

/** For each index, the index of the next character in `stops` at or after it (or the length). */
function nextOf(text: string, stops: string): Int32Array {
  const next = new Int32Array(text.length + 1);
  next[text.length] = text.length;
  for (let i = text.length - 1; i >= 0; i--) next[i] = stops.includes(text[i]!) ? i : next[i + 1]!;
  return next;
}

interface Scan {
  /** Next newline. */
  ends: Int32Array;
  /** Next '=' or ','. */
  delims: Int32Array;
}

/** Length of the positional rule `[^=,]*,|[^=,]+,?` at `pos` (0: no match). */
function positionalLength(text: string, pos: number, delims: Int32Array): number {
  const d = delims[pos]!;
  return text[d] === ',' ? d - pos + 1 : d - pos;
}

function contextLength(ctx: Context, text: string, at: number, ends: Int32Array): number {
  const rest = (p: number) => ends[p]! - p;
  if (ctx === 'rest') return rest(at);
  if (at >= text.length) return 0;
  const ch = text[at]!;
  if (ctx === 'ws-rest') return ch === ' ' || ch === '\t' || ch === '\n' ? 0 : rest(at);
  return /[a-z0-9]/.test(ch) ? 0 : 1 + rest(at + 1);
}

/** Longest match at `pos` (earlier rule on ties), as flex picks it. */
function nextToken(text: string, pos: number, scan: Scan): { action: Action; text: string } {
  let best: { action: Action; len: number; consumed: number } | undefined;
  for (const r of RULES) {
    const head = r.action === 'positional' ? positionalLength(text, pos, scan.delims) : matchAt(r.head, text, pos);
    if (head < 0) continue;
    const len = head + (r.context ? contextLength(r.context, text, pos + head, scan.ends) : 0);
    if (len > 0 && (!best || len > best.len)) best = { action: r.action, len, consumed: head };
  }
  // Every character matches `bad` at least, so `best` is set.
  return { action: best!.action, text: text.slice(pos, pos + best!.consumed) };
}

interface State {
  target?: string;
  format?: DiskFormat;
  vdev?: string;
  accessSet: boolean;
  readwrite: boolean;
  cdrom: boolean;
  hadPrefix: boolean;
  spec: DiskSpec;
}

const FORMAT_WORDS: Readonly<Record<string, DiskFormat>> = { '': 'raw', raw: 'raw', qcow: 'qcow', qcow2: 'qcow2', vhd: 'vhd', empty: 'empty', qed: 'qed' };

class DiskScanner {
  private readonly s: State = { accessSet: false, readwrite: true, cdrom: false, hadPrefix: false, spec: {} as DiskSpec };
  private readonly prefixes: string[] = [];

  constructor(private readonly specText: string) {}

  private fail(reason: string): never {
    throw new DiskSpecError(this.specText, reason);
  }

  /** `name=value,` → value (one trailing comma stripped). */
  private static value(tok: string): string {
    const v = tok.slice(tok.indexOf('=') + 1);
    return v.endsWith(',') ? v.slice(0, -1) : v;
  }

  private static strip(tok: string, ch: string): string {
    return tok.endsWith(ch) ? tok.slice(0, -1) : tok;
  }

  /** A string parameter: given once (an earlier empty value may be replaced). */
  private saveString(what: string, current: string | undefined, value: string): string {
    if (current) this.fail(`${what} is given twice (${JSON.stringify(current)} and ${JSON.stringify(value)}): give each parameter once, by position or by name`);
    return value;
  }

  private setFormat(word: string): void {
    const f = Object.hasOwn(FORMAT_WORDS, word) ? FORMAT_WORDS[word] : undefined;
    if (f === undefined) {
      const hint = suggest(word.toLowerCase(), DISK_FORMAT_IDS);
      this.fail(`unknown value ${JSON.stringify(word)} for format${hint && hint !== word ? ` (did you mean ${hint}?)` : ''}: expected ${orList(DISK_FORMAT_IDS, false)} (lower case; empty means raw)`);
    }
    if (this.s.format !== undefined && this.s.format !== f) this.fail(`format is given twice (${this.s.format} and ${f}): give it once`);
    this.s.format = f;
  }

  private setAccess(word: string): void {
    if (word === 'r' || word === 'ro') this.s.readwrite = false;
    else if (word === 'rw' || word === 'w' || word === '') this.s.readwrite = true;
    else this.fail(`unknown value ${JSON.stringify(word)} for access: expected rw (or w) or ro (or r)`);
  }

  private setEnum<T extends string>(what: string, word: string, ids: readonly T[], current: T | undefined): T {
    if (!(ids as readonly string[]).includes(word)) this.fail(`unknown value ${JSON.stringify(word)} for ${what}: expected ${orList(ids, false)}`);
    if (current !== undefined && current !== word) this.fail(`${what} is given twice (${current} and ${word}): give it once`);
    return word as T;
  }

  /** `<vdev>:<devtype>` in the vdev position; false if there is no colon. */
  private vdevAndDevtype(text: string): boolean {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return false;
    this.s.vdev = this.saveString('vdev', this.s.vdev, text.slice(0, colon));
    const type = text.slice(colon + 1);
    if (type === 'cdrom') this.s.cdrom = true;
    else if (type === 'disk') this.s.cdrom = false;
    else this.fail(`unknown device type ${JSON.stringify(type)} after the vdev ${JSON.stringify(text)}: expected ${text.slice(0, colon)}:cdrom or ${text.slice(0, colon)}:disk (or devtype=cdrom)`);
    return true;
  }

  private positional(tok: string): void {
    const text = DiskScanner.strip(tok, ',');
    const s = this.s;
    if (s.target === undefined) {
      s.target = text;
    } else if (!s.hadPrefix && s.format === undefined) {
      if (s.target === '' && this.vdevAndDevtype(text)) s.format = 'empty';
      else this.setFormat(text);
    } else if (s.vdev === undefined) {
      if (!this.vdevAndDevtype(text)) s.vdev = text;
    } else if (!s.accessSet) {
      s.accessSet = true;
      this.setAccess(text);
    } else {
      this.fail(`too many positional parameters at ${JSON.stringify(text)}: expected at most target, format, vdev and access, in that order; a disk spec is ${DISK_SPEC_FORMS}`);
    }
  }

  scan(): DiskSpec {
    const text = this.specText;
    const spec = this.s.spec;
    const scan: Scan = { ends: nextOf(text, '\n'), delims: nextOf(text, '=,') };
    let pos = 0;
    while (pos < text.length) {
      const tok = nextToken(text, pos, scan);
      pos += tok.text.length;
      const v = () => DiskScanner.value(tok.text);
      switch (tok.action) {
        case 'ws':
          break;
        case 'format':
          this.setFormat(v());
          break;
        case 'cdrom':
          this.s.cdrom = true;
          break;
        case 'devtype-disk':
          this.s.cdrom = false;
          break;
        case 'devtype-bad':
          this.fail(`unknown value ${JSON.stringify(v())} for devtype: expected cdrom or disk`);
        case 'access':
          this.setAccess(v());
          break;
        case 'backend':
          spec.backend = this.saveString('backend', spec.backend, v());
          break;
        case 'backendtype':
          spec.backendtype = this.setEnum('backendtype', v(), DISK_BACKEND_TYPES, spec.backendtype);
          break;
        case 'specification':
          spec.specification = this.setEnum('specification', v(), DISK_SPECIFICATIONS, spec.specification);
          break;
        case 'vdev':
          this.s.vdev = this.saveString('vdev', this.s.vdev, v());
          break;
        case 'script':
          spec.script = this.saveString('script', spec.script, v());
          break;
        case 'direct-io-safe':
          spec.directIoSafe = true;
          break;
        case 'discard':
        case 'no-discard':
          spec.discard = tok.action === 'discard';
          break;
        case 'colo':
        case 'no-colo':
          spec.colo = tok.action === 'colo';
          break;
        case 'colo-host':
          spec.coloHost = this.saveString('colo-host', spec.coloHost, v());
          break;
        case 'colo-port': {
          const port = parseInt(v(), 10); // atoi
          if (!port) this.fail(`unknown value ${JSON.stringify(v())} for colo-port: expected a port number`);
          spec.coloPort = port;
          break;
        }
        case 'colo-export':
          spec.coloExport = this.saveString('colo-export', spec.coloExport, v());
          break;
        case 'active-disk':
          spec.activeDisk = this.saveString('active-disk', spec.activeDisk, v());
          break;
        case 'hidden-disk':
          spec.hiddenDisk = this.saveString('hidden-disk', spec.hiddenDisk, v());
          break;
        case 'trusted':
        case 'untrusted':
          spec.trusted = tok.action === 'trusted';
          break;
        case 'grant-usage-1':
        case 'grant-usage-0':
          spec.grantUsage = tok.action === 'grant-usage-1';
          break;
        case 'target':
          this.s.target = this.saveString('target', this.s.target, v());
          break;
        case 'unknown-parameter': {
          const name = tok.text.slice(0, tok.text.indexOf('='));
          const hint = suggest(name, DISK_PARAMETERS);
          this.fail(`unknown parameter ${JSON.stringify(name)}${hint ? ` (did you mean ${hint}?)` : ''}: the parameters are ${DISK_PARAMETERS.join(', ')}`);
        }
        case 'prefix-format':
          this.s.hadPrefix = true;
          this.prefixes.push(tok.text);
          this.setFormat(DiskScanner.strip(tok.text, ':'));
          break;
        case 'prefix-script':
          this.s.hadPrefix = true;
          this.prefixes.push(tok.text);
          spec.script = this.saveString('script', spec.script, `block-${DiskScanner.strip(tok.text, ':')}`);
          break;
        case 'prefix-ignored':
          this.s.hadPrefix = true;
          this.prefixes.push(tok.text);
          break;
        case 'prefix-unknown':
          this.fail(`unknown prefix ${JSON.stringify(tok.text)}: the deprecated prefixes are ${DISK_PREFIXES.join(' ')} (a target with ':' or ',' in it must be given last as target=...)`);
        case 'positional':
          this.positional(tok.text);
          break;
        case 'bad': {
          const near = text.slice(pos - tok.text.length).split('\n')[0]!;
          this.fail(
            `bad disk syntax near ${JSON.stringify(near)}: ` +
              (tok.text === '='
                ? "write parameters as key=value with no space before '=', and give a target that contains '=' last, as target=..."
                : `expected ${DISK_SPEC_FORMS}`),
          );
        }
      }
    }
    return this.finish();
  }

  private finish(): DiskSpec {
    const s = this.s;
    const spec = s.spec;
    let format: DiskFormat = s.format ?? 'raw';
    if (s.cdrom && !s.target) format = 'empty';
    if (s.vdev === undefined || s.vdev === '') this.fail(`missing vdev (the device the guest sees, e.g. xvda or hdc); a disk spec is ${DISK_SPEC_FORMS}`);
    if (vdevNumber(s.vdev) === undefined) this.fail(`vdev ${JSON.stringify(s.vdev)} is not a virtual device libxl accepts: expected ${VDEV_FORMS}`);
    if (!s.target && !s.cdrom) {
      this.fail(
        s.target === undefined
          ? `missing target (the image file or device path); a disk spec is ${DISK_SPEC_FORMS}`
          : 'empty target: only a cdrom drive may be empty (add cdrom or devtype=cdrom), otherwise give the image file or device path',
      );
    }
    if (format === 'empty' && !s.cdrom) this.fail('format empty is for an empty cdrom drive only: add cdrom, or give the image format');
    if (spec.backendtype === 'phy' && format !== 'raw' && format !== 'empty') this.fail(`backendtype=phy supports format raw only, not ${format}: use backendtype=qdisk (or leave backendtype out)`);
    const out: DiskSpec = { target: s.target ?? '', vdev: s.vdev, format, access: s.cdrom || !s.readwrite ? 'ro' : 'rw' };
    if (s.cdrom) out.devtype = 'cdrom';
    for (const k of ['backendtype', 'backend', 'specification', 'script', 'discard', 'directIoSafe', 'trusted', 'grantUsage', 'colo', 'coloHost', 'coloPort', 'coloExport', 'activeDisk', 'hiddenDisk'] as const) {
      if (spec[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = spec[k];
    }
    if (this.prefixes.length) out.prefixes = this.prefixes;
    return out;
  }
}

/**
 * Parse one disk spec as xl does (xl-disk-configuration(5)), including the deprecated
 * forms. Defaults: format raw, access rw (ro for a cdrom). vdev is required, and a target
 * unless the drive is a cdrom.
 * @throws DiskSpecError naming what is wrong and what is accepted
 */
export function parseDiskSpec(spec: string): DiskSpec {
  return new DiskScanner(spec).scan();
}

/** Render a parsed disk for people: "xvda: /srv/vm.img (raw, rw)". */
export function describeDisk(d: DiskSpec): string {
  const extras = [d.format, d.access, d.devtype, d.backendtype && `backendtype=${d.backendtype}`, d.script && `script=${d.script}`, d.backend && `backend=${d.backend}`].filter(Boolean);
  return `${d.vdev}: ${d.target === '' ? '(empty)' : d.target} (${extras.join(', ')})`;
}
