#!/bin/bash
# Sets up Tattle on this machine and runs it: installs the build dependencies, builds and installs with meson
# (prefix /usr, where dbus-daemon and polkitd read their configuration), then starts the helper:
#   - with systemd: enables tattled.service, shows `tattlectl status` and follows the helper's log;
#   - without systemd (containers, CI machines): runs tattled in the foreground, serving the D-Bus API when a
#     system bus runs. Ctrl-C stops it; enforcement stays in the kernel (pinned) until `tattled -uninstall`.
# Usage: sudo helper/run-dev.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
	echo "run-dev.sh: run as root (it installs packages and the helper)" >&2
	exit 1
fi
bash tests/install-deps.sh --no-kernels
export PATH=/usr/local/go/bin:$PATH
if [ -d build ]; then
	meson configure build -Dprefix=/usr >/dev/null
else
	meson setup --prefix=/usr build
fi
meson compile -C build
meson install -C build --quiet
tattled=/usr/libexec/tattled

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl reload dbus.service || true # read Tattle's bus policy
	systemctl enable --now tattled.service
	tattlectl status
	echo "tattled runs as tattled.service; try: tattlectl rules list, tattlectl monitor. Following its log (Ctrl-C stops following):"
	exec journalctl -fu tattled.service
fi

bus=none
if [ -S /run/dbus/system_bus_socket ]; then
	bus=system
	dbus-send --system --type=method_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig || true
fi
echo "no systemd here: running $tattled in the foreground (D-Bus API: $bus)"
exec "$tattled" -bus "$bus" -log-level debug
