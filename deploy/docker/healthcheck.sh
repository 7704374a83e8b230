#!/usr/bin/env bash
# The image's HEALTHCHECK: GET /ready on the local listener with bash's /dev/tcp, so the slim
# runtime image needs no curl. Healthy = HTTP 200 (model loaded, not draining).
# Env: HEALTHCHECK_PORT (default 8080), HEALTHCHECK_PATH (default /ready).
set -euo pipefail
port=${HEALTHCHECK_PORT:-8080}
path=${HEALTHCHECK_PATH:-/ready}
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3
exec 3<&-
case "$status" in
    "HTTP/1.1 200 "*) exit 0 ;;
    *) echo "unhealthy: ${status%$'\r'}" >&2; exit 1 ;;
esac
