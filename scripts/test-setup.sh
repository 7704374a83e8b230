#!/usr/bin/env bash
# Tools only the tests need, installed once. Each block is a function that does nothing when
# its tools are present, so a second run takes a moment.
set -euo pipefail

say() { printf 'test-setup: %s\n' "$*"; }

SUDO=""
need_root() {
    if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
        command -v sudo >/dev/null 2>&1 || { say "ERROR: $1 missing and no sudo to install it"; exit 1; }
        SUDO=sudo
    fi
}

# ---- Prometheus: promtool (tests/metrics.rs) and the server (tests/prometheus.rs) ----------
# Debian's prometheus package ships both. The tests start their own server on a loopback
# port; the package's system service must not run beside them.
setup_prometheus() {
    if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
        say "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') present"
    else
        need_root "prometheus"
        say "installing prometheus and promtool (Debian package prometheus)"
        export DEBIAN_FRONTEND=noninteractive
        # Other engineers may be installing too: wait for dpkg's lock instead of failing.
        local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
        $SUDO "${apt[@]}" update >/dev/null
        # policy-rc.d (exit 101) keeps the package from starting its service on install; an
        # existing one (Docker images ship one) is put back afterwards.
        local policy=/usr/sbin/policy-rc.d backup=""
        if [ -e "$policy" ]; then
            backup=$(mktemp)
            $SUDO cp -p "$policy" "$backup"
        fi
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        local rc=0
        $SUDO "${apt[@]}" install -y --no-install-recommends prometheus >/dev/null || rc=$?
        if [ -n "$backup" ]; then $SUDO mv "$backup" "$policy"; else $SUDO rm -f "$policy"; fi
        [ "$rc" = 0 ] || { say "ERROR: apt-get install prometheus failed ($rc)"; exit 1; }
        command -v promtool >/dev/null && command -v prometheus >/dev/null \
            || { say "ERROR: prometheus or promtool still missing after install"; exit 1; }
        say "prometheus installed"
    fi
    # Where a service manager runs, make sure the package's service is neither running nor
    # started at boot (in containers without one, policy-rc.d above kept it from starting).
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        need_root "permission to stop the prometheus service"
        say "stopping and disabling the prometheus system service"
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
        need_root "permission to stop the prometheus service"
        say "stopping the prometheus system service"
        $SUDO service prometheus stop >/dev/null 2>&1 || true
    fi
    return 0
}
setup_prometheus
# ---- end of Prometheus ----------------------------------------------------------------------
