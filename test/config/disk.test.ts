/** Disk specs read as xl reads them (xl-disk-configuration(5), libxlu_disk_l.l, libxl's vdev numbers). */
import t from 'tap';
import { DiskSpecError, parseDiskSpec, vdevNumber, type DiskSpec } from '../../src/config/disk.js';

const d = (target: string, vdev: string, extra: Partial<DiskSpec> = {}): DiskSpec => ({ target, vdev, format: 'raw', access: 'rw', ...extra });

t.test("the man page's equivalent specs give the same disk", async (t) => {
  const volume = d('/dev/vg/guest-volume', 'hda');
  for (const spec of ['/dev/vg/guest-volume,,hda', '/dev/vg/guest-volume,raw,hda,rw', 'format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume']) {
    t.same(parseDiskSpec(spec), volume, spec);
  }
  t.same(parseDiskSpec('raw:/dev/vg/guest-volume,hda,w'), { ...volume, prefixes: ['raw:'] });
  const iso = d('/root/image.iso', 'hdc', { access: 'ro', devtype: 'cdrom' });
  for (const spec of ['/root/image.iso,,hdc,cdrom', '/root/image.iso,,hdc,,cdrom', '/root/image.iso,raw,hdc,devtype=cdrom', 'format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso']) {
    t.same(parseDiskSpec(spec), iso, spec);
  }
  t.same(parseDiskSpec('raw:/root/image.iso,hdc:cdrom,ro'), { ...iso, prefixes: ['raw:'] });
});

t.test('empty cdrom drives, old and new style', async (t) => {
  const empty = d('', 'hdc', { format: 'empty', access: 'ro', devtype: 'cdrom' });
  t.same(parseDiskSpec(',hdc:cdrom,r'), empty);
  t.same(parseDiskSpec('cdrom,vdev=hdc'), empty);
  t.same(parseDiskSpec('vdev=hdc,devtype=cdrom'), empty);
  t.same(parseDiskSpec('/srv/x.iso,,hdc:cdrom'), d('/srv/x.iso', 'hdc', { access: 'ro', devtype: 'cdrom' }), 'vdev:cdrom in the vdev position');
  t.same(parseDiskSpec('/srv/x.img,,xvda:disk'), d('/srv/x.img', 'xvda'), 'vdev:disk');
  t.equal(parseDiskSpec('/srv/x.iso,,hdc,rw,cdrom').access, 'ro', 'a cdrom is read-only whatever access says (as xl)');
});

t.test('deprecated prefixes: formats, scripts and ignored ones', async (t) => {
  t.same(parseDiskSpec('qcow2:/srv/a.img,xvda,w'), d('/srv/a.img', 'xvda', { format: 'qcow2', prefixes: ['qcow2:'] }));
  t.same(parseDiskSpec('qcow:/srv/a.img,xvda,w'), d('/srv/a.img', 'xvda', { format: 'qcow', prefixes: ['qcow:'] }));
  t.same(parseDiskSpec('tap:aio:/srv/a.img,xvda,w'), d('/srv/a.img', 'xvda', { prefixes: ['tap:', 'aio:'] }));
  t.same(parseDiskSpec('tap2:tapdisk:ioemu:file:phy:/srv/a,xvda,w'), d('/srv/a', 'xvda', { prefixes: ['tap2:', 'tapdisk:', 'ioemu:', 'file:', 'phy:'] }));
  t.same(parseDiskSpec('tap:qcow2:/srv/a.qcow2,xvda,w'), d('/srv/a.qcow2', 'xvda', { format: 'qcow2', prefixes: ['tap:', 'qcow2:'] }));
  for (const s of ['iscsi', 'nbd', 'enbd', 'drbd']) {
    t.same(parseDiskSpec(`${s}:host:1234,xvda,w`), d('host:1234', 'xvda', { script: `block-${s}`, prefixes: [`${s}:`] }), `${s}: is script=block-${s}`);
  }
  t.same(parseDiskSpec('phy:/dev/vg/x,xvda,w').prefixes, ['phy:'], 'phy: does not set backendtype (xl ignores it)');
  t.equal(parseDiskSpec('phy:/dev/vg/x,xvda,w').backendtype, undefined);
  t.throws(() => parseDiskSpec('phy:/a,qcow2'), { message: /vdev "qcow2" is not a virtual device/ }, 'after a prefix there is no format position, as in xl');
});

t.test('every parameter and flag', async (t) => {
  t.same(
    parseDiskSpec('backend=dd, backendtype=qdisk, specification=virtio, script=block-x, direct-io-safe, no-discard, trusted, grant_usage=0, vdev=xvdb, access=ro, format=vhd, target=/t'),
    d('/t', 'xvdb', { format: 'vhd', access: 'ro', backend: 'dd', backendtype: 'qdisk', specification: 'virtio', script: 'block-x', directIoSafe: true, discard: false, trusted: true, grantUsage: false }),
  );
  t.same(
    parseDiskSpec('colo,colo-host=h,colo-port=9000,colo-export=e,active-disk=/a,hidden-disk=/h,discard,untrusted,grant_usage=1,/t,,xvdc'),
    d('/t', 'xvdc', { colo: true, coloHost: 'h', coloPort: 9000, coloExport: 'e', activeDisk: '/a', hiddenDisk: '/h', discard: true, trusted: false, grantUsage: true }),
  );
  for (const b of ['phy', 'tap', 'qdisk', 'standalone']) t.equal(parseDiskSpec(`backendtype=${b},vdev=xvda,target=/a`).backendtype, b);
  t.equal(parseDiskSpec('no-colo,/a,,xvda').colo, false);
  t.equal(parseDiskSpec('/a,,xvda,devtype=disk').devtype, undefined);
});

t.test('target= takes the rest of the spec, commas, colons and trailing blanks included', async (t) => {
  t.equal(parseDiskSpec('vdev=xvda, target=/srv/a,b:c.img ').target, '/srv/a,b:c.img ');
  t.equal(parseDiskSpec('vdev=xvda,target=/srv/a.img,').target, '/srv/a.img', 'one trailing comma is dropped');
  t.equal(parseDiskSpec(',,xvda,ro,target=/srv/x.img').target, '/srv/x.img', 'an empty positional target may be given again by name');
  t.throws(() => parseDiskSpec('target=/a,vdev=xvda'), { message: /missing vdev/ }, 'so target= must come last');
});

t.test('blanks are dropped before each parameter only, as in xl', async (t) => {
  t.same(parseDiskSpec('  /a.img,  raw,\txvda,  rw'), d('/a.img', 'xvda'));
  t.equal(parseDiskSpec('/a b.img,,xvda').target, '/a b.img', 'a blank inside a target is kept');
  t.throws(() => parseDiskSpec('/a.img,raw ,xvda'), { message: /unknown value "raw " for format/ }, 'and so is one after a value');
});

t.test('a flag word wins over a positional of the same text', async (t) => {
  t.same(parseDiskSpec('/a,,xvda,cdrom'), d('/a', 'xvda', { access: 'ro', devtype: 'cdrom' }));
  t.equal(parseDiskSpec('/a,,xvda,discard').discard, true);
  t.throws(() => parseDiskSpec('/a,,xvda,cdromx'), { message: /unknown value "cdromx" for access/ }, 'a longer word is not the flag');
});

const BAD: [string, string][] = [
  ['/a,qcow3,xvda', 'unknown value "qcow3" for format (did you mean qcow?): expected raw, qcow, qcow2, vhd, qed or empty (lower case; empty means raw)'],
  ['/a,,xvda,rx', 'unknown value "rx" for access: expected rw (or w) or ro (or r)'],
  ['/a,constructor,xvda', 'unknown value "constructor" for format: expected raw, qcow, qcow2, vhd, qed or empty (lower case; empty means raw)'],
  ['backendtype=nbd,vdev=xvda,target=/a', 'unknown value "nbd" for backendtype: expected phy, tap, qdisk or standalone'],
  ['specification=scsi,vdev=xvda,target=/a', 'unknown value "scsi" for specification: expected xen or virtio'],
  ['devtype=floppy,vdev=xvda,target=/a', 'unknown value "floppy" for devtype: expected cdrom or disk'],
  ['colo-port=x,vdev=xvda,target=/a', 'unknown value "x" for colo-port: expected a port number'],
  ['/a,,xvda:tape', 'unknown device type "tape" after the vdev "xvda:tape": expected xvda:cdrom or xvda:disk (or devtype=cdrom)'],
  ['format=raw,format=qcow2,vdev=xvda,target=/a', 'format is given twice (raw and qcow2): give it once'],
  ['script=a,script=b,vdev=xvda,target=/a', 'script is given twice ("a" and "b"): give each parameter once, by position or by name'],
  ['cache=none,vdev=xvda,target=/a', 'unknown parameter "cache": the parameters are target, format, vdev, access, devtype, backend, backendtype, specification, script, cdrom, direct-io-safe, discard, no-discard, colo, no-colo, colo-host, colo-port, colo-export, active-disk, hidden-disk, trusted, untrusted, grant_usage'],
  ['vdev=xvda,acess=ro,target=/a', 'unknown parameter "acess" (did you mean access?): the parameters are target, format, vdev, access, devtype, backend, backendtype, specification, script, cdrom, direct-io-safe, discard, no-discard, colo, no-colo, colo-host, colo-port, colo-export, active-disk, hidden-disk, trusted, untrusted, grant_usage'],
  // xl's unknown-parameter rule has no '_': "grant_usage" is read as a positional, then '=' is bad syntax
  ['grant_usage=2,vdev=xvda,target=/a', "bad disk syntax near \"=2,vdev=xvda,target=/a\": write parameters as key=value with no space before '=', and give a target that contains '=' last, as target=..."],
  ['qcow3:/a,xvda,w', 'unknown prefix "qcow3:": the deprecated prefixes are raw: qcow: qcow2: vhd: iscsi: nbd: enbd: drbd: tapdisk: tap: tap2: aio: ioemu: file: phy: (a target with \':\' or \',\' in it must be given last as target=...)'],
  ['=x', "bad disk syntax near \"=x\": write parameters as key=value with no space before '=', and give a target that contains '=' last, as target=..."],
  ['/a,,xvda,rw,x', "too many positional parameters at \"x\": expected at most target, format, vdev and access, in that order; a disk spec is 'target,format,vdev,access' (e.g. '/srv/vm.img,raw,xvda,rw') or 'key=value' parameters with target= last (e.g. 'format=qcow2, vdev=xvda, target=/srv/vm.qcow2'), see xl-disk-configuration(5)"],
  ['/a', "missing vdev (the device the guest sees, e.g. xvda or hdc); a disk spec is 'target,format,vdev,access' (e.g. '/srv/vm.img,raw,xvda,rw') or 'key=value' parameters with target= last (e.g. 'format=qcow2, vdev=xvda, target=/srv/vm.qcow2'), see xl-disk-configuration(5)"],
  ['', "missing vdev (the device the guest sees, e.g. xvda or hdc); a disk spec is 'target,format,vdev,access' (e.g. '/srv/vm.img,raw,xvda,rw') or 'key=value' parameters with target= last (e.g. 'format=qcow2, vdev=xvda, target=/srv/vm.qcow2'), see xl-disk-configuration(5)"],
  ['vdev=xvda', "missing target (the image file or device path); a disk spec is 'target,format,vdev,access' (e.g. '/srv/vm.img,raw,xvda,rw') or 'key=value' parameters with target= last (e.g. 'format=qcow2, vdev=xvda, target=/srv/vm.qcow2'), see xl-disk-configuration(5)"],
  [',,xvda', 'empty target: only a cdrom drive may be empty (add cdrom or devtype=cdrom), otherwise give the image file or device path'],
  ['format=empty,vdev=xvda,target=/a', 'format empty is for an empty cdrom drive only: add cdrom, or give the image format'],
  // with the format given by name, the empty positional after the target is the vdev: "xvda" is then the access (as in xl)
  ['format=qcow2,/a,,xvda', 'unknown value "xvda" for access: expected rw (or w) or ro (or r)'],
  ['backendtype=phy,format=qcow2,vdev=xvda,target=/a', 'backendtype=phy supports format raw only, not qcow2: use backendtype=qdisk (or leave backendtype out)'],
];

t.test('bad specs are refused with what is accepted', async (t) => {
  for (const [spec, reason] of BAD) {
    try {
      parseDiskSpec(spec);
      t.fail(`accepted ${JSON.stringify(spec)}`);
    } catch (err) {
      t.type(err, DiskSpecError);
      t.equal((err as DiskSpecError).reason, reason, JSON.stringify(spec));
      t.equal((err as DiskSpecError).spec, spec);
      t.equal((err as Error).message, `invalid disk spec ${JSON.stringify(spec)}: ${reason}`);
    }
  }
});

t.test("vdevs libxl numbers, and those it refuses", async (t) => {
  const ok: [string, number][] = [
    ['xvda', 51712],
    ['xvdb1', (202 << 8) | (1 << 4) | 1],
    ['xvdp15', (202 << 8) | (15 << 4) | 15],
    ['xvdq', (1 << 28) | (16 << 8)],
    ['xvda16', (1 << 28) | 16],
    ['xvdaa', (1 << 28) | (26 << 8)],
    ['hda', 3 << 8],
    ['hdb63', (3 << 8) | (1 << 6) | 63],
    ['hdc', 22 << 8],
    ['hdd1', (22 << 8) | (1 << 6) | 1],
    ['sda', 8 << 8],
    ['sdp15', (8 << 8) | (15 << 4) | 15],
    ['d0p1', (202 << 8) | 1],
    ['d16p0', (1 << 28) | (16 << 8)],
    ['51712', 51712],
    ['0xca00', 51712],
  ];
  for (const [vdev, n] of ok) t.equal(vdevNumber(vdev), n, vdev);
  for (const vdev of ['xvd', 'xvd1', 'xvda0', 'xvda01', 'xvda256', 'hde', 'hda64', 'sdq', 'sda16', 'd0', 'd1048576p0', 'd0p256', 'eth0', 'xvdA', '', '2147483648']) {
    t.equal(vdevNumber(vdev), undefined, `${JSON.stringify(vdev)} is refused`);
  }
});
