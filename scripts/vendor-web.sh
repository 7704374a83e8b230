#!/usr/bin/env bash
# Refreshes web/vendor/ (the charting library the live page embeds) from npm, at exactly the
# version web/package-lock.json pins, after checking the tarball against the lock's integrity
# hash. cargo and the Dockerfile read the vendored files, so neither needs node.
#   scripts/vendor-web.sh          fetch, check, copy into web/vendor/
#   scripts/vendor-web.sh --check  fetch, check, and fail if web/vendor/ differs
# To move to another uPlot: edit web/package.json, `npm install --package-lock-only` in web/,
# then run this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-write}
lock=web/package-lock.json
read -r version integrity < <(node -e '
    const p = require(process.argv[1]).packages["node_modules/uplot"];
    console.log(p.version, p.integrity);' "$PWD/$lock")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" "uplot@$version" >/dev/null
tarball=$(ls "$tmp"/uplot-*.tgz)
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
    echo "vendor-web: uplot@$version does not match $lock: $actual != $integrity" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$tmp"

# What the page embeds (src/http/live.rs include_str!s them), and the licence that goes with it.
files=(dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE)
for f in "${files[@]}"; do
    dest=web/vendor/$(basename "$f")
    if [ "$mode" = --check ]; then
        cmp -s "$tmp/package/$f" "$dest" || { echo "vendor-web: $dest differs from uplot@$version" >&2; exit 1; }
    else
        install -D -m 0644 "$tmp/package/$f" "$dest"
    fi
done
if [ "$mode" = --check ]; then what="matches web/vendor/"; else what="copied into web/vendor/"; fi
echo "vendor-web: uplot@$version ($integrity) $what"
