/**
 * What a replica may be given on this host, whatever the primary's libxl JSON asks for. The
 * JSON arrives from the network (authenticated, but a compromised primary is still a
 * stranger to this dom0): libxl would run the scripts, bootloaders and device models it
 * names as root, and attach the files and devices it names to the guest. So each field is
 * checked against the backup's own policy (the peer's key file, src/security/peers.ts) and a
 * JSON that asks for more is refused, naming the field. Nothing is silently dropped: a
 * replica that lacked a device its domain has would not be the same domain.
 *
 * Allowed: a PV domain's memory, vCPUs, kernel settings and its nics on allowed bridges with
 * Xen's own vif scripts; disks whose target the policy lists. Refused: bootloaders, device
 * models, passthrough (PCI, IO ports, IO memory, IRQs, device trees, USB), framebuffers and
 * the rarer PV devices.
 */
import type { ReplicaPolicy } from '../types.js';
import { globRegExp } from '../../util/glob.js';

/** Device lists of libxl_domain_config that a replica may not have (non-empty). */
const REFUSED_LISTS = ['pcidevs', 'rdms', 'dtdevs', 'vfbs', 'vkbs', 'vtpms', 'p9s', 'pvcallsifs', 'vdispls', 'vsnds', 'channels', 'usbctrls', 'usbdevs'];
/** b_info fields a replica may not set (non-empty). */
const REFUSED_BUILD = ['bootloader', 'bootloader_args', 'device_model', 'device_model_ssidref', 'device_model_ssid_label', 'iomem', 'ioports', 'irqs', 'device_tree', 'stubdomain_kernel', 'stubdomain_ramdisk'];
/**
 * The vif scripts a replica may run, from /etc/xen/scripts: by name (libxl resolves it there) or
 * by that full path. Xen's own, and xl-ha's vif-ha (hooks/vif-ha, installed there by install.sh),
 * which wraps vif-bridge.
 */
export const XEN_VIF_SCRIPTS = ['vif-bridge', 'vif-route', 'vif-nat', 'vif-openvswitch', 'vif-ha'];


function nonEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === false || v === 0) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** Throws, naming the field and the policy, when `json` asks for more than `policy` allows. */
/**
 * `ownDisk`: the index of a disk whose target this host chose itself (the replicated disk's image,
 * src/backend/xen/disks.ts), not checked against the policy's patterns.
 */
export function checkReplicaConfig(json: string, policy: ReplicaPolicy, name: string, ownDisk = -1): void {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(json) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`the primary's libxl configuration of ${name} is not JSON: ${(err as Error).message}`);
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new Error(`the primary's libxl configuration of ${name} is not an object`);
  const refuse = (what: string): never => {
    throw new Error(`the primary's configuration of ${name} asks for ${what}, which this host's policy for ${policy.peer} does not allow (${policy.source})`);
  };
  const cInfo = (cfg.c_info ?? {}) as Record<string, unknown>;
  if (cInfo.type !== undefined && cInfo.type !== 'pv') refuse(`a domain of type ${JSON.stringify(cInfo.type)} (only pv is replicated on Xen)`);
  if (nonEmpty(cInfo.driver_domain)) refuse('a driver domain');
  for (const k of REFUSED_LISTS) if (nonEmpty(cfg[k])) refuse(`${k} (${(cfg[k] as unknown[]).length} entries)`);
  const bInfo = (cfg.b_info ?? {}) as Record<string, unknown>;
  for (const k of REFUSED_BUILD) if (nonEmpty(bInfo[k])) refuse(`b_info.${k} = ${JSON.stringify(bInfo[k]).slice(0, 80)}`);
  // libxl writes the keyed union as "type.pv"; older writers used type_u
  for (const key of ['type.pv', 'type_u']) {
    const u = (bInfo[key] ?? {}) as Record<string, unknown>;
    const pv = (key === 'type_u' ? (u.pv ?? {}) : u) as Record<string, unknown>;
    for (const k of ['bootloader', 'bootloader_args']) if (nonEmpty(pv[k])) refuse(`b_info.${key}${key === 'type_u' ? '.pv' : ''}.${k} = ${JSON.stringify(pv[k]).slice(0, 80)}`);
  }
  const nics = (cfg.nics ?? []) as Record<string, unknown>[];
  if (!Array.isArray(nics)) refuse('nics that are not a list');
  for (const [i, n] of nics.entries()) {
    if (typeof n !== 'object' || n === null || Array.isArray(n)) refuse(`nics[${i}] that is not an object`);
    const script = n.script;
    if (nonEmpty(script) && !(typeof script === 'string' && XEN_VIF_SCRIPTS.includes(script.replace(/^\/etc\/xen\/scripts\//, '')))) {
      refuse(`nics[${i}].script = ${JSON.stringify(script)} (allowed: ${XEN_VIF_SCRIPTS.join(', ')})`);
    }
    const bridge = typeof n.bridge === 'string' ? n.bridge : '';
    if (bridge && !policy.bridges.some((p) => globRegExp(p).test(bridge))) refuse(`nics[${i}] on bridge ${bridge} (bridges = ${policy.bridges.join(', ') || '(none)'})`);
    if (nonEmpty(n.backend_domid) || nonEmpty(n.backend_domname)) refuse(`nics[${i}] in a backend domain other than dom0`);
  }
  const disks = (cfg.disks ?? []) as Record<string, unknown>[];
  if (!Array.isArray(disks)) refuse('disks that are not a list');
  for (const [i, d] of disks.entries()) {
    if (typeof d !== 'object' || d === null || Array.isArray(d)) refuse(`disks[${i}] that is not an object`);
    if (i === ownDisk) continue;
    const target = typeof d.pdev_path === 'string' ? d.pdev_path : '';
    if (nonEmpty(d.script)) refuse(`disks[${i}].script = ${JSON.stringify(d.script)}`);
    if (nonEmpty(d.backend_domid) || nonEmpty(d.backend_domname)) refuse(`disks[${i}] in a backend domain other than dom0`);
    if (!target) continue; // an empty cdrom drive
    if (target.split('/').includes('..') || !policy.disks.some((p) => globRegExp(p).test(target))) refuse(`disks[${i}] at ${target} (disks = ${policy.disks.join(', ') || '(none)'})`);
  }
}
