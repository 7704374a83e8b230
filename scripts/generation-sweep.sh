#!/usr/bin/env bash
# The generation sweep: concur's three schedulers and llama.cpp's llama-server, serving the
# same SmolLM2-135M-Instruct GGUF on the same cores, measured one after the other with
# `loadtest stream` (OpenAI streaming, greedy): closed loops at 1, 4, 16 and 32 streams of
# max_tokens 128, a mixed max_tokens load (16-256) at 16 streams, time to first token of a
# ~200-token prompt, and open loops at fractions of the continuous scheduler's capacity (its
# streams/s at 16 streams), each for the continuous scheduler and for llama-server -np 16 at
# the same rate.
#
# Needs `make build` and `make peer-setup` (llama-server in .peer/). Writes one JSON per run
# into $OUT, then the report: `loadtest gen-report $OUT` (README.md with the tables and SVG
# charts of tokens/s, TTFT and ITL against concurrent streams). About 14 minutes with the
# defaults; run it on a quiet machine and compare only figures of one run.
#
# Env: OUT (default results/2core-generation), DURATION (20 s; each open loop runs 3x as
# long), WARMUP (3 s), STREAMS ("1 4 16 32"), OPEN_FRACTIONS ("0.5 0.7": files *-open50,
# *-open70), PORT (18080), THREADS (2: concur's step threads and llama-server's -t), SLOTS
# (32: concur's slots and static batch; llama-server gets -np STREAMS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${OUT:-results/2core-generation}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
STREAMS=${STREAMS:-"1 4 16 32"}
OPEN_FRACTIONS=${OPEN_FRACTIONS:-"0.5 0.7"}
PORT=${PORT:-18080}
THREADS=${THREADS:-2}
SLOTS=${SLOTS:-32}
LT=./target/release/loadtest
CONCUR=./target/release/concur
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
say() { printf 'generation-sweep: %s\n' "$*"; }

[ -x "$LT" ] && [ -x "$CONCUR" ] || { say "run: cargo build --release --workspace"; exit 1; }
[ -x .peer/llama.cpp/bin/llama-server ] || { say "run: make peer-setup (builds llama-server)"; exit 1; }

server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap stop_server EXIT INT TERM HUP

# concur with generation only (no chat bot, whose knowledge base costs a start-up).
start_concur() {
    local scheduler=$1
    "$CONCUR" serve --config config/default.toml --listen "127.0.0.1:$PORT" \
        --set chat.enabled=false --set "generation.scheduler=\"$scheduler\"" \
        --set "generation.threads=$THREADS" --set "generation.slots=$SLOTS" \
        --set "generation.static_batch=$SLOTS" >"$OUT/concur-$scheduler.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 300); do
        curl -sf "$URL/ready" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    say "concur did not become ready (see $OUT/concur-$scheduler.log)"
    exit 1
}

run() { # name, then loadtest stream options; RUN_SECONDS overrides DURATION for one run
    local name=$1
    shift
    say "$name"
    "$LT" stream --no-progress --warmup "$WARMUP" --duration "${RUN_SECONDS:-$DURATION}" \
        --json "$OUT/$name.json" "$@" \
        >"$OUT/$name.txt" 2>&1 || say "$name failed (see $OUT/$name.txt)"
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

for scheduler in continuous static sequential; do
    start_concur "$scheduler"
    RUN_SECONDS=10 run "concur-$scheduler-ttft200" --url "$URL" --streams 1 --max-tokens 8 \
        --corpus loadtest/corpus/prompt_200_tokens.jsonl
    for n in $STREAMS; do
        run "concur-$scheduler-$n" --url "$URL" --streams "$n" --max-tokens 128
    done
    run "concur-$scheduler-16-mixed" --url "$URL" --streams 16 --max-tokens 16-256
    echo "$(rss_kib "$server_pid")" >"$OUT/concur-$scheduler-rss-kib.txt"
    curl -sf "$URL/info" >"$OUT/concur-$scheduler-info.json" || true
    stop_server
done

# The same prompt every time: without --no-cache-prompt llama-server would reuse it and
# prefill one token, where concur prefills all ~200.
RUN_SECONDS=10 run "llama-ttft200" --llama-server --slots 1 --streams 1 --max-tokens 8 \
    --corpus loadtest/corpus/prompt_200_tokens.jsonl --llama-threads "$THREADS" --llama-no-cache-prompt
for n in $STREAMS; do
    run "llama-$n" --llama-server --slots "$n" --streams "$n" --max-tokens 128 --llama-threads "$THREADS"
done
run "llama-16-mixed" --llama-server --slots 16 --streams 16 --max-tokens 16-256 --llama-threads "$THREADS"

# Open loops at fractions of the continuous scheduler's capacity: its streams/s at 16
# streams. A fraction f runs as *-open<100f> (0.7: open70), the name the report reads.
capacity=$(awk -F': ' '/^  "requests_per_s":/ {gsub(/,/, "", $2); print $2; exit}' \
    "$OUT/concur-continuous-16.json" 2>/dev/null || true)
open_runs=()
if awk -v c="${capacity:-0}" 'BEGIN {exit !(c > 0)}'; then
    for f in $OPEN_FRACTIONS; do
        open_runs+=("$(awk -v f="$f" -v c="$capacity" \
            'BEGIN {printf "%d %.3f", f * 100 + 0.5, f * c}')")
    done
else
    say "no capacity (concur-continuous-16.json missing or without a finished stream): open loops skipped"
fi
if [ "${#open_runs[@]}" -gt 0 ]; then
    start_concur continuous
    for pr in "${open_runs[@]}"; do
        read -r pct rate <<<"$pr"
        say "open loop at $pct% of capacity: $rate streams/s"
        RUN_SECONDS=$((DURATION * 3)) run "concur-continuous-open$pct" --url "$URL" --rate "$rate" \
            --max-tokens 128
    done
    stop_server
    for pr in "${open_runs[@]}"; do
        read -r pct rate <<<"$pr"
        RUN_SECONDS=$((DURATION * 3)) run "llama-open$pct" --llama-server --slots 16 --rate "$rate" \
            --max-tokens 128 --llama-threads "$THREADS"
    done
fi

"$LT" gen-report "$OUT"
say "done: $OUT/README.md"
