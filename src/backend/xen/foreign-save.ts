/**
 * Another save of a protected domain: `xl save`, `xl migrate` or stock `xl remus` of it, run by
 * libxl while xl-ha's own save holds the domain.
 *
 * Why it matters: both saves track the guest's writes through the same log-dirty bitmap of the
 * hypervisor, and each read of it (XEN_DOMCTL_SHADOW_OP_CLEAN) clears the bits it returns, so
 * each save sees only part of the pages dirtied; libxc may even switch log-dirty off and on
 * again when it finds it already enabled. A checkpoint taken meanwhile can miss pages the guest
 * wrote, and a replica built from it is not the guest. Nothing in the hypervisor says that a
 * second save runs; libxl, however, always runs its save in a separate process,
 * `libxl-save-helper --save-domain <stream fd> <back-channel fd> <domid> …`
 * (libxl_save_callout.c), so the helper's command line names the domain.
 *
 * `find()` looks for that process before each checkpoint: it lists /proc and reads the command
 * line of processes it has not seen before, and again while they are young (RECHECK_MS: libxl
 * forks the helper, and until its exec the child's command line is still the parent's); each
 * scan forgets the ones that went. Once the dom0's processes are known, a scan costs a directory
 * listing.
 */
import fs from 'node:fs';

/** A process first seen this recently is read again at each scan: it may not have exec'd yet. */
export const RECHECK_MS = 5000;

export class ForeignSaveWatch {
  /** pid → whether it is a save helper of this domain, and when the pid was first seen. */
  private readonly seen = new Map<number, { hit: boolean; since: number }>();

  constructor(
    readonly domid: number,
    private readonly procDir = '/proc',
    private readonly now: () => number = () => performance.now(),
    /** `--save-domain`, or `--restore-domain` for a helper restoring into the domain (the domid is argv[4] in both). */
    private readonly mode: '--save-domain' | '--restore-domain' = '--save-domain',
  ) {}

  /** The pid of a `libxl-save-helper <mode>` of this domain, or null. */
  find(): number | null {
    let names: string[];
    try {
      names = fs.readdirSync(this.procDir);
    } catch {
      return null; // no /proc: nothing to tell
    }
    const live = new Set<number>();
    let found: number | null = null;
    const want = String(this.domid);
    const now = this.now();
    for (const n of names) {
      const c = n.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(n);
      live.add(pid);
      let e = this.seen.get(pid);
      if (!e || (!e.hit && now - e.since < RECHECK_MS)) {
        let hit = false;
        try {
          const argv = fs.readFileSync(`${this.procDir}/${n}/cmdline`, 'latin1').split('\0');
          hit = argv.length > 4 && /(^|\/)libxl-save-helper$/.test(argv[0]!) && argv[1] === this.mode && argv[4] === want;
        } catch {
          /* gone already, or not readable: not a helper we can see */
        }
        e = { hit, since: e?.since ?? now };
        this.seen.set(pid, e);
      }
      if (e.hit) found = pid;
    }
    for (const pid of this.seen.keys()) if (!live.has(pid)) this.seen.delete(pid);
    return found;
  }
}
