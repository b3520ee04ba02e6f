/**
 * `xl-ha top`: the frame for a status answer (pure), the refresh loop with a fake daemon, and
 * the command line.
 */
import t from 'tap';
import { CLEAR_SCREEN, bytes, duration, ms, renderTop, runTop } from '../../src/cli/top.js';
import { parseArgs, usage } from '../../src/cli/args.js';
import type { DaemonStatusJson } from '../../src/daemon/status-types.js';
import { DEFAULT_GLOBALS, usageError } from '../helpers/cli.js';

const MIB = 1048576;
/** 03:04:05 local time: the clock in the header. */
const NOW = new Date(2026, 0, 2, 3, 4, 5).getTime();

function status(): DaemonStatusJson {
  return {
    host: 'alpha',
    backend: 'sim',
    daemon: { pid: 1, uptimeSecs: 3725, rssMiB: 81.5 },
    watchdog: { armed: true, timeoutSec: 30 },
    protections: [
      { domain: 'vm1', domid: 7, mode: 'remus', state: 'protected', peer: 'beta:7720', epoch: 1234, checkpointsPerSec: 39.84, lastAckAgeMs: 40, pauseMsP99: 11.25, bytesPerSec: 1.2 * MIB, bufferedBytes: 4096 },
    ],
    replicas: [{ domain: 'vm9', mode: 'kemari', state: 'replicating', primary: 'delta', epoch: 77, checkpointsApplied: 76, checkpointsRejected: 1, primarySilentMs: 12 }],
  };
}

t.test('a frame shows the header, the protections and the replicas', async (t) => {
  t.equal(
    renderTop(status(), NOW, Infinity),
    [
      'xl-ha top 03:04:05  host alpha  backend sim  up 1h02m  watchdog armed 30s  rss 81.5MiB',
      '',
      'PROTECTIONS (1)',
      'DOMAIN  MODE   PEER       STATE      EPOCH  CKPT/S  ACK-AGE  PAUSE-P99  BYTES/S  BUFFERED',
      'vm1     remus  beta:7720  protected   1234    39.8     40ms       11ms   1.2MiB    4.0KiB',
      '',
      'REPLICAS (1)',
      'DOMAIN  MODE    PRIMARY  STATE        EPOCH  APPLIED  REJECTED  SILENT',
      'vm9     kemari  delta    replicating     77       76         1    12ms',
      '',
    ].join('\n'),
  );
});

t.test('figures the status does not give are shown as -', async (t) => {
  const s: DaemonStatusJson = { host: 'alpha', backend: 'xen', protections: [{ domain: 'vm2', state: 'starting' }], replicas: [{ state: 'handshake' }] };
  const lines = renderTop(s, NOW, Infinity).split('\n');
  t.equal(lines[0], 'xl-ha top 03:04:05  host alpha  backend xen  up -  watchdog -', 'no daemon or watchdog figures');
  t.equal(lines[4], 'vm2     -     -     starting      -       -        -          -        -         -');
  t.equal(lines[7], 'DOMAIN  MODE  PRIMARY  STATE      EPOCH  APPLIED  REJECTED  SILENT');
  t.equal(lines[8], '-       -     -        handshake      -        -         -       -', 'a replica before its HELLO');
});

t.test('no protection and no replica say so', async (t) => {
  const frame = renderTop({ host: 'a', backend: 'sim', protections: [], replicas: [] }, NOW, 80);
  t.match(frame, /PROTECTIONS \(0\)\n  none\n\nREPLICAS \(0\)\n  none\n$/);
});

t.test('a narrow terminal drops trailing columns, then cuts lines, and keeps the first four', async (t) => {
  for (const width of [200, 90, 60, 40, 20]) {
    const lines = renderTop(status(), NOW, width).split('\n');
    for (const l of lines) t.ok(l.length <= width, `width ${width}: ${JSON.stringify(l)}`);
    const head = lines[3]!;
    t.match(head, /^DOMAIN {2}MODE {3}PEER/, `width ${width}: the first columns stay`);
    if (width >= 90) t.match(head, /BUFFERED$/, `width ${width}: every column fits`);
  }
  const at60 = renderTop(status(), NOW, 60).split('\n');
  t.equal(at60[3], 'DOMAIN  MODE   PEER       STATE      EPOCH  CKPT/S  ACK-AGE');
  t.equal(at60[4], 'vm1     remus  beta:7720  protected   1234    39.8     40ms');
  t.equal(at60[0], 'xl-ha top 03:04:05  host alpha  backend sim  up 1h02m  watch', 'the header is cut');
});

t.test('a domain with something to say gets a note under the tables', async (t) => {
  const s = status();
  s.protections.push(
    { domain: 'vm2', state: 'starting', precopy: { sentBytes: 58 * MIB, totalBytes: 128 * MIB, bytesPerSec: 12.3 * MIB, etaSec: 6 } },
    { domain: 'vm3', state: 'waiting-for-peer', waiting: { attempts: 3, lastError: 'connect ECONNREFUSED', nextAttemptInMs: 2000 } },
    { domain: 'vm4', state: 'reconnecting', reconnect: { attempts: 1, nextAttemptInMs: 500, unprotectedForMs: 1500 } },
    { domain: 'vm5', state: 'failed', error: 'backup refused protection' },
  );
  s.replicas.push({ domain: 'vm8', state: 'halted', waitingForWitness: 'etcd unreachable' });
  s.unprotected = [{ domain: 'vm6', at: '2026-01-02T03:00:00.000Z', reason: 'the backup beta is gone' }];
  const notes = renderTop(s, NOW, Infinity).split('\n\n').at(-1)!;
  t.equal(
    notes,
    [
      'vm2: precopy 45% 58.0MiB/128.0MiB at 12.3MiB/s, ETA 6s',
      'vm3: waiting for the peer: attempt 3, next in 2.0s: connect ECONNREFUSED',
      'vm4: reconnecting: attempt 1, next in 500ms, unprotected for 1.5s',
      'vm5: backup refused protection',
      'vm8: waiting for the witness: etcd unreachable',
      'vm6: UNPROTECTED since 2026-01-02T03:00:00.000Z: the backup beta is gone',
      '',
    ].join('\n'),
  );
});

t.test('units are compact and say what they are', async (t) => {
  t.equal(ms(0.25), '0.3ms');
  t.equal(ms(40), '40ms');
  t.equal(ms(1500), '1.5s');
  t.equal(ms(200_000), '3m20s');
  t.equal(ms(undefined), '-');
  t.equal(duration(59), '59s');
  t.equal(duration(3725), '1h02m');
  t.equal(duration(90000), '1d01h');
  t.equal(bytes(512), '512B');
  t.equal(bytes(1536), '1.5KiB');
  t.equal(bytes(3 * 1024 * MIB), '3.0GiB');
  t.equal(bytes(Number.NaN), '-');
});

// --- the loop ---------------------------------------------------------------

function sink(isTTY: boolean, columns?: number) {
  const chunks: string[] = [];
  return { chunks, out: { isTTY, ...(columns !== undefined ? { columns } : {}), write: (s: string) => chunks.push(s) } };
}

t.test('without a terminal, frames follow each other; a daemon that does not answer is shown and asked again', async (t) => {
  const { chunks, out } = sink(false);
  let calls = 0;
  const fetchStatus = async () => {
    if (++calls === 1) throw new Error('no xl-ha daemon is running on control socket /run/xl-ha/control.sock');
    return status();
  };
  const t0 = performance.now();
  await runTop(fetchStatus, { intervalMs: 50, iterations: 2, out });
  const took = performance.now() - t0;
  t.equal(calls, 2, 'asked twice');
  t.equal(chunks.length, 2, 'two frames');
  t.match(chunks[0], /^xl-ha top \d\d:\d\d:\d\d\n\nerror: no xl-ha daemon is running on control socket \/run\/xl-ha\/control\.sock\n\(asking again every 50ms\)\n$/);
  t.match(chunks[1], /^\nxl-ha top \d\d:\d\d:\d\d {2}host alpha/, 'a blank line between two frames');
  t.match(chunks[1], /vm1 {5}remus {2}beta:7720 {2}protected/);
  t.notOk(chunks.join('').includes('\x1b'), 'no escape sequence');
  t.ok(took >= 45 && took < 1000, `one interval between the two frames, none after the last (${Math.round(took)} ms)`);
});

t.test('on a terminal, each frame clears the screen first and fits its width', async (t) => {
  const { chunks, out } = sink(true, 50);
  await runTop(async () => status(), { intervalMs: 10, iterations: 3, out });
  t.equal(chunks.length, 3);
  for (const c of chunks) {
    t.ok(c.startsWith(CLEAR_SCREEN), 'cursor home, clear the screen');
    for (const l of c.slice(CLEAR_SCREEN.length).split('\n')) t.ok(l.length <= 50, JSON.stringify(l));
  }
});

t.test('Ctrl-C or the signal ends the loop, and its SIGINT handler goes with it', async (t) => {
  const before = process.listenerCount('SIGINT');
  const { chunks, out } = sink(false);
  const run = runTop(async () => status(), { intervalMs: 60_000, out });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(process.listenerCount('SIGINT'), before + 1, 'Ctrl-C is caught while it runs');
  process.emit('SIGINT');
  await run;
  t.equal(chunks.length, 1, 'one frame, then it stopped waiting');
  t.equal(process.listenerCount('SIGINT'), before, 'the handler is removed');

  const ac = new AbortController();
  const run2 = runTop(async () => status(), { intervalMs: 60_000, out, signal: ac.signal });
  await new Promise((r) => setTimeout(r, 20));
  ac.abort();
  await run2;
  t.equal(chunks.length, 2);
});

// --- the command line -------------------------------------------------------

const GLOBALS = DEFAULT_GLOBALS;

t.test('top refreshes every second until Ctrl-C by default', async (t) => {
  t.same(parseArgs(['top']), { cmd: 'top', intervalMs: 1000, globals: GLOBALS });
});

t.test('top -d takes seconds with a fraction, -n a number of refreshes', async (t) => {
  for (const [argv, intervalMs] of [
    [['top', '-d', '0.5'], 500],
    [['top', '-d.25'], 250],
    [['top', '--delay=2'], 2000],
    [['top', '-d', '60'], 60_000],
    [['top', '-d', '0.1'], 100],
  ] as const) {
    t.equal((parseArgs(argv) as { intervalMs: number }).intervalMs, intervalMs, argv.join(' '));
  }
  t.same(parseArgs(['top', '-n', '3', '-d', '5']), { cmd: 'top', intervalMs: 5000, iterations: 3, globals: GLOBALS });
  t.same(parseArgs(['top', '--iterations=1']), { cmd: 'top', intervalMs: 1000, iterations: 1, globals: GLOBALS });
});

const ERRORS: { argv: string[]; message: string; argument?: string }[] = [
  { argv: ['top', '-d', '0'], message: 'top: option -d expects a number of seconds from 0.1 to 60, got "0"', argument: '-d' },
  { argv: ['top', '-d', '0.05'], message: 'top: option -d expects a number of seconds from 0.1 to 60, got "0.05"' },
  { argv: ['top', '-d', '61'], message: 'top: option -d expects a number of seconds from 0.1 to 60, got "61"' },
  { argv: ['top', '--delay', 'soon'], message: 'top: option --delay expects a number of seconds from 0.1 to 60, got "soon"', argument: '--delay' },
  { argv: ['top', '-d', '-1'], message: 'top: option -d expects a number of seconds from 0.1 to 60, got "-1"' },
  { argv: ['top', '-d', '1e1'], message: 'top: option -d expects a number of seconds from 0.1 to 60, got "1e1"' },
  { argv: ['top', '-d'], message: 'top: option -d expects a value (SEC)' },
  { argv: ['top', '-n', '0'], message: 'top: option -n expects an integer from 1 to 1000000 (refreshes), got "0"', argument: '-n' },
  { argv: ['top', '-n', 'two'], message: 'top: option -n expects a positive integer (refreshes), got "two"' },
  { argv: ['top', '-n', '1.5'], message: 'top: option -n expects a positive integer (refreshes), got "1.5"' },
  { argv: ['top', 'vm1'], message: 'top: unexpected extra argument "vm1" (usage: xl-ha top [-d SEC] [-n COUNT])' },
  { argv: ['top', '--json'], message: 'top: unknown option --json' },
];

for (const c of ERRORS) {
  t.test(`"xl-ha ${c.argv.join(' ')}" is a usage error naming the bad argument`, async (t) => {
    const err = usageError(c.argv);
    t.equal(err.message, c.message);
    t.equal(err.command, 'top');
    if (c.argument !== undefined) t.equal(err.argument, c.argument);
  });
}

t.test('help for top shows its synopsis and options, and the general help lists it', async (t) => {
  const text = usage('top');
  t.match(text, /^Usage: xl-ha \[global options\] top \[-d SEC\] \[-n COUNT\]/);
  t.match(text, /-d, --delay SEC +Seconds between refreshes \(default 1, 0\.1 to 60/);
  t.match(text, /-n, --iterations COUNT +Exit after COUNT refreshes/);
  t.match(usage(), /^ {2}top +Show protections and replicas live/m);
  t.same(parseArgs(['top', '-h']), { cmd: 'help', topic: 'top', globals: GLOBALS });
});
