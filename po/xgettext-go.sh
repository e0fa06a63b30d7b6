#!/bin/sh
# Stands in for xgettext in meson's tattle-pot target (po/meson.build): Debian 12's xgettext cannot read Go, so
# the template comes from app/i18n/extract, which hands the files that are not Go to the real xgettext itself.
# The xgettext arguments meson passes are not needed: the extractor reads po/POTFILES and writes po/tattle.pot.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
go=$(command -v go || echo /usr/local/go/bin/go)
exec "$go" -C "$root" run ./app/i18n/extract
