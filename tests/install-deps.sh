#!/bin/bash
# Installs what building and testing Tattle needs on Debian 12, idempotently:
#   Debian packages (clang-16 and libbpf headers for the BPF objects, meson, qemu and busybox for the VM ring,
#   netfilter and network tools), the Go modules, the Debian kernels the VM ring boots and the Debian root file
#   system the systemd ring boots.
# Usage: sudo tests/install-deps.sh [--no-kernels]   (--no-kernels: neither kernels nor the root file system)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fetch_kernels=1
[ "${1:-}" = "--no-kernels" ] && fetch_kernels=0

if [ "$(id -u)" != 0 ]; then
	echo "install-deps.sh: run as root (it installs Debian packages)" >&2
	exit 1
fi

packages=(
	clang-16 llvm-16 libbpf-dev linux-libc-dev bpftool   # BPF objects (go generate ./bpf/...)
	gcc pkg-config git ca-certificates meson ninja-build # build
	qemu-system-x86 busybox-static cpio xz-utils         # VM ring (xz: unpack trixie's .ko.xz modules for the initramfs)
	mmdebstrap e2fsprogs kmod                            # systemd ring: Debian root file system, ext4 image, depmod
	iproute2 iptables nftables curl python3 procps      # host ring clients and netfilter
	passwd util-linux libc-bin                           # dayone ring: test accounts (useradd), runuser, unshare, getent
	dbus polkitd libxml2-utils                           # service ring: a real bus and polkitd; policy checks
	btrfs-progs                                          # identities on btrfs subvolumes
	nodejs squashfs-tools squashfuse bubblewrap dpkg-dev # identity ring: node scripts, snap/AppImage images, a Flatpak-like sandbox, test packages
	gettext locales                                      # translations: msgfmt; de_DE.UTF-8 compiled by tests (localedef)
	desktop-file-utils appstream librsvg2-bin            # desktop entry and AppStream metainfo validation; icons rendered
	xvfb xdotool imagemagick                             # tray test: a real panel on a private X server, clicked, screenshot
	haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils # a real StatusNotifierWatcher and GTK tray panel
	libgtk-3-dev libx11-dev libxi-dev adwaita-icon-theme fonts-dejavu-core fonts-cantarell # the GTK app (gotk3 via cgo; Xlib, XInput 2 for the alert on Xwayland), its icons and fonts
	weston openbox at-spi2-core python3-pyatspi         # GUI tests: Wayland (headless) and X11 sessions, driven through AT-SPI
	gnome-shell gnome-shell-extension-appindicator dconf-service dconf-gsettings-backend # GNOME Shell session (headless Wayland) with its tray host
	kwin-wayland                                         # KWin session (kwin_wayland --virtual): scripting, fake input, ScreenShot2
	plasma-workspace plasma-desktop-data qtwayland5      # KWin tray test: plasmashell's system tray (its shell package in -data), kded5's StatusNotifierWatcher, Qt on Wayland
	xwayland                                             # Xwayland in the GNOME Shell and KWin sessions: where the alert shows without taking the keyboard
	xserver-xorg-core xserver-xorg-video-dummy x11-xserver-utils # X11 with two monitors: Xorg's dummy driver has several RandR outputs (Xvfb one), xrandr turns them on
	python3-gi gir1.2-gtk-3.0                            # the desktop tests' editor window (tests/gui/editor.py)
	dunst x11-utils                                      # the alert's notification fallback: a real notification server (dunst, dunstctl); xprop reads the window manager's stacking
	strace python3-dbus libglib2.0-bin passwd util-linux bsdutils # security ring: rogue agents (traced, python, gdbus); a test user; pkttyagent on a pty
	iperf3                                               # traffic ring: bulk throughput and byte counters
	prometheus systemd                                   # metrics ring: a real Prometheus server scraping tattled; systemd-journald reading its records
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Go: the module needs the version in go.mod; Debian 12's own Go is too old, so use /usr/local/go or PATH.
export PATH=/usr/local/go/bin:$PATH
if ! command -v go >/dev/null; then
	echo "install-deps.sh: Go is missing: install Go $(awk '/^go /{print $2}' "$root/go.mod") or newer to /usr/local/go" >&2
	exit 1
fi
(cd "$root" && go mod download)

if [ "$fetch_kernels" = 1 ]; then
	bash "$root/tests/vm/fetch-kernels.sh" "${TATTLE_KERNELS:-/var/cache/tattle-kernels}"
	# The systemd ring's Debian root file system (made once with mmdebstrap, then cached).
	bash "$root/tests/systemd/make-rootfs.sh" "${TATTLE_ROOTFS:-/var/cache/tattle-rootfs}"
fi
