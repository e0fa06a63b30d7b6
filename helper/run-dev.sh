#!/bin/bash
# Sets up Tattle on this machine and runs the helper in the foreground:
# installs the build dependencies, builds and installs with meson (prefix /usr/local), starts tattled.
# Ctrl-C stops the helper; enforcement stays in the kernel (pinned). `tattled -uninstall` removes it.
# Usage: sudo helper/run-dev.sh [tattled flags…]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tests/install-deps.sh --no-kernels
export PATH=/usr/local/go/bin:$PATH
[ -d build ] || meson setup build
meson compile -C build
meson install -C build --quiet
exec "$(meson introspect build --installed | python3 -c 'import json,sys; print([v for v in json.load(sys.stdin).values() if v.endswith("/tattled")][0])')" -log-level debug "$@"
