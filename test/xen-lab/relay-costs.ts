/**
 * Lab diagnostic (scenario relay-costs, run only when named in XENLAB_SCENARIOS): what each
 * step of the daemons' relay costs in the lab's dom0, in CPU (user/system, this process) and
 * wall time, per 1.8 MB checkpoint-sized transfer. Prints one JSON line.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { crc32 } from 'node:zlib';
import { slabReadAccepted, slabReadFd } from '../../src/util/slab-reads.js';

const SIZE = 1_800_000;
const N = 30;
const data = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i += 4) data.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, i);

interface Cost {
  wallMs: number;
  userMs: number;
  sysMs: number;
}

async function measure(n: number, fn: () => Promise<void> | void): Promise<Cost> {
  await fn(); // warm-up
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { wallMs: r(wall / n), userMs: r(c.user / 1000 / n), sysMs: r(c.system / 1000 / n) };
}

/** Sends SIZE bytes per call from `w` and waits until `got` has counted them at the other end. */
function transfer(w: net.Socket, counter: { bytes: number; wake: (() => void) | null }): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      const target = counter.bytes + SIZE;
      counter.wake = () => {
        if (counter.bytes >= target) {
          counter.wake = null;
          resolve();
        }
      };
      w.write(data);
    });
}

/** One hop through the pipe (rfd, wfd): written from a socket, read in 1 MiB reads; closes both ends. */
async function pipeHop(rfd: number, wfd: number): Promise<Cost> {
  const counter = { bytes: 0, wake: null as (() => void) | null };
  const reader = slabReadFd(rfd, (c) => {
    counter.bytes += c.length;
    counter.wake?.();
  });
  const w = new net.Socket({ fd: wfd, readable: false, writable: true });
  try {
    return await measure(N, transfer(w, counter));
  } finally {
    w.destroy();
    reader.destroy();
  }
}

async function tcpPair(large: boolean, unixPath?: string): Promise<{ w: net.Socket; counter: { bytes: number; wake: (() => void) | null }; close: () => void }> {
  const counter = { bytes: 0, wake: null as (() => void) | null };
  const onData = (c: Buffer) => {
    counter.bytes += c.length;
    counter.wake?.();
  };
  let rsock: net.Socket | null = null;
  const server = net.createServer({ pauseOnConnect: true }, (s) => {
    if (large) rsock = slabReadAccepted(s, onData);
    if (!rsock) {
      rsock = s;
      s.on('data', onData);
      s.resume();
    }
  });
  await new Promise<void>((r) => (unixPath ? server.listen(unixPath, r) : server.listen(0, '127.0.0.1', r)));
  const w = unixPath ? net.connect(unixPath) : net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  w.setNoDelay(true);
  await new Promise((r) => w.once('connect', r));
  return {
    w,
    counter,
    close: () => {
      w.destroy();
      (rsock as net.Socket | null)?.destroy();
      server.close();
    },
  };
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = { bytesPerTransfer: SIZE, cpus: os.cpus().length };
  out.clockCallUs = await measure(1, () => {
    for (let i = 0; i < 10000; i++) performance.now();
  }).then((c) => ({ wallUs: c.wallMs / 10, userUs: c.userMs / 10, sysUs: c.sysMs / 10 }));
  out.crc32 = await measure(N, () => void crc32(data));
  out.copy = await measure(N, () => void Buffer.from(data));
  out.alloc1MiB = await measure(N * 4, () => void Buffer.allocUnsafeSlow(1 << 20).fill(1, 0, 1));

  // a pipe, both ends in this process (write + read: one hop of the relay)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-'));
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wfd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  try {
    fs.writeFileSync('/proc/sys/fs/pipe-max-size', String(8 << 20));
  } catch {
    /* not root */
  }
  out.pipeHop = await pipeHop(rfd, wfd);
  // the pipe the daemons use (the shim's: grown to 8 MiB, as libxenguest's and libxl's are)
  try {
    const { Shim } = await import('../../src/backend/xen/shim.js');
    out.pipeHop8MiB = await pipeHop(...Shim.load().pipe());
  } catch (err) {
    out.pipeHop8MiB = { error: (err as Error).message };
  }

  for (const [name, large, unix] of [
    ['tcpHop64k', false, undefined],
    ['tcpHop1MiB', true, undefined],
    ['unixHop1MiB', true, path.join(dir, 'sock')],
  ] as const) {
    const p = await tcpPair(large, unix);
    out[name] = await measure(N, transfer(p.w, p.counter));
    p.close();
  }
  fs.rmSync(dir, { recursive: true, force: true });
  // start-up: node alone, and an xl-ha client command (it loads only what clients need)
  const cli = path.join(path.dirname(new URL(import.meta.url).pathname), '../../src/cli/main.js');
  const startup = (args: string[]) => {
    const t0 = performance.now();
    spawnSync(process.execPath, args, { stdio: 'ignore' });
    return Math.round(performance.now() - t0);
  };
  out.startupMs = { node: startup(['-e', '0']), xlhaClient: startup([cli, '--control', path.join(dir, 'none.sock'), 'status']) };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err: Error) => {
  process.stdout.write(JSON.stringify({ error: err.message }) + '\n');
  process.exit(1);
});
