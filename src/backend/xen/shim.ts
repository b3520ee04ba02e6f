/**
 * koffi binding of libxl-shim (libxl-shim/xlha.h). Blocking calls (suspend, resume, the save
 * and restore loops) run off the event loop through koffi's `.async()`; the save loop's events
 * come back through a registered koffi callback that only queues them.
 *
 * The library is looked up, in order, at $XLHA_SHIM, next to this checkout
 * (libxl-shim/libxlha.so) and at /usr/lib/xl-ha/libxlha.so.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import koffi, { type LibraryHandle, type TypeObject } from 'koffi';

type Fn = ReturnType<LibraryHandle['func']>;

export const XLHA_EV = { SUSPEND: 1, POSTCOPY: 2, CHECKPOINT: 3, WAIT_CHECKPOINT: 4, DONE: 5 } as const;
export const XLHA_STREAM = { PLAIN: 0, REMUS: 1, COLO: 2 } as const;
export const XLHA_DOM = { RUNNING: 0x01, BLOCKED: 0x02, PAUSED: 0x04, SHUTDOWN: 0x08, DYING: 0x10, PV: 0x20, HVM: 0x40 } as const;
export const XLHA_PLUG = { BUFFER: 0, RELEASE_ONE: 1, RELEASE_ALL: 2, LIMIT: 3 } as const;

export interface ShimDomInfo {
  domid: number;
  name: string;
  uuid: number[];
  memory_kb: number | bigint;
  max_memory_kb: number | bigint;
  vcpus: number;
  flags: number;
}

export class ShimError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}


export function shimCandidates(): string[] {
  const here = fileURLToPath(new URL('../../../../libxl-shim/libxlha.so', import.meta.url));
  return [process.env.XLHA_SHIM, here, '/usr/lib/xl-ha/libxlha.so'].filter((p): p is string => !!p);
}

/** glibc's mallopt parameters (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
let mallocTuned: boolean | null = null;

/**
 * Keeps freed memory in the process for reuse instead of handing it back to the kernel.
 * The relay takes a fresh 1 MiB read buffer every 1 MiB of stream; with glibc's defaults many
 * of them come from mmap and go back on free, so every page of every checkpoint is faulted in
 * and zeroed again. In the lab's PV dom0 under emulation a fault costs ~0.13 ms, and the daemons
 * took 276 of them per checkpoint; with this, 18. Buffers up to 32 MiB then come from the heap,
 * which keeps up to 256 MiB free before trimming. Best effort: returns whether glibc took it.
 */
export function keepFreedMemory(): boolean {
  if (mallocTuned !== null) return mallocTuned;
  try {
    const libc = koffi.load('libc.so.6');
    const mallopt = libc.func('int mallopt(int param, int value)');
    mallocTuned = (mallopt(M_MMAP_THRESHOLD, 32 << 20) as number) === 1 && (mallopt(M_TRIM_THRESHOLD, 256 << 20) as number) === 1;
  } catch {
    mallocTuned = false; // not glibc
  }
  return mallocTuned;
}

/** The loaded library: one per process. */
export class Shim {
  private static instance: Shim | null = null;
  readonly path: string;
  readonly fn: Record<string, Fn>;
  readonly eventProto: TypeObject;

  private constructor(path: string) {
    this.path = path;
    const lib = koffi.load(path);
    koffi.opaque('xlha_ctx');
    koffi.opaque('xlha_save');
    koffi.struct('xlha_dominfo', {
      domid: 'uint32_t',
      name: koffi.array('char', 64, 'String'),
      uuid: koffi.array('uint8_t', 16, 'Array'),
      memory_kb: 'uint64_t',
      max_memory_kb: 'uint64_t',
      vcpus: 'uint32_t',
      flags: 'uint32_t',
    });
    this.eventProto = koffi.proto('void xlha_event_fn(void *opaque, int event)');
    const f = (decl: string) => lib.func(decl);
    this.fn = {
      version: f('int xlha_version(void)'),
      open: f('int xlha_open(_Out_ xlha_ctx **out)'),
      close: f('void xlha_close(xlha_ctx *ctx)'),
      lastError: f('const char *xlha_last_error(xlha_ctx *ctx)'),
      free: f('void xlha_free(void *p)'),
      list: f('int xlha_domain_list(xlha_ctx *ctx, _Out_ xlha_dominfo *out, int max)'),
      info: f('int xlha_domain_info(xlha_ctx *ctx, uint32_t domid, _Out_ xlha_dominfo *out)'),
      byName: f('int xlha_domain_by_name(xlha_ctx *ctx, const char *name)'),
      pause: f('int xlha_domain_pause(xlha_ctx *ctx, uint32_t domid)'),
      unpause: f('int xlha_domain_unpause(xlha_ctx *ctx, uint32_t domid)'),
      destroy: f('int xlha_domain_destroy(xlha_ctx *ctx, uint32_t domid)'),
      suspend: f('int xlha_domain_suspend(xlha_ctx *ctx, uint32_t domid)'),
      watchdog: f('int xlha_watchdog(xlha_ctx *ctx, uint32_t id, uint32_t timeout)'),
      resume: f('int xlha_domain_resume(xlha_ctx *ctx, uint32_t domid, int fast)'),
      rename: f('int xlha_domain_rename(xlha_ctx *ctx, uint32_t domid, const char *old_name, const char *new_name)'),
      configJson: f('void *xlha_domain_config_json(xlha_ctx *ctx, uint32_t domid)'),
      saveNew: f('int xlha_save_new(xlha_ctx *ctx, uint32_t domid, int io_fd, int stream_type, xlha_event_fn *fn, void *opaque, _Out_ xlha_save **out)'),
      saveRun: f('int xlha_save_run(xlha_save *s)'),
      saveReply: f('int xlha_save_reply(xlha_save *s, int value)'),
      saveAbort: f('void xlha_save_abort(xlha_save *s)'),
      saveFree: f('void xlha_save_free(xlha_save *s)'),
      restoreRun: f('int xlha_restore_run(xlha_ctx *ctx, const char *config_json, int io_fd, int stream_type)'),
      pipe: f('int xlha_pipe(_Out_ int *fds)'),
      pipeWaitDrained: f('int xlha_pipe_wait_drained(int fd, int timeout_ms)'),
      watchDomains: f('int xlha_watch_domains(xlha_ctx *ctx)'),
      watchWait: f('int xlha_watch_wait(xlha_ctx *ctx, int timeout_ms, _Out_ uint8_t *path, int path_len)'),
      plug: f('int xlha_plug(const char *ifname, int action, uint32_t limit, _Out_ uint8_t *err, int errlen)'),
      qdiscBacklog: f('long long xlha_qdisc_backlog(const char *ifname, _Out_ uint8_t *err, int errlen)'),
      qdiscEnqueued: f('long long xlha_qdisc_enqueued(const char *ifname, _Out_ uint8_t *err, int errlen)'),
    };
  }

  /** Drives the plug qdisc at the root of `ifname` (rtnetlink; no Xen context needed). */
  plug(ifname: string, action: number, limit = 0): void {
    const err = Buffer.alloc(256);
    const rc = this.fn.plug!(ifname, action, limit, err, err.length) as number;
    if (rc < 0) throw new ShimError(-rc, cstr(err));
  }

  /** Bytes queued in the root qdisc of `ifname`. */
  qdiscBacklog(ifname: string): number {
    const err = Buffer.alloc(256);
    const rc = Number(this.fn.qdiscBacklog!(ifname, err, err.length));
    if (rc < 0) throw new ShimError(-rc, cstr(err));
    return rc;
  }

  /** Bytes that ever entered the root qdisc of `ifname` and were not dropped. */
  qdiscEnqueued(ifname: string): number {
    const err = Buffer.alloc(256);
    const rc = Number(this.fn.qdiscEnqueued!(ifname, err, err.length));
    if (rc < 0) throw new ShimError(-rc, cstr(err));
    return rc;
  }

  /** Loads the shim; throws a clear error naming where it looked. */
  static load(): Shim {
    if (Shim.instance) return Shim.instance;
    const tried: string[] = [];
    for (const p of shimCandidates()) {
      if (!fs.existsSync(p)) {
        tried.push(`${p} (missing)`);
        continue;
      }
      try {
        Shim.instance = new Shim(p);
        return Shim.instance;
      } catch (err) {
        tried.push(`${p} (${(err as Error).message})`);
      }
    }
    throw new Error(`libxl-shim (libxlha.so) cannot be loaded: build it with "make -C libxl-shim" (needs libxen-dev); tried ${tried.join(', ')}`);
  }

  /** Calls `fn` off the event loop. */
  call<T>(fn: Fn, ...args: unknown[]): Promise<T> {
    return new Promise((resolve, reject) => {
      fn.async(...args, (err: Error | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  }

  /** A pipe whose ends are plain fds: [read, write]. */
  pipe(): [number, number] {
    const fds = [0, 0];
    const rc = this.fn.pipe!(fds) as number;
    if (rc < 0) throw new ShimError(-rc, `pipe failed: errno ${-rc}`);
    return [fds[0]!, fds[1]!];
  }
}

function cstr(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString('utf8', 0, end < 0 ? b.length : end) || 'unknown error';
}

/** A connection to Xen (libxl context, libxc interface, xenstore handle). */
export class ShimContext {
  private constructor(readonly shim: Shim, readonly ptr: unknown) {}

  static open(): ShimContext {
    const shim = Shim.load();
    const out = [null];
    const rc = shim.fn.open!(out) as number;
    const ctx = new ShimContext(shim, out[0]);
    if (rc < 0) {
      const msg = ctx.lastError();
      ctx.close();
      throw new ShimError(-rc, msg);
    }
    return ctx;
  }

  lastError(): string {
    return (this.shim.fn.lastError!(this.ptr) as string | null) ?? 'unknown error';
  }

  /** Throws a ShimError with the shim's message when `rc` is negative. */
  check(rc: number): number {
    if (rc < 0) throw new ShimError(-rc, this.lastError());
    return rc;
  }

  /**
   * Every domain. koffi converts the whole output array on each call, so it is sized for the
   * domains there are (room for 32 first; again, larger, when there are more), not for 1024:
   * under the lab's emulation converting 1024 entries cost tens of ms of the main thread.
   */
  list(): ShimDomInfo[] {
    let max = 32;
    for (;;) {
      const out: ShimDomInfo[] = new Array(max).fill(null).map(() => ({}) as ShimDomInfo);
      const n = this.check(this.shim.fn.list!(this.ptr, out, max) as number);
      if (n <= max || max >= 4096) return out.slice(0, Math.min(n, max));
      max = n + 16; // domains came and went meanwhile: try again with room for them
    }
  }

  info(domid: number): ShimDomInfo {
    const out = {} as ShimDomInfo;
    this.check(this.shim.fn.info!(this.ptr, domid, out) as number);
    return out;
  }

  byName(name: string): number {
    return this.check(this.shim.fn.byName!(this.ptr, name) as number);
  }

  async run(name: 'pause' | 'unpause' | 'destroy' | 'suspend', domid: number): Promise<void> {
    this.check(await this.shim.call<number>(this.shim.fn[name]!, this.ptr, domid));
  }

  /** SCHEDOP_watchdog for dom0: id 0 arms one and returns its id; then kick (timeout > 0) or disarm (0). Synchronous: one hypercall. */
  watchdog(id: number, timeoutSec: number): number {
    return this.check(this.shim.fn.watchdog!(this.ptr, id, timeoutSec) as number);
  }

  async resume(domid: number, fast: boolean): Promise<void> {
    this.check(await this.shim.call<number>(this.shim.fn.resume!, this.ptr, domid, fast ? 1 : 0));
  }

  rename(domid: number, from: string, to: string): void {
    this.check(this.shim.fn.rename!(this.ptr, domid, from, to) as number);
  }

  /** xenstore watches on @introduceDomain and @releaseDomain (xlha_watch_wait then reports them). */
  watchDomains(): void {
    this.check(this.shim.fn.watchDomains!(this.ptr) as number);
  }

  /** Off the event loop: waits up to `timeoutMs` for a watch to fire; true when one did. */
  async watchWait(timeoutMs: number): Promise<boolean> {
    const path = Buffer.alloc(256);
    return this.check(await this.shim.call<number>(this.shim.fn.watchWait!, this.ptr, timeoutMs, path, path.length)) > 0;
  }

  configJson(domid: number): string {
    const p = this.shim.fn.configJson!(this.ptr, domid);
    if (!p) throw new ShimError(5, this.lastError());
    try {
      return koffi.decode(p, 'char', -1) as string;
    } finally {
      this.shim.fn.free!(p);
    }
  }

  close(): void {
    this.shim.fn.close!(this.ptr);
  }
}
