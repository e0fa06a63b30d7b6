#!/bin/sh
# After installing or upgrading Tattle: make the bus and polkit see the new policy, enable the helper's unit and
# (on a running system) start it, so the machine enforces from now on and after every boot.
#   deb: configure VERSION   rpm: 1 (install) or 2 (upgrade)   Arch: post_install/post_upgrade VERSION
set -e

if command -v gtk-update-icon-cache >/dev/null 2>&1; then
	gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	# The bus reads its policy and activation files again (io.github.tattlefw.Tattle1 becomes ownable by root).
	systemctl reload dbus.service 2>/dev/null ||
		dbus-send --system --type=method_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig || true
	# polkitd learns new actions from its directory; restarting it makes sure (it has no reload).
	systemctl try-restart polkit.service 2>/dev/null || true
	systemctl enable tattled.service
	# An upgrade replaces the running helper; the pinned programs enforce across the restart.
	systemctl restart tattled.service
else
	# No running systemd (a chroot, an image being built): enabled, it starts at the next boot.
	systemctl enable tattled.service 2>/dev/null || true
fi
exit 0
