/**
 * An etcd of the test's own on loopback (Debian's etcd-server; .ci/run installs it), in a
 * fresh data directory, stopped at the end of the test. A missing etcd is a failure, not a skip.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Test } from 'tap';
import { freePort } from '../../src/demo/hosts.js';
import { Witness } from '../../src/witness/witness.js';

export interface TestEtcd {
  endpoint: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startEtcd(t: Test): Promise<TestEtcd> {
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
  t.teardown(stop);
  const w = new Witness([`http://${endpoint}`], 500);
  const deadline = Date.now() + 20_000;
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
  w.close();
  return { endpoint, port, proc, stop };
}
