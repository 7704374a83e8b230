#!/usr/bin/env bash
# Idempotent setup of the Python peer's virtual environment (run by `make peer-setup`; needs
# python3 with venv and PyPI access): .venv-peer with ONNX Runtime, tokenizers and numpy at the
# versions of models/requirements.txt (the peer runs the same engine build as concur) plus
# FastAPI and uvicorn pinned here. pip resolves their small pure-Python dependencies (starlette,
# pydantic, anyio, ...). Reinstalled only when the pins change; a second run takes a second.
# The peer itself is ../shared/peers/py_peer_server.py; docs/loadtest.md shows the sweep command.
# Then scripts/peer-llama.sh: llama.cpp's llama-server built from source and its GGUF model,
# in .peer/ (the generation peer).
# Env: PYTHON (default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-peer
VPY=$VENV/bin/python
REQ=models/requirements.txt
FASTAPI=fastapi==0.163.2
UVICORN=uvicorn==0.54.0

say() { printf 'peer-setup: %s\n' "$*"; }
die() { printf 'peer-setup: ERROR: %s\n' "$*" >&2; exit 1; }

# The project's pin of one package, e.g. `onnxruntime==1.31.1`.
pin() {
    local line
    line=$(grep -E "^$1==" "$REQ") || die "$1 is not pinned in $REQ"
    printf '%s\n' "$line"
}

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
pins=$(printf '%s\n' "$(pin onnxruntime)" "$(pin tokenizers)" "$(pin numpy)" "$FASTAPI" "$UVICORN")
if [ ! -x "$VPY" ]; then
    say "creating $VENV ($("$PYTHON" --version 2>&1))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (install the python3-venv package)"
fi
stamp=$VENV/.pins
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$pins" ]; then
    say "installing into $VENV: $(echo "$pins" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one pin per word
    "$VPY" -m pip install --disable-pip-version-check -q $pins
    "$VPY" -c 'import onnxruntime, tokenizers, numpy, fastapi, uvicorn' \
        || die "installed packages do not import"
    printf '%s\n' "$pins" > "$stamp"
else
    say "$VENV up to date"
fi
say "done: $VENV/bin/python -m uvicorn --app-dir ../shared/peers py_peer_server:app (see docs/loadtest.md)"
bash scripts/peer-llama.sh
