/**
 * The backup's policy over the primary's libxl JSON (src/backend/xen/replica-policy.ts): what
 * libxl would run or attach as root on this host is refused by name unless the policy allows it.
 */
import t from 'tap';
import { checkReplicaConfig } from '../../src/backend/xen/replica-policy.js';
import type { ReplicaPolicy } from '../../src/backend/types.js';

const policy: ReplicaPolicy = { peer: 'hostA', source: '/etc/xen/xl-ha/peers/hostA.key', disks: ['/srv/xen/*.img', '/dev/vg0/*'], bridges: ['xenbr*'] };

/** The shape libxl writes for the lab's domu1 (a PV guest with one vif on xenbr0). */
function domu(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    c_info: { type: 'pv', name: 'domu1', uuid: '5a9c7e52-6c45-4f0b-9b2f-1f1a6c2b3d4e' },
    b_info: { max_vcpus: 1, max_memkb: 131072, target_memkb: 131072, 'type.pv': { kernel: '/xenlab/vmlinuz', ramdisk: '/xenlab/domu-initrd.cpio.gz', cmdline: 'console=hvc0' } },
    nics: [{ devid: 0, mac: '00:16:3e:00:99:02', bridge: 'xenbr0', backend_domid: 0 }],
    ...extra,
  };
}
const check = (cfg: Record<string, unknown>) => () => checkReplicaConfig(JSON.stringify(cfg), policy, 'domu1');

t.test('a plain PV domain with a nic on an allowed bridge is accepted', async (t) => {
  t.doesNotThrow(check(domu()));
  t.doesNotThrow(check(domu({ disks: [{ pdev_path: '/srv/xen/web.img', vdev: 'xvda' }, { pdev_path: '/dev/vg0/db', vdev: 'xvdb' }, { pdev_path: '', vdev: 'xvdc', is_cdrom: true }] })));
  t.doesNotThrow(check({ ...domu(), nics: [{ bridge: 'xenbr1', script: 'vif-bridge' }] }), "Xen's own vif script by name");
  t.doesNotThrow(check({ ...domu(), nics: [{ bridge: 'xenbr1', script: '/etc/xen/scripts/vif-bridge' }] }), 'or by its full path');
  t.doesNotThrow(check({ ...domu(), nics: [{ bridge: 'xenbr1', script: 'vif-ha' }] }), "xl-ha's own vif-ha, which install.sh puts there");
});

t.test('what libxl would run or attach as root is refused, naming the field and the policy file', async (t) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['a vif script of its own', { ...domu(), nics: [{ bridge: 'xenbr0', script: '/tmp/evil.sh' }] }, /nics\[0\]\.script = "\/tmp\/evil\.sh" \(allowed: vif-bridge/],
    ['a vif script by relative path', { ...domu(), nics: [{ bridge: 'xenbr0', script: '../../tmp/evil' }] }, /nics\[0\]\.script/],
    ['a bridge outside the policy', { ...domu(), nics: [{ bridge: 'mgmt0' }] }, /nics\[0\] on bridge mgmt0 \(bridges = xenbr\*\)/],
    ['a host disk', domu({ disks: [{ pdev_path: '/dev/sda', vdev: 'xvda' }] }), /disks\[0\] at \/dev\/sda \(disks = \/srv\/xen\/\*\.img, \/dev\/vg0\/\*\)/],
    ['a path that climbs out', domu({ disks: [{ pdev_path: '/srv/xen/../../etc/shadow.img', vdev: 'xvda' }] }), /disks\[0\] at \/srv\/xen\/\.\.\/\.\.\/etc\/shadow\.img/],
    ['a block script', domu({ disks: [{ pdev_path: '/srv/xen/a.img', script: '/tmp/x' }] }), /disks\[0\]\.script/],
    ['PCI passthrough', domu({ pcidevs: [{ bus: 1 }] }), /pcidevs \(1 entries\)/],
    ['a framebuffer (a device model on this host)', domu({ vfbs: [{ vnc: { enable: 'True' } }] }), /vfbs/],
    ['a bootloader', { ...domu(), b_info: { 'type.pv': { bootloader: '/usr/bin/pygrub' } } }, /b_info\.type\.pv\.bootloader = "\/usr\/bin\/pygrub"/],
    ['a device model', { ...domu(), b_info: { device_model: '/tmp/qemu' } }, /b_info\.device_model/],
    ['IO ports', { ...domu(), b_info: { ioports: [{ first: 0x3f8, number: 8 }] } }, /b_info\.ioports/],
    ['an HVM guest', { ...domu(), c_info: { type: 'hvm' } }, /a domain of type "hvm" \(only pv is replicated on Xen\)/],
    ['a driver domain backend', { ...domu(), nics: [{ bridge: 'xenbr0', backend_domid: 3 }] }, /backend domain other than dom0/],
  ];
  for (const [what, cfg, re] of cases) {
    t.throws(check(cfg), re, what);
    t.throws(check(cfg), /this host's policy for hostA does not allow \(\/etc\/xen\/xl-ha\/peers\/hostA\.key\)/, `${what}: names the policy`);
  }
  t.throws(() => checkReplicaConfig('{', policy, 'domu1'), /libxl configuration of domu1 is not JSON/);
});

t.test('a policy with no disks allows none', async (t) => {
  t.throws(() => checkReplicaConfig(JSON.stringify(domu({ disks: [{ pdev_path: '/srv/xen/a.img' }] })), { ...policy, disks: [] }, 'domu1'), /disks = \(none\)/);
});
