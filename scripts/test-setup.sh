#!/usr/bin/env bash
# Tools only the tests need, installed once: promtool (from Debian's prometheus package)
# to validate the /metrics exposition; schemathesis, openapi-spec-validator and cargo-fuzz
# for the API contract and the fuzz targets. Idempotent: does nothing when all are present.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test-setup: %s\n' "$*"; }

# ---- API contract and fuzzing (tests/contract.rs, fuzz/, scripts/fuzz.sh) ---------------
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
# ---- end of API contract and fuzzing -----------------------------------------------------

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
