#!/bin/sh
# Renders the tray's fallback pixmaps from the symbolic icons in data/ (run by `go generate ./app/tray`; needs
# rsvg-convert from librsvg2-bin). Hosts draw these only when they cannot find the themed icon (the app runs
# uninstalled, or the host does not see the icon theme). Unlike themed symbolic icons nobody recolours them,
# so they are drawn in a blue that reads on light and dark panels, with the question badge in orange.
# Usage: gen.sh [OUTDIR]   (default: this directory)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
icons=$here/../../../data/icons/hicolor/symbolic/apps
for state in normal question silent; do
	case $state in
	normal) svg=$icons/io.github.tattlefw.Tattle-symbolic.svg ;;
	*) svg=$icons/io.github.tattlefw.Tattle-$state-symbolic.svg ;;
	esac
	for size in 16 24 32 48; do
		sed -e '/cx="12.5" cy="3.5" r="3.2"/s/#2e3436/#e66100/' -e 's/#2e3436/#3584e4/g' "$svg" |
			rsvg-convert -w $size -h $size -o "$out/$state-$size.png"
	done
done
