#!/bin/bash
# Sets up Tattle on this machine and runs it: installs the build dependencies, builds and installs with meson
# (prefix /usr, where dbus-daemon and polkitd read their configuration), starts the app (`tattle`) in the
# desktop session of the user who ran sudo (it also starts with every session, from /etc/xdg/autostart), then
# the helper:
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

# The app belongs in the desktop session of the user who ran sudo, not root's: it is that user's agent.
start_app() {
	local user=${SUDO_USER:-} uid runtime
	if [ -z "$user" ] || [ "$user" = root ]; then
		echo "start the app in your desktop session with: tattle"
		return
	fi
	uid=$(id -u "$user")
	runtime=/run/user/$uid
	local env=(XDG_RUNTIME_DIR="$runtime" DBUS_SESSION_BUS_ADDRESS="unix:path=$runtime/bus")
	local wayland=""
	if [ -n "${DISPLAY:-}" ]; then env+=(DISPLAY="$DISPLAY"); fi
	if [ -n "${XAUTHORITY:-}" ]; then env+=(XAUTHORITY="$XAUTHORITY"); fi
	for w in "$runtime"/wayland-[0-9]; do
		if [ -S "$w" ]; then wayland=$(basename "$w"); env+=(WAYLAND_DISPLAY="$wayland"); break; fi
	done
	if [ -z "${DISPLAY:-}" ] && [ -z "$wayland" ]; then
		echo "no desktop session found for $user: start the app there with: tattle"
		return
	fi
	runuser -u "$user" -- env "${env[@]}" setsid /usr/bin/tattle >/dev/null 2>&1 < /dev/null &
	echo "started the Tattle app for $user (monitor, alerts and tray; it starts with every session from now on)"
}

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl reload dbus.service || true # read Tattle's bus policy
	systemctl enable --now tattled.service
	tattlectl status
	start_app
	echo "tattled runs as tattled.service; try: tattlectl rules list, tattlectl monitor. Following its log (Ctrl-C stops following):"
	exec journalctl -fu tattled.service
fi

bus=none
if [ -S /run/dbus/system_bus_socket ]; then
	bus=system
	dbus-send --system --type=method_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig || true
fi
if [ "$bus" = system ]; then start_app; fi
echo "no systemd here: running $tattled in the foreground (D-Bus API: $bus)"
# The factory rules from this checkout (data/rules.d), so editing them takes effect on the next start.
exec "$tattled" -bus "$bus" -log-level debug -factory-dir "$root/data/rules.d"
