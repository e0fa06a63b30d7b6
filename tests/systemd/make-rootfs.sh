#!/bin/bash
# Makes (once) the root file system the systemd ring boots: Debian 12 from Debian's own packages with mmdebstrap
# (minbase plus systemd, dbus, polkitd, nftables and what tattle's package depends on), as a tarball cached in
# CACHE under a name made from its package list, like the kernels in /var/cache/tattle-kernels.
# Usage: make-rootfs.sh [CACHE]   (default /var/cache/tattle-rootfs)   Prints the tarball's path last.
set -euo pipefail

cache=${1:-${TATTLE_ROOTFS:-/var/cache/tattle-rootfs}}
suite=bookworm
mirror=${TATTLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# systemd as PID 1 and its tools (systemd-analyze), the bus and polkit the helper serves through, nft to look
# at tables, kmod so the kernel can load netfilter modules, python3 for the guest's probes, and libgtk-3-0
# because the package holds the GTK app too.
packages=systemd,systemd-sysv,udev,dbus,polkitd,nftables,kmod,iproute2,python3,libgtk-3-0,procps

for tool in mmdebstrap sha256sum; do
	command -v "$tool" >/dev/null || { echo "make-rootfs.sh: $tool is missing (apt-get install mmdebstrap)" >&2; exit 1; }
done
key=$(printf '%s\n' "$suite" "$packages" minbase | sha256sum | cut -c1-16)
tarball=$cache/$suite-$key.tar
if [ -f "$tarball" ] && [ -s "$tarball" ]; then
	echo "root file system already present: $tarball"
	echo "$tarball"
	exit 0
fi
# An earlier version left a directory under the tarball's name (mmdebstrap picks its output format from the
# file name, and "….tar.tmp" reads as a directory): not usable, made again.
[ -d "$tarball" ] && rm -rf "$tarball"
[ -d "$tarball.tmp" ] && rm -rf "$tarball.tmp"
mkdir -p "$cache"
echo "making the root file system ($suite, minbase + $packages) with mmdebstrap; this takes a few minutes"
start=$(date +%s)
if ! mmdebstrap --variant=minbase --format=tar --include="$packages" "$suite" "$tarball.tmp" "$mirror" >"$cache/mmdebstrap.log" 2>&1; then
	cat "$cache/mmdebstrap.log" >&2
	rm -f "$tarball.tmp"
	echo "make-rootfs.sh: mmdebstrap failed (log above); check that $mirror is reachable" >&2
	exit 1
fi
mv "$tarball.tmp" "$tarball"
echo "root file system made in $(($(date +%s) - start)) s: $tarball ($(du -h "$tarball" | cut -f1))"
echo "$tarball"
