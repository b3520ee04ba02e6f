#!/bin/bash
# One-time set-up of the Xen lab, cached in $XENLAB_DIR (default /var/tmp/xenlab): host packages,
# a Debian dom0 root filesystem with the Xen tools, a Xen 4.17 hypervisor rebuilt with shadow
# paging (Debian's build leaves CONFIG_SHADOW_PAGING off, so PV log-dirty — and with it PV
# migration and Remus — fails with "Failed to enable logdirty: 95"). The domU initramfs is
# built with the images on every run (build-images.sh).
# Every step is skipped when its output already exists; a fresh machine takes about 3-5 minutes.
# dom0.img is NOT built here: build-images.sh does that (run.ts stages xl-ha into the rootfs first).
set -euo pipefail
trap 'echo "xenlab setup: failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
HERE=$(cd "$(dirname "$0")" && pwd)
L=${XENLAB_DIR:-/var/tmp/xenlab}; mkdir -p "$L"; cd "$L"
PKGS="qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 debootstrap busybox-static linux-image-amd64 e2fsprogs cpio bison flex gcc make python3"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "xenlab setup: installing host packages:$missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS
else
  echo "xenlab setup: host packages present"
fi
# the mirror apt already uses
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [ ! -x rootfs/usr/sbin/xl ]; then
  echo "xenlab setup: debootstrap dom0 rootfs from $MIRROR"
  rm -rf rootfs
  debootstrap --variant=minbase \
    --include=xen-utils-4.17,xen-utils-common,xenstore-utils,iproute2,busybox-static,kmod,udev,procps,bridge-utils,netcat-openbsd,strace,socat,nbd-client \
    bookworm rootfs "$MIRROR"
else
  echo "xenlab setup: rootfs with xl present"
fi
# strace (XENLAB_DAEMON_STRACE, a diagnostic) and socat (stock-remus-tcp): rootfs made before
# they were in the list lack them.
# Not dpkg -x: it would replace the merged-/usr symlinks (lib -> usr/lib) with directories.
if [ ! -x rootfs/usr/bin/strace ] || [ ! -x rootfs/usr/bin/socat ]; then
  (d=$(mktemp -d) && cd "$d" && apt-get download -q strace libunwind8 socat libwrap0 > /dev/null 2>&1 \
    && for f in ./*.deb; do dpkg-deb --fsys-tarfile "$f" | tar -x --keep-directory-symlink -C "$L/rootfs"; done; rm -rf "$d") \
    || echo "xenlab setup: could not add strace and socat to the rootfs (the scenarios that need them will say so)"
fi
# nbd-client (the disk scenario: hooks/block-ha connects dom0's kernel NBD client to xl-ha's
# export): rootfs made before it was in the list lack it.
if [ ! -x rootfs/usr/sbin/nbd-client ]; then
  (d=$(mktemp -d) && cd "$d" && apt-get download -q nbd-client libnl-3-200 libnl-genl-3-200 > /dev/null 2>&1 \
    && for f in ./*.deb; do dpkg-deb --fsys-tarfile "$f" | tar -x --keep-directory-symlink -C "$L/rootfs"; done; rm -rf "$d") \
    || echo "xenlab setup: could not add nbd-client to the rootfs (the disk scenario will say so)"
fi
# perf (XENLAB_DAEMON_PERF, a diagnostic) only when asked: XENLAB_WITH_PERF=1 (~40 MB of libraries)
if [ "${XENLAB_WITH_PERF:-}" = 1 ] && [ ! -x rootfs/usr/bin/perf ]; then
  (d=$(mktemp -d) && cd "$d" && apt-get download -q linux-perf libbabeltrace1 libdw1 libnuma1 libopencsd1 libperl5.36 \
      libpython3.11 libpython3.11-minimal libslang2 libglib2.0-0 libdebuginfod1 libcurl3-gnutls > /dev/null 2>&1 \
    && for f in ./*.deb; do dpkg-deb --fsys-tarfile "$f" | tar -x --keep-directory-symlink -C "$L/rootfs"; done; rm -rf "$d") \
    || echo "xenlab setup: could not add perf to the rootfs (XENLAB_DAEMON_PERF will say so)"
fi
if [ ! -f xen-4.17-shadow ]; then
  echo "xenlab setup: rebuilding the hypervisor with shadow paging"
  "$HERE/build-xen-shadow.sh"
else
  echo "xenlab setup: xen-4.17-shadow present"
fi
echo "xenlab setup: done"
