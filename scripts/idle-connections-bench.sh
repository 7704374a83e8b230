#!/usr/bin/env bash
# Benchmark, not a test: what N idle keep-alive connections cost a loaded server.
# Each run starts a fresh `target/release/concur serve` (config/default.toml, chat off,
# the connection cap derived from the open-file limit) and applies USERS closed-loop users
# (`loadtest run`); the "idle" variant first opens N connections that each make one
# GET /health and then stay silent for the whole run (`--idle-connections N`), and reads
# the server's RSS before and after opening them. Variants alternate ("none", "idle",
# "none", "idle", ...) so drift on a shared machine hits both. Loopback only, bounded
# (about 35 s per run), every server stopped by the trap.
#
# The header-read and idle timeouts are raised for the run: hyper closes an HTTP/1.1
# keep-alive connection that waits header_read_timeout_ms (5 s by default) for its next
# request, and the point is to hold the connections, not to watch them time out.
#
# Env: N (10000), USERS (16), DURATION (20, measured seconds), WARMUP (2), ROUNDS (2),
# OUT (a temporary directory: one JSON summary per run).
# Needs `cargo build --release --workspace`, jq, curl, and an open-file limit above N
# (both processes raise their soft limit to the hard limit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=${N:-10000}
USERS=${USERS:-16}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$(mktemp -d)}
CONCUR=target/release/concur
LOADTEST=target/release/loadtest
mkdir -p "$OUT"

for b in "$CONCUR" "$LOADTEST"; do
    [ -x "$b" ] || { echo "$b missing: cargo build --release --workspace" >&2; exit 1; }
done

pid=""
stop_server() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
trap stop_server EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run VARIANT ROUND: one fresh server, one measured load run.
run() {
    local variant=$1 round=$2 port url idle=()
    port=$(free_port)
    url="http://127.0.0.1:$port"
    "$CONCUR" serve --config config/default.toml --listen "127.0.0.1:$port" \
        --set chat.enabled=false \
        --set server.header_read_timeout_ms=600000 --set server.idle_timeout_ms=3600000 \
        2>"$OUT/server-$variant-$round.log" &
    pid=$!
    for _ in $(seq 600); do
        curl -sf "$url/ready" >/dev/null && break
        sleep 0.1
    done
    curl -sf "$url/ready" >/dev/null || { echo "server did not become ready" >&2; exit 1; }
    if [ "$variant" = idle ]; then
        idle=(--idle-connections "$N" --server-pid "$pid")
    fi
    "$LOADTEST" run --url "$url" --users "$USERS" --warmup "$WARMUP" --duration "$DURATION" \
        --no-progress "${idle[@]}" --json "$OUT/$variant-$round.json" >/dev/null
    echo "max_connections $(curl -sf "$url/info" | jq .connections.max)" \
        >>"$OUT/server-$variant-$round.log"
    stop_server
    jq -r --arg v "$variant" --arg r "$round" '[$r, $v, (.throughput_rps*10|round/10),
        (.latency.p50_ms*10|round/10), (.latency.p99_ms*10|round/10), .requests - .successes,
        (.idle.opened // "-"), (.idle.closed_by_server // "-"),
        (if .idle.rss_per_connection_bytes then (.idle.rss_per_connection_bytes/1024*100|round/100) else "-" end)]
        | @tsv' "$OUT/$variant-$round.json"
}

echo "N=$N USERS=$USERS DURATION=$DURATION s, results in $OUT"
printf 'round\tvariant\treq/s\tp50_ms\tp99_ms\terrors\tidle_held\tidle_closed\tKiB/idle_conn\n'
for round in $(seq "$ROUNDS"); do
    run none "$round"
    run idle "$round"
done
