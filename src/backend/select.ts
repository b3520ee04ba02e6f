/** Chooses the backend once, at start-up. */
import fs from 'node:fs';
import type { HypervisorBackend } from './types.js';
import { SimBackend } from './sim/host.js';

export function xenDetected(): boolean {
  try {
    return fs.existsSync('/dev/xen/privcmd') || fs.readFileSync('/proc/xen/capabilities', 'utf8').includes('control_d');
  } catch {
    return false;
  }
}

export function createBackend(kind: 'sim' | 'xen' | 'auto', opts: { hostName: string; stateDir: string }): HypervisorBackend {
  const want = kind === 'auto' ? (xenDetected() ? 'xen' : 'sim') : kind;
  if (want === 'xen') {
    throw new Error(
      'the xen backend (libxl-shim through koffi) is not part of this build yet' +
        (kind === 'auto' ? ' and this host runs Xen; pass --backend sim to use the simulated host' : '; use --backend sim'),
    );
  }
  return new SimBackend(opts);
}
