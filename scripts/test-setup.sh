#!/usr/bin/env bash
# Tools only the tests need, installed once. Each block is a function that does nothing when
# its tools are present, so a second run takes a moment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test-setup: %s\n' "$*"; }

SUDO=""
need_root() {
    if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
        command -v sudo >/dev/null 2>&1 || { say "ERROR: $1 missing and no sudo to install it"; exit 1; }
        SUDO=sudo
    fi
}

# Debian packages, waiting for dpkg's lock (others may be installing) instead of failing.
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
    $SUDO "${apt[@]}" update >/dev/null && $SUDO "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null
}

# node and npm from Debian, for the browser test and the documentation check.
setup_npm() {
    command -v npm >/dev/null 2>&1 && return
    need_root "node and npm"
    say "installing nodejs and npm (Debian packages)"
    apt_install nodejs npm || { say "ERROR: apt-get install nodejs npm failed"; exit 1; }
}

# `npm ci` in DIR (which checks every integrity hash of DIR/package-lock.json), again only
# when the lock changes: a stamp in DIR/node_modules remembers the lock it installed.
npm_ci() {
    local dir=$1 what=$2 stamp=$1/node_modules/.lock.sha256 want
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
        say "$what up to date in $dir"
        return
    fi
    say "installing $what into $dir (npm ci)"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
}

# ---- Documentation check (scripts/check-docs.sh): remark-cli + remark-validate-links --------
# Pinned by scripts/docs-check/package-lock.json; checks relative links offline.
setup_docs_check() {
    setup_npm
    npm_ci scripts/docs-check "remark-cli and remark-validate-links"
}
# `scripts/test-setup.sh docs-check` (`make docs-check`): this tool only.
if [ "${1:-}" = docs-check ]; then
    setup_docs_check
    exit 0
fi
# ---- end of documentation check ------------------------------------------------------------

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
        # Another apt run may hold dpkg's lock: wait for it instead of failing.
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

# ---- API contract and fuzzing (tests/contract.rs, fuzz/, scripts/fuzz.sh) ------------------
# .venv-contract: schemathesis and openapi-spec-validator, pinned in
# tests/contract/requirements.txt (reinstalled when that file changes). cargo-fuzz, and the
# fuzz targets built once (cargo keeps them in fuzz/target; a rebuild is a no-op).
CONTRACT_VENV=.venv-contract
CONTRACT_REQ=tests/contract/requirements.txt
CARGO_FUZZ_VERSION=0.13.2

setup_contract_tools() {
    local py=${PYTHON:-python3} stamp=$CONTRACT_VENV/.requirements.sha256 want
    want=$(sha256sum "$CONTRACT_REQ" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
        say "$CONTRACT_VENV up to date"
        return
    fi
    say "installing $CONTRACT_REQ into $CONTRACT_VENV"
    rm -rf "$CONTRACT_VENV"
    "$py" -m venv "$CONTRACT_VENV"
    "$CONTRACT_VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
        -r "$CONTRACT_REQ"
    "$CONTRACT_VENV/bin/schemathesis" --version >/dev/null
    "$CONTRACT_VENV/bin/openapi-spec-validator" --help >/dev/null
    echo "$want" > "$stamp"
}

setup_fuzzing() {
    if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
        say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
        cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
    fi
    bash scripts/fuzz.sh build
}

setup_contract_tools
setup_fuzzing
# ---- end of API contract and fuzzing -------------------------------------------------------

# ---- Browser test (tests/live_page.rs): Debian's chromium, driven by playwright-core --------
# playwright-core is the driver only (no browser download): it is pinned by
# tests/browser/package-lock.json and installed with `npm ci` (which checks every integrity
# hash), again only when the lock changes.
BROWSER_DIR=tests/browser

setup_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        say "$(chromium --version 2>/dev/null | head -1) present"
        return
    fi
    need_root "chromium"
    say "installing chromium (Debian package)"
    apt_install chromium || { say "ERROR: apt-get install chromium failed"; exit 1; }
    command -v chromium >/dev/null || { say "ERROR: chromium still missing after install"; exit 1; }
}

setup_playwright() {
    setup_npm
    npm_ci "$BROWSER_DIR" playwright-core
}

setup_chromium
setup_playwright
# ---- end of browser test ---------------------------------------------------------------------

setup_docs_check
