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
	# --runtime: until the next boot or postremove, D-Bus activation cannot start the helper again.
	systemctl mask --runtime tattled.service >/dev/null 2>&1 || true
	systemctl disable --now tattled.service || true
else
	systemctl disable tattled.service 2>/dev/null || true
fi
if [ -x /usr/libexec/tattled ]; then
	/usr/libexec/tattled -uninstall
fi
exit 0
