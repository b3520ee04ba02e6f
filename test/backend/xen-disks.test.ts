/**
 * Which disk of a Xen domain xl-ha replicates (src/backend/xen/disks.ts), from libxl's JSON: the
 * one writable disk on block-ha; a disk on another script, or several on block-ha, named in the
 * error with the way out (-d). On the backup: the replica's disk on the image this host's
 * policy places, never the primary's path, and the rest of the JSON still checked.
 */
import t from 'tap';
import { libxlDisks, replicaImagePath, replicatedDisk, withReplicaDisk } from '../../src/backend/xen/disks.js';
import { checkReplicaConfig } from '../../src/backend/xen/replica-policy.js';
import { parsePeerFile, formatPeerFile } from '../../src/security/peers.js';
import type { ReplicaPolicy } from '../../src/backend/types.js';

const disk = (o: Record<string, unknown>) => ({ backend: 'phy', format: 'raw', readwrite: 1, ...o });
const cfg = (disks: unknown[]) => JSON.stringify({ c_info: { type: 'pv', name: 'web' }, b_info: {}, disks, nics: [] });
const policy: ReplicaPolicy = { peer: 'a', source: '/etc/xl-ha/keys/a.key', disks: ['/srv/xen/*.img'], bridges: ['*'], replicaDiskDir: '/var/lib/xl-ha/replicas' };

t.test('the disks of libxl\'s JSON, with the device number blkback\'s XENBUS_PATH has', async (t) => {
  const d = libxlDisks(cfg([disk({ vdev: 'xvda', pdev_path: '/srv/xen/web.img', script: 'block-ha' }), disk({ vdev: 'xvdb', pdev_path: '' })]), 'web');
  t.same(d, [{ index: 0, vdev: 'xvda', devid: 51712, target: '/srv/xen/web.img', script: 'block-ha', readonly: false }], 'an empty drive is left out');
  t.throws(() => libxlDisks('{', 'web'), /the libxl configuration of web is not JSON/);
});

t.test('the replicated disk is the one writable block-ha disk; none is null', async (t) => {
  t.equal(replicatedDisk(cfg([]), 'web'), null);
  t.equal(replicatedDisk(cfg([disk({ vdev: 'xvda', pdev_path: '/srv/xen/web.img', script: '/etc/xen/scripts/block-ha' })]), 'web')?.vdev, 'xvda');
  // a read-only disk cannot be written, so it needs no replication
  t.equal(replicatedDisk(cfg([disk({ vdev: 'xvda', pdev_path: '/srv/iso', readwrite: 0 }), disk({ vdev: 'xvdb', pdev_path: '/srv/xen/web.img', script: 'block-ha' })]), 'web')?.vdev, 'xvdb');
});

t.test('a writable disk not on block-ha, or two on it, is refused naming the disk and -d', async (t) => {
  t.throws(
    () => replicatedDisk(cfg([disk({ vdev: 'xvda', pdev_path: '/srv/xen/web.img', script: 'block-ha' }), disk({ vdev: 'xvdb', pdev_path: '/dev/vg0/data' })]), 'web'),
    /disk xvdb \(\/dev\/vg0\/data, script block\) of domain web is not replicated: blkback writes it unseen by xl-ha\. Name script=block-ha .* or protect with -d -F/,
  );
  t.throws(
    () => replicatedDisk(cfg([disk({ vdev: 'xvda', pdev_path: '/a.img', script: 'block-ha' }), disk({ vdev: 'xvdb', pdev_path: '/b.img', script: 'block-ha' })]), 'web'),
    /domain web has 2 disks on block-ha \(xvda, xvdb\): xl-ha replicates one disk per domain for now; protect with -d -F/,
  );
});

t.test('the replica\'s disk is the policy\'s image, on Xen\'s own block script; the primary\'s path is gone', async (t) => {
  const json = cfg([disk({ vdev: 'xvda', pdev_path: '/etc/shadow', script: 'block-ha' })]);
  const file = replicaImagePath(policy, 'web', 'xvda');
  t.equal(file, '/var/lib/xl-ha/replicas/web.xvda.img');
  const r = withReplicaDisk(json, 'web', file);
  const out = JSON.parse(r.json) as { disks: Record<string, unknown>[] };
  t.same(out.disks[0], { backend: 'phy', format: 'raw', readwrite: 1, vdev: 'xvda', pdev_path: file });
  t.notOk(r.json.includes('/etc/shadow'), 'nothing of the primary\'s target is left');
  t.doesNotThrow(() => checkReplicaConfig(r.json, policy, 'web', r.index), 'the image is this host\'s own: not checked against disks =');
  t.throws(() => checkReplicaConfig(r.json, policy, 'web'), /disks\[0\] at \/var\/lib\/xl-ha\/replicas\/web\.xvda\.img/, 'but it is not one of the policy\'s patterns');
  // the other fields are still the policy's to allow
  const bad = withReplicaDisk(cfg([disk({ vdev: 'xvda', pdev_path: '/x', script: 'block-ha' }), disk({ vdev: 'xvdb', pdev_path: '/y', readwrite: 0 })]), 'web', file);
  t.throws(() => checkReplicaConfig(bad.json, policy, 'web', bad.index), /disks\[1\] at \/y/);
});

t.test('no replica_disks in the policy, or a name that cannot name a file: refused, naming it', async (t) => {
  t.throws(() => replicaImagePath({ ...policy, replicaDiskDir: undefined }, 'web', 'xvda'), /policy for a \(\/etc\/xl-ha\/keys\/a\.key\) has no replica_disks = DIR: there is nowhere to keep the replica of disk xvda of web/);
  t.throws(() => replicaImagePath(policy, '../x', 'xvda'), /domain name "\.\.\/x" cannot name a replica image/);
  t.throws(() => replicaImagePath(policy, 'web', 'xvda/../../x'), /vdev "xvda\/\.\.\/\.\.\/x" of web cannot name a replica image/);
});

t.test('replica_disks in a key file: an absolute directory, written back by formatPeerFile', async (t) => {
  const base = `host = b\npeer = a\nkey = ${'ab'.repeat(32)}\n`;
  const e = parsePeerFile('/k/a.key', `${base}replica_disks = /var/lib/xl-ha/replicas\n`);
  t.equal(e.replicaDiskDir, '/var/lib/xl-ha/replicas');
  t.equal(parsePeerFile('/k/a.key', formatPeerFile(e, 'test')).replicaDiskDir, '/var/lib/xl-ha/replicas');
  t.equal(parsePeerFile('/k/a.key', base).replicaDiskDir, undefined, 'default none');
  t.throws(() => parsePeerFile('/k/a.key', `${base}replica_disks = relative/dir\n`), /key file \/k\/a\.key: replica_disks = "relative\/dir" is not an absolute directory/);
  t.throws(() => parsePeerFile('/k/a.key', `${base}replica_disks = /srv/*\n`), /replica_disks = "\/srv\/\*" is not an absolute directory \(without "\.\.", no wildcards\)/);
});
