/**
 * Starts simulated Xen hosts as separate OS processes (each one `xl-ha daemon` on the sim
 * backend), so that killing one is a real host failure. Used by the demo, the benchmark and
 * the multi-process tests. Each starts as the shipped `xl-ha` does (its entry, its node
 * options), so that what they measure is the product as installed.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { controlRequest, type ControlRequest } from '../daemon/daemon.js';
import { pairLocally, PeerKeys } from '../security/peers.js';
import { VCPU_THREAD_NAME } from '../backend/sim/vcpu-ctl.js';

/** The shipped `xl-ha` command (package.json `bin`, install.sh's wrapper). */
export const XL_HA_ENTRY = fileURLToPath(new URL('../cli/xl-ha.cjs', import.meta.url));

/** The CLI's ES module, run directly: commands whose start-up does not matter (tests of the CLI). */
export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/**
 * The node options the shipped `xl-ha` starts with: those on its `#!/usr/bin/env -S node …`
 * line, their one definition (src/cli/xl-ha.cts says why each is there; install.sh reads the
 * same line for its wrapper). A `#!` line of another shape is an error rather than no options.
 */
export function shippedNodeFlags(entry = XL_HA_ENTRY): string[] {
  const first = fs.readFileSync(entry, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env(?: -S)? node((?: +\S+)*) *$/.exec(first);
  if (!m) throw new Error(`${entry}: expected a first line "#!/usr/bin/env -S node [options]", got ${JSON.stringify(first)}`);
  return m[1]!.split(' ').filter(Boolean);
}

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

/** A host is started as the shipped command starts: its entry (thread pool) and its node options. */
function spawnHost(args: string[], logPath: string, env: Record<string, string>) {
  const log = { file: logPath, append: true } as const;
  return execa(process.execPath, [...shippedNodeFlags(), XL_HA_ENTRY, ...args], { stdin: 'ignore', stdout: log, stderr: log, reject: false, cleanup: true, env });
}

/** CPU time of a host process since it started, ms: all of it, and its vCPU threads' part. */
export interface HostCpuMs {
  totalMs: number;
  /** The sim guests' vCPU threads (named {@link VCPU_THREAD_NAME}): the guest's work, not the host's. */
  vcpuMs: number;
}

/**
 * Reads a process's CPU time from /proc (Linux; null elsewhere or once it has gone). The total
 * is the process's (threads that ended included); the vCPU threads are found by name.
 */
export function hostCpu(pid: number): HostCpuMs | null {
  const ticksMs = 1000 / CLOCK_TICKS_PER_SEC;
  const utimeStime = (stat: string) => {
    // the fields after the command name, which is in parentheses and may hold spaces
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * ticksMs; // utime, stime: fields 14 and 15
  };
  try {
    const totalMs = utimeStime(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    let vcpuMs = 0;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== VCPU_THREAD_NAME) continue;
        vcpuMs += utimeStime(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      } catch {
        /* the thread ended meanwhile */
      }
    }
    return { totalMs, vcpuMs };
  } catch {
    return null;
  }
}

/** USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture node runs on. */
const CLOCK_TICKS_PER_SEC = 100;

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
