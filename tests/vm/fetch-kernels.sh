#!/bin/bash
# Fetch the Debian cloud kernels the VM test ring boots: bookworm's (6.1) and trixie's (6.12).
# Uses a private apt state for trixie so the machine's own sources stay untouched.
# Usage: fetch-kernels.sh DIR   -> DIR/<name>/vmlinuz and DIR/<name>/modules/ for name in bookworm, trixie
set -euo pipefail

dest=${1:?usage: fetch-kernels.sh DIR}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# extract PKGFILE NAME: unpack a kernel image package into $dest/NAME
extract() {
	local deb=$1 name=$2
	rm -rf "${dest:?}/$name"
	mkdir -p "$dest/$name"
	dpkg-deb -x "$deb" "$work/root-$name"
	cp "$work"/root-"$name"/boot/vmlinuz-* "$dest/$name/vmlinuz"
	# bookworm ships modules in /lib/modules, trixie (merged /usr) in /usr/lib/modules
	local mods
	for mods in "$work/root-$name/lib/modules" "$work/root-$name/usr/lib/modules"; do
		if [ -d "$mods" ]; then
			mv "$mods" "$dest/$name/modules"
			break
		fi
	done
	basename "$deb" >"$dest/$name/package"
	echo "fetched $name kernel: $(cat "$dest/$name/package")"
}

# The newest concrete image the metapackage points at, from a given apt configuration.
image_package() {
	apt-cache "$@" depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

have() { [ -s "$dest/$1/vmlinuz" ] && [ -s "$dest/$1/package" ] && [ "$(cat "$dest/$1/package")" = "$2" ]; }

# bookworm: the machine's own sources.
pkg=$(image_package)
[ -n "$pkg" ] || { echo "cannot find the bookworm cloud kernel package (run apt-get update)" >&2; exit 1; }
cd "$work"
if ! ls "$dest"/bookworm/package >/dev/null 2>&1 || ! grep -q "^${pkg}_" "$dest/bookworm/package"; then
	apt-get download -q "$pkg"
	extract "$work/${pkg}"_*.deb bookworm
else
	echo "bookworm kernel already present: $(cat "$dest/bookworm/package")"
fi

# trixie: private apt state.
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
cat >"$apt_dir/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
apt_opts=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
	-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o Debug::NoLocking=1)
apt-get "${apt_opts[@]}" -q update >/dev/null
pkg=$(image_package "${apt_opts[@]}")
[ -n "$pkg" ] || { echo "cannot find the trixie cloud kernel package" >&2; exit 1; }
if ! ls "$dest"/trixie/package >/dev/null 2>&1 || ! grep -q "^${pkg}_" "$dest/trixie/package"; then
	apt-get "${apt_opts[@]}" download -q "$pkg"
	extract "$work/${pkg}"_*.deb trixie
else
	echo "trixie kernel already present: $(cat "$dest/trixie/package")"
fi
