#!/bin/sh
# After removing Tattle: forget the unit and the bus policy; on purge, also the rules and settings.
#   deb: remove | purge | upgrade VERSION ...   rpm: 0 (remove) or 1 (upgrade)   Arch: post_remove VERSION
set -e

case "$1" in
upgrade | failed-upgrade | abort-install | abort-upgrade | 1 | 2) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl unmask --runtime tattled.service >/dev/null 2>&1 || true
	systemctl daemon-reload || true
	systemctl reload dbus.service 2>/dev/null || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/tattle /etc/tattle
fi
exit 0
