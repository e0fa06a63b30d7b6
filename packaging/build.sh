#!/bin/bash
# Builds Tattle's packages from this tree: configures a meson build with prefix /usr, installs it into a staging
# directory (exactly the layout `meson install` gives) and packs that with nfpm (a Go tool dependency: go.mod's
# tool directive) into a .deb, an .rpm and an Arch package.
# Usage: packaging/build.sh [OUTDIR] [FORMAT...]     (default OUTDIR: build-packages; FORMAT: deb rpm archlinux)
# Also run by `meson compile -C build package` (OUTDIR is then the build directory's packages/).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/build-packages}
shift || true
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(deb rpm archlinux)
export PATH=/usr/local/go/bin:$PATH

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

version=$(cd "$src" && meson introspect --projectinfo meson.build 2>/dev/null |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null || true)
if [ -z "$version" ]; then
	version=$(sed -n "s/^project('tattle', version: '\([^']*\)'.*/\1/p" "$src/meson.build")
fi
[ -n "$version" ] || { echo "build.sh: cannot read the project version from meson.build" >&2; exit 1; }

echo "== meson: configure (prefix /usr), build and stage the install"
if ! meson setup --prefix=/usr --sysconfdir=/etc --libexecdir=libexec "$work/build" "$src" >"$work/setup.log" 2>&1; then
	cat "$work/setup.log" >&2
	echo "build.sh: meson setup failed (see above)" >&2
	exit 1
fi
if ! meson compile -C "$work/build" >"$work/compile.log" 2>&1; then
	tail -n 40 "$work/compile.log" >&2
	echo "build.sh: meson compile failed (see above)" >&2
	exit 1
fi
stage=$work/stage
if ! meson install -C "$work/build" --no-rebuild --destdir "$stage" >"$work/install.log" 2>&1; then
	cat "$work/install.log" >&2
	echo "build.sh: meson install failed (see above)" >&2
	exit 1
fi

echo "== nfpm: ${formats[*]} (version $version)"
cp -r "$src/packaging/scripts" "$work/scripts"
export TATTLE_VERSION=$version
for f in "${formats[@]}"; do
	# go tool runs in the module; nfpm reads stage/ and scripts/ relative to the work directory.
	nfpm=$(cd "$src" && go tool -n nfpm)
	(cd "$work" && "$nfpm" package --config "$src/packaging/nfpm.yaml" --packager "$f" --target "$out/")
done
ls -l "$out"
