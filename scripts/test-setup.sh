#!/usr/bin/env bash
# Tools only the tests need, installed once: promtool (from Debian's prometheus package)
# to validate the /metrics exposition. Idempotent: does nothing when promtool is present.
set -euo pipefail

say() { printf 'test-setup: %s\n' "$*"; }

if command -v promtool >/dev/null 2>&1; then
    say "promtool $(promtool --version 2>&1 | head -1 | awk '{print $3}') present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { say "ERROR: promtool missing; install Debian's prometheus package (needs root)"; exit 1; }
    SUDO=sudo
fi
say "installing promtool (Debian package prometheus)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# policy-rc.d keeps the package from starting a Prometheus server on install.
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
$SUDO rm -f /usr/sbin/policy-rc.d
command -v promtool >/dev/null || { say "ERROR: promtool still missing after install"; exit 1; }
say "promtool installed"
