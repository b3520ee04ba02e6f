/**
 * Command-line parsing for `xl-ha`, following xl's conventions:
 *
 *   - short options, combinable when they take no value (`-nd`);
 *   - option values attached or separate (`-i25`, `-i 25`);
 *   - long options as `--name value` or `--name=value`;
 *   - `--` ends the options; options and positionals may be interleaved
 *     after the command (as with GNU getopt);
 *   - global options go before the command.
 *
 * `parseArgs` returns a typed `Command` (discriminated on `cmd`) or throws a
 * `UsageError` whose message names the offending argument.
 */

import { parseTransfer, transferStages, type TransferId } from '../transport/transfer.js';
import { FGBI_BLOCK_BYTES, FGBI_DEFAULT_SHADOW_MIB, isValidBlockBytes } from '../transport/fgbi.js';
import {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_INTERVAL_MS,
  DEFAULT_KEMARI_MIN_GAP_MS,
  DEFAULT_COLO_MAX_INTERVAL_MS,
  DEFAULT_REPLICATION_PORT,
  DOMAIN_NAME_PATTERN,
  FAILOVER_TIMEOUT_FACTOR,
  HostPortError,
  LIMITS,
  MAX_DOMID,
  parseHostPort,
  type HostPort,
} from '../config/domain.js';
import { MODE_IDS, type ModeId } from '../engine/modes/ids.js';
import { BUFFER_FULL_POLICIES, DEFAULT_BUFFER_LIMIT_MIB, type BufferFullPolicy } from '../engine/buffer-policy.js';
import { parseWitnessEndpoints } from '../witness/endpoints.js';
import { DEFAULT_WATCHDOG_SEC, WATCHDOG_LIMITS } from '../daemon/watchdog.js';

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

export const BACKEND_IDS = ['sim', 'xen', 'auto'] as const;
export type Backend = (typeof BACKEND_IDS)[number];

export interface GlobalOptions {
  backend: Backend;
  /** Path of the daemon control socket, if given. */
  control?: string;
  /** Directory of this host's pairings (pre-shared keys), if given. */
  keys?: string;
  /** Number of -v given. */
  verbose: number;
}

/** A domain named on the command line: a name, or a numeric domid. */
export type DomainRef = string | number;

interface CommandBase {
  globals: GlobalOptions;
}

/**
 * `remus`, `kemari`, `colo` and `llm`: start protecting a domain.
 * `cmd` is always 'remus' (they share one shape); `mode` says which one was asked for.
 */
export interface ReplicateCommand extends CommandBase {
  cmd: 'remus';
  mode: ModeId;
  domain: DomainRef;
  peer: HostPort;
  /** remus: checkpoint interval (`-i`). */
  intervalMs: number;
  /** kemari: output events within this gap coalesce into one sync (`--min-gap`). */
  minGapMs?: number;
  /** colo: a checkpoint at the latest this long after the previous one (`--max-interval`). */
  maxIntervalMs?: number;
  netbuf: boolean;
  disk: boolean;
  blackhole: boolean;
  heartbeatMs: number;
  failoverTimeoutMs: number;
  /** Checkpoints sent but not yet acknowledged, at most (unset: the backend's default). */
  inFlight?: number;
  /** Output held for the backup before `onBufferFull` acts, MiB (`--buffer-limit`). */
  bufferLimitMiB?: number;
  onBufferFull?: BufferFullPolicy;
  /** `--transfer` (canonical; unset: full). */
  transfer?: TransferId;
  fgbiBlockBytes?: number;
  fgbiShadowMiB?: number;
  allowUnsafe: boolean;
}

export interface ReceiveCommand extends CommandBase {
  cmd: 'receive';
  listen: HostPort;
  /** etcd endpoints of the witness (`--witness`). */
  witness?: string[];
  fenceCommand?: string;
  /** Hypervisor watchdog timeout while protecting (`--watchdog`; 0 off; unset: DEFAULT_WATCHDOG_SEC). */
  watchdogSec?: number;
  hostName?: string;
  stateDir?: string;
  /** `--conf FILE`: xl-ha.conf, which must exist. */
  conf?: string;
}

export interface DaemonCommand extends CommandBase {
  cmd: 'daemon';
  /** Absent: primary-only daemon (does not accept replication streams). */
  listen?: HostPort;
  witness?: string[];
  fenceCommand?: string;
  /** Hypervisor watchdog timeout while protecting (`--watchdog`; 0 off; unset: DEFAULT_WATCHDOG_SEC). */
  watchdogSec?: number;
  hostName?: string;
  stateDir?: string;
  /** `--conf FILE`: xl-ha.conf, which must exist. */
  conf?: string;
}

export interface StatusCommand extends CommandBase {
  cmd: 'status';
  json: boolean;
}

/** `top [-d SEC] [-n COUNT]`: `status`, redrawn every interval (src/cli/top.ts). */
export interface TopCommand extends CommandBase {
  cmd: 'top';
  /** Between two frames (`-d`, given in seconds). */
  intervalMs: number;
  /** Frames to show before exiting (`-n`); absent: until Ctrl-C. */
  iterations?: number;
}

export const HOTPLUG_KINDS = ['vif', 'vbd'] as const;
export const HOTPLUG_ACTIONS = ['add', 'remove', 'online', 'offline'] as const;

/** `hotplug <vif|vbd> <action> --domid D --devid N [--dev NAME]`: what hooks/vif-ha and block-ha tell the daemon. */
export interface HotplugCommand extends CommandBase {
  cmd: 'hotplug';
  kind: (typeof HOTPLUG_KINDS)[number];
  action: (typeof HOTPLUG_ACTIONS)[number];
  domid: number;
  devid: number;
  dev?: string;
  /** vbd add (block-ha): the disk's image or LV, which the daemon serves over NBD. */
  target?: string;
}

export interface ListCommand extends CommandBase {
  cmd: 'list';
  json: boolean;
}

export interface FailoverCommand extends CommandBase {
  cmd: 'failover';
  domain: DomainRef;
  force: boolean;
}

export interface StopCommand extends CommandBase {
  cmd: 'stop';
  domain: DomainRef;
}

export interface DestroyCommand extends CommandBase {
  cmd: 'destroy';
  domain: DomainRef;
}

export interface CreateCommand extends CommandBase {
  cmd: 'create';
  cfgFile: string;
}

/** `check-config [--json] [--conf FILE] [<cfg-file>]`: validate without a daemon. */
export interface CheckConfigCommand extends CommandBase {
  cmd: 'check-config';
  /** The domain cfg to check; absent: only the plugin config (then `conf` is set). */
  cfgFile?: string;
  /** xl-ha.conf named with --conf (it must exist); absent: $XLHA_CONF or /etc/xen/xl-ha.conf if present. */
  conf?: string;
  json: boolean;
}

/** `keygen <peer>` (a new key) and `pair <peer> <key-file>` (the peer's key, copied here). */
export interface PairCommand extends CommandBase {
  cmd: 'keygen' | 'pair';
  peer: string;
  keyFile?: string;
  address?: HostPort;
  allow: string;
  /** Replica policy (xen): disk targets and bridges. */
  disks: string;
  bridges: string;
  hostName?: string;
  force: boolean;
}

export interface HelpCommand extends CommandBase {
  cmd: 'help';
  /** Command to show help for; absent for the general help. */
  topic?: CommandName;
}

export type Command =
  | ReplicateCommand
  | ReceiveCommand
  | DaemonCommand
  | StatusCommand
  | TopCommand
  | ListCommand
  | FailoverCommand
  | StopCommand
  | DestroyCommand
  | CreateCommand
  | HotplugCommand
  | CheckConfigCommand
  | PairCommand
  | HelpCommand;

/** Every command word accepted on the command line. */
export const COMMAND_NAMES = [
  ...MODE_IDS,
  'receive',
  'daemon',
  'status',
  'list',
  'failover',
  'stop',
  'destroy',
  'create',
  'check-config',
  'keygen',
  'pair',
  'help',
  'top',
  'hotplug',
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export function isCommandName(word: string): word is CommandName {
  return (COMMAND_NAMES as readonly string[]).includes(word);
}

/** Wrong command line. `command` is set once the command word is known. */
export class UsageError extends Error {
  readonly command?: string;
  /** The argument (or option) at fault, as typed, when there is one. */
  readonly argument?: string;

  constructor(detail: string, command?: string, argument?: string) {
    super(command ? `${command}: ${detail}` : detail);
    this.name = 'UsageError';
    if (command !== undefined) this.command = command;
    if (argument !== undefined) this.argument = argument;
  }
}

// ---------------------------------------------------------------------------
// Command and option tables (drive both parsing and the help text)
// ---------------------------------------------------------------------------

interface OptionDef {
  /** Key in the parsed option map. */
  id: string;
  short?: string;
  long?: string;
  /** Metavariable; present iff the option takes a value. */
  arg?: string;
  help: string;
}

interface CommandDef {
  synopsis: string;
  summary: string;
  description?: string;
  options: OptionDef[];
}

const HELP_OPTION: OptionDef = { id: 'help', short: 'h', long: 'help', help: 'Show this help and exit.' };

const GLOBAL_OPTIONS: OptionDef[] = [
  { id: 'backend', long: 'backend', arg: 'sim|xen|auto', help: 'Hypervisor backend: the built-in simulator, real Xen, or auto-detect (default auto).' },
  { id: 'control', long: 'control', arg: 'PATH', help: 'Control socket of the xl-ha daemon.' },
  { id: 'keys', long: 'keys', arg: 'DIR', help: "Directory of this host's pairings, one pre-shared key per peer (default /etc/xen/xl-ha/peers as root)." },
  { id: 'verbose', short: 'v', long: 'verbose', help: 'More output; repeat for even more (-vv).' },
  HELP_OPTION,
];

const REPLICATE_OPTIONS: OptionDef[] = [
  { id: 'interval', short: 'i', long: 'interval', arg: 'MS', help: `Checkpoint interval in milliseconds (default ${DEFAULT_INTERVAL_MS}, at most ${LIMITS.intervalMs.max}).` },
  { id: 'no-netbuf', short: 'n', long: 'no-netbuf', help: 'Disable network output buffering (unsafe: output may be seen that a failover loses).' },
  { id: 'no-disk', short: 'd', long: 'no-disk', help: 'Disable disk replication.' },
  { id: 'blackhole', short: 'b', long: 'blackhole', help: 'Send checkpoints to a black hole instead of the peer (for testing and benchmarks).' },
  { id: 'heartbeat-ms', long: 'heartbeat-ms', arg: 'MS', help: `Heartbeat interval in milliseconds (default ${DEFAULT_HEARTBEAT_MS}, ${LIMITS.heartbeatMs.min} to ${LIMITS.heartbeatMs.max}).` },
  { id: 'failover-timeout-ms', long: 'failover-timeout-ms', arg: 'MS', help: `Declare the primary dead after this many milliseconds without a heartbeat (default ${FAILOVER_TIMEOUT_FACTOR} x heartbeat; must exceed the heartbeat).` },
  { id: 'in-flight', long: 'in-flight', arg: 'N', help: `Checkpoints that may travel unacknowledged while the guest runs on (${LIMITS.inFlight.min} to ${LIMITS.inFlight.max}; default: the backend's, sim 8, xen 2).` },
  { id: 'buffer-limit', long: 'buffer-limit', arg: 'MIB', help: `Output held for the backup, at most, before --on-buffer-full acts (default ${DEFAULT_BUFFER_LIMIT_MIB}, ${LIMITS.bufferLimitMiB.min} to ${LIMITS.bufferLimitMiB.max}).` },
  { id: 'on-buffer-full', long: 'on-buffer-full', arg: 'POLICY', help: 'When the backup falls that far behind: throttle (pause the guest until it catches up; default) or degrade (give protection up with an alert, then reconnect).' },
  { id: 'transfer', long: 'transfer', arg: 'LIST', help: 'Checkpoint transfer: full (default), or a comma list of fgbi (only the changed 64-byte blocks of each dirty page) and compress (zstd-1 over the stream), e.g. fgbi,compress.' },
  { id: 'fgbi-block-bytes', long: 'fgbi-block-bytes', arg: 'N', help: `fgbi's block size, a power of two from ${FGBI_BLOCK_BYTES.min} to ${FGBI_BLOCK_BYTES.max} (default ${FGBI_BLOCK_BYTES.default}).` },
  { id: 'fgbi-shadow-mib', long: 'fgbi-shadow-mib', arg: 'MIB', help: `Memory each side's fgbi shadow may take, at most (default ${FGBI_DEFAULT_SHADOW_MIB}, ${LIMITS.fgbiShadowMiB.min} to ${LIMITS.fgbiShadowMiB.max}).` },
  { id: 'unsafe', short: 'F', long: 'unsafe', help: 'Run in unsafe mode (needed by xl for -n, -d and -b); failover may not work as intended.' },
  HELP_OPTION,
];

const MODE_SUMMARIES: Record<ModeId, string> = {
  remus: 'Protect a domain with Remus (asynchronous checkpoint replication).',
  kemari: 'Protect a domain with Kemari (checkpoint on I/O events).',
  colo: 'Protect a domain with COLO (both copies run; output leaves when they agree).',
  llm: 'Protect a domain with LLM (lightweight live migration).',
};

const LISTEN_OPTIONS = (dflt: string): OptionDef[] => [
  { id: 'listen', short: 'l', long: 'listen', arg: 'ADDR[:PORT]', help: `Address to accept replication streams on${dflt}; port defaults to ${DEFAULT_REPLICATION_PORT}.` },
  { id: 'host-name', long: 'host-name', arg: 'NAME', help: 'Name of this host as seen by its peers (default: the system host name).' },
  { id: 'state-dir', long: 'state-dir', arg: 'DIR', help: 'Directory for persistent state.' },
  { id: 'fence-command', long: 'fence-command', arg: 'CMD', help: 'Run (through /bin/sh) before a replica activates, and after a local copy is fenced; XLHA_EVENT, XLHA_DOMAIN, XLHA_FENCING_TOKEN... (docs/fencing.md). A failure keeps the replica halted.' },
  { id: 'watchdog', long: 'watchdog', arg: 'SEC', help: `While it protects a domain, keep the hypervisor's watchdog armed: if the daemon hangs or dies uncleanly, the host is reset after SEC seconds (default ${DEFAULT_WATCHDOG_SEC}, ${WATCHDOG_LIMITS.min} to ${WATCHDOG_LIMITS.max}; 0 off).` },
  { id: 'witness', long: 'witness', arg: 'HOST:PORT[,...]', help: 'etcd endpoints of the witness both hosts reach: failover and running alone are decided there (docs/fencing.md).' },
  { id: 'conf', long: 'conf', arg: 'FILE', help: 'The plug-in config (it must exist); default $XLHA_CONF or /etc/xen/xl-ha.conf if present. Options given here override its [daemon] section.' },
  HELP_OPTION,
];

const PAIR_OPTIONS: OptionDef[] = [
  { id: 'address', long: 'address', arg: 'ADDR[:PORT]', help: `Where <peer> accepts replication streams (port defaults to ${DEFAULT_REPLICATION_PORT}); lets this host pick the key when it replicates there.` },
  { id: 'allow', long: 'allow', arg: 'LIST', help: "Domains of <peer> this host accepts to replicate as its backup: names or patterns with * and ?, comma-separated (default '*'; '' for none)." },
  { id: 'disks', long: 'disks', arg: 'LIST', help: "Disk targets a replica of <peer>'s domains may be given here (xen): absolute path patterns, comma-separated (default none)." },
  { id: 'bridges', long: 'bridges', arg: 'LIST', help: "Bridges a replica's nics may join here (xen): name patterns (default '*')." },
  { id: 'host-name', long: 'host-name', arg: 'NAME', help: 'Name of this host as its peers know it (default: the system host name).' },
  { id: 'force', long: 'force', help: 'Replace an existing pairing with <peer>.' },
  HELP_OPTION,
];

/** `top -d`: seconds between frames. */
export const TOP_DELAY_SEC = { default: 1, min: 0.1, max: 60 } as const;
/** `top -n`: frames, at most. */
export const TOP_ITERATIONS = { min: 1, max: 1_000_000 } as const;

const TOP_OPTIONS: OptionDef[] = [
  { id: 'delay', short: 'd', long: 'delay', arg: 'SEC', help: `Seconds between refreshes (default ${TOP_DELAY_SEC.default}, ${TOP_DELAY_SEC.min} to ${TOP_DELAY_SEC.max}; decimals allowed).` },
  { id: 'iterations', short: 'n', long: 'iterations', arg: 'COUNT', help: 'Exit after COUNT refreshes (default: run until Ctrl-C).' },
  HELP_OPTION,
];

const JSON_OPTIONS: OptionDef[] = [{ id: 'json', long: 'json', help: 'Machine-readable JSON output.' }, HELP_OPTION];

/** kemari checkpoints on output, not on a clock: `--min-gap` instead of `-i`. */
const KEMARI_OPTIONS: OptionDef[] = [
  { id: 'min-gap', long: 'min-gap', arg: 'MS', help: `Output events within this many milliseconds coalesce into one sync (default ${DEFAULT_KEMARI_MIN_GAP_MS}, ${LIMITS.kemariMinGapMs.min} to ${LIMITS.kemariMinGapMs.max}).` },
  ...REPLICATE_OPTIONS.filter((o) => o.id !== 'interval'),
];

/** colo checkpoints when outputs differ: `--max-interval` (the fallback) instead of `-i`. */
const COLO_OPTIONS: OptionDef[] = [
  { id: 'max-interval', long: 'max-interval', arg: 'MS', help: `A checkpoint at the latest this many milliseconds after the previous one, even when outputs agree (default ${DEFAULT_COLO_MAX_INTERVAL_MS}, ${LIMITS.coloMaxIntervalMs.min} to ${LIMITS.coloMaxIntervalMs.max}).` },
  ...REPLICATE_OPTIONS.filter((o) => o.id !== 'interval' && o.id !== 'in-flight'),
];

function replicateDef(mode: ModeId): CommandDef {
  return {
    synopsis: `${mode} [options] <Domain> <host[:port]>`,
    summary: MODE_SUMMARIES[mode],
    description:
      `Replicate <Domain> (a name or domid) to the xl-ha receiver at <host[:port]> ` +
      `(port defaults to ${DEFAULT_REPLICATION_PORT}; write IPv6 addresses as [addr]:port).`,
    options: mode === 'kemari' ? KEMARI_OPTIONS : mode === 'colo' ? COLO_OPTIONS : REPLICATE_OPTIONS,
  };
}

const COMMANDS: Record<CommandName, CommandDef> = {
  remus: replicateDef('remus'),
  kemari: replicateDef('kemari'),
  colo: replicateDef('colo'),
  llm: replicateDef('llm'),
  receive: {
    synopsis: 'receive [options]',
    summary: 'Run as the backup: accept one replication stream and fail over when the primary dies.',
    options: LISTEN_OPTIONS(` (default 0.0.0.0:${DEFAULT_REPLICATION_PORT})`),
  },
  daemon: {
    synopsis: 'daemon [options]',
    summary: 'Run the xl-ha daemon (primary side; also a receiver when -l is given).',
    description: 'Without -l the daemon only protects local domains and accepts no replication streams.',
    options: LISTEN_OPTIONS(''),
  },
  status: { synopsis: 'status [--json]', summary: 'Show replication and failover status.', options: JSON_OPTIONS },
  top: {
    synopsis: 'top [-d SEC] [-n COUNT]',
    summary: 'Show protections and replicas live, refreshed every second, like top.',
    description: 'On a terminal the screen is redrawn; otherwise one frame is printed per refresh, a blank line between two. A daemon that does not answer is shown as an error and asked again.',
    options: TOP_OPTIONS,
  },
  list: { synopsis: 'list [--json]', summary: 'List domains and their protection state.', options: JSON_OPTIONS },
  failover: {
    synopsis: 'failover [--force] <Domain>',
    summary: 'Activate the backup copy of a protected domain.',
    options: [
      { id: 'force', long: 'force', help: 'Fail over even if the primary still looks alive.' },
      HELP_OPTION,
    ],
  },
  stop: { synopsis: 'stop <Domain>', summary: 'Stop protecting a domain (the domain keeps running).', options: [HELP_OPTION] },
  destroy: { synopsis: 'destroy <Domain>', summary: 'Stop protection and destroy the domain.', options: [HELP_OPTION] },
  hotplug: {
    synopsis: 'hotplug <vif|vbd> <add|remove|online|offline> --domid D --devid N [--dev NAME] [--target PATH]',
    summary: "Register a domain's device with the daemon (run by the hotplug scripts vif-ha and block-ha).",
    description:
      'With vbd add --target PATH the daemon serves the disk over NBD for blkback and prints where, one key=value per line: socket=, export=, size=. Exit status: 0 registered, 1 refused by the daemon, 3 no daemon runs.',
    options: [
      { id: 'domid', long: 'domid', arg: 'D', help: 'The domain of the device.' },
      { id: 'devid', long: 'devid', arg: 'N', help: 'The device number within the domain.' },
      { id: 'dev', long: 'dev', arg: 'NAME', help: 'The backend device in dom0 (a vif: its interface name).' },
      { id: 'target', long: 'target', arg: 'PATH', help: 'vbd add: the disk image or LV to serve over NBD (block-ha).' },
      HELP_OPTION,
    ],
  },
  create: {
    synopsis: 'create <cfg-file>',
    summary: 'Create a domain from an xl config file (on the sim backend this is how domains are made).',
    options: [HELP_OPTION],
  },
  'check-config': {
    synopsis: 'check-config [--json] [--conf FILE] [<cfg-file>]',
    summary: 'Check a domain config (and xl-ha.conf) and show the effective HA settings; needs no daemon.',
    description:
      'Exit code 0 when valid, 1 when not (every problem is listed with file:line, the key, the value and what is accepted). ' +
      'With --conf FILE alone, checks that xl-ha.conf. Without --conf, the defaults come from $XLHA_CONF or /etc/xen/xl-ha.conf if it exists.',
    options: [
      { id: 'conf', long: 'conf', arg: 'FILE', help: 'The xl-ha.conf whose [defaults] apply (it must exist), checked too.' },
      { id: 'json', long: 'json', help: 'Machine-readable JSON output.' },
      HELP_OPTION,
    ],
  },
  keygen: {
    synopsis: 'keygen [options] <peer>',
    summary: 'Pair this host with <peer>: make a new key for the pair (then run xl-ha pair on <peer>).',
    description: 'Writes <keys dir>/<peer>.key (mode 0600) and prints the one command to run on <peer>.',
    options: PAIR_OPTIONS,
  },
  pair: {
    synopsis: 'pair [options] <peer> <key-file>',
    summary: 'Pair this host with <peer> from the key file xl-ha keygen wrote there (copied here).',
    options: PAIR_OPTIONS,
  },
  help: { synopsis: 'help [command]', summary: 'Show general help, or help for one command.', options: [HELP_OPTION] },
};

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

interface OptionValue {
  /** How the option was spelled (`-i`, `--interval`). */
  spelled: string;
  value: string;
}

interface Scanned {
  /** Flags: how many times given. */
  flags: Map<string, number>;
  /** Valued options: every occurrence, in order (the last one counts). */
  values: Map<string, OptionValue[]>;
  positionals: string[];
  /** Index in argv just after what was consumed. */
  next: number;
}

const GLOBAL_SPELLINGS = new Set(
  GLOBAL_OPTIONS.filter((o) => o.id !== 'help').flatMap((o) => [o.short && `-${o.short}`, o.long && `--${o.long}`].filter(Boolean)),
);

/**
 * Scan options starting at argv[start].
 * With stopAtPositional, stop at the first positional (its index is `next`);
 * otherwise collect positionals and keep going (GNU-style permutation).
 */
function scan(argv: readonly string[], start: number, defs: readonly OptionDef[], command: string | undefined, stopAtPositional: boolean): Scanned {
  const flags = new Map<string, number>();
  const values = new Map<string, OptionValue[]>();
  const positionals: string[] = [];
  const where = command === undefined ? ' (before the command)' : '';

  const unknown = (spelled: string, arg: string): never => {
    const hint =
      command !== undefined && GLOBAL_SPELLINGS.has(spelled.split('=')[0]!)
        ? ` (global options such as ${spelled.split('=')[0]} go before the command)`
        : '';
    const inCluster = arg !== spelled ? ` in "${arg}"` : '';
    throw new UsageError(`unknown option ${spelled}${inCluster}${where}${hint}`, command, arg);
  };
  const missingValue = (spelled: string, def: OptionDef): never => {
    throw new UsageError(`option ${spelled} expects a value (${def.arg})`, command, spelled);
  };
  const record = (def: OptionDef, spelled: string, value: string | undefined): void => {
    if (value === undefined) flags.set(def.id, (flags.get(def.id) ?? 0) + 1);
    else {
      const list = values.get(def.id) ?? [];
      list.push({ spelled, value });
      values.set(def.id, list);
    }
  };

  let i = start;
  let endOfOptions = false;
  while (i < argv.length) {
    const arg = argv[i]!;
    if (endOfOptions || arg === '-' || !arg.startsWith('-')) {
      if (stopAtPositional) break;
      positionals.push(arg);
      i++;
      continue;
    }
    if (arg === '--') {
      endOfOptions = true;
      i++;
      if (stopAtPositional) break;
      continue;
    }
    i++;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spelled = `--${name}`;
      const def = defs.find((d) => d.long === name);
      if (!def) unknown(spelled, arg);
      if (def!.arg === undefined) {
        if (eq >= 0) throw new UsageError(`option ${spelled} does not take a value (got "${arg.slice(eq + 1)}")`, command, arg);
        record(def!, spelled, undefined);
      } else if (eq >= 0) {
        record(def!, spelled, arg.slice(eq + 1));
      } else {
        if (i >= argv.length) missingValue(spelled, def!);
        record(def!, spelled, argv[i++]!);
      }
      continue;
    }
    // Cluster of short options.
    for (let j = 1; j < arg.length; j++) {
      const ch = arg[j]!;
      const spelled = `-${ch}`;
      const def = defs.find((d) => d.short === ch);
      if (!def) unknown(spelled, arg);
      if (def!.arg === undefined) {
        record(def!, spelled, undefined);
        continue;
      }
      const attached = arg.slice(j + 1);
      if (attached !== '') record(def!, spelled, attached);
      else {
        if (i >= argv.length) missingValue(spelled, def!);
        record(def!, spelled, argv[i++]!);
      }
      break;
    }
  }
  // When stopping at a positional after `--`, `next` points at it.
  return { flags, values, positionals, next: i };
}

function lastValue(s: Scanned, id: string): OptionValue | undefined {
  const list = s.values.get(id);
  return list === undefined ? undefined : list[list.length - 1];
}

// ---------------------------------------------------------------------------
// Value parsers
// ---------------------------------------------------------------------------

function intOption(command: string, opt: OptionValue, range: { min: number; max: number }, unit: string): number {
  const got = JSON.stringify(opt.value);
  if (!/^[0-9]+$/.test(opt.value)) {
    throw new UsageError(`option ${opt.spelled} expects a positive integer (${unit}), got ${got}`, command, opt.spelled);
  }
  const n = Number(opt.value);
  if (n < range.min || n > range.max) {
    throw new UsageError(`option ${opt.spelled} expects an integer from ${range.min} to ${range.max} (${unit}), got ${got}`, command, opt.spelled);
  }
  return n;
}

/** Seconds with an optional fraction (`1`, `0.5`, `.5`) within `range`, as milliseconds. */
function secondsOption(command: string, opt: OptionValue, range: { min: number; max: number }): number {
  const n = /^([0-9]+\.?[0-9]*|\.[0-9]+)$/.test(opt.value) ? Number(opt.value) : NaN;
  if (!(n >= range.min && n <= range.max)) {
    throw new UsageError(`option ${opt.spelled} expects a number of seconds from ${range.min} to ${range.max}, got ${JSON.stringify(opt.value)}`, command, opt.spelled);
  }
  return Math.round(n * 1000);
}

function addressOption(command: string, opt: OptionValue, defaultPort: number): HostPort {
  try {
    return parseHostPort(opt.value, defaultPort);
  } catch (err) {
    const reason = err instanceof HostPortError ? err.reason : String(err);
    throw new UsageError(`option ${opt.spelled} expects ADDR[:PORT], got ${JSON.stringify(opt.value)}: ${reason}`, command, opt.spelled);
  }
}

function nameOption(command: string, opt: OptionValue, what: string): string {
  if (!DOMAIN_NAME_PATTERN.test(opt.value)) {
    throw new UsageError(
      `option ${opt.spelled} expects ${what} of 1 to 64 characters from A-Z a-z 0-9 _ . - (starting with a letter or digit), got ${JSON.stringify(opt.value)}`,
      command,
      opt.spelled,
    );
  }
  return opt.value;
}

function pathOption(command: string | undefined, opt: OptionValue | undefined): string | undefined {
  if (opt === undefined) return undefined;
  if (opt.value === '') throw new UsageError(`option ${opt.spelled} expects a non-empty path`, command, opt.spelled);
  return opt.value;
}

/** Parse a <Domain> argument: all digits = domid, otherwise a domain name. */
export function parseDomainRef(text: string): DomainRef {
  if (/^[0-9]+$/.test(text)) {
    const domid = Number(text);
    if (domid > MAX_DOMID) throw new Error(`domid ${text} is out of range (0 to ${MAX_DOMID})`);
    return domid;
  }
  if (!DOMAIN_NAME_PATTERN.test(text)) {
    throw new Error('expected a domain name (1 to 64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit) or a numeric domid');
  }
  return text;
}

function domainArg(command: string, text: string): DomainRef {
  let ref: DomainRef;
  try {
    ref = parseDomainRef(text);
  } catch (err) {
    throw new UsageError(`<Domain> argument ${JSON.stringify(text)} is not valid: ${(err as Error).message}`, command, text);
  }
  if (ref === 0 || ref === 'Domain-0') {
    throw new UsageError(`<Domain> argument ${JSON.stringify(text)} is not valid: Domain-0 (domid 0) cannot be ${command === 'destroy' ? 'destroyed' : 'managed by xl-ha'}`, command, text);
  }
  return ref;
}

/** Check the number of positionals; `names` are the placeholders, e.g. ['<Domain>']. */
function expectPositionals(command: string, got: readonly string[], names: readonly string[], optional = 0): void {
  const required = names.length - optional;
  if (got.length < required) {
    const missing = names.slice(got.length, required);
    const list = missing.length === 1 ? missing[0]! : `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]}`;
    throw new UsageError(`missing ${list} argument${missing.length > 1 ? 's' : ''} (usage: xl-ha ${COMMANDS[command as CommandName].synopsis})`, command);
  }
  if (got.length > names.length) {
    const extra = got[names.length]!;
    throw new UsageError(`unexpected extra argument ${JSON.stringify(extra)} (usage: xl-ha ${COMMANDS[command as CommandName].synopsis})`, command, extra);
  }
}

// ---------------------------------------------------------------------------
// parseArgs
// ---------------------------------------------------------------------------

/**
 * Parse the arguments after the program name (i.e. `process.argv.slice(2)`).
 * @throws UsageError naming the bad argument
 */
export function parseArgs(argv: readonly string[]): Command {
  // --- global options
  const g = scan(argv, 0, GLOBAL_OPTIONS, undefined, true);
  const backendOpt = lastValue(g, 'backend');
  let backend: Backend = 'auto';
  if (backendOpt) {
    if (!(BACKEND_IDS as readonly string[]).includes(backendOpt.value)) {
      throw new UsageError(`option ${backendOpt.spelled} expects one of ${BACKEND_IDS.join(', ')}, got ${JSON.stringify(backendOpt.value)}`, undefined, backendOpt.spelled);
    }
    backend = backendOpt.value as Backend;
  }
  const globals: GlobalOptions = { backend, verbose: g.flags.get('verbose') ?? 0 };
  const control = pathOption(undefined, lastValue(g, 'control'));
  if (control !== undefined) globals.control = control;
  const keys = pathOption(undefined, lastValue(g, 'keys'));
  if (keys !== undefined) globals.keys = keys;

  const word = argv[g.next];
  if (g.flags.has('help')) {
    return word !== undefined && isCommandName(word) ? { cmd: 'help', topic: word, globals } : { cmd: 'help', globals };
  }
  if (word === undefined) {
    throw new UsageError(`missing command: expected one of ${COMMAND_NAMES.join(', ')} (try "xl-ha help")`);
  }
  if (!isCommandName(word)) {
    throw new UsageError(`unknown command ${JSON.stringify(word)}: expected one of ${COMMAND_NAMES.join(', ')}`, undefined, word);
  }

  const command = word;
  const def = COMMANDS[command];
  const s = scan(argv, g.next + 1, def.options, command, false);
  if (s.flags.has('help')) return { cmd: 'help', topic: command, globals };
  const pos = s.positionals;

  switch (command) {
    case 'remus':
    case 'kemari':
    case 'colo':
    case 'llm': {
      expectPositionals(command, pos, ['<Domain>', '<host[:port]>']);
      const domain = domainArg(command, pos[0]!);
      let peer: HostPort;
      try {
        peer = parseHostPort(pos[1]!, DEFAULT_REPLICATION_PORT);
      } catch (err) {
        const reason = err instanceof HostPortError ? err.reason : String(err);
        throw new UsageError(`<host[:port]> argument ${JSON.stringify(pos[1])} is not valid: ${reason}`, command, pos[1]);
      }
      const intervalOpt = lastValue(s, 'interval');
      const intervalMs = intervalOpt ? intOption(command, intervalOpt, LIMITS.intervalMs, 'milliseconds') : DEFAULT_INTERVAL_MS;
      const hbOpt = lastValue(s, 'heartbeat-ms');
      const heartbeatMs = hbOpt ? intOption(command, hbOpt, LIMITS.heartbeatMs, 'milliseconds') : DEFAULT_HEARTBEAT_MS;
      const ftOpt = lastValue(s, 'failover-timeout-ms');
      let failoverTimeoutMs = FAILOVER_TIMEOUT_FACTOR * heartbeatMs;
      if (ftOpt) {
        failoverTimeoutMs = intOption(command, ftOpt, LIMITS.failoverTimeoutMs, 'milliseconds');
        if (failoverTimeoutMs <= heartbeatMs) {
          throw new UsageError(
            `option ${ftOpt.spelled} must be greater than the heartbeat interval (${heartbeatMs} ms), got ${JSON.stringify(ftOpt.value)}`,
            command,
            ftOpt.spelled,
          );
        }
      }
      const ifOpt = lastValue(s, 'in-flight');
      const blOpt = lastValue(s, 'buffer-limit');
      const bfOpt = lastValue(s, 'on-buffer-full');
      if (bfOpt && !(BUFFER_FULL_POLICIES as readonly string[]).includes(bfOpt.value)) {
        throw new UsageError(`option ${bfOpt.spelled} expects ${BUFFER_FULL_POLICIES.join(' or ')}, got ${JSON.stringify(bfOpt.value)}`, command, bfOpt.spelled);
      }
      const trOpt = lastValue(s, 'transfer');
      const tr = trOpt ? parseTransfer(trOpt.value) : null;
      if (trOpt && tr && !tr.ok) throw new UsageError(`option ${trOpt.spelled}: ${tr.reason}`, command, trOpt.spelled);
      const transfer = tr?.ok ? tr.id : 'full';
      const fbOpt = lastValue(s, 'fgbi-block-bytes');
      const fsOpt = lastValue(s, 'fgbi-shadow-mib');
      for (const o of [fbOpt, fsOpt]) {
        if (o && !transferStages(transfer).includes('fgbi')) throw new UsageError(`option ${o.spelled} applies only with --transfer fgbi`, command, o.spelled);
      }
      if (fbOpt && !isValidBlockBytes(Number(fbOpt.value))) {
        throw new UsageError(`option ${fbOpt.spelled} expects a power of two from ${FGBI_BLOCK_BYTES.min} to ${FGBI_BLOCK_BYTES.max} (bytes), got ${JSON.stringify(fbOpt.value)}`, command, fbOpt.spelled);
      }
      const gapOpt = lastValue(s, 'min-gap');
      const maxOpt = lastValue(s, 'max-interval');
      return {
        ...(ifOpt ? { inFlight: intOption(command, ifOpt, LIMITS.inFlight, 'checkpoints') } : {}),
        ...(blOpt ? { bufferLimitMiB: intOption(command, blOpt, LIMITS.bufferLimitMiB, 'MiB') } : {}),
        ...(bfOpt ? { onBufferFull: bfOpt.value as BufferFullPolicy } : {}),
        ...(transfer !== 'full' ? { transfer } : {}),
        ...(fbOpt ? { fgbiBlockBytes: Number(fbOpt.value) } : {}),
        ...(fsOpt ? { fgbiShadowMiB: intOption(command, fsOpt, LIMITS.fgbiShadowMiB, 'MiB') } : {}),
        ...(command === 'kemari' ? { minGapMs: gapOpt ? intOption(command, gapOpt, LIMITS.kemariMinGapMs, 'milliseconds') : DEFAULT_KEMARI_MIN_GAP_MS } : {}),
        ...(command === 'colo' ? { maxIntervalMs: maxOpt ? intOption(command, maxOpt, LIMITS.coloMaxIntervalMs, 'milliseconds') : DEFAULT_COLO_MAX_INTERVAL_MS } : {}),
        cmd: 'remus',
        mode: command,
        domain,
        peer,
        intervalMs,
        netbuf: !s.flags.has('no-netbuf'),
        disk: !s.flags.has('no-disk'),
        blackhole: s.flags.has('blackhole'),
        heartbeatMs,
        failoverTimeoutMs,
        allowUnsafe: s.flags.has('unsafe'),
        globals,
      };
    }

    case 'receive':
    case 'daemon': {
      expectPositionals(command, pos, []);
      const listenOpt = lastValue(s, 'listen');
      const listen = listenOpt ? addressOption(command, listenOpt, DEFAULT_REPLICATION_PORT) : undefined;
      const hostOpt = lastValue(s, 'host-name');
      const hostName = hostOpt ? nameOption(command, hostOpt, 'a host name') : undefined;
      const stateDir = pathOption(command, lastValue(s, 'state-dir'));
      const extra: { hostName?: string; stateDir?: string; witness?: string[]; fenceCommand?: string; watchdogSec?: number; conf?: string } = {};
      const confOpt = pathOption(command, lastValue(s, 'conf'));
      if (confOpt !== undefined) extra.conf = confOpt;
      const wdOpt = lastValue(s, 'watchdog');
      if (wdOpt) extra.watchdogSec = wdOpt.value === '0' ? 0 : intOption(command, wdOpt, WATCHDOG_LIMITS, 'seconds, or 0 for off');
      const fcOpt = lastValue(s, 'fence-command');
      if (fcOpt) {
        if (!fcOpt.value.trim()) throw new UsageError(`option ${fcOpt.spelled} expects a command`, command, fcOpt.spelled);
        extra.fenceCommand = fcOpt.value;
      }
      if (hostName !== undefined) extra.hostName = hostName;
      if (stateDir !== undefined) extra.stateDir = stateDir;
      const wOpt = lastValue(s, 'witness');
      if (wOpt) {
        try {
          extra.witness = parseWitnessEndpoints(wOpt.value);
        } catch (err) {
          throw new UsageError(`option ${wOpt.spelled}: ${(err as Error).message}`, command, wOpt.spelled);
        }
      }
      if (command === 'receive') {
        return { cmd: 'receive', listen: listen ?? { host: '0.0.0.0', port: DEFAULT_REPLICATION_PORT }, ...extra, globals };
      }
      return listen ? { cmd: 'daemon', listen, ...extra, globals } : { cmd: 'daemon', ...extra, globals };
    }

    case 'status':
    case 'list':
      expectPositionals(command, pos, []);
      return { cmd: command, json: s.flags.has('json'), globals };

    case 'top': {
      expectPositionals(command, pos, []);
      const dOpt = lastValue(s, 'delay');
      const nOpt = lastValue(s, 'iterations');
      return {
        cmd: 'top',
        intervalMs: dOpt ? secondsOption(command, dOpt, TOP_DELAY_SEC) : TOP_DELAY_SEC.default * 1000,
        ...(nOpt ? { iterations: intOption(command, nOpt, TOP_ITERATIONS, 'refreshes') } : {}),
        globals,
      };
    }

    case 'failover':
      expectPositionals(command, pos, ['<Domain>']);
      return { cmd: 'failover', domain: domainArg(command, pos[0]!), force: s.flags.has('force'), globals };

    case 'stop':
    case 'destroy':
      expectPositionals(command, pos, ['<Domain>']);
      return { cmd: command, domain: domainArg(command, pos[0]!), globals };

    case 'hotplug': {
      expectPositionals(command, pos, ['<vif|vbd>', '<add|remove|online|offline>']);
      const kind = pos[0]!;
      const action = pos[1]!;
      if (!(HOTPLUG_KINDS as readonly string[]).includes(kind)) throw new UsageError(`device kind ${JSON.stringify(kind)} is not valid: expected vif or vbd`, command, kind);
      if (!(HOTPLUG_ACTIONS as readonly string[]).includes(action)) throw new UsageError(`action ${JSON.stringify(action)} is not valid: expected ${HOTPLUG_ACTIONS.join(', ')}`, command, action);
      const need = (id: string, max: number): number => {
        const o = lastValue(s, id);
        if (!o) throw new UsageError(`option --${id} is required`, command);
        return intOption(command, o, { min: 0, max }, id === 'domid' ? 'a domid' : 'a device number');
      };
      const domid = need('domid', 0x7fef);
      const devid = need('devid', 0xffff);
      const devOpt = lastValue(s, 'dev');
      if (devOpt && !/^[A-Za-z0-9_.:-]{1,64}$/.test(devOpt.value)) throw new UsageError(`option ${devOpt.spelled} expects a device name, got ${JSON.stringify(devOpt.value)}`, command, devOpt.spelled);
      const targetOpt = lastValue(s, 'target');
      if (targetOpt && !(kind === 'vbd' && action === 'add')) throw new UsageError(`option ${targetOpt.spelled} is for vbd add only`, command, targetOpt.spelled);
      if (targetOpt && !/^\/[^\0\n]{0,4095}$/.test(targetOpt.value)) throw new UsageError(`option ${targetOpt.spelled} expects an absolute path, got ${JSON.stringify(targetOpt.value)}`, command, targetOpt.spelled);
      return {
        cmd: 'hotplug',
        kind: kind as HotplugCommand['kind'],
        action: action as HotplugCommand['action'],
        domid,
        devid,
        ...(devOpt ? { dev: devOpt.value } : {}),
        ...(targetOpt ? { target: targetOpt.value } : {}),
        globals,
      };
    }

    case 'create':
      expectPositionals(command, pos, ['<cfg-file>']);
      if (pos[0] === '') throw new UsageError('<cfg-file> argument must not be empty', command, '');
      return { cmd: 'create', cfgFile: pos[0]!, globals };

    case 'check-config': {
      expectPositionals(command, pos, ['<cfg-file>'], 1);
      const conf = pathOption(command, lastValue(s, 'conf'));
      if (pos[0] === '') throw new UsageError('<cfg-file> argument must not be empty', command, '');
      if (pos[0] === undefined && conf === undefined) {
        throw new UsageError(`missing <cfg-file> argument, or --conf FILE to check xl-ha.conf alone (usage: xl-ha ${COMMANDS[command].synopsis})`, command);
      }
      return { cmd: 'check-config', ...(pos[0] !== undefined ? { cfgFile: pos[0] } : {}), ...(conf !== undefined ? { conf } : {}), json: s.flags.has('json'), globals };
    }

    case 'keygen':
    case 'pair': {
      expectPositionals(command, pos, command === 'keygen' ? ['<peer>'] : ['<peer>', '<key-file>']);
      const peer = nameOption(command, { spelled: '<peer>', value: pos[0]! }, 'a host name');
      const addrOpt = lastValue(s, 'address');
      const hostOpt = lastValue(s, 'host-name');
      const allowOpt = lastValue(s, 'allow');
      if (allowOpt && !/^[A-Za-z0-9_.*?,\s-]*$/.test(allowOpt.value)) {
        throw new UsageError(`option ${allowOpt.spelled} expects domain names or patterns (A-Z a-z 0-9 _ . - * ?) separated by commas, got ${JSON.stringify(allowOpt.value)}`, command, allowOpt.spelled);
      }
      if (command === 'pair' && pos[1] === '') throw new UsageError('<key-file> argument must not be empty', command, '');
      return {
        cmd: command,
        peer,
        ...(command === 'pair' ? { keyFile: pos[1]! } : {}),
        ...(addrOpt ? { address: addressOption(command, addrOpt, DEFAULT_REPLICATION_PORT) } : {}),
        allow: allowOpt ? allowOpt.value : '*',
        disks: lastValue(s, 'disks')?.value ?? '',
        bridges: lastValue(s, 'bridges')?.value ?? '*',
        ...(hostOpt ? { hostName: nameOption(command, hostOpt, 'a host name') } : {}),
        force: s.flags.has('force'),
        globals,
      };
    }

    case 'help': {
      expectPositionals(command, pos, ['[command]'], 1);
      const topic = pos[0];
      if (topic === undefined) return { cmd: 'help', globals };
      if (!isCommandName(topic)) {
        throw new UsageError(`unknown command ${JSON.stringify(topic)}: expected one of ${COMMAND_NAMES.join(', ')}`, command, topic);
      }
      return { cmd: 'help', topic, globals };
    }
  }
}

// ---------------------------------------------------------------------------
// Help text
// ---------------------------------------------------------------------------

function optionLines(options: readonly OptionDef[]): string[] {
  const heads = options.map((o) => {
    const names = [o.short && `-${o.short}`, o.long && `--${o.long}`].filter(Boolean).join(', ');
    return o.arg ? `${names} ${o.arg}` : names;
  });
  const width = Math.max(...heads.map((h) => h.length));
  return options.map((o, i) => `  ${heads[i]!.padEnd(width)}  ${o.help}`);
}

/**
 * Help text: general (no argument or an unknown command) or for one command.
 * Ends with a newline.
 */
export function usage(command?: string): string {
  if (command !== undefined && isCommandName(command)) {
    const def = COMMANDS[command];
    const lines = [`Usage: xl-ha [global options] ${def.synopsis}`, '', def.summary];
    if (def.description) lines.push(def.description);
    lines.push('', 'Options:', ...optionLines(def.options));
    return lines.join('\n') + '\n';
  }
  const width = Math.max(...COMMAND_NAMES.map((c) => c.length));
  return (
    [
      'Usage: xl-ha [global options] <command> [args]',
      '',
      'High availability for Xen VMs by continuous checkpoint replication, as a plug-in to xl.',
      '',
      'Global options:',
      ...optionLines(GLOBAL_OPTIONS),
      '',
      'Commands:',
      ...COMMAND_NAMES.map((c) => `  ${c.padEnd(width)}  ${COMMANDS[c].summary}`),
      '',
      'Run "xl-ha help <command>" for the options of one command.',
    ].join('\n') + '\n'
  );
}
