/** Chooses the backend once, at start-up. */
import fs from 'node:fs';
import type { HypervisorBackend } from './types.js';
import { SimBackend } from './sim/host.js';
import { XenBackend } from './xen/host.js';
import { DiskExports } from '../disk/exports.js';
import type { Logger } from '../util/log.js';

export function xenDetected(): boolean {
  try {
    return fs.existsSync('/dev/xen/privcmd') || fs.readFileSync('/proc/xen/capabilities', 'utf8').includes('control_d');
  } catch {
    return false;
  }
}

/**
 * `auto` is xen on a Xen dom0 and sim elsewhere. `disks` (xen): where the daemon serves block-ha
 * disks over NBD (a directory of unix sockets under its runtime directory) and its logger.
 */
export function createBackend(kind: 'sim' | 'xen' | 'auto', opts: { hostName: string; stateDir: string; disks?: { dir: string; log: Logger } }): HypervisorBackend {
  const want = kind === 'auto' ? (xenDetected() ? 'xen' : 'sim') : kind;
  if (want === 'xen') {
    try {
      return new XenBackend(opts.disks ? new DiskExports(opts.disks) : null);
    } catch (err) {
      throw new Error(`the xen backend cannot start: ${(err as Error).message}`);
    }
  }
  return new SimBackend(opts);
}
