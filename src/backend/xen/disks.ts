/**
 * A Xen domain's disks as libxl holds them (its JSON configuration), and which of them xl-ha
 * replicates: a disk whose cfg names `script=block-ha` is served by the daemon over NBD
 * (src/disk/exports.ts, hooks/block-ha), and that export's NbdDisk is the save session's
 * DiskTap. A disk on any other script is written by blkback straight to its image, unseen: a
 * domain with one is protected only with -d.
 *
 * On the backup, the replicated disk of the replica is an image this host's policy places
 * (`replica_disks = DIR` in the peer's key file: DIR/<domain>.<vdev>.img), never a path from the
 * primary's JSON, and it is attached with Xen's own block script.
 */
import path from 'node:path';
import { vdevNumber } from '../../config/disk.js';
import { DOMAIN_NAME_PATTERN } from '../../config/domain.js';
import { BackendUnsupportedError, type ReplicaPolicy } from '../types.js';

/** The script name that routes a disk through xl-ha (hooks/block-ha). */
export const BLOCK_HA = 'block-ha';

export interface XenDisk {
  /** Its place in libxl's disks list. */
  index: number;
  vdev: string;
  /** libxl's device number of the vdev (XENBUS_PATH's last part). */
  devid: number;
  target: string;
  script: string;
  readonly: boolean;
}

export function isBlockHa(script: string): boolean {
  return script === BLOCK_HA || script === `/etc/xen/scripts/${BLOCK_HA}`;
}

function parseConfig(json: string, name: string): Record<string, unknown> {
  let cfg: unknown;
  try {
    cfg = JSON.parse(json);
  } catch (err) {
    throw new Error(`the libxl configuration of ${name} is not JSON: ${(err as Error).message}`);
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new Error(`the libxl configuration of ${name} is not an object`);
  return cfg as Record<string, unknown>;
}

/** The disks of libxl's JSON configuration (cdrom drives without media are left out). */
export function libxlDisks(json: string, name: string): XenDisk[] {
  const cfg = parseConfig(json, name);
  const list = cfg.disks ?? [];
  if (!Array.isArray(list)) throw new Error(`the libxl configuration of ${name}: disks is not a list`);
  const out: XenDisk[] = [];
  for (const [index, d] of (list as Record<string, unknown>[]).entries()) {
    if (typeof d !== 'object' || d === null) continue;
    const vdev = typeof d.vdev === 'string' ? d.vdev : '';
    const target = typeof d.pdev_path === 'string' ? d.pdev_path : '';
    if (!target) continue;
    const devid = vdevNumber(vdev);
    out.push({ index, vdev, devid: devid ?? -1, target, script: typeof d.script === 'string' ? d.script : '', readonly: d.readwrite === 0 || d.readwrite === false });
  }
  return out;
}

/** How a disk reads in messages. */
export function diskLabel(d: XenDisk): string {
  return `disk ${d.vdev || `#${d.index}`} (${d.target}, script ${d.script || 'block'})`;
}

/**
 * The one disk of the domain that is replicated, or null when it has no disk. Throws, naming the
 * disk, when a writable disk is not on block-ha (it is protected only with -d), or when there are
 * several block-ha disks (the DISK_WRITES frames carry no disk number yet).
 */
export function replicatedDisk(json: string, name: string): XenDisk | null {
  const disks = libxlDisks(json, name).filter((d) => !d.readonly);
  if (!disks.length) return null;
  const other = disks.find((d) => !isBlockHa(d.script));
  // BackendUnsupportedError: trying again changes nothing (the daemon alerts rather than retries)
  if (other) {
    throw new BackendUnsupportedError(
      `${diskLabel(other)} of domain ${name} is not replicated: blkback writes it unseen by xl-ha. Name script=${BLOCK_HA} for it in the cfg (the daemon then serves it), or protect with -d -F (its disk is then not replicated)`,
    );
  }
  if (disks.length > 1) {
    throw new BackendUnsupportedError(`domain ${name} has ${disks.length} disks on ${BLOCK_HA} (${disks.map((d) => d.vdev).join(', ')}): xl-ha replicates one disk per domain for now; protect with -d -F`);
  }
  return disks[0]!;
}

/** Where this host keeps the replica of disk `vdev` of domain `name` (under the policy's replica_disks). */
export function replicaImagePath(policy: ReplicaPolicy, name: string, vdev: string): string {
  if (!policy.replicaDiskDir) {
    throw new Error(`this host's policy for ${policy.peer} (${policy.source}) has no replica_disks = DIR: there is nowhere to keep the replica of disk ${vdev} of ${name}`);
  }
  if (!DOMAIN_NAME_PATTERN.test(name) || name.startsWith('.')) throw new Error(`domain name ${JSON.stringify(name)} cannot name a replica image`);
  if (!/^[a-z]{2,3}[a-z0-9]{1,8}$/.test(vdev) || vdevNumber(vdev) === undefined) throw new Error(`vdev ${JSON.stringify(vdev)} of ${name} cannot name a replica image`);
  return path.join(policy.replicaDiskDir, `${name}.${vdev}.img`);
}

/**
 * The replica's libxl JSON with its replicated (block-ha) disk on this host's image instead:
 * `pdev_path` the policy's image, Xen's own block script (the field dropped), a raw phy disk.
 * Returns the new JSON and the disk's index (which the policy check then skips: its target is
 * this host's own).
 */
export function withReplicaDisk(json: string, name: string, image: string): { json: string; index: number; vdev: string } {
  const cfg = parseConfig(json, name);
  const d = replicatedDisk(json, name);
  if (!d) throw new Error(`the primary replicates a disk of ${name}, but its libxl configuration has no writable disk`);
  const disks = cfg.disks as Record<string, unknown>[];
  const entry = { ...disks[d.index]! };
  delete entry.script;
  entry.pdev_path = image;
  entry.backend = 'phy';
  entry.format = 'raw';
  disks[d.index] = entry;
  return { json: JSON.stringify(cfg), index: d.index, vdev: d.vdev };
}
