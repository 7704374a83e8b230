#!/usr/bin/env bash
# Coverage-guided fuzzing of the request parsers: the targets in fuzz/ (cargo-fuzz, libFuzzer).
#
#   scripts/fuzz.sh build                  build every target (cached in fuzz/target)
#   scripts/fuzz.sh run TARGET [SECONDS]   fuzz one target (default 60 s)
#   scripts/fuzz.sh all [SECONDS]          fuzz each target in turn (`make test`: 20 s each)
#   scripts/fuzz.sh list                   the targets
#
# Every run ends with one summary line, e.g.
#   fuzz: target=chat_body seconds=60 runs=1523394 execs_per_s=25389 cov=2170 features=6409 corpus=811 new=95 result=ok
# A crash or a failed check stops the run with result=CRASH and the input saved in
# fuzz/artifacts/TARGET/; once fixed, add it to tests/data/fuzz/ (bodies) or
# fuzz/seeds/headers/ (headers) so every later run and `cargo test --test fuzz` replay it.
#
# The working corpus (fuzz/corpus/TARGET) grows from run to run; the committed seeds are
# read alongside it. No nightly toolchain is needed: RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGETS=(embeddings_body embed_body chat_body headers)
export RUSTC_BOOTSTRAP=1
# The fuzz crate is its own workspace: keep its target dir apart from the main build.
FUZZ=(cargo fuzz)

say() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: ERROR: %s\n' "$*" >&2; exit 1; }

command -v cargo-fuzz >/dev/null || die "cargo-fuzz missing: run \`make test-setup\`"

seeds_of() {
    case "$1" in
        headers) echo fuzz/seeds/headers ;;
        *) echo tests/data/fuzz ;;
    esac
}

build() {
    local log
    log=$(mktemp)
    say "building ${TARGETS[*]}"
    if ! "${FUZZ[@]}" build --release --debug-assertions >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        die "the fuzz targets did not build"
    fi
    grep -E '^\s+Finished' "$log" || true
    rm -f "$log"
    for t in "${TARGETS[@]}"; do
        [ -x "fuzz/target/x86_64-unknown-linux-gnu/release/$t" ] || die "target $t did not build"
    done
}

# run TARGET SECONDS: fuzz, then print the summary line; non-zero exit on a finding.
run() {
    local target=$1 seconds=$2 log rc=0
    [[ " ${TARGETS[*]} " == *" $target "* ]] || die "unknown target $target (${TARGETS[*]})"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log=$(mktemp)
    local dict=()
    [ "$target" = headers ] || dict=(-dict=fuzz/json.dict)
    "${FUZZ[@]}" run --release --debug-assertions "$target" \
        "fuzz/corpus/$target" "$(seeds_of "$target")" -- \
        -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || rc=$?
    summarize "$target" "$seconds" "$log" "$rc"
    [ "$rc" = 0 ] || { tail -n 60 "$log" >&2; rm -f "$log"; return 1; }
    rm -f "$log"
}

summarize() {
    local target=$1 seconds=$2 log=$3 rc=$4
    local last runs eps cov ft corp new result=ok artifact
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    runs=$(stat_of number_of_executed_units "$log")
    eps=$(stat_of average_exec_per_sec "$log")
    new=$(stat_of new_units_added "$log")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
    if [ "$rc" != 0 ]; then
        result=CRASH
        artifact=$(sed -nE 's/.*Test unit written to (\S+).*/\1/p' "$log" | tail -n 1)
        [ -z "$artifact" ] || result="CRASH artifact=$artifact"
    fi
    printf 'fuzz: target=%s seconds=%s runs=%s execs_per_s=%s cov=%s features=%s corpus=%s new=%s result=%s\n' \
        "$target" "$seconds" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${new:-?}" "$result"
}

stat_of() { sed -nE "s/^stat::$1:\s+([0-9]+).*/\1/p" "$2" | tail -n 1; }

case "${1:-}" in
    build) build ;;
    list) printf '%s\n' "${TARGETS[@]}" ;;
    run)
        [ -n "${2:-}" ] || die "usage: scripts/fuzz.sh run TARGET [SECONDS]"
        run "$2" "${3:-60}"
        ;;
    all)
        failed=0
        for t in "${TARGETS[@]}"; do run "$t" "${2:-60}" || failed=1; done
        exit "$failed"
        ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
esac
