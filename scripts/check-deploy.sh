#!/usr/bin/env bash
# make deploy-check: deploy/kubernetes/ checked without a cluster, in a cached venv of pinned
# tools (.cache/deploy-venv, deploy/requirements-check.txt):
#   1. yamllint --strict on deploy/ (deploy/yamllint.yaml)
#   2. deploy/check_manifests.py: renders the kustomization (resources, namespace,
#      configMapGenerator, images) and cross-checks manifests, concur.toml, the image
#      (Dockerfile, config/docker.toml) and src/metrics.rs
#   3. kubernetes-validate --strict (JSON schemas of Kubernetes 1.29 and 1.37, bundled) on the
#      rendered objects and the prometheus-adapter ConfigMap. The ServiceMonitor is a CRD with
#      no bundled schema: the validator skips it with a warning; step 2 checks its fields.
#   4. the validator rejects a misspelt field (so a pass means something)
#   5. concur check-config on concur.toml (the server's own validation)
#   6. promtool check rules on the adapter's query, templated (when promtool is installed:
#      `make test-setup` installs it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/tools.sh
source deploy/tools.sh

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'check-deploy: ok: %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'check-deploy: FAIL: %s\n' "$*" >&2; }

deploy_tools
tmp=$(mktemp -d /tmp/concur-deploy-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

if yamllint --strict -c deploy/yamllint.yaml deploy/; then
    ok "yamllint --strict deploy/"
else
    bad "yamllint deploy/"
fi

if python deploy/check_manifests.py --repo . --rendered "$tmp/rendered.yaml"; then
    ok "manifest cross-checks"
else
    bad "manifest cross-checks"
fi

validate() { # FILE...: kubernetes-validate --strict for each version; fails on any error
    local v out rc=0
    for v in 1.29.0 1.37.0; do
        out=$(kubernetes-validate --strict -k "$v" "$@" 2>&1) || rc=1
        printf '%s\n' "$out" | sed "s/^/  [$v] /"
        if printf '%s\n' "$out" | grep -q '^ERROR'; then rc=1; fi
    done
    return $rc
}
if [ -s "$tmp/rendered.yaml" ]; then
    if validate "$tmp/rendered.yaml" deploy/kubernetes/prometheus-adapter/config-map.yaml; then
        ok "kubernetes-validate --strict (1.29, 1.37): rendered kustomization + adapter ConfigMap"
    else
        bad "kubernetes-validate"
    fi
    sed 's/readinessProbe:/readinesProbe:/' deploy/kubernetes/deployment.yaml > "$tmp/typo.yaml"
    if kubernetes-validate --strict --quiet "$tmp/typo.yaml" >/dev/null 2>&1; then
        bad "kubernetes-validate accepted a misspelt field (readinesProbe)"
    else
        ok "kubernetes-validate rejects a misspelt field (readinesProbe)"
    fi
fi

concur=target/release/concur
[ -x "$concur" ] || concur=target/debug/concur
if [ ! -x "$concur" ]; then
    cargo build --release -p concur
    concur=target/release/concur
fi
if "$concur" check-config --config deploy/kubernetes/concur.toml > "$tmp/config.txt"; then
    ok "concur check-config deploy/kubernetes/concur.toml"
else
    bad "concur check-config deploy/kubernetes/concur.toml"
fi

if command -v promtool > /dev/null; then
    if promtool check rules "$tmp/adapter-queries.rules.yaml"; then
        ok "promtool check rules: the adapter's metricsQuery is valid PromQL"
    else
        bad "promtool check rules on the adapter's metricsQuery"
    fi
else
    echo "check-deploy: promtool not installed (make test-setup): adapter query syntax not checked"
fi

printf 'check-deploy: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
