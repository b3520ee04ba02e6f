#!/usr/bin/env node
/**
 * xl-ha: the command-line interface, in xl's style. `daemon` and `receive` run a host's
 * daemon in the foreground; every other command talks to the local daemon over its control
 * socket. Exit codes: 0 success, 1 failure, 2 bad usage.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, usage, UsageError, type Command } from './args.js';
import { controlRequest } from '../daemon/control.js';
import type { DaemonStatusJson } from '../daemon/status-types.js';

export function defaultControlPath(): string {
  if (process.env.XLHA_CONTROL) return process.env.XLHA_CONTROL;
  if (process.getuid?.() === 0) return '/run/xl-ha/control.sock';
  return path.join(process.env.XDG_RUNTIME_DIR ?? os.tmpdir(), `xl-ha-${process.getuid?.() ?? 0}`, 'control.sock');
}

function defaultStateDir(): string {
  if (process.env.XLHA_STATE_DIR) return process.env.XLHA_STATE_DIR;
  if (process.getuid?.() === 0) return '/var/lib/xl-ha';
  return path.join(os.homedir(), '.local', 'state', 'xl-ha');
}

/** This host's pairings: --keys, XLHA_KEYS, /etc/xen/xl-ha/peers as root, else under ~/.config. */
export function defaultKeysDir(): string {
  if (process.env.XLHA_KEYS) return process.env.XLHA_KEYS;
  if (process.getuid?.() === 0) return '/etc/xen/xl-ha/peers';
  return path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), 'xl-ha', 'peers');
}

/** `keygen` and `pair`: write this host's key file for the pair, and say what to do next. */
async function runPair(cmd: Extract<Command, { cmd: 'keygen' | 'pair' }>): Promise<number> {
  const { PeerKeys, generateKey, parseAllow, parseDiskPatterns, parsePeerFile } = await import('../security/peers.js');
  const hostName = cmd.hostName ?? os.hostname();
  const keys = new PeerKeys(cmd.globals.keys ?? defaultKeysDir(), hostName);
  const allow = parseAllow(cmd.allow, '--allow');
  const base = { peer: cmd.peer, allow, disks: parseDiskPatterns(cmd.disks, '--disks'), bridges: parseAllow(cmd.bridges, '--bridges'), ...(cmd.address ? { address: cmd.address } : {}) };
  if (cmd.cmd === 'keygen') {
    const file = keys.write({ ...base, key: generateKey() }, `Written by xl-ha keygen on ${new Date().toISOString().slice(0, 10)}.`, cmd.force);
    process.stdout.write(
      `${hostName} is paired with ${cmd.peer}: key in ${file}\n` +
        `${allowLine(allow, cmd.peer, hostName)}\n` +
        `Now copy ${file} to ${cmd.peer} (scp keeps it private) and run there:\n` +
        `  xl-ha pair ${hostName} <copied-file> [--address <where ${hostName} listens>] [--allow <domains of ${hostName}>]\n`,
    );
    return 0;
  }
  const src = cmd.keyFile!;
  let text: string;
  try {
    text = fs.readFileSync(src, 'utf8');
  } catch (err) {
    throw new Error(`cannot read key file ${src}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const theirs = parsePeerFile(src, text);
  if (theirs.host !== cmd.peer) throw new Error(`${src} was written on host ${theirs.host}, not ${cmd.peer}: run xl-ha pair ${theirs.host} ${src}`);
  if (theirs.peer !== hostName) throw new Error(`${src} pairs ${theirs.host} with host ${theirs.peer}, but this host is ${hostName} (--host-name to name it otherwise)`);
  const file = keys.write({ ...base, key: theirs.key }, `Written by xl-ha pair on ${new Date().toISOString().slice(0, 10)} from ${path.basename(src)}.`, cmd.force);
  process.stdout.write(`${hostName} is paired with ${cmd.peer}: key in ${file}\n${allowLine(allow, cmd.peer, hostName)}\nDelete the copy ${src}: the key must not stay anywhere else.\n`);
  return 0;
}

function allowLine(allow: string[], peer: string, me: string): string {
  return allow.length ? `As a backup, ${me} accepts these domains of ${peer}: ${allow.join(', ')} (allow = in the key file).` : `As a backup, ${me} accepts no domain of ${peer} (allow = in the key file).`;
}

function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => String(c ?? '').padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

type StatusText = {
  host: string;
  backend: string;
  daemon?: { pid: number; uptimeSecs: number; threadPool: number; rssMiB: number; maxRssMiB: number };
  protections: Record<string, unknown>[];
  replicas: Record<string, unknown>[];
  unprotected?: { domain: string; at: string; reason: string }[];
};

/** A figure for a table cell: `-` when the daemon did not give it. */
const cell = (v: unknown, unit = ''): string => (typeof v === 'number' && Number.isFinite(v) ? `${v}${unit}` : '-');
const rate = (v: unknown): string => (typeof v === 'number' ? (v >= 1048576 ? `${(v / 1048576).toFixed(1)}M` : v >= 1024 ? `${(v / 1024).toFixed(1)}K` : String(v)) : '-');

const mibText = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;

/** A note on a transfer other than full: its shadow's memory against its bound, and how pages went. */
function transferNote(name: string, side: string, t: unknown): string | null {
  const x = t as { id?: unknown; shadowBytes?: unknown; shadowCapBytes?: unknown; shadowPages?: unknown; shadowAllocatedBytes?: unknown; deltaPages?: unknown; bytesIn?: unknown; bytesOut?: unknown } | undefined;
  if (!x || typeof x.id !== 'string' || x.id === 'full') return null;
  const shadow = typeof x.shadowBytes === 'number' && typeof x.shadowCapBytes === 'number' ? `${side} shadow ${mibText(x.shadowBytes)} of ${mibText(x.shadowCapBytes)} (${cell(x.shadowPages)} pages, ${typeof x.shadowAllocatedBytes === 'number' ? mibText(x.shadowAllocatedBytes) : '-'} allocated)` : `${side} shadow -`;
  const ratio = typeof x.bytesIn === 'number' && typeof x.bytesOut === 'number' && x.bytesIn > 0 ? `; pages sent as ${Math.round((x.bytesOut * 100) / x.bytesIn)}% of their bytes, ${cell(x.deltaPages)} as blocks` : '';
  return `${name}: transfer ${x.id}: ${shadow}${ratio}`;
}

/** `xl-ha status` as text: one row per protection and replica, then notes, alerts and each domain's story. */
export function formatStatus(s: StatusText): string {
  const rows: (string | number)[][] = [['Name', 'Role', 'Mode', 'State', 'Peer', 'Epoch', 'Ckpt/s', 'Ack age', 'Pause p99', 'Bytes/s']];
  const notes: string[] = [];
  const stories: string[] = [];
  const story = (name: string, h: unknown) => {
    if (!Array.isArray(h) || h.length === 0) return;
    stories.push(`${name}: ${(h as { at: string; event: string; detail?: string }[]).map((e) => `${e.event} at ${e.at}${e.detail ? ` (${e.detail})` : ''}`).join('; ')}`);
  };
  for (const p of s.protections) {
    const age = typeof p.lastAckAgeMs === 'number' ? `${(p.lastAckAgeMs / 1000).toFixed(1)}s` : '-';
    rows.push([String(p.domain), 'primary', String(p.mode), String(p.state), String(p.peer), cell(p.epoch), cell(p.checkpointsPerSec), age, cell(p.pauseMsP99, 'ms'), rate(p.bytesPerSec)]);
    const w = p.waiting as { attempts: number; lastError?: string; nextAttemptInMs: number } | undefined;
    if (w) notes.push(`${String(p.domain)}: waiting for peer ${String(p.peer)}: ${w.attempts} attempt(s), last error: ${w.lastError ?? '-'}; next in ${Math.round(w.nextAttemptInMs / 1000)} s`);
    const c = p.precopy as { sentBytes: number; totalBytes: number; etaSec: number | null } | undefined;
    if (c) notes.push(`${String(p.domain)}: initial copy ${c.totalBytes ? Math.round((c.sentBytes * 100) / c.totalBytes) : 0}% of ${Math.round(c.totalBytes / 1048576)} MiB, ETA ${c.etaSec ?? '-'} s`);
    if (p.error) notes.push(`${String(p.domain)}: ${String(p.error)}`);
    const tn = transferNote(String(p.domain), 'primary', p.transfer);
    if (tn) notes.push(tn);
    story(String(p.domain), p.history);
  }
  for (const b of s.replicas) {
    rows.push([String(b.domain ?? '-'), 'backup', String(b.mode ?? '-'), String(b.state), String(b.primary ?? '-'), cell(b.epoch), '-', '-', '-', '-']);
    if (b.error) notes.push(`${String(b.domain ?? '-')}: ${String(b.error)}`);
    const bn = transferNote(String(b.domain ?? '-'), 'backup', b.transfer);
    if (bn) notes.push(bn);
    if (!s.protections.some((p) => p.domain === b.domain)) story(String(b.domain ?? '-'), b.history);
  }
  const d = s.daemon ? `; daemon pid ${s.daemon.pid}, up ${s.daemon.uptimeSecs} s, ${s.daemon.rssMiB} MiB resident (peak ${s.daemon.maxRssMiB}), ${s.daemon.threadPool} pool threads` : '';
  let out = `host ${s.host} (backend ${s.backend})${d}\n${table(rows)}\n`;
  for (const a of s.unprotected ?? []) notes.push(`ALERT ${a.domain} runs UNPROTECTED (since ${a.at}): ${a.reason}`);
  if (notes.length) out += `\n${notes.join('\n')}\n`;
  if (stories.length) out += `\nHistory:\n${stories.join('\n')}\n`;
  return out;
}

async function runDaemon(cmd: Extract<Command, { cmd: 'daemon' | 'receive' }>): Promise<number> {
  const hostName = cmd.hostName ?? os.hostname();
  // xl-ha.conf: a missing file means built-in defaults (unless --conf named it); options given
  // on the command line override its [daemon] section
  const { loadPluginConfig, defaultPluginConfigPath } = await import('../config/plugin.js');
  const plugin = loadPluginConfig(cmd.conf ?? defaultPluginConfigPath(), { mustExist: cmd.conf !== undefined });
  const conf = plugin.daemon;
  const confSet = (k: string) => plugin.set.has(`daemon.${k}`);
  const stateDir = cmd.stateDir ?? process.env.XLHA_STATE_DIR ?? (confSet('state_dir') ? conf.stateDir : defaultStateDir());
  // The daemon, its logger and the backends (koffi, for xen) are loaded only here: client
  // commands never need them, and each module costs start-up time (seconds under emulation).
  const [{ Daemon }, { createLogger }, { createBackend }] = await Promise.all([
    import('../daemon/daemon.js'),
    import('../util/log.js'),
    import('../backend/select.js'),
  ]);
  const log = createLogger({
    host: hostName,
    level: cmd.globals.verbose > 0 ? 'debug' : confSet('log_level') ? conf.logLevel : undefined,
    ...(conf.log.kind === 'file' ? { file: conf.log.path } : conf.log.kind === 'syslog' || conf.log.kind === 'journal' ? { system: conf.log.kind } : {}),
  });
  const { PeerKeys } = await import('../security/peers.js');
  const keys = new PeerKeys(cmd.globals.keys ?? defaultKeysDir(), hostName);
  keys.checkAll(); // a world-readable or malformed key: no daemon, before the backend opens
  const controlPath = cmd.globals.control ?? defaultControlPath();
  // block-ha disks are served over NBD on unix sockets beside the control socket (src/disk/exports.ts)
  const disks = { dir: path.join(path.dirname(controlPath), 'nbd'), log: log.child({ module: 'disks' }) };
  const backend = createBackend(cmd.globals.backend, { hostName, stateDir: path.join(stateDir, 'sim'), disks });
  const witnessAt = cmd.witness ?? conf.witness;
  const witness = witnessAt ? new (await import('../witness/witness.js')).Witness(witnessAt) : undefined;
  const fenceCommand = cmd.fenceCommand ?? conf.fenceCommand;
  const listen = cmd.listen ?? conf.listen;
  const daemon = new Daemon({
    keys,
    ...(witness ? { witness } : {}),
    ...(fenceCommand ? { fenceCommand } : {}),
    watchdogSec: cmd.watchdogSec ?? conf.watchdogSec,
    backend,
    hostName,
    stateDir,
    controlPath,
    ...(listen ? { listen } : {}),
    plugin,
    configDirs: conf.configDirs,
    ...(conf.metricsListen ? { metricsListen: conf.metricsListen } : {}),
    log,
  });
  if (plugin.found) log.info('plug-in config read', { file: plugin.source });
  await daemon.start();
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info('stopping', { signal: sig });
      void daemon.stop().finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

/**
 * How long `xl-ha remus|kemari|colo` waits for the daemon to answer: until the first checkpoint
 * is on the backup, which follows the copy of the whole memory (a 128 MiB guest took 79 s under
 * the lab's emulation on a loaded machine; 16 GiB over 1 GbE take minutes on hardware).
 */
const PROTECT_ANSWER_MS = 30 * 60_000;

async function request(cmd: Command, req: Record<string, unknown> & { cmd: string }, timeoutMs?: number): Promise<unknown> {
  const resp = await controlRequest(cmd.globals.control ?? defaultControlPath(), req, timeoutMs);
  if (!resp.ok) throw new Error(resp.error);
  return resp.result;
}

/** The daemon's `status` answer, as `xl-ha status` asks for it. */
async function statusRequest(cmd: Command, timeoutMs?: number): Promise<DaemonStatusJson> {
  return (await request(cmd, { cmd: 'status' }, timeoutMs)) as DaemonStatusJson;
}

/** `remus|kemari|colo`: a status poll for the precopy's progress waits this long at most. */
const PRECOPY_POLL_ANSWER_MS = 5000;

export async function main(argv: string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`xl-ha: ${err.message}\n\n${usage(err.command)}\n`);
      return 2;
    }
    throw err;
  }
  switch (cmd.cmd) {
    case 'help':
      process.stdout.write(usage(cmd.topic) + '\n');
      return 0;
    case 'daemon':
    case 'receive':
      return runDaemon(cmd);
    case 'keygen':
    case 'pair':
      return runPair(cmd);
    case 'check-config': {
      // Config modules only: no daemon, no backend.
      const { runCheckConfig } = await import('../config/check.js');
      const r = runCheckConfig({ ...(cmd.cfgFile !== undefined ? { cfgFile: cmd.cfgFile } : {}), ...(cmd.conf !== undefined ? { conf: cmd.conf } : {}), json: cmd.json });
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      return r.code;
    }
    case 'remus': {
      // the copy of the whole memory comes before the answer: its progress, from status polls
      // on a second connection, on stderr meanwhile
      const { watchPrecopy } = await import('./progress.js');
      const progress = watchPrecopy(
        () => statusRequest(cmd, PRECOPY_POLL_ANSWER_MS),
        (p) => (typeof cmd.domain === 'number' ? p.domid === cmd.domain : p.domain === cmd.domain),
        process.stderr,
      );
      const r = (await request(cmd, {
        cmd: 'protect',
        options: {
          domain: cmd.domain,
          mode: cmd.mode,
          peer: cmd.peer,
          intervalMs: cmd.intervalMs,
          ...(cmd.minGapMs !== undefined ? { minGapMs: cmd.minGapMs } : {}),
          ...(cmd.maxIntervalMs !== undefined ? { maxIntervalMs: cmd.maxIntervalMs } : {}),
          netbuf: cmd.netbuf,
          disk: cmd.disk,
          blackhole: cmd.blackhole,
          heartbeatMs: cmd.heartbeatMs,
          failoverTimeoutMs: cmd.failoverTimeoutMs,
          ...(cmd.inFlight ? { inFlight: cmd.inFlight } : {}),
          ...(cmd.bufferLimitMiB !== undefined ? { bufferLimitMiB: cmd.bufferLimitMiB } : {}),
          ...(cmd.onBufferFull !== undefined ? { onBufferFull: cmd.onBufferFull } : {}),
          ...(cmd.transfer !== undefined ? { transfer: cmd.transfer } : {}),
          ...(cmd.fgbiBlockBytes !== undefined ? { fgbiBlockBytes: cmd.fgbiBlockBytes } : {}),
          ...(cmd.fgbiShadowMiB !== undefined ? { fgbiShadowMiB: cmd.fgbiShadowMiB } : {}),
          allowUnsafe: cmd.allowUnsafe,
        },
      }, PROTECT_ANSWER_MS).finally(() => progress.stop())) as Record<string, unknown>;
      process.stdout.write(
        `domain ${String(r.domain)} (domid ${String(r.domid)}) protected: mode ${cmd.mode}, backup ${String(r.peer)}, ` +
          (cmd.minGapMs !== undefined
            ? `sync on output, minimum gap ${cmd.minGapMs} ms`
            : cmd.maxIntervalMs !== undefined
              ? `checkpoint on divergence, at the latest every ${cmd.maxIntervalMs} ms`
              : `interval ${cmd.intervalMs} ms`) +
          `, first checkpoint after ${String(r.precopyPages)} pages of precopy\n`,
      );
      return 0;
    }
    case 'status': {
      const s = (await request(cmd, { cmd: 'status' })) as {
        host: string;
        backend: string;
        daemon?: { pid: number; uptimeSecs: number; threadPool: number; rssMiB: number; maxRssMiB: number };
        protections: Record<string, unknown>[];
        replicas: Record<string, unknown>[];
      };
      if (cmd.json) {
        process.stdout.write(JSON.stringify(s) + '\n');
        return 0;
      }
      process.stdout.write(formatStatus(s as unknown as StatusText));
      return 0;
    }
    case 'top': {
      const { runTop } = await import('./top.js');
      // a daemon that hangs shows as an error within an interval or two, not after a minute
      const answerMs = Math.max(2000, cmd.intervalMs);
      await runTop(() => statusRequest(cmd, answerMs), { intervalMs: cmd.intervalMs, ...(cmd.iterations !== undefined ? { iterations: cmd.iterations } : {}), out: process.stdout });
      return 0;
    }
    case 'list': {
      const l = (await request(cmd, { cmd: 'list' })) as { name: string; domid: number; memoryMiB: number; vcpus: number; state: string }[];
      if (cmd.json) {
        process.stdout.write(JSON.stringify(l) + '\n');
        return 0;
      }
      const rows: (string | number)[][] = [['Name', 'ID', 'Mem', 'VCPUs', 'State']];
      for (const d of l) rows.push([d.name, d.domid, d.memoryMiB, d.vcpus, d.state]);
      process.stdout.write(table(rows) + '\n');
      return 0;
    }
    case 'hotplug': {
      // the hotplug scripts tell a missing daemon (3) from a refusal (1): neither fails the device
      const resp = await controlRequest(cmd.globals.control ?? defaultControlPath(), { cmd: 'hotplug', kind: cmd.kind, action: cmd.action, domid: cmd.domid, devid: cmd.devid, ...(cmd.dev ? { dev: cmd.dev } : {}), ...(cmd.target ? { target: cmd.target } : {}) }, 10_000).catch((err: Error) => {
        process.stderr.write(`xl-ha: ${err.message}\n`);
        return null;
      });
      if (!resp) return 3;
      if (!resp.ok) {
        process.stderr.write(`xl-ha: ${resp.error}\n`);
        return 1;
      }
      const r = resp.result as { note?: string; served?: { socket: string; exportName: string; sizeBytes: number } };
      if (r.note) process.stdout.write(`${r.note}\n`);
      // block-ha reads these lines (hooks/block-ha): where dom0's NBD client connects
      if (r.served) process.stdout.write(`socket=${r.served.socket}\nexport=${r.served.exportName}\nsize=${r.served.sizeBytes}\n`);
      return 0;
    }
    case 'create': {
      let text: string;
      try {
        text = fs.readFileSync(cmd.cfgFile, 'utf8');
      } catch (err) {
        throw new Error(`cannot read config file ${cmd.cfgFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const r = (await request(cmd, { cmd: 'create', text, source: path.resolve(cmd.cfgFile) }, PROTECT_ANSWER_MS)) as { domain: { name: string; domid: number }; protection?: Record<string, unknown> };
      const p = r.protection;
      if (p?.state === 'waiting-for-peer') {
        const w = p.waiting as { lastError?: string } | undefined;
        process.stdout.write(`domain ${r.domain.name} created (domid ${r.domain.domid}); it runs UNPROTECTED while the daemon waits for its peer ${String(p.peer)} (${w?.lastError ?? 'no answer'}): protection starts as soon as the peer answers (xl-ha status)\n`);
        return 0;
      }
      process.stdout.write(`domain ${r.domain.name} created (domid ${r.domain.domid})${p ? `, protected by ${String(p.mode)} → ${String(p.peer)}` : ''}\n`);
      return 0;
    }
    case 'stop': {
      const r = (await request(cmd, { cmd: 'stop', domain: cmd.domain })) as { domain: string; state: string };
      process.stdout.write(`protection of ${r.domain} ${r.state}\n`);
      return 0;
    }
    case 'failover': {
      const r = (await request(cmd, { cmd: 'failover', domain: cmd.domain, force: cmd.force })) as Record<string, unknown>;
      if (r.state !== 'active') throw new Error(`failover of ${String(r.domain)} did not complete: ${String(r.error ?? r.state)}`);
      process.stdout.write(`domain ${String(r.domain)} now runs on this host from checkpoint ${String(r.epoch)}\n`);
      return 0;
    }
    case 'destroy': {
      await request(cmd, { cmd: 'destroy', domain: cmd.domain });
      process.stdout.write(`domain ${String(cmd.domain)} destroyed\n`);
      return 0;
    }
  }
}

/** Runs the command line and exits with its status. */
export function runCli(argv: string[]): void {
  main(argv).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`xl-ha: ${err.message}\n`);
      process.exit(1);
    },
  );
}

// Run directly (tests, the demo): no larger thread pool. The installed command is xl-ha.cjs.
const isMain = process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname);
if (isMain) runCli(process.argv.slice(2));
