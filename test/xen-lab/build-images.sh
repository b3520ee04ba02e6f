#!/bin/bash
# Build dom0.img, the lab's dom0 disk: the debootstrapped rootfs plus files/ (in /xenlab) and
# whatever was staged into rootfs/ beforehand (stage-xlha.sh puts xl-ha in /opt/xl-ha).
# Loop mounts fail in this sandbox, so the ext4 image is made with mkfs.ext4 -d. The image is
# rebuilt on every run: every boot starts from a clean dom0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
L=${XENLAB_DIR:-/var/tmp/xenlab}; cd "$L"
KVER=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1 | sed 's|/boot/vmlinuz-||')
# The domU initramfs is rebuilt every run (a second): busybox, files/domu-init, the PV NIC
# driver (xen-netfront is a module in Debian's kernel) for the network-buffering scenario, and
# the PV disk driver and ext4 for the disk scenario.
rm -rf domu-initrd && mkdir -p domu-initrd/{bin,proc,sys,dev,lib}
cp /bin/busybox domu-initrd/bin/busybox
cp "$HERE/files/domu-init" domu-initrd/init
nf=$(find "/lib/modules/$KVER/kernel/drivers/net" -name 'xen-netfront.ko*' | head -1)
[ -n "$nf" ] && cp "$nf" domu-initrd/lib/ || echo "warning: no xen-netfront module for $KVER: the domU will have no network" >&2
# the disk scenario's guest: the PV block driver and ext4 with what it needs (modules in Debian's
# kernel), loaded by domu-init in this order
for m in drivers/block/xen-blkfront lib/crc16 fs/mbcache fs/jbd2/jbd2 crypto/crc32c_generic fs/ext4/ext4; do
  f=$(ls "/lib/modules/$KVER/kernel/$m.ko"* 2>/dev/null | head -1)
  [ -n "$f" ] && cp "$f" domu-initrd/lib/ || echo "warning: no ${m##*/} module for $KVER: the disk scenario's guest cannot use its disk" >&2
done
(cd domu-initrd && find . | cpio -o -H newc --quiet | gzip -1) > domu-initrd.cpio.gz
rm -rf rootfs/xenlab; mkdir -p rootfs/xenlab rootfs/lib/modules
cp "$HERE"/files/* rootfs/xenlab/
cp "/boot/vmlinuz-$KVER" rootfs/xenlab/vmlinuz
cp domu-initrd.cpio.gz rootfs/xenlab/
[ -d "rootfs/lib/modules/$KVER" ] || cp -a "/lib/modules/$KVER" rootfs/lib/modules/
echo xenlab-dom0 > rootfs/etc/hostname
echo "/dev/vda / ext4 rw 0 1" > rootfs/etc/fstab
# size: content + 1.5 GiB of room for logs, saved images and the backup's state; at least 2 GiB
used_mb=$(du -sm rootfs | cut -f1)
size_mb=$(( used_mb + 1536 )); [ "$size_mb" -ge 2048 ] || size_mb=2048
rm -f dom0.img
mkfs.ext4 -q -F -L xenlab -d rootfs dom0.img "${size_mb}M"
echo "dom0.img: ${size_mb} MiB (rootfs ${used_mb} MiB)"
