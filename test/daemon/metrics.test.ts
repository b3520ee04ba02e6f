/**
 * The metrics endpoint: served on a free loopback port, it shows the figures of the status
 * answer it is given, with their labels, in the Prometheus text format.
 */
import t from 'tap';
import { startMetricsServer } from '../../src/daemon/metrics.js';
import type { DaemonStatusJson } from '../../src/daemon/status-types.js';
import { silentLogger } from '../../src/util/log.js';
import { recordingLogger } from '../helpers/log.js';

function fakeStatus(): DaemonStatusJson {
  return {
    host: 'alpha',
    backend: 'sim',
    daemon: { pid: 4242, uptimeSecs: 3600, threadPool: 16, rssMiB: 81.5, maxRssMiB: 90 },
    watchdog: { armed: true, timeoutSec: 30 },
    protections: [
      {
        role: 'primary',
        domain: 'vm1',
        domid: 7,
        mode: 'remus',
        state: 'protected',
        peer: 'beta:7720',
        epoch: 1234,
        committed: 1230,
        checkpointsPerSec: 39.8,
        pauseMsP50: 2.5,
        pauseMsP99: 11.25,
        lastAckAgeMs: 40,
        bytesPerSec: 1048576,
        bytesSent: 987654321,
        bufferedBytes: 4096,
        resyncs: 1,
        buffer: { limitBytes: 268435456, onFull: 'throttle', maxHeldBytes: 8192, throttles: 3, throttledMs: 120 },
      },
      // a protection still starting: most figures are not there yet
      { domain: 'vm2', mode: 'colo', state: 'starting', peer: 'gamma:7720' },
    ],
    replicas: [
      { role: 'backup', domain: 'vm9', mode: 'kemari', state: 'replicating', primary: 'delta', epoch: 77, checkpointsApplied: 76, checkpointsRejected: 1, primarySilentMs: 12 },
      { role: 'backup', state: 'handshake', epoch: 0, checkpointsApplied: 0, checkpointsRejected: 0 },
    ],
  };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (label values without escapes suffice here). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The one sample of `name` whose labels include `labels`. */
function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}

t.test('GET /metrics shows the figures of the status answer with their labels', async (t) => {
  let status = fakeStatus();
  let calls = 0;
  const m = await startMetricsServer({ host: '127.0.0.1', port: 0 }, () => (calls++, status), silentLogger());
  t.teardown(() => m.close());
  t.ok(m.port > 0, `listens on a port the system chose (${m.port})`);

  const res = await fetch(`http://127.0.0.1:${m.port}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4; charset=utf-8/, "prom-client's content type");
  const s = parse(await res.text());
  t.equal(calls, 1, 'one status read per scrape');

  const vm1 = { domain: 'vm1', mode: 'remus', peer: 'beta:7720' };
  t.equal(sample(s, 'xlha_protection_state', { ...vm1, state: 'protected' }), 1, 'the state it is in is 1');
  t.equal(sample(s, 'xlha_protection_state', { ...vm1, state: 'reconnecting' }), 0, 'the others are 0');
  t.equal(sample(s, 'xlha_protection_state', { ...vm1, state: 'waiting-for-peer' }), 0, 'waiting-for-peer is a known state');
  t.equal(sample(s, 'xlha_protection_epoch', vm1), 1234);
  t.equal(sample(s, 'xlha_protection_committed_checkpoints', vm1), 1230);
  t.equal(sample(s, 'xlha_protection_checkpoints_per_second', vm1), 39.8);
  t.equal(sample(s, 'xlha_protection_pause_p50_ms', vm1), 2.5);
  t.equal(sample(s, 'xlha_protection_pause_p99_ms', vm1), 11.25);
  t.equal(sample(s, 'xlha_protection_last_ack_age_seconds', vm1), 0.04, 'lastAckAgeMs in seconds');
  t.equal(sample(s, 'xlha_protection_bytes_per_second', vm1), 1048576);
  t.equal(sample(s, 'xlha_protection_bytes_sent', vm1), 987654321);
  t.equal(sample(s, 'xlha_protection_buffered_bytes', vm1), 4096);
  t.equal(sample(s, 'xlha_protection_resyncs', vm1), 1);
  t.equal(sample(s, 'xlha_protection_throttles', vm1), 3);

  const vm2 = { domain: 'vm2', mode: 'colo', peer: 'gamma:7720' };
  t.equal(sample(s, 'xlha_protection_state', { ...vm2, state: 'starting' }), 1);
  t.equal(sample(s, 'xlha_protection_epoch', vm2), undefined, 'a figure status does not give is left out, not 0');

  const vm9 = { domain: 'vm9', mode: 'kemari', primary: 'delta' };
  t.equal(sample(s, 'xlha_replica_state', { ...vm9, state: 'replicating' }), 1);
  t.equal(sample(s, 'xlha_replica_state', { ...vm9, state: 'active' }), 0);
  t.equal(sample(s, 'xlha_replica_epoch', vm9), 77);
  t.equal(sample(s, 'xlha_replica_checkpoints_applied', vm9), 76);
  t.equal(sample(s, 'xlha_replica_checkpoints_rejected', vm9), 1);
  t.equal(sample(s, 'xlha_replica_primary_silent_ms', vm9), 12);
  t.equal(s.filter((x) => x.name === 'xlha_replica_epoch').length, 1, 'a replica not yet named by its HELLO is left out');

  t.equal(sample(s, 'xlha_daemon_info', { host: 'alpha', backend: 'sim' }), 1);
  t.equal(sample(s, 'xlha_daemon_rss_mib'), 81.5);
  t.equal(sample(s, 'xlha_daemon_uptime_seconds'), 3600);
  t.equal(sample(s, 'xlha_daemon_watchdog_armed'), 1);
  t.ok(sample(s, 'process_resident_memory_bytes')! > 0, "prom-client's default process metrics are there too");
  t.ok(s.some((x) => x.name === 'nodejs_heap_size_used_bytes'), 'and its Node.js ones');

  // the next scrape reads status anew: a protection that ended disappears, a new state shows
  status = fakeStatus();
  status.protections = [{ ...status.protections[0]!, state: 'reconnecting', epoch: 1300 }];
  status.watchdog = { armed: false, off: true };
  const s2 = parse(await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text());
  t.equal(calls, 2);
  t.equal(sample(s2, 'xlha_protection_state', { ...vm1, state: 'reconnecting' }), 1);
  t.equal(sample(s2, 'xlha_protection_state', { ...vm1, state: 'protected' }), 0);
  t.equal(sample(s2, 'xlha_protection_epoch', vm1), 1300);
  t.equal(sample(s2, 'xlha_protection_state', { ...vm2, state: 'starting' }), undefined, 'vm2 is gone');
  t.equal(sample(s2, 'xlha_daemon_watchdog_armed'), 0);

  delete status.daemon;
  const s3 = parse(await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text());
  t.equal(sample(s3, 'xlha_daemon_rss_mib'), undefined, 'a daemon figure status does not give is left out too');
  t.equal(sample(s3, 'xlha_daemon_uptime_seconds'), undefined);
  t.equal(sample(s3, 'xlha_daemon_info', { host: 'alpha' }), 1);
});

t.test('a state unknown to this release is still shown as 1', async (t) => {
  const status = fakeStatus();
  status.protections = [{ domain: 'vm3', mode: 'llm', peer: 'b:1', state: 'hibernating' }];
  const m = await startMetricsServer({ host: '127.0.0.1', port: 0 }, () => status, silentLogger());
  t.teardown(() => m.close());
  const s = parse(await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text());
  t.equal(sample(s, 'xlha_protection_state', { domain: 'vm3', state: 'hibernating' }), 1);
  t.equal(sample(s, 'xlha_protection_state', { domain: 'vm3', state: 'protected' }), 0);
});

t.test('another path is a 404, another method a 405, and a failing status read a 500', async (t) => {
  const { log, lines } = recordingLogger();
  let fail = false;
  const m = await startMetricsServer(
    { host: '127.0.0.1', port: 0 },
    () => {
      if (fail) throw new Error('daemon is stopping');
      return fakeStatus();
    },
    log,
  );
  t.teardown(() => m.close());
  t.match(lines, [{ level: 'info', message: 'metrics served', url: `http://127.0.0.1:${m.port}/metrics` }], 'the log says where');
  const base = `http://127.0.0.1:${m.port}`;
  t.equal((await fetch(`${base}/`)).status, 404);
  t.equal((await fetch(`${base}/metrics/extra`)).status, 404);
  t.equal((await fetch(`${base}/metrics?name=x`)).status, 200, 'a query string is ignored');
  const post = await fetch(`${base}/metrics`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
  fail = true;
  const r = await fetch(`${base}/metrics`);
  t.equal(r.status, 500);
  t.match(await r.text(), /scrape failed: daemon is stopping/);
  t.match(lines, [{}, { level: 'warn', message: 'metrics scrape failed', error: 'daemon is stopping' }]);
});

t.test('close stops listening, even with a keep-alive connection open, and is idempotent', async (t) => {
  const m = await startMetricsServer({ host: '127.0.0.1', port: 0 }, fakeStatus, silentLogger());
  const res = await fetch(`http://127.0.0.1:${m.port}/metrics`, { headers: { connection: 'keep-alive' } });
  await res.text();
  await Promise.all([m.close(), m.close()]);
  await t.rejects(fetch(`http://127.0.0.1:${m.port}/metrics`), 'nothing listens any more');
});

t.test('a port already taken is a clear error', async (t) => {
  const m = await startMetricsServer({ host: '127.0.0.1', port: 0 }, fakeStatus, silentLogger());
  t.teardown(() => m.close());
  await t.rejects(startMetricsServer({ host: '127.0.0.1', port: m.port }, fakeStatus, silentLogger()), { message: `cannot serve metrics on 127.0.0.1:${m.port}: EADDRINUSE` });
});
