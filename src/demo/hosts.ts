/**
 * Starts simulated Xen hosts as separate OS processes (each one `xl-ha daemon` on the sim
 * backend), so that killing one is a real host failure. Used by the demo, the benchmark and
 * the multi-process tests.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { controlRequest, type ControlRequest } from '../daemon/daemon.js';
import { pairLocally, PeerKeys } from '../security/peers.js';

/**
 * A young generation large enough that scavenges stay rare and short: they would otherwise
 * land inside guest pauses (measured: pause p99 4.6 ms → 1.1 ms at 10 ms epochs).
 */
export const HOST_NODE_FLAGS = ['--max-semi-space-size=64'];

export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function spawnHost(args: string[], logPath: string, env: Record<string, string>) {
  const log = { file: logPath, append: true } as const;
  return execa(process.execPath, [...HOST_NODE_FLAGS, CLI, ...args], { stdin: 'ignore', stdout: log, stderr: log, reject: false, cleanup: true, env });
}

export class SimHostProcess {
  readonly control: string;
  readonly logPath: string;
  /** The host's pairings (`--keys`): pair hosts with {@link pairSimHosts} before they replicate. */
  readonly keys: PeerKeys;
  proc!: ReturnType<typeof spawnHost>;
  exited = false;
  /** Options added after the command (e.g. `--witness`). */
  extraArgs: string[] = [];

  constructor(readonly name: string, readonly dir: string, readonly listenPort?: number, readonly env: Record<string, string> = {}) {
    this.control = path.join(dir, `${name}.sock`);
    this.logPath = path.join(dir, `${name}.log`);
    this.keys = new PeerKeys(path.join(dir, `${name}-peers`), name);
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    const args = ['--backend', 'sim', '--control', this.control, '--keys', this.keys.dir];
    if (this.listenPort) args.push('receive', '-l', `127.0.0.1:${this.listenPort}`);
    else args.push('daemon');
    args.push('--host-name', this.name, '--state-dir', path.join(this.dir, this.name), ...this.extraArgs);
    this.exited = false;
    const proc = spawnHost(args, this.logPath, this.env);
    this.proc = proc;
    void proc.then(() => {
      if (this.proc === proc) this.exited = true;
    });
    const deadline = Date.now() + 15000;
    for (;;) {
      try {
        const r = await controlRequest(this.control, { cmd: 'ping' }, 2000);
        if (r.ok) return;
      } catch {
        /* not up yet */
      }
      if (this.exited) throw new Error(`host ${this.name} exited during start-up; see ${this.logPath}:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`host ${this.name} did not start within 15 s; see ${this.logPath}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async request<T = unknown>(req: ControlRequest, timeoutMs = 60000): Promise<T> {
    const r = await controlRequest(this.control, req, timeoutMs);
    if (!r.ok) throw new Error(`${this.name}: ${r.error}`);
    return r.result as T;
  }

  /** A host failure: SIGKILL, nothing gets a chance to run. */
  kill(): void {
    this.proc.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.proc;
    clearTimeout(t);
  }

  tail(lines = 30): string {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

/** Pairs two sim hosts as `xl-ha keygen` and `xl-ha pair` would, each knowing where the other listens. */
export function pairSimHosts(a: SimHostProcess, b: SimHostProcess, allow?: string[]): void {
  const at = (h: SimHostProcess) => (h.listenPort ? { host: '127.0.0.1', port: h.listenPort } : undefined);
  const aAddress = at(a);
  const bAddress = at(b);
  pairLocally(a.keys, b.keys, { ...(aAddress ? { aAddress } : {}), ...(bAddress ? { bAddress } : {}), ...(allow ? { allow } : {}) });
}

export function kvCfg(o: { name: string; memoryMiB: number; servicePort: number; dirtyMiBPerSec?: number; workload?: string; extra?: string }): string {
  return [
    `name = "${o.name}"`,
    `memory = ${o.memoryMiB}`,
    `vcpus = 1`,
    `sim_workload = "${o.workload ?? 'kv'}"`,
    `sim_dirty_mibps = ${o.dirtyMiBPerSec ?? 0}`,
    `sim_service = "127.0.0.1:${o.servicePort}"`,
    o.extra ?? '',
  ].join('\n');
}
