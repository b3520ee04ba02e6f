/**
 * Write throughput and latency through the NBD server, against writing the raw image directly.
 *
 *   node dist/test/disk/nbd-bench.js [--runs 3] [--seconds 5] [--out bench-results/nbd-write-path.json]
 *
 * fio (Debian's, with its libnbd `nbd` engine) issues 4 KiB writes, sequential and random:
 * - `direct`: fio's psync engine on the image file (buffered, as the server writes it);
 * - `nbd-qd1` / `nbd-qd8`: fio's nbd engine over the unix socket, 1 or 8 requests in flight,
 *   with the tap recording and drained every 100 ms (an epoch's writes handed over, as the
 *   disk device does at each checkpoint; nothing is sent anywhere);
 * - `nbd-qd1-idle`: the same without recording (the server alone).
 * Not a test: it needs an idle machine to mean much; the figures and the load it ran under go
 * to docs/disk-replication.md.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { NbdDisk } from '../../src/disk/nbd-disk.js';
import { NbdServer } from '../../src/disk/nbd/server.js';
import { silentLogger } from '../../src/util/log.js';

const run = promisify(execFile);
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const RUNS = Number(arg('runs', '3'));
const SECONDS = Number(arg('seconds', '5'));
const OUT = arg('out', '');
const SIZE = 256 << 20;

interface Result {
  iops: number;
  mibPerSec: number;
  latP50Us: number;
  latP99Us: number;
}

async function fio(args: string[]): Promise<Result> {
  const { stdout } = await run('fio', ['--output-format=json', `--runtime=${SECONDS}`, '--time_based', '--bs=4k', `--size=${SIZE}`, '--randrepeat=1', '--name=w', ...args], { maxBuffer: 64 << 20 });
  // the nbd engine prints a line of its own before the JSON
  const j = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { write: { iops: number; bw_bytes: number; clat_ns: { percentile: Record<string, number> } } }[] };
  const w = j.jobs[0]!.write;
  return { iops: Math.round(w.iops), mibPerSec: +(w.bw_bytes / (1 << 20)).toFixed(1), latP50Us: Math.round(w.clat_ns.percentile['50.000000']! / 1000), latP99Us: Math.round(w.clat_ns.percentile['99.000000']! / 1000) };
}

function spread(rs: Result[]): Record<string, unknown> {
  const f = (k: keyof Result) => {
    const v = rs.map((r) => r[k]).sort((a, b) => a - b);
    return { median: v[Math.floor(v.length / 2)], min: v[0], max: v.at(-1) };
  };
  return { iops: f('iops'), mibPerSec: f('mibPerSec'), latP50Us: f('latP50Us'), latP99Us: f('latP99Us'), runs: rs };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-nbd-bench-'));
  const image = path.join(dir, 'vm.img');
  fs.writeFileSync(image, '');
  fs.truncateSync(image, SIZE);
  const log = silentLogger();
  const disk = new NbdDisk({ path: image, name: 'vm', log });
  const server = new NbdServer({ exports: [disk], log });
  const socket = path.join(dir, 'nbd.sock');
  await server.listenUnix(socket);
  const uri = `nbd+unix:///vm?socket=${socket}`;
  let drained = 0;
  let drainedWrites = 0;
  const cases: Record<string, { args: string[]; record: boolean }> = {
    direct: { args: ['--ioengine=psync', `--filename=${image}`], record: false },
    'nbd-qd1': { args: ['--ioengine=nbd', `--uri=${uri}`, '--iodepth=1'], record: true },
    'nbd-qd8': { args: ['--ioengine=nbd', `--uri=${uri}`, '--iodepth=8'], record: true },
    'nbd-qd1-idle': { args: ['--ioengine=nbd', `--uri=${uri}`, '--iodepth=1'], record: false },
  };
  const results: Record<string, Record<string, unknown>> = {};
  for (const rw of ['write', 'randwrite']) {
    for (const [name, c] of Object.entries(cases)) {
      const rs: Result[] = [];
      for (let i = 0; i < RUNS; i++) {
        let timer: NodeJS.Timeout | null = null;
        if (c.record) {
          disk.start();
          timer = setInterval(() => {
            drainedWrites += disk.drain().length;
            drained++;
            disk.resumed();
          }, 100);
        }
        try {
          rs.push(await fio([`--rw=${rw}`, ...c.args]));
        } finally {
          if (timer) clearInterval(timer);
          disk.stop();
        }
      }
      results[`${rw} ${name}`] = spread(rs);
      const m = results[`${rw} ${name}`]!;
      console.log(`${rw.padEnd(9)} ${name.padEnd(13)} iops ${JSON.stringify(m['iops'])} MiB/s ${JSON.stringify(m['mibPerSec'])} p50 µs ${JSON.stringify(m['latP50Us'])} p99 µs ${JSON.stringify(m['latP99Us'])}`);
    }
  }
  const report = {
    what: '4 KiB writes for ' + SECONDS + ' s per run, fio ' + (await run('fio', ['--version'])).stdout.trim(),
    runs: RUNS,
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg().map((l) => +l.toFixed(2)), kernel: os.release(), node: process.version },
    drains: drained,
    drainedWrites,
    results,
  };
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(report, null, 2) + '\n');
  console.log(`load average at the end: ${report.host.loadavg.join(' ')}`);
  await server.close();
  disk.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
