/**
 * The xl-ha daemon of one host. It owns the host's backend, protects domains (primary role),
 * receives replication streams (backup role, when it listens) and answers the CLI on a unix
 * control socket (one JSON request per line, one JSON response per line).
 *
 * On the sim backend the daemon's process *is* the host: killing it is a host failure.
 */
import { checkTransferRuns } from '../transport/transfer.js';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'winston';
import type { HypervisorBackend } from '../backend/types.js';
import { Channel } from '../transport/channel.js';
import { isLoopback, plaintextLoopback, secureServer } from '../transport/secure.js';
import { allows, type PeerEntry, type PeerKeys } from '../security/peers.js';
import { BackupSession } from '../failover/backup.js';
import { parseProtectOptions, startProtection, transferSettings, type Protection, type ProtectOptions } from './protect.js';
import { SupervisedProtection } from './supervise.js';
import type { Witness } from '../witness/witness.js';
import { runFenceCommand } from '../failover/fence-hook.js';
import { parseXlCfg } from '../config/xlcfg.js';
import { domainConfigWithDefaults, type PluginConfig } from '../config/plugin.js';
import { createMode } from '../engine/modes/index.js';
import type { DomainInfo, ServedDiskAnswer } from '../backend/types.js';
import { DomainRecords } from './records.js';
import { protectOptionsFromHa } from './resolve.js';
import { DomainLifecycle } from './lifecycle.js';
import type { DaemonStatusJson } from './status-types.js';
import { gcStats, watchGc, type GcStats } from './gc-stats.js';
import { LOG_STALL_MS, loopStats, onLoopStall, watchLoop, type LoopStats } from './loop-stalls.js';

export interface DaemonOptions {
  backend: HypervisorBackend;
  hostName: string;
  stateDir: string;
  controlPath: string;
  listen?: { host: string; port: number };
  /** This host's pairings: who may replicate to it, and with which key it replicates. */
  keys: PeerKeys;
  /** The etcd witness both hosts of a pair reach: no failover, and no running alone, without it. */
  witness?: Witness;
  /** Run before a replica activates, and after a local copy is fenced (src/failover/fence-hook.ts). */
  fenceCommand?: string;
  /** The hypervisor watchdog's timeout while this host is a primary (0 off; default DEFAULT_WATCHDOG_SEC). */
  watchdogSec?: number;
  /** xl-ha.conf: its [defaults] apply to every cfg the daemon reads. */
  plugin?: PluginConfig;
  /** Where a domain's cfg is looked up by name (xl-ha.conf config_dirs); default none. */
  configDirs?: string[];
  /** Reads xl's `xl` userdata of a domain (the cfg after `xl config-update`); default the backend's. */
  userdata?: (info: DomainInfo) => Promise<string | null>;
  /** Serve Prometheus metrics here (xl-ha.conf metrics_listen); default none. */
  metricsListen?: { host: string; port: number };
  /** Whether stop() disposes of the backend (default true; false: a test restarts the daemon over the same sim host). */
  ownsBackend?: boolean;
  log: Logger;
}

import { DaemonWatchdog, DEFAULT_WATCHDOG_SEC } from './watchdog.js';
import type { ControlRequest, ControlResponse } from './control.js';
export { controlRequest, type ControlRequest, type ControlResponse } from './control.js';

/** A control request is one line of JSON, at most this long (a cfg file's text included). */
export const CONTROL_MAX_REQUEST_BYTES = 1 << 20;
/** Control connections open at once, at most; more are refused. */
export const CONTROL_MAX_CONNECTIONS = 64;

/** A string field of a control request (absent: `dflt`); anything else is named as the error. */
function reqString(req: ControlRequest, key: string, dflt?: string): string {
  const v = req[key];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'string') throw new Error(`control request "${req.cmd}": ${key} must be a string, got ${v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 60)}`);
  return v;
}

/** The `domain` of a control request: a name, or a domid as a number or digits. */
function reqDomain(req: ControlRequest): string {
  const v = req.domain;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return String(v);
  return reqString(req, 'domain');
}

export class Daemon {
  private control: net.Server | null = null;
  private replication: net.Server | null = null;
  readonly protections = new Map<string, SupervisedProtection>();
  readonly backups = new Set<BackupSession>();
  /** Protections whose first checkpoint is not on the backup yet, by domain name. */
  private readonly starting = new Map<string, Protection>();
  private stopping = false;
  readonly watchdog: DaemonWatchdog;
  readonly records: DomainRecords;
  readonly lifecycle: DomainLifecycle;
  private metrics: { close(): Promise<void> } | null = null;
  /** Devices the hotplug scripts registered, by kind/domid/devid. */
  private readonly devices = new Map<string, { kind: string; domid: number; devid: number; dev?: string; since: string }>();
  private unsubscribeDevices: (() => void) | null = null;
  private unsubscribeStalls: (() => void) | null = null;

  constructor(readonly o: DaemonOptions) {
    this.watchdog = new DaemonWatchdog(o.backend, o.watchdogSec ?? DEFAULT_WATCHDOG_SEC, o.log.child({ module: 'watchdog' }));
    this.records = new DomainRecords(o.stateDir);
    const be = o.backend;
    this.lifecycle = new DomainLifecycle({
      backend: be,
      records: this.records,
      log: o.log.child({ module: 'lifecycle' }),
      resolve: {
        userdata: o.userdata ?? (async (info) => (be.getUserdata ? be.getUserdata(info.domid, 'xl') : null)),
        libxlConfig: (info) => be.getDomainConfig(info.domid),
        configDirs: o.configDirs ?? [],
        ...(o.plugin ? { plugin: o.plugin } : {}),
      },
      protect: (info, opts) => this.protect(info.name, opts),
      protection: (name) => this.protections.get(name),
      dropProtection: (name) => this.dropProtection(name),
      replicated: (uuid, domid) =>
        [...this.backups].some(
          (b) => b.hello?.uuid.toLowerCase() === uuid.toLowerCase() && (['handshake', 'replicating', 'halted', 'failing-over'].includes(b.state) || (b.state === 'active' && b.replica?.domid === domid)),
        ),
    });
  }

  /** Ends the protection of a domain that is gone (the backup drops its replica). */
  private async dropProtection(name: string): Promise<void> {
    const p = this.protections.get(name);
    if (!p) return;
    this.protections.delete(name);
    this.protectionsChanged();
    await p.stop().catch(() => {});
  }

  /**
   * A domain failed over to this host: it is protected again by itself, to the host it came
   * from (the pairing's `address =`), once that host's daemon answers.
   */
  private async failedOver(s: BackupSession): Promise<void> {
    const hello = s.hello;
    if (!hello) return;
    const name = hello.domain.name;
    const detail = `from ${hello.host}${s.fencingToken !== null ? `, fencing token ${s.fencingToken}` : ''}`;
    this.lifecycle.note(hello.uuid, 'failed over here', detail);
    let info: DomainInfo;
    try {
      info = await this.o.backend.findDomain(name);
    } catch {
      return;
    }
    let address;
    try {
      address = this.o.keys.load(hello.host).address;
    } catch (err) {
      this.lifecycle.alertInfo(info, `it cannot be protected again: ${(err as Error).message}`);
      return;
    }
    if (!address) {
      this.lifecycle.alertInfo(info, `it cannot be protected again to ${hello.host}: ${this.o.keys.fileOf(hello.host)} has no address = (where ${hello.host} accepts replication)`);
      return;
    }
    const options = {
      mode: hello.mode,
      peer: { host: address.host, port: address.port },
      intervalMs: hello.intervalMs,
      netbuf: hello.netbuf,
      disk: hello.disk,
      blackhole: false,
      heartbeatMs: hello.heartbeatMs,
      failoverTimeoutMs: hello.failoverTimeoutMs,
      allowUnsafe: true, // as the primary protected it
    };
    this.o.log.info('domain failed over here: it is protected again to its old primary as soon as that host answers', { domain: name, peer: `${address.host}:${address.port}` });
    await this.lifecycle.want(info, options, 'failover', `failover from ${hello.host}`).catch(() => {});
  }

  /** The watchdog is armed while this host is the primary of a domain. */
  private protectionsChanged(): void {
    this.watchdog.update(this.protections.size > 0);
  }

  async start(): Promise<void> {
    if (this.o.keys.hostName !== this.o.hostName) throw new Error(`the keys are for host ${this.o.keys.hostName}, this daemon is ${this.o.hostName}`);
    // a key that others can read, or that does not parse, stops the daemon here
    const peers = this.o.keys.checkAll();
    this.watchdog.check();
    watchGc();
    watchLoop();
    this.unsubscribeStalls = onLoopStall((st) => {
      if (st.ms < LOG_STALL_MS || this.protections.size + this.backups.size === 0) return;
      this.o.log.warn(
        `the main thread stalled ${st.ms} ms (garbage collection ${st.gcMs} ms of it; on a core ${st.runMs ?? '?'} ms, waiting for one ${st.waitMs ?? '?'} ms): every heartbeat of the ${this.protections.size} protection(s) and ${this.backups.size} backup session(s) of this daemon waited that long`,
        { stallMs: st.ms, gcMs: st.gcMs, runMs: st.runMs, waitMs: st.waitMs },
      );
    });
    fs.mkdirSync(this.o.stateDir, { recursive: true });
    fs.mkdirSync(path.dirname(this.o.controlPath), { recursive: true });
    await this.listenControl();
    if (this.o.listen) await this.listenReplication(this.o.listen);
    if (this.o.metricsListen) {
      const { startMetricsServer } = await import('./metrics.js');
      this.metrics = await startMetricsServer(this.o.metricsListen, () => this.statusJson() as unknown as DaemonStatusJson, this.o.log.child({ module: 'metrics' }));
    }
    this.unsubscribeDevices = this.o.backend.onDomainEvent((ev) => {
      if (ev.kind !== 'release') return;
      for (const [k, d] of this.devices) {
        if (d.domid !== ev.domid) continue;
        this.devices.delete(k);
        // a disk whose remove never came (the domain is gone): its export goes with it
        if (d.kind === 'vbd') void this.o.backend.unserveDisk?.(d.domid, d.devid).catch(() => {});
      }
    });
    await this.lifecycle.start();
    this.o.log.info('daemon started', {
      backend: this.o.backend.kind,
      control: this.o.controlPath,
      listen: this.o.listen ? `${this.o.listen.host}:${this.o.listen.port}` : 'off',
      witness: this.o.witness?.label ?? 'none',
      peers: peers.map((e) => e.peer).join(', ') || 'none (xl-ha keygen)',
      keys: this.o.keys.dir,
      pid: process.pid,
    });
    if (!this.o.witness) {
      this.o.log.warn('no witness (--witness): failover is decided on link silence alone, so a partition can leave two running copies (docs/fencing.md)');
    }
  }

  private async listenControl(): Promise<void> {
    const p = this.o.controlPath;
    if (fs.existsSync(p)) {
      // A socket left by a dead daemon is removed; a live one means a daemon already runs.
      const alive = await new Promise<boolean>((resolve) => {
        const s = net.connect(p);
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (alive) throw new Error(`another xl-ha daemon is already running on control socket ${p}`);
      fs.unlinkSync(p);
    }
    const server = net.createServer((sock) => this.serveControl(sock));
    server.maxConnections = CONTROL_MAX_CONNECTIONS; // Node closes any further connection as soon as it is accepted
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, () => resolve());
    });
    fs.chmodSync(p, 0o600);
    this.control = server;
  }

  private async listenReplication(addr: { host: string; port: number }): Promise<void> {
    if (plaintextLoopback() && !isLoopback(addr.host)) throw new Error(`XLHA_PLAINTEXT_LOOPBACK is for loopback measurements only: cannot listen on ${addr.host} without encryption`);
    // only connections whose peer proved a pairing's key get here (src/transport/secure.ts)
    const server = secureServer(this.o.keys, this.o.log.child({ module: 'backup' }), (sock, peer) => {
      const from = `${sock.remoteAddress}:${sock.remotePort}`;
      const channel = new Channel(sock);
      const log = this.o.log.child({ module: 'backup', from, peer: peer.peer });
      const b = new BackupSession(this.o.backend, channel, log, this.o.hostName, {
        ...(this.o.witness ? { witness: this.o.witness } : {}),
        ...(this.o.fenceCommand ? { fenceCommand: this.o.fenceCommand } : {}),
        onState: (s) => {
          if (s.state === 'stopped' || (s.state === 'failed' && !s.replica)) this.backups.delete(s);
          if (s.state === 'active' && !this.stopping) void this.failedOver(s);
        },
        beforeReplica: async (s, hello) => {
          admitHello(peer, hello.host, hello.domain.name);
          await this.supersede(s, hello.domain.name, hello.host);
          return { peer: peer.peer, source: peer.file, disks: peer.disks, bridges: peer.bridges, ...(peer.replicaDiskDir ? { replicaDiskDir: peer.replicaDiskDir } : {}) };
        },
      });
      this.backups.add(b);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`cannot listen for replication on ${addr.host}:${addr.port}: ${err.code ?? err.message}`)),
      );
      server.listen({ host: addr.host, port: addr.port }, () => resolve());
    });
    this.replication = server;
  }

  /**
   * A new stream for a domain this host already replicates: a session whose primary is gone
   * (or halted) is stale and gives way; one still connected, or a domain already running
   * here after a failover, makes the new stream a clear error.
   */
  private async supersede(current: BackupSession, name: string, from: string): Promise<void> {
    for (const other of this.backups) {
      if (other === current || other.domainName !== name) continue;
      if (other.state === 'stopped') {
        await other.replicaDropped(); // a clean stop whose replica is still being removed
        continue;
      }
      if (other.state === 'active') {
        // the domain that failed over here may have gone since (xl destroy, a shutdown): stale
        if ((await this.o.backend.listDomains()).some((d) => d.name === name && d.state !== 'shutdown')) {
          throw new Error(`domain ${name} already runs on host ${this.o.hostName} (it failed over here)`);
        }
        other.dispose();
        this.backups.delete(other);
        continue;
      }
      if (other.state === 'replicating' && !other.disconnected) {
        throw new Error(`domain ${name} is already replicated to host ${this.o.hostName} from ${String(other.status().primary)}`);
      }
      if (other.state === 'replicating' || other.state === 'halted') {
        await other.retire(`new replication stream from ${from}`);
        this.backups.delete(other);
      }
    }
  }

  /** Starts protection of a domain, supervised: a lost backup is reconnected to by itself. */
  private async protect(name: string, opts: ProtectOptions): Promise<SupervisedProtection> {
    const be = this.o.backend;
    // until its first checkpoint is on the backup, status shows it starting, with the copy's progress
    const first = await startProtection(be, opts, this.o.log, this.o.keys, this.o.witness, (p) => this.starting.set(name, p)).finally(() => this.starting.delete(name));
    const sp = new SupervisedProtection(
      first,
      () => startProtection(be, opts, this.o.log, this.o.keys, this.o.witness),
      async () => (await be.listDomains()).some((d) => d.name === name && d.domid === first.domid),
      this.o.log.child({ module: 'supervisor' }),
      () => (be.fence ? be.fence(first.domid) : be.pause(first.domid)),
      () => this.fenced(name, first.uuid, opts),
      (event, detail) => this.lifecycle.note(first.uuid, event, detail),
    );
    this.protections.set(name, sp);
    this.protectionsChanged();
    return sp;
  }

  /** A local copy lost its domain to the backup: the admin's fence command, if any, is told. */
  private async fenced(name: string, uuid: string, opts: ProtectOptions): Promise<void> {
    if (!this.o.fenceCommand) return;
    try {
      await runFenceCommand(this.o.fenceCommand, { event: 'fenced', domain: name, uuid, peer: `${opts.peer.host}:${opts.peer.port}`, token: null });
    } catch (err) {
      this.o.log.error('fence command failed', { domain: name, error: (err as Error).message });
    }
  }

  /**
   * A hotplug script (hooks/vif-ha, block-ha) reports a domain's device. A vif that comes
   * online in a domain protected since before would send unbuffered: its protection restarts
   * (a full resynchronisation) so that the new vif is buffered too.
   */
  private async hotplug(req: ControlRequest): Promise<{ registered: boolean; note?: string; served?: ServedDiskAnswer }> {
    const kind = reqString(req, 'kind');
    const action = reqString(req, 'action');
    if (!['vif', 'vbd'].includes(kind)) throw new Error(`hotplug: kind ${JSON.stringify(kind)} is not valid: expected vif or vbd`);
    if (!['add', 'remove', 'online', 'offline'].includes(action)) throw new Error(`hotplug: action ${JSON.stringify(action)} is not valid: expected add, remove, online or offline`);
    const int = (k: string, max: number): number => {
      const v = req[k];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new Error(`hotplug: ${k} ${JSON.stringify(v)} is not valid: expected an integer from 0 to ${max}`);
      return v;
    };
    const domid = int('domid', 0x7fef);
    const devid = int('devid', 0xffff);
    const dev = req.dev === undefined ? undefined : reqString(req, 'dev');
    const target = req.target === undefined ? undefined : reqString(req, 'target');
    if (target !== undefined && !(kind === 'vbd' && action === 'add')) throw new Error(`hotplug: target is for vbd add only, not ${kind} ${action}`);
    const key = `${kind}/${domid}/${devid}`;
    if (action === 'remove' || action === 'offline') {
      this.devices.delete(key);
      // block-ha's remove: its NBD client has disconnected; the export goes
      if (kind === 'vbd') await this.o.backend.unserveDisk?.(domid, devid);
      return { registered: false };
    }
    if (target !== undefined) {
      // block-ha's add: the disk is served over NBD for blkback, so that its writes are seen
      const be = this.o.backend;
      if (!be.serveDisk) throw new Error(`hotplug: the ${be.kind} backend serves no disks (block-ha is for Xen)`);
      const served = await be.serveDisk(domid, devid, target);
      this.devices.set(key, { kind, domid, devid, dev: target, since: new Date().toISOString() });
      return { registered: true, served };
    }
    this.devices.set(key, { kind, domid, devid, ...(dev ? { dev } : {}), since: new Date().toISOString() });
    if (kind !== 'vif') return { registered: true };
    const p = [...this.protections.values()].find((x) => x.current.domid === domid && x.active);
    if (!p) return { registered: true };
    const rec = this.records.get(p.current.uuid);
    const info = await this.o.backend.findDomain(domid);
    const what = `${dev ?? `vif ${devid}`} came online in protected domain ${p.name}`;
    if (!rec) {
      this.lifecycle.alertInfo(info, `${what}, whose output is not buffered: stop and protect it again (no record of its settings)`);
      return { registered: true, note: `${what}: its output is NOT buffered until the domain is protected again` };
    }
    this.o.log.warn(`${what}: protection restarts so that its output is buffered too (full resynchronisation)`, { domain: p.name, domid });
    this.lifecycle.note(info.uuid, 'protection restarts', `${what}`);
    await this.dropProtection(p.name);
    void this.lifecycle.want(info, rec.options, rec.via, rec.source).catch(() => {});
    return { registered: true, note: `${what}: its protection restarts so that it is buffered too` };
  }

  /** What `xl-ha status` shows (and the metrics endpoint serves). */
  statusJson(): Record<string, unknown> {
    const be = this.o.backend;
    return {
      host: this.o.hostName,
      backend: be.kind,
      daemon: daemonStatus(),
      watchdog: this.watchdog.status(),
      protections: [
        ...[...this.protections.values()].map((p) => this.protectionStatus(p)),
        ...[...this.starting.values()].filter((p) => !this.protections.get(p.name)?.active).map((p) => ({ ...p.status(), history: this.lifecycle.history(p.uuid) })),
        ...this.lifecycle.waiting(),
      ],
      replicas: [...this.backups].map((b) => ({ ...b.status(), ...(b.hello ? { history: this.lifecycle.history(b.hello.uuid) } : {}) })),
      unprotected: this.lifecycle.alertList(),
      devices: [...this.devices.values()],
      ...(be.servedDisks ? { servedDisks: be.servedDisks() } : {}),
    };
  }

  private protectionStatus(p: SupervisedProtection): Record<string, unknown> {
    return { ...p.status(), history: this.lifecycle.history(p.current.uuid) };
  }

  private serveControl(sock: net.Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > CONTROL_MAX_REQUEST_BYTES && buf.indexOf('\n') < 0) {
        this.o.log.warn('control request refused: too long', { bytes: buf.length, limit: CONTROL_MAX_REQUEST_BYTES });
        sock.end(JSON.stringify({ ok: false, error: `control request refused: longer than ${CONTROL_MAX_REQUEST_BYTES} bytes without a newline` }) + '\n');
        sock.removeAllListeners('data');
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.answer(line).then((resp) => {
          if (!sock.destroyed) sock.write(JSON.stringify(resp) + '\n');
        });
      }
    });
    sock.on('error', () => {});
  }

  private async answer(line: string): Promise<ControlResponse> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
      if (typeof req !== 'object' || req === null || typeof req.cmd !== 'string') throw new Error('request must be an object with a "cmd" string');
    } catch (err) {
      return { ok: false, error: `bad control request: ${(err as Error).message}` };
    }
    try {
      return { ok: true, result: await this.dispatch(req) };
    } catch (err) {
      const e = err as Error & { code?: string };
      return { ok: false, error: e.message, ...(e.code ? { code: e.code } : {}) };
    }
  }

  private async dispatch(req: ControlRequest): Promise<unknown> {
    const be = this.o.backend;
    switch (req.cmd) {
      case 'ping':
        return { host: this.o.hostName, pid: process.pid, backend: be.kind };
      case 'list':
        return be.listDomains();
      case 'create': {
        const text = reqString(req, 'text', '');
        const source = reqString(req, 'source', 'cfg');
        const cfg = domainConfigWithDefaults(parseXlCfg(text, source), this.o.plugin);
        const ha = cfg.ha;
        if (ha) checkTransferRuns(transferSettings(ha), be); // not in this release, or not on this backend: before the domain exists
        if (ha) createMode(ha.mode, { intervalMs: ha.intervalMs }).dispose?.(); // an unsupported mode fails before the domain exists
        const domain = await be.createDomain(cfg.domain);
        if (!ha) return { domain };
        try {
          const p = await this.lifecycle.want(domain, protectOptionsFromHa(ha), 'create', source);
          return { domain, protection: p ? this.protectionStatus(p) : this.lifecycle.waiting().find((w) => w.domain === domain.name) };
        } catch (err) {
          throw new Error(`domain ${domain.name} was created and runs UNPROTECTED: ${(err as Error).message}`);
        }
      }
      case 'hotplug':
        return this.hotplug(req);
      case 'sim-xl-create': {
        // What stock `xl create` does on Xen, on the sim: the domain is created and nothing is
        // told to xl-ha (its ha keys are ignored, as xl ignores them). With userdata: true the cfg
        // is kept as xl's `xl` userdata, as after `xl config-update`. The daemon must find the
        // domain's settings by itself (src/daemon/resolve.ts).
        const sim = be as unknown as { setUserdata?: (domid: number, key: string, text: string) => void };
        if (!sim.setUserdata) throw new Error(`sim-xl-create stands in for xl create on the sim backend; on ${be.kind}, run xl create`);
        const text = reqString(req, 'text', '');
        const cfg = domainConfigWithDefaults(parseXlCfg(text, reqString(req, 'source', 'cfg')));
        const domain = await be.createDomain(cfg.domain, req.userdata === true ? { userdata: { xl: text } } : undefined);
        return { domain };
      }
      case 'destroy': {
        const d = await be.findDomain(reqDomain(req));
        this.lifecycle.forget(d);
        const p = this.protections.get(d.name);
        if (p) {
          await p.stop();
          this.protections.delete(d.name);
          this.protectionsChanged();
        }
        await be.destroyDomain(d.domid);
        // a domain that had failed over here: its session ends with it, and the name is free
        for (const b of this.backups) {
          if (b.domainName === d.name && b.state === 'active') {
            b.dispose();
            this.backups.delete(b);
          }
        }
        return { destroyed: d.name };
      }
      case 'protect': {
        const o = parseProtectOptions(req.options);
        const d = await be.findDomain(o.domain);
        const existing = this.protections.get(d.name);
        if (existing?.active) {
          throw new Error(`domain ${d.name} is already protected (mode ${existing.opts.mode}, peer ${existing.opts.peer.host}:${existing.opts.peer.port})`);
        }
        this.lifecycle.forget(d); // a domain waiting for its peer: the admin's options replace the cfg's
        const p = await this.protect(d.name, { ...o, domain: d.domid });
        const { domain: _domain, ...options } = o;
        this.records.put({ uuid: d.uuid, name: d.name, memoryMiB: d.memoryMiB, vcpus: d.vcpus, via: 'protect', source: `xl-ha ${o.mode}`, options });
        this.lifecycle.note(d.uuid, 'protected', `to ${o.peer.host}:${o.peer.port} (xl-ha ${o.mode})`);
        return this.protectionStatus(p);
      }
      case 'stop': {
        const d = await be.findDomain(reqDomain(req));
        const wasWaiting = this.lifecycle.forget(d); // stopped on purpose: not resumed after a restart
        const p = this.protections.get(d.name);
        if (!p && wasWaiting) return { domain: d.name, state: 'stopped' };
        if (!p) throw new Error(`domain ${d.name} is not protected on this host`);
        this.lifecycle.note(d.uuid, 'stopped', 'xl-ha stop');
        const state = await p.stop();
        this.protections.delete(d.name);
        this.protectionsChanged();
        return { domain: d.name, state };
      }
      case 'failover': {
        const name = reqDomain(req);
        const b = [...this.backups].find((s) => s.domainName === name || String(s.replica?.domid) === name);
        if (!b) {
          if (this.protections.has(name)) throw new Error(`domain ${name} runs here as the primary; run xl-ha failover on its backup host`);
          throw new Error(`no replica of domain ${name} on this host`);
        }
        await b.failoverNow(req.force === true);
        return b.status();
      }
      case 'status':
        return this.statusJson();
      case 'digest': {
        // Diagnostics: sha256 of a domain's (or replica's) memory.
        const name = reqDomain(req);
        const b = [...this.backups].find((s) => s.domainName === name && s.state === 'replicating');
        if (b?.replica) return { epoch: b.replica.lastEpoch, sha256: await b.replica.memoryDigest() };
        const sim = be as unknown as { memoryDigest?: (domid: number) => Promise<string> };
        if (!sim.memoryDigest) throw new Error(`backend ${be.kind} has no memory digest`);
        const d = await be.findDomain(name);
        return { sha256: await sim.memoryDigest(d.domid) };
      }
      case 'sim-guest': {
        // Diagnostics, sim only (the bench's guest progress): the running guests' own counters.
        const sim = be as unknown as { guestCounters?: () => unknown[] };
        if (!sim.guestCounters) throw new Error(`sim-guest reads the sim backend's guests; this host runs ${be.kind}`);
        return { guests: sim.guestCounters() };
      }
      case 'sim-disk': {
        // Fault injection, sim only (the chaos campaign's disk-full, test/failover/disk-full.test.ts):
        // {full: true, leftBytes?} fills this host's disk, {full: false} gives it room again.
        const sim = be as unknown as { diskFault?: (o: { full: boolean; leftBytes?: number }) => unknown };
        if (!sim.diskFault) throw new Error(`sim-disk is fault injection of the sim backend; this host runs ${be.kind}`);
        const leftBytes = req.leftBytes;
        if (leftBytes !== undefined && (typeof leftBytes !== 'number' || !Number.isInteger(leftBytes) || leftBytes < 0)) {
          throw new Error(`sim-disk: leftBytes ${JSON.stringify(leftBytes)} is not valid: expected an integer from 0`);
        }
        const r = sim.diskFault({ full: req.full === true, ...(leftBytes !== undefined ? { leftBytes } : {}) });
        this.o.log.warn(req.full === true ? 'fault injection: this host\'s disk is full' : 'fault injection: this host\'s disk has room again', { ...(r as object) });
        return r;
      }
      default:
        throw new Error(`unknown control command ${JSON.stringify(req.cmd)}`);
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.lifecycle.stop();
    this.unsubscribeDevices?.();
    this.unsubscribeStalls?.();
    for (const p of this.protections.values()) await p.stop().catch(() => {});
    this.watchdog.disarm('the daemon stops');
    await Promise.all([...this.backups].map((b) => b.shutdown()));
    this.control?.close();
    this.replication?.close();
    await this.metrics?.close().catch(() => {});
    this.o.witness?.close();
    if (this.o.ownsBackend !== false) await this.o.backend.dispose();
    try {
      fs.unlinkSync(this.o.controlPath);
    } catch {
      /* already gone */
    }
  }
}

/**
 * The backup's own policy for an authenticated peer: the HELLO must name the peer as its
 * host (no speaking for another host with this pair's key), and the domain must be one this
 * host's key file allows from that peer.
 */
export function admitHello(peer: PeerEntry, helloHost: string, domain: string): void {
  if (helloHost !== peer.peer) throw new Error(`HELLO says it comes from host ${helloHost}, but the connection authenticated as ${peer.peer}`);
  if (!allows(peer, domain)) {
    throw new Error(`domain ${domain} from ${peer.peer} is not allowed on this host (allow = ${peer.allow.join(', ') || '(none)'} in ${peer.file})`);
  }
}

/**
 * The daemon process itself: its memory now and at its peak (MiB), how long it has run, and its
 * libuv thread pool (UV_THREADPOOL_SIZE as the process started with it: the xl-ha command sets
 * it before the pool starts, see src/cli/xl-ha.cts; node's default is 4).
 */
export function daemonStatus(): { pid: number; uptimeSecs: number; threadPool: number; rssMiB: number; maxRssMiB: number; heapUsedMiB: number; externalMiB: number; gc?: GcStats; loop?: LoopStats } {
  const m = process.memoryUsage();
  const mib = (b: number) => Math.round((b / 1048576) * 10) / 10;
  return {
    pid: process.pid,
    uptimeSecs: Math.round(process.uptime()),
    threadPool: THREAD_POOL,
    rssMiB: mib(m.rss),
    maxRssMiB: mib(process.resourceUsage().maxRSS * 1024), // maxRSS is in KiB
    heapUsedMiB: mib(m.heapUsed),
    externalMiB: mib(m.external),
    ...(gcStats() ? { gc: gcStats()! } : {}),
    ...(loopStats() ? { loop: loopStats()! } : {}),
  };
}

/** Read once at load: what libuv sized its pool with (it reads the variable when the pool starts). */
const THREAD_POOL = Math.min(1024, Math.max(1, Number(process.env.UV_THREADPOOL_SIZE) || 4));
