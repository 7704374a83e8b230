#!/usr/bin/env bash
# make docker-check: the Dockerfile, checked without a Docker engine (there is none here).
#   1. hadolint (pinned, from PyPI) on the Dockerfile, failing on every finding down to style
#   2. shellcheck on the image's health check script and the deploy scripts
#   3. cargo build --release --locked --workspace, as `make build` (a no-op when target/ is
#      fresh; `-p concur` alone would relink target/release/concur with other dependency
#      features than the workspace build, so the image's own `-p concur` build is not redone)
#   4. deploy/docker/replay.py replays every stage in a temporary directory: the stub-manifest
#      dependency build (cargo metadata --locked --offline), the Python stage's
#      scripts/setup.sh in a fresh venv (pip install --no-deps of the pinned closure, ONNX
#      export, golden check when ../shared/reference/minilm-golden.json is there), the runtime
#      layout, then the image's CMD as its USER uid on a free loopback port: /ready, one
#      /v1/embeddings request, /info, HEALTHCHECK before and during the drain, SIGTERM.
# Slow-ish (about 1-2 minutes; the first run downloads ~200 MB of wheels into pip's cache) and
# not part of `make test`. Env: KEEP_WORK=1 keeps the temporary directory, MINILM_GOLDEN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/tools.sh
source deploy/tools.sh

passed=0
ok() { passed=$((passed + 1)); printf 'check-docker: ok: %s\n' "$*"; }
fail() { printf 'check-docker: FAIL: %s\n' "$*" >&2; printf 'check-docker: %d passed, 1 failed\n' "$passed"; exit 1; }

deploy_tools
echo "check-docker: $(hadolint --version)"
hadolint --failure-threshold style Dockerfile || fail "hadolint Dockerfile"
ok "hadolint Dockerfile (no findings)"

scripts=(deploy/docker/healthcheck.sh deploy/tools.sh scripts/check-docker.sh scripts/check-deploy.sh scripts/replicas-test.sh)
shellcheck -x "${scripts[@]}" || fail "shellcheck"
ok "shellcheck ($(shellcheck --version | sed -n 's/^version: //p')): ${scripts[*]}"

cargo build --release --locked --workspace || fail "cargo build --release --locked --workspace"
ok "cargo build --release --locked --workspace"

work=$(mktemp -d /tmp/concur-docker-check.XXXXXX)
if [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "check-docker: keeping $work"
else
    trap 'rm -rf "$work"' EXIT
fi
golden=${MINILM_GOLDEN:-$PWD/../shared/reference/minilm-golden.json}
golden_args=()
if [ -f "$golden" ]; then
    golden_args=(--golden "$(cd "$(dirname "$golden")" && pwd)")
fi
start=$(date +%s)
python3 deploy/docker/replay.py --repo . --work "$work" "${golden_args[@]}" || fail "replay of the Dockerfile"
ok "replay of the Dockerfile's stages and the image's CMD ($(($(date +%s) - start)) s)"
printf 'check-docker: %d passed, 0 failed\n' "$passed"
