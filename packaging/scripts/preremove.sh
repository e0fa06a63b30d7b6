#!/bin/sh
# Before removing Tattle (not before an upgrade): stop the helper so that the bus cannot activate it again, then
# detach every program, unpin the maps and delete the netfilter table, so nothing of Tattle keeps enforcing.
#   deb: remove | upgrade VERSION | deconfigure | failed-upgrade   rpm: 0 (remove) or 1 (upgrade)
#   Arch: pre_remove VERSION (upgrades run pre_upgrade instead)
set -e

case "$1" in
upgrade | failed-upgrade | 1 | 2) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl disable tattled.service || true
	# Stopped while the unit is still loaded from its file, so that systemd stops it as the unit says and it
	# ends inactive: `mask` reloads systemd, and a unit masked while it runs would be stopped under a masked
	# unit's settings (no Type=notify, no RuntimeDirectory=) instead of its own.
	systemctl stop tattled.service || true
	# --runtime: until the next boot or postremove, D-Bus activation cannot start the helper again.
	systemctl mask --runtime tattled.service >/dev/null 2>&1 || true
	# A call on the bus between the stop and the mask may have activated it again: stop that one too (a
	# masked unit can be stopped, not started).
	systemctl stop tattled.service || true
else
	systemctl disable tattled.service 2>/dev/null || true
fi
if [ -x /usr/libexec/tattled ]; then
	/usr/libexec/tattled -uninstall
fi
exit 0
