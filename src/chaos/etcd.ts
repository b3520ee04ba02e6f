/**
 * An etcd of our own on loopback (Debian's etcd-server), in a fresh data directory: the witness
 * of the chaos campaign and of the fencing tests. A missing etcd is an error that says how to
 * install it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../demo/hosts.js';
import { Witness } from '../witness/witness.js';

export interface LocalEtcd {
  endpoint: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startEtcd(): Promise<LocalEtcd> {
  const bin = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => fs.existsSync(p));
  if (!bin) throw new Error('etcd is not installed: apt-get install etcd-server (.ci/run does)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-etcd-'));
  const port = await freePort();
  const peer = await freePort();
  const endpoint = `127.0.0.1:${port}`;
  const proc = spawn(
    bin,
    [
      '--name', 'witness', '--data-dir', dir,
      '--listen-client-urls', `http://${endpoint}`, '--advertise-client-urls', `http://${endpoint}`,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `witness=http://127.0.0.1:${peer}`, '--log-level', 'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const w = new Witness([`http://${endpoint}`], 500);
  const deadline = Date.now() + 20_000;
  try {
    for (;;) {
      try {
        await w.owner('00000000-0000-0000-0000-000000000000');
        break;
      } catch {
        if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`etcd did not answer within 20 s: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  } finally {
    w.close();
  }
  return { endpoint, port, proc, stop };
}
