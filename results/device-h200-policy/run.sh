#!/usr/bin/env bash
# Device experiment: the server pinned to 2 cores (0,1), the load generator to 2 others
# (2,3), so the figures are about the server's policy, not about sharing cores with the client.
set -u
D=/root/concur; cd "$D"
export ORT_DYLIB_PATH=$D/lib/libonnxruntime.so
S="taskset -c 0,1"; L="taskset -c 2,3"
out=${OUT:-/tmp}/results.txt
say() { echo "$*" | tee -a "$out"; }
say "host: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo)"
say "== concur bench (elastic default, pinned to 2 cores, 10 s)"
$S ./concur bench --config config/default.toml --set executor.cores=2 --corpus corpus.jsonl --seconds 10 2>/dev/null | tee -a "$out"
sps=$($S ./concur bench --config config/default.toml --set executor.cores=2 --corpus corpus.jsonl --seconds 8 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["sequences_per_second"])')
RATE=$(python3 -c "print(round(0.8*$sps))"); say "ceiling $sps seq/s; open loop at 80%: $RATE/s"
say "== examples/parallelism (pinned to 2 cores)"
$S ./parallelism sessions 2>&1 | tee -a "$out"
$S ./parallelism global 2>&1 | tee -a "$out"
run_cfg() { # name config users... ; extra --set args in SETS
  local name=$1 cfg=$2; shift 2
  $S ./concur serve --config "$cfg" --listen 127.0.0.1:9000 --set chat.enabled=false --set executor.tokio_worker_threads=2 $SETS > /tmp/$name.log 2>&1 &
  local pid=$!
  for i in $(seq 1 100); do curl -sf 127.0.0.1:9000/ready >/dev/null && break; sleep 0.2; done
  for u in "$@"; do
    $L ./loadtest run --url http://127.0.0.1:9000 --corpus corpus.jsonl --users "$u" --warmup 2 --duration 8 --json /tmp/r.json >/dev/null 2>&1
    python3 -c "
import json; d=json.load(open('/tmp/r.json')); l=d['latency']
print(f'$name users=$u: {d[\"throughput_rps\"]:7.1f} req/s  p50 {l[\"p50_ms\"]:6.1f}  p99 {l[\"p99_ms\"]:6.1f} ms  errors {sum(d[\"errors\"].values())}')" | tee -a "$out"
  done
  if [ -n "${RATE:-}" ]; then
    $L ./loadtest run --url http://127.0.0.1:9000 --corpus corpus.jsonl --rate "$RATE" --warmup 2 --duration 8 --json /tmp/r.json >/dev/null 2>&1
    python3 -c "
import json; d=json.load(open('/tmp/r.json')); l=d['latency']
print(f'$name open {d[\"offered_rps\"]:.0f}/s: {d[\"throughput_rps\"]:7.1f} req/s  p50 {l[\"p50_ms\"]:6.1f}  p99 {l[\"p99_ms\"]:6.1f} ms  errors {sum(d[\"errors\"].values())}')" | tee -a "$out"
  fi
  kill -TERM $pid; wait $pid 2>/dev/null
}
SETS="--set executor.cores=2" run_cfg elastic config/default.toml 1 4 16 64
SETS="" run_cfg fixed2x1 config/workers_fixed.toml 1 4 16 64
SETS="" run_cfg fixed1x2 config/one_wide.toml 1 16 64
SETS="--set executor.cores=2 --set batching.solo_tokens=128" run_cfg elastic_solo128 config/default.toml 16 64
SETS="--set executor.cores=2 --set batching.solo_tokens=200" run_cfg elastic_solo200 config/default.toml 16 64
SETS="--set executor.cores=2 --set batching.window=32" run_cfg elastic_window32 config/default.toml 16 64
SETS="--set executor.cores=2 --set batching.solo_tokens=128 --set batching.window=32" run_cfg elastic_solo128_w32 config/default.toml 16 64
SETS="--set executor.cores=2 --set batching.length_aware=false" run_cfg elastic_fifo config/default.toml 16 64
say "== extra: all $(nproc) cores, no pinning"
S=""; L=""
SETS="--set executor.cores=16 --set executor.tokio_worker_threads=4" run_cfg elastic16 config/default.toml 1 16 64
SETS="--set executor.parallelism=fixed --set executor.sessions=16 --set executor.intra_op_threads=1 --set executor.tokio_worker_threads=4" run_cfg fixed16x1 config/default.toml 1 16 64
say "done"
