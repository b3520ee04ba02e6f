/**
 * Prometheus metrics of one daemon: `GET /metrics` on a small HTTP server, in the text format
 * of prom-client's registry. Every scrape reads the daemon's `status` answer once (the same
 * JSON `xl-ha status` shows) and sets the gauges from it, so the figures and their units are
 * those of `xl-ha status`: milliseconds where status says `Ms`, MiB where it says `MiB`.
 *
 * Series (names `xlha_`, labels `domain`, `mode`, and `peer` for a protection or `primary`
 * for a replica):
 *   - `xlha_protection_state{state=...}`: 1 for the state a protection is in, 0 for every
 *     other known state (alert on `xlha_protection_state{state="protected"} == 0`);
 *   - a protection's epoch, committed checkpoints, checkpoints per second, pause p50/p99,
 *     last ack age, replication rate, bytes sent, output held, resyncs and throttles;
 *   - a replica's state, epoch, checkpoints applied and rejected, and primary silence;
 *   - the daemon's resident memory, uptime and whether the hypervisor watchdog is armed;
 *   - prom-client's default process and Node.js metrics (`process_*`, `nodejs_*`).
 * A figure status does not give (an older daemon, a protection still starting) is left out
 * rather than shown as 0. A replica whose primary has not yet named the domain is left out.
 *
 * The registry is this server's own, not prom-client's global one: two daemons in one process
 * (the tests, the demo) each report their own figures.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'winston';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { PROTECTION_STATES, REPLICA_STATES, type DaemonStatusJson, type ProtectionStatusJson, type ReplicaStatusJson } from './status-types.js';

export interface MetricsServer {
  /** The port it listens on (the one given, or the one the system chose for port 0). */
  readonly port: number;
  /** Stops listening and drops open connections; idempotent. */
  close(): Promise<void>;
}

type Figure<S> = { name: string; help: string; value: (s: S) => number | undefined };

const PROTECTION_FIGURES: Figure<ProtectionStatusJson>[] = [
  { name: 'xlha_protection_epoch', help: 'Epoch of the last checkpoint taken.', value: (p) => p.epoch },
  { name: 'xlha_protection_committed_checkpoints', help: 'Checkpoints the backup acknowledged since this protection (re)started.', value: (p) => p.committed },
  { name: 'xlha_protection_checkpoints_per_second', help: 'Committed checkpoints per second since the first one.', value: (p) => p.checkpointsPerSec },
  { name: 'xlha_protection_pause_p50_ms', help: 'Guest pause per checkpoint, median, milliseconds.', value: (p) => p.pauseMsP50 },
  { name: 'xlha_protection_pause_p99_ms', help: 'Guest pause per checkpoint, 99th percentile, milliseconds.', value: (p) => p.pauseMsP99 },
  { name: 'xlha_protection_last_ack_age_seconds', help: 'Seconds since the backup last acknowledged a checkpoint.', value: (p) => (p.lastAckAgeMs === undefined ? undefined : p.lastAckAgeMs / 1000) },
  { name: 'xlha_protection_bytes_per_second', help: 'Replication traffic to the backup, recent rate, bytes per second.', value: (p) => p.bytesPerSec },
  { name: 'xlha_protection_bytes_sent', help: 'Bytes sent to the backup since this protection (re)started.', value: (p) => p.bytesSent },
  { name: 'xlha_protection_buffered_bytes', help: 'Guest output held until the backup acknowledges it, bytes.', value: (p) => p.bufferedBytes },
  { name: 'xlha_protection_resyncs', help: 'Full resynchronisations of the backup.', value: (p) => p.resyncs },
  { name: 'xlha_protection_throttles', help: 'Times the guest was paused because the output buffer was full.', value: (p) => p.buffer?.throttles },
];

const REPLICA_FIGURES: Figure<ReplicaStatusJson>[] = [
  { name: 'xlha_replica_epoch', help: 'Epoch of the last checkpoint applied to the replica.', value: (r) => r.epoch },
  { name: 'xlha_replica_checkpoints_applied', help: 'Checkpoints applied to the replica.', value: (r) => r.checkpointsApplied },
  { name: 'xlha_replica_checkpoints_rejected', help: 'Checkpoints the replica rejected.', value: (r) => r.checkpointsRejected },
  { name: 'xlha_replica_primary_silent_ms', help: 'Milliseconds since the primary was last heard from.', value: (r) => r.primarySilentMs },
];

const PROTECTION_LABELS = ['domain', 'mode', 'peer'] as const;
const REPLICA_LABELS = ['domain', 'mode', 'primary'] as const;

/** The gauges of one registry, and how one status answer sets them. */
class StatusGauges {
  private readonly all: Gauge[] = [];
  private readonly info: Gauge<'host' | 'backend'>;
  private readonly protectionState: Gauge<(typeof PROTECTION_LABELS)[number] | 'state'>;
  private readonly protection: [Figure<ProtectionStatusJson>, Gauge<(typeof PROTECTION_LABELS)[number]>][];
  private readonly replicaState: Gauge<(typeof REPLICA_LABELS)[number] | 'state'>;
  private readonly replica: [Figure<ReplicaStatusJson>, Gauge<(typeof REPLICA_LABELS)[number]>][];
  private readonly rss: Gauge;
  private readonly uptime: Gauge;
  private readonly watchdogArmed: Gauge;

  constructor(private readonly register: Registry) {
    this.info = this.gauge('xlha_daemon_info', 'The daemon: its host name and backend (always 1).', ['host', 'backend']);
    this.rss = this.gauge('xlha_daemon_rss_mib', 'Resident memory of the daemon, MiB.');
    this.uptime = this.gauge('xlha_daemon_uptime_seconds', 'Seconds since the daemon started.');
    this.watchdogArmed = this.gauge('xlha_daemon_watchdog_armed', '1 while the hypervisor watchdog is armed, else 0.');
    this.protectionState = this.gauge('xlha_protection_state', 'Protection state: 1 for the state a protection is in, 0 for the others.', [...PROTECTION_LABELS, 'state']);
    this.protection = PROTECTION_FIGURES.map((f) => [f, this.gauge(f.name, f.help, PROTECTION_LABELS)]);
    this.replicaState = this.gauge('xlha_replica_state', 'Replica state: 1 for the state a replica is in, 0 for the others.', [...REPLICA_LABELS, 'state']);
    this.replica = REPLICA_FIGURES.map((f) => [f, this.gauge(f.name, f.help, REPLICA_LABELS)]);
  }

  private gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    const g = new Gauge<L>({ name, help, labelNames, registers: [this.register] });
    this.all.push(g as unknown as Gauge);
    return g;
  }

  /** Replaces every xlha_ series with what `s` says: protections that ended disappear. */
  set(s: DaemonStatusJson): void {
    for (const g of this.all) {
      g.reset();
      g.remove({}); // reset() gives a gauge without labels the value 0: a figure absent from status is left out
    }
    this.info.set({ host: s.host, backend: s.backend }, 1);
    setIf(this.rss, {}, s.daemon?.rssMiB);
    setIf(this.uptime, {}, s.daemon?.uptimeSecs);
    this.watchdogArmed.set(s.watchdog?.armed ? 1 : 0);
    for (const p of s.protections ?? []) {
      const labels = { domain: p.domain, mode: p.mode ?? '', peer: p.peer ?? '' };
      for (const state of withCurrent(PROTECTION_STATES, p.state)) this.protectionState.set({ ...labels, state }, state === p.state ? 1 : 0);
      for (const [f, g] of this.protection) setIf(g, labels, f.value(p));
    }
    for (const r of s.replicas ?? []) {
      if (r.domain === undefined) continue; // nothing to name it by until the HELLO
      const labels = { domain: r.domain, mode: r.mode ?? '', primary: r.primary ?? '' };
      for (const state of withCurrent(REPLICA_STATES, r.state)) this.replicaState.set({ ...labels, state }, state === r.state ? 1 : 0);
      for (const [f, g] of this.replica) setIf(g, labels, f.value(r));
    }
  }
}

function setIf<L extends string>(g: Gauge<L>, labels: Partial<Record<L, string>>, v: number | undefined): void {
  if (typeof v === 'number' && Number.isFinite(v)) g.set(labels, v);
}

/** The known states, and the current one too when a newer daemon says something else. */
function withCurrent(known: readonly string[], current: string): readonly string[] {
  return known.includes(current) ? known : [...known, current];
}

/**
 * Serves `GET /metrics` at `addr` (port 0: any free port); every other path is a 404.
 * `getStatus` is called once per scrape; if it throws, the scrape is a 500 naming the error.
 */
export async function startMetricsServer(addr: { host: string; port: number }, getStatus: () => DaemonStatusJson, log: Logger): Promise<MetricsServer> {
  const register = new Registry();
  // Note: prom-client's GC observer cannot be detached again; one per server is a few bytes.
  collectDefaultMetrics({ register });
  const gauges = new StatusGauges(register);

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end(`method ${req.method ?? '?'} not allowed: GET /metrics\n`);
      return;
    }
    void scrape().then(
      (body) => res.writeHead(200, { 'content-type': register.contentType }).end(req.method === 'HEAD' ? undefined : body),
      (err: Error) => {
        log.warn('metrics scrape failed', { error: err.message });
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`scrape failed: ${err.message}\n`);
      },
    );
  });
  const scrape = async (): Promise<string> => {
    gauges.set(getStatus());
    return register.metrics();
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot serve metrics on ${addr.host}:${addr.port}: ${err.code ?? err.message}`)));
    server.listen({ host: addr.host, port: addr.port }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info('metrics served', { url: `http://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}/metrics` });

  let closed: Promise<void> | null = null;
  return {
    port,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a scraper's keep-alive connection must not hold the stop
        register.clear();
      });
      return closed;
    },
  };
}
