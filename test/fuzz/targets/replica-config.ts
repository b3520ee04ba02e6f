/**
 * Fuzz target: the backup's check of the primary's libxl JSON (src/backend/xen/replica-policy.ts
 * checkReplicaConfig), which arrives in the HELLO's backendConfig field.
 *
 * Input: the JSON text (UTF-8).
 * Clean: a plain Error that names "configuration of <domain>" (not JSON, not an object, or a
 * field the policy refuses).
 */
import { checkReplicaConfig } from '../../../src/backend/xen/replica-policy.js';
import type { ReplicaPolicy } from '../../../src/backend/types.js';
import { describe, Finding, isClean, passKnown } from './_check.js';

const NAME = 'replica-config';
export const sync = true;
const POLICY: ReplicaPolicy = { peer: 'hostA', source: '/etc/xen/xl-ha/peers/hostA.key', disks: ['/srv/xen/*.img', '/dev/vg0/*'], bridges: ['xenbr*'] };

/** Open: an entry of nics or disks that is null (or not an object) is read as one. */
const NULL_ENTRY = /^Cannot read properties of (?:null|undefined) \(reading '(?:script|bridge|backend_domid|backend_domname|pdev_path)'\)$/;

export function fuzz(data: Buffer): void {
  try {
    checkReplicaConfig(data.toString('utf8'), POLICY, 'domu1');
  } catch (err) {
    if (isClean(err, { plain: /configuration of domu1/ })) return;
    if (err instanceof TypeError && NULL_ENTRY.test(err.message) && passKnown('replica-config/null-list-entry', describe(err))) return;
    throw new Finding(NAME, 'checkReplicaConfig threw something other than a clean error', err);
  }
}
