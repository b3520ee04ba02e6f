/**
 * The plugin's own configuration, `/etc/xen/xl-ha.conf` (ini). Schema (docs/config.md):
 *
 *   [daemon]
 *   listen         = ADDR[:PORT] | off     accept replication streams there (port 7720); default off
 *   log_level      = error | warn | info | http | verbose | debug | silly      default info
 *   log_file       = stderr | journal | syslog | /absolute/path                default stderr
 *   state_dir      = /absolute/path                                           default /var/lib/xl-ha
 *   config_dirs    = /abs/dir[,/abs/dir...]   where domain cfgs are looked up  default /etc/xen,/etc/xen/auto
 *   metrics_listen = HOST:PORT | off                                          default off
 *   witness        = HOST:PORT[,...] | off   etcd endpoints                   default off
 *   fence_command  = shell command                                            default none
 *   watchdog       = SECONDS | 0 | off       5..3600, 0 or off: no watchdog   default 30
 *
 *   [defaults]
 *   ha_peer = ..., ha_interval_ms = ..., ...   a default for every ha key but ha itself
 *
 * A per-domain cfg key overrides [defaults], which overrides the built-in default. A
 * missing file means built-in defaults. Every bad value, unknown section and unknown key
 * is an error naming the file, the line, the section, the key, the value and what is
 * accepted. Pairings with peers are not here: they live in key files (xl-ha keygen/pair).
 *
 * Lines are read as the `ini` package reads them (`;` and `#` start comments, also after
 * a value unless it is quoted or the character escaped with a backslash; values may be
 * quoted), with line numbers kept for messages.
 */

import fs from 'node:fs';
import path from 'node:path';
import ini from 'ini';
import {
  checkHaValue,
  checkInt,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_REPLICATION_PORT,
  domainConfigFromCfg,
  HA_GROUP_UNAVAILABLE,
  HA_KEY_MODES,
  HA_KEYS,
  haKeyUsedBy,
  HostPortError,
  parseHostPort,
  toInteger,
  type Checked,
  type HaKey,
  type HostPort,
  type ParsedDomainConfig,
} from './domain.js';
import { suggest } from './suggest.js';
import type { XlCfg, XlCfgEntry, XlValue } from './xlcfg.js';
import { isModeId } from '../engine/modes/ids.js';
import { DEFAULT_WATCHDOG_SEC, WATCHDOG_LIMITS } from '../daemon/watchdog.js';
import { parseWitnessEndpoints } from '../witness/endpoints.js';

/** Where the plugin config is installed. */
export const PLUGIN_CONFIG_PATH = '/etc/xen/xl-ha.conf';

/** The plugin config to read: $XLHA_CONF, else /etc/xen/xl-ha.conf. */
export function defaultPluginConfigPath(): string {
  return process.env.XLHA_CONF || PLUGIN_CONFIG_PATH;
}

export const PLUGIN_SECTIONS = ['daemon', 'defaults'] as const;
export type PluginSection = (typeof PLUGIN_SECTIONS)[number];

export const DAEMON_KEYS = ['listen', 'log_level', 'log_file', 'state_dir', 'config_dirs', 'metrics_listen', 'witness', 'fence_command', 'watchdog'] as const;
export type DaemonKey = (typeof DAEMON_KEYS)[number];

/** [defaults] keys: every ha key but `ha` (protection is asked for per domain) and `ha_group` (not available yet). */
export const DEFAULTS_KEYS = HA_KEYS.filter((k) => k !== 'ha' && k !== 'ha_group');

/** winston's levels. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogTarget = { kind: 'stderr' } | { kind: 'journal' } | { kind: 'syslog' } | { kind: 'file'; path: string };

export interface DaemonSettings {
  /** Accept replication streams here; absent: a primary-only daemon. */
  listen?: HostPort;
  logLevel: LogLevel;
  log: LogTarget;
  stateDir: string;
  /** Where a domain's cfg is looked up by its name, in order. */
  configDirs: string[];
  /** Serve metrics here; absent: no metrics endpoint. */
  metricsListen?: HostPort;
  /** etcd endpoints of the witness (http://host:port). */
  witness?: string[];
  fenceCommand?: string;
  /** Hypervisor watchdog while protecting, seconds; 0: off. */
  watchdogSec: number;
}

/** The built-in [daemon] settings (what a missing file, or a missing key, means). */
export const DAEMON_DEFAULTS: Readonly<DaemonSettings> = Object.freeze<DaemonSettings>({
  logLevel: 'info',
  log: { kind: 'stderr' },
  stateDir: '/var/lib/xl-ha',
  configDirs: ['/etc/xen', '/etc/xen/auto'],
  watchdogSec: DEFAULT_WATCHDOG_SEC,
});

/** One `key = value` line of the file. */
export interface PluginSetting {
  section: PluginSection;
  key: string;
  /** The value as read (unquoted, comments stripped). */
  raw: string;
  line: number;
}

export interface PluginConfig {
  /** The file (or the label used in messages). */
  source: string;
  /** False when the file does not exist: every setting is built in. */
  found: boolean;
  daemon: DaemonSettings;
  /** [defaults]: the value each ha key takes in a cfg that does not set it, and its line. */
  defaults: ReadonlyMap<HaKey, { value: XlValue; line: number }>;
  /** Every setting written in the file, by "section.key". */
  set: ReadonlyMap<string, PluginSetting>;
}

/** One problem in the plugin config. */
export interface PluginConfigIssue {
  line?: number;
  section?: string;
  key?: string;
  value?: string;
  /** Names the section, the key, the value and what is accepted (no file:line prefix). */
  message: string;
}

/** An invalid (or unreadable) plugin config; lists every issue, one per line. */
export class PluginConfigError extends Error {
  readonly issues: PluginConfigIssue[];
  readonly source: string;
  constructor(issues: PluginConfigIssue[], source: string) {
    if (issues.length === 0) throw new TypeError('PluginConfigError needs at least one issue');
    const lines = issues.map((i) => formatPluginIssue(i, source));
    super(lines.length === 1 ? lines[0]! : `${source}: ${lines.length} configuration errors:\n${lines.join('\n')}`);
    this.name = 'PluginConfigError';
    this.issues = issues;
    this.source = source;
  }
}

export function formatPluginIssue(issue: PluginConfigIssue, source: string): string {
  return `${source}${issue.line ? `:${issue.line}` : ''}: ${issue.message}`;
}

/** Built-in settings only (no file). */
export function builtinPluginConfig(source: string = PLUGIN_CONFIG_PATH): PluginConfig {
  return { source, found: false, daemon: { ...DAEMON_DEFAULTS, configDirs: [...DAEMON_DEFAULTS.configDirs] }, defaults: new Map(), set: new Map() };
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

type Check<T> = Checked<T>;
const ok = <T>(value: T): Check<T> => ({ ok: true, value });
const no = <T>(detail: string): Check<T> => ({ ok: false, detail });

function absolutePath(v: string, what: string): Check<string> {
  if (!path.isAbsolute(v) || v.includes('\0')) return no(`expected an absolute path (${what}), e.g. /var/lib/xl-ha`);
  return ok(path.normalize(v));
}

function address(v: string, defaultPort: number | undefined, what: string, example: string): Check<HostPort | undefined> {
  if (v === 'off') return ok(undefined);
  try {
    return ok(parseHostPort(v, defaultPort));
  } catch (err) {
    const reason = err instanceof HostPortError ? err.reason : String(err);
    const form = defaultPort === undefined ? 'HOST:PORT' : `ADDR[:PORT] (port defaults to ${defaultPort})`;
    return no(`${reason}; expected ${form} ${what}, e.g. ${example}, or off`);
  }
}

const DAEMON_CHECKS: Record<DaemonKey, (v: string) => Check<unknown>> = {
  listen: (v) => address(v, DEFAULT_REPLICATION_PORT, 'to accept replication streams on', `0.0.0.0 or [::]:${DEFAULT_REPLICATION_PORT}`),
  log_level: (v) => ((LOG_LEVELS as readonly string[]).includes(v) ? ok(v) : no(`expected one of ${LOG_LEVELS.join(', ')}`)),
  log_file: (v) => {
    if (v === 'stderr' || v === 'journal' || v === 'syslog') return ok({ kind: v });
    const p = absolutePath(v, 'a log file');
    return p.ok ? ok({ kind: 'file', path: p.value }) : no('expected stderr, journal, syslog or the absolute path of a log file, e.g. /var/log/xl-ha.log');
  },
  state_dir: (v) => absolutePath(v, 'the directory of the daemon\'s records'),
  config_dirs: (v) => {
    const dirs = v.split(',').map((d) => d.trim());
    const bad = dirs.find((d) => !path.isAbsolute(d));
    if (bad !== undefined) return no(`${bad === '' ? 'an empty entry' : JSON.stringify(bad)} is not an absolute directory: expected absolute directories separated by commas, e.g. /etc/xen,/etc/xen/auto`);
    return ok([...new Set(dirs.map((d) => path.normalize(d)))]);
  },
  metrics_listen: (v) => address(v, undefined, 'to serve metrics on', '127.0.0.1:9772'),
  witness: (v) => {
    if (v === 'off') return ok(undefined);
    try {
      return ok(parseWitnessEndpoints(v));
    } catch (err) {
      return no(`${(err as Error).message}; expected etcd endpoints HOST:PORT (or http[s]://HOST:PORT) separated by commas, or off`);
    }
  },
  fence_command: (v) => (v.trim() === '' ? no('expected a shell command') : ok(v)),
  watchdog: (v) => {
    if (v === 'off' || toInteger(v) === 0) return ok(0);
    const c = checkInt(v, WATCHDOG_LIMITS, 'seconds');
    return c.ok ? c : no(`expected 0 or off (no watchdog), or an integer from ${WATCHDOG_LIMITS.min} to ${WATCHDOG_LIMITS.max} (seconds)`);
  },
};

function applyDaemon(d: DaemonSettings, key: DaemonKey, value: unknown): void {
  switch (key) {
    case 'listen':
      if (value) d.listen = value as HostPort;
      break;
    case 'log_level':
      d.logLevel = value as LogLevel;
      break;
    case 'log_file':
      d.log = value as LogTarget;
      break;
    case 'state_dir':
      d.stateDir = value as string;
      break;
    case 'config_dirs':
      d.configDirs = value as string[];
      break;
    case 'metrics_listen':
      if (value) d.metricsListen = value as HostPort;
      break;
    case 'witness':
      if (value) d.witness = value as string[];
      break;
    case 'fence_command':
      d.fenceCommand = value as string;
      break;
    case 'watchdog':
      d.watchdogSec = value as number;
      break;
  }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

const SECTION_RE = /^\[([^\]]*)\]\s*$/;
const SETTING_RE = /^([^=]+)=(.*)$/;

/**
 * A key, value or section name as `ini` reads it: the rest of an unquoted value from an
 * unescaped ';' or '#' on is a comment (`\;` and `\#` escape them). A quoted value may be
 * followed by a comment too (ini would keep the quotes then): "..." is a JSON string,
 * '...' is taken literally (ini would also JSON-parse what is inside, turning '[1]' into
 * a list).
 */
function unquote(raw: string): string {
  const v = raw.trim();
  const q = v[0];
  if (q === '"' || q === "'") {
    let end = -1;
    for (let i = 1; i < v.length; i++) {
      if (q === '"' && v[i] === '\\') i++;
      else if (v[i] === q) {
        end = i;
        break;
      }
    }
    const rest = end < 0 ? undefined : v.slice(end + 1).trim();
    if (rest !== undefined && (rest === '' || rest.startsWith(';') || rest.startsWith('#'))) {
      const body = v.slice(0, end + 1);
      if (q === '"') {
        try {
          const s: unknown = JSON.parse(body);
          if (typeof s === 'string') return s;
        } catch {
          // not JSON: the text between the quotes
        }
      }
      return body.slice(1, -1);
    }
  }
  const u: unknown = ini.unsafe(v);
  return typeof u === 'string' ? u : String(u);
}

/**
 * Parse the text of an xl-ha.conf.
 * @throws PluginConfigError listing every problem
 */
export function parsePluginConfig(text: string, source: string = PLUGIN_CONFIG_PATH): PluginConfig {
  const cfg = builtinPluginConfig(source);
  cfg.found = true;
  const issues: PluginConfigIssue[] = [];
  const set = new Map<string, PluginSetting>();
  const defaults = new Map<HaKey, { value: XlValue; line: number }>();
  let section: PluginSection | undefined;
  let sectionOk = true; // false inside an unknown section: its keys are not reported again

  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  body.split('\n').forEach((rawLine, i) => {
    const line = i + 1;
    const content = rawLine.replace(/\r$/, '').trim();
    if (content === '' || content.startsWith(';') || content.startsWith('#')) return;

    const sec = SECTION_RE.exec(content);
    if (sec) {
      const name = unquote(sec[1]!).trim();
      if ((PLUGIN_SECTIONS as readonly string[]).includes(name)) {
        section = name as PluginSection;
        sectionOk = true;
        return;
      }
      section = undefined;
      sectionOk = false;
      const message = /^peer\b/i.test(name)
        ? `[${name}] is not a section of xl-ha.conf: pairings with peers live in key files (xl-ha keygen, xl-ha pair), not here; the sections are [daemon] and [defaults]`
        : `unknown section [${name}]${hintFor(name, PLUGIN_SECTIONS, (s) => `[${s}]`)}: the sections are [daemon] and [defaults]`;
      issues.push({ line, section: name, message });
      return;
    }

    const m = SETTING_RE.exec(content);
    if (!m) {
      issues.push({ line, ...(section ? { section } : {}), message: `${JSON.stringify(content)} is neither a [section] nor a key = value line` });
      return;
    }
    const key = unquote(m[1]!).trim();
    const value = unquote(m[2]!);
    if (section === undefined) {
      if (sectionOk) issues.push({ line, key, value, message: `${key} = ${JSON.stringify(value)} comes before any section: put it under [daemon] or [defaults]` });
      return;
    }
    const where = `[${section}] ${key}`;
    const shown = `${where} = ${JSON.stringify(value)}`;
    const known: readonly string[] = section === 'daemon' ? DAEMON_KEYS : DEFAULTS_KEYS;
    if (!known.includes(key)) {
      issues.push({ line, section, key, value, message: unknownKey(section, key) });
      return;
    }
    const id = `${section}.${key}`;
    const prev = set.get(id);
    if (prev) {
      issues.push({ line, section, key, value, message: `${where} is given twice, on lines ${prev.line} and ${line}: keep one` });
      return;
    }
    set.set(id, { section, key, raw: value, line });
    if (value === '') {
      issues.push({ line, section, key, value, message: `${shown} is not valid: the value is empty; remove the line for the built-in default` });
      return;
    }
    if (section === 'daemon') {
      const c = DAEMON_CHECKS[key as DaemonKey](value);
      if (!c.ok) issues.push({ line, section, key, value, message: `${shown} is not valid: ${c.detail}` });
      else applyDaemon(cfg.daemon, key as DaemonKey, c.value);
    } else {
      const c = checkHaValue(key as HaKey, value);
      if (!c.ok) issues.push({ line, section, key, value, message: `${shown} is not valid: ${c.detail}` });
      else defaults.set(key as HaKey, { value: typeof c.value === 'number' ? c.value : value, line });
    }
  });

  // The heartbeat and the failover timeout go together.
  const fo = defaults.get('ha_failover_timeout_ms');
  if (fo) {
    const hb = defaults.get('ha_heartbeat_ms');
    const heartbeat = (hb?.value as number | undefined) ?? DEFAULT_HEARTBEAT_MS;
    if ((fo.value as number) <= heartbeat) {
      issues.push({
        line: fo.line,
        section: 'defaults',
        key: 'ha_failover_timeout_ms',
        value: String(fo.value),
        message: `[defaults] ha_failover_timeout_ms = "${fo.value}" is not valid: expected more than the heartbeat, ${heartbeat} ms (${hb ? `[defaults] ha_heartbeat_ms, line ${hb.line}` : 'built-in'})`,
      });
    }
  }

  if (issues.length) throw new PluginConfigError(issues.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)), source);
  return { ...cfg, defaults, set };
}

function hintFor(word: string, candidates: readonly string[], show: (s: string) => string = (s) => s): string {
  const h = suggest(word.toLowerCase(), candidates);
  return h ? ` (did you mean ${show(h)}?)` : '';
}

function unknownKey(section: PluginSection, key: string): string {
  const where = `[${section}] ${key}`;
  if (section === 'defaults' && key === 'ha') return `${where} cannot have a default: protection is asked for per domain, with ha = "<mode>" in its cfg`;
  if (section === 'defaults' && key === 'ha_group') return `${where}: ${HA_GROUP_UNAVAILABLE}`;
  if (section === 'defaults' && (DAEMON_KEYS as readonly string[]).includes(key)) return `${where} belongs in [daemon], not [defaults]`;
  if (section === 'daemon' && (DEFAULTS_KEYS as readonly string[]).includes(key)) return `${where} belongs in [defaults], not [daemon]: it is a default for the domains' ha keys`;
  const known = section === 'daemon' ? DAEMON_KEYS : DEFAULTS_KEYS;
  return `${where} is not a known key${hintFor(key, known)}: the [${section}] keys are ${known.join(', ')}`;
}

/**
 * Read the plugin config. A missing file means built-in defaults (`found: false`) unless
 * `mustExist` (a file named on the command line).
 * @throws PluginConfigError when the file cannot be read or is not valid
 */
export function loadPluginConfig(file: string = defaultPluginConfigPath(), opts: { mustExist?: boolean } = {}): PluginConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !opts.mustExist) return builtinPluginConfig(file);
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (code ?? (err as Error).message);
    throw new PluginConfigError([{ message: `cannot read the xl-ha configuration: ${why}` }], file);
  }
  return parsePluginConfig(text, file);
}

// ---------------------------------------------------------------------------
// Defaults into domain configs
// ---------------------------------------------------------------------------

/**
 * The cfg with xl-ha.conf's [defaults] added for the ha keys it does not set. Only a cfg
 * with `ha` gets defaults (a domain is protected only when its cfg asks); a default for a
 * key its mode does not use is left out (ha_interval_ms for kemari and colo,
 * ha_kemari_min_gap_ms for all but kemari, ha_colo_max_interval_ms for all but colo); and
 * ha_heartbeat_ms and ha_failover_timeout_ms go together: a cfg that sets either takes
 * neither from [defaults]. Each added entry names its origin ("file:line [defaults]").
 * Without a plugin config (or without [defaults]) the cfg itself is returned.
 */
export function applyHaDefaults(cfg: XlCfg, plugin: PluginConfig | undefined): XlCfg {
  if (!plugin || plugin.defaults.size === 0) return cfg;
  const ha = cfg.entries.get('ha');
  if (!ha) return cfg;
  const mode = isModeId(ha.value) ? ha.value : undefined;
  const ownPair = cfg.entries.has('ha_heartbeat_ms') || cfg.entries.has('ha_failover_timeout_ms');
  const entries = new Map<string, XlCfgEntry>(cfg.entries);
  for (const [key, d] of plugin.defaults) {
    if (entries.has(key)) continue;
    if (mode === undefined ? HA_KEY_MODES[key] !== undefined : !haKeyUsedBy(key, mode)) continue;
    if (ownPair && (key === 'ha_heartbeat_ms' || key === 'ha_failover_timeout_ms')) continue;
    entries.set(key, { value: d.value, line: 0, origin: `${plugin.source}${d.line ? `:${d.line}` : ''} [defaults]` });
  }
  return { ...cfg, entries };
}

/**
 * `domainConfigFromCfg` after xl-ha.conf's [defaults] (see `applyHaDefaults`). Without a
 * plugin config it is exactly `domainConfigFromCfg(cfg)`.
 * @throws ConfigError
 */
export function domainConfigWithDefaults(cfg: XlCfg, plugin?: PluginConfig): ParsedDomainConfig {
  return domainConfigFromCfg(applyHaDefaults(cfg, plugin));
}
