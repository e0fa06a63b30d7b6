#!/bin/bash
# Writes every Go module the build needs into OUTDIR/go-vendor (default: flatpak/go-vendor, next to the
# manifest, which copies it into the source tree as vendor/). The Flatpak build then runs with GOFLAGS=-mod=vendor
# and GOPROXY=off: it needs no network. The output is not committed (flatpak/.gitignore); run this before
# flatpak-builder:
#   flatpak/vendor.sh && flatpak-builder --force-clean build-dir flatpak/io.github.tattlefw.Tattle.json
# Usage: flatpak/vendor.sh [OUTDIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/flatpak}
export PATH=/usr/local/go/bin:$PATH

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/go-vendor"
# `go mod vendor -o` writes outside the module, so no vendor/ directory appears in the checkout (the go tool
# would start using it for every build in the tree).
(cd "$root" && go mod vendor -o "$out/go-vendor")
if [ ! -s "$out/go-vendor/modules.txt" ]; then
	echo "vendor.sh: go mod vendor wrote no modules.txt to $out/go-vendor" >&2
	exit 1
fi
echo "vendored $(grep -c '^# ' "$out/go-vendor/modules.txt") modules into $out/go-vendor"
