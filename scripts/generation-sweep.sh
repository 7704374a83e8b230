#!/usr/bin/env bash
# The generation sweep: concur's three schedulers and llama.cpp's llama-server, serving the
# same SmolLM2-135M-Instruct GGUF on the same cores, measured one after the other with
# `loadtest stream` (OpenAI streaming, greedy): closed loops at 1, 4, 16 and 32 streams of
# max_tokens 128, a mixed max_tokens load (16-256) at 16 streams, time to first token of a
# ~200-token prompt, and an open loop at 70% of the continuous scheduler's capacity.
#
# Needs `make build` and `make peer-setup` (llama-server in .peer/). Writes one JSON per run
# and a summary (README.md) into $OUT. About 12 minutes with the defaults; run it on a quiet
# machine and compare only figures of one run.
#
# Env: OUT (default results/2core-generation), DURATION (20 s), WARMUP (3 s), STREAMS
# ("1 4 16 32"), PORT (18080), THREADS (2: concur's step threads and llama-server's -t), SLOTS
# (32: concur's slots and static batch; llama-server gets -np STREAMS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${OUT:-results/2core-generation}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
STREAMS=${STREAMS:-"1 4 16 32"}
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

RUN_SECONDS=10 run "llama-ttft200" --llama-server --slots 1 --streams 1 --max-tokens 8 \
    --corpus loadtest/corpus/prompt_200_tokens.jsonl --llama-threads "$THREADS"
for n in $STREAMS; do
    run "llama-$n" --llama-server --slots "$n" --streams "$n" --max-tokens 128 --llama-threads "$THREADS"
done
run "llama-16-mixed" --llama-server --slots 16 --streams 16 --max-tokens 16-256 --llama-threads "$THREADS"

# Open loop at 70% of the continuous scheduler's capacity (its streams/s at 16 streams).
rate=$(.venv/bin/python -c "import json,sys; print(round(0.7*json.load(open(sys.argv[1]))['requests_per_s'], 3))" \
    "$OUT/concur-continuous-16.json")
say "open loop at $rate streams/s"
start_concur continuous
RUN_SECONDS=$((DURATION * 3)) run "concur-continuous-open70" --url "$URL" --rate "$rate" --max-tokens 128
stop_server
RUN_SECONDS=$((DURATION * 3)) run "llama-open70" --llama-server --slots 16 --rate "$rate" \
    --max-tokens 128 --llama-threads "$THREADS"

.venv/bin/python scripts/generation_summary.py "$OUT" >"$OUT/README.md"
say "done: $OUT/README.md"
