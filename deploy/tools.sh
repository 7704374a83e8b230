# shellcheck shell=bash
# Sourced by scripts/check-docker.sh and scripts/check-deploy.sh: a cached venv with the
# pinned check tools of deploy/requirements-check.txt (reinstalled when that file changes).
DEPLOY_VENV=${DEPLOY_VENV:-.cache/deploy-venv}
deploy_tools() {
    local req=deploy/requirements-check.txt stamp="$DEPLOY_VENV/.requirements.sha256" h
    h=$(sha256sum "$req" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$h" ]; then
        echo "tools: installing $req into $DEPLOY_VENV"
        rm -rf "$DEPLOY_VENV"
        "${PYTHON:-python3}" -m venv "$DEPLOY_VENV"
        "$DEPLOY_VENV/bin/pip" install --disable-pip-version-check -q --no-deps -r "$req"
        echo "$h" > "$stamp"
    fi
    export PATH="$PWD/$DEPLOY_VENV/bin:$PATH"
}
