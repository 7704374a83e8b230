#!/bin/sh
# workers against processes on this (shared, noisy) 2-core machine: closed loops at 1, 4, 16
# and 64 users, 2 s warm-up + 6 s measured each, the two presets alternated, ROUNDS rounds.
# Then RSS (parent and children, from /info and /proc) and IPC per batch (from /metrics).
# Usage: results/2core-processes/run.sh [ROUNDS]   (release binaries first)
set -eu
cd "$(dirname "$0")/../.."
rounds=${1:-2}
out=results/2core-processes
port=18600
for round in $(seq 1 "$rounds"); do
  for preset in workers processes; do
    port=$((port + 1))
    ./target/release/concur serve --config "config/$preset.toml" --listen "127.0.0.1:$port" \
      --set chat.enabled=false >"$out/server-$preset-$round.log" 2>&1 &
    pid=$!
    until curl -sf "127.0.0.1:$port/ready" >/dev/null; do sleep 0.2; done
    for users in 1 4 16 64; do
      ./target/release/loadtest run --url "http://127.0.0.1:$port" --users "$users" \
        --warmup 2 --duration 6 --no-progress --json "$out/$preset-u$users-r$round.json" >/dev/null
    done
    curl -s "127.0.0.1:$port/metrics" >"$out/metrics-$preset-$round.txt"
    curl -s "127.0.0.1:$port/info" >"$out/info-$preset-$round.json"
    echo "$preset round $round: server rss $(awk '/VmRSS/{print $2" kB"}' /proc/$pid/status);" \
      "children $(for c in $(cat /proc/$pid/task/*/children); do awk '/VmRSS/{printf "%s kB ", $2}' /proc/$c/status; done)"
    kill -TERM "$pid"; wait "$pid" || true
  done
done
