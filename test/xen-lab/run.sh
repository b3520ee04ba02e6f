#!/bin/bash
# Boot Xen + dom0 under QEMU's software emulator (TCG); dom0 runs /xenlab/init, which sets up the
# Xen userspace, runs /xenlab/run-scenarios.sh (or the stock /xenlab/run-tests.sh with
# xenlab.stock, or a shell with xenlab.shell), and reboots (QEMU then exits: -no-reboot).
# Usage: run.sh <serial-log> [extra dom0 kernel args, e.g. xenlab.remus_secs=20]
# Environment: XENLAB_DIR, TIMEOUT (seconds, default 1800), XEN (hypervisor image),
# QEMU_CPU (default max,rdtscp=off,xsave=off).
# xsave=off: with XSAVE (and so AVX) offered, dom0 processes crash at random once a domU runs
# (measured: node segfaulted or hit int3 in 1 of 40 runs with a domU running, 12 of 40 and 18 of 20
# during xl remus -b; thread=single did not help); without it, 0 of 40. XSAVE state across Xen PV
# context switches looks broken in QEMU 7.2's TCG.
# Results: in the serial log, and in dom0.img: debugfs -R 'cat /xenlab/scenarios.txt' dom0.img
set -euo pipefail
LOG=${1:?serial log path}; shift
L=${XENLAB_DIR:-/var/tmp/xenlab}
KVER=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1 | sed 's|/boot/vmlinuz-||')
exec timeout "${TIMEOUT:-1800}" qemu-system-x86_64 -accel tcg,thread=multi -cpu "${QEMU_CPU:-max,rdtscp=off,xsave=off}" \
  -m 4096 -smp 2 -display none -no-reboot -net none -monitor none \
  -serial "file:$LOG" \
  -drive "file=$L/dom0.img,if=virtio,format=raw,cache=unsafe" \
  -kernel "${XEN:-$L/xen-4.17-shadow}" \
  -append "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all smap=0 smep=0" \
  -initrd "/boot/vmlinuz-$KVER console=hvc0 earlyprintk=xen root=/dev/vda rw init=/xenlab/init panic=-1 $*,/boot/initrd.img-$KVER"
