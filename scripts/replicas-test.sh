#!/usr/bin/env bash
# make replicas-test: three concur replicas behind HAProxy, one stopped mid-load; no request
# may fail. Loopback only, bounded (about 30 s, everything stopped by the trap).
#   1. installs haproxy from Debian if missing (as root; idempotent; its service is not started)
#   2. starts 3 `target/release/concur serve` on free 127.0.0.1 ports (shutdown_grace 1 s,
#      chat off) and HAProxy in front: health check GET /ready every 500 ms (fall 1),
#      retry-on all-retryable-errors, retries 3, redispatch on every retry
#   3. `target/release/loadtest run` through HAProxy: 8 closed-loop users, 2 s warm-up, 15 s
#      measured; 5 s into the measured window, SIGTERM to replica 2 (it drains: /ready 503,
#      listener closed after 1 s, open requests finished)
#   4. checks: every measured request answered 200, replica 2 exited 0, HAProxy marked it
#      DOWN, the others kept serving. Prints figures and "N passed, M failed".
# Env: USERS (8), DURATION (15), KILL_AFTER (5, seconds into the measured window), SESSIONS
# (executor.sessions per replica, 2 as in deploy/kubernetes/concur.toml), GRACE_MS (1000:
# server.shutdown_grace_ms of the replicas), KEEP_WORK=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

USERS=${USERS:-8}
DURATION=${DURATION:-15}
WARMUP=2
KILL_AFTER=${KILL_AFTER:-5}
SESSIONS=${SESSIONS:-2}
GRACE_MS=${GRACE_MS:-1000}
CONCUR=target/release/concur
LOADTEST=target/release/loadtest

say() { printf 'replicas-test: %s\n' "$*"; }
# milliseconds since a `date +%s.%N` stamp
ms_since() { awk -v now="$(date +%s.%N)" -v t="$1" 'BEGIN { printf "%.0f", (now - t) * 1000 }'; }
die() { printf 'replicas-test: ERROR: %s\n' "$*" >&2; exit 1; }
passed=0
failed=0
ok() { passed=$((passed + 1)); say "ok: $*"; }
bad() { failed=$((failed + 1)); say "FAIL: $*"; }

[ -x "$CONCUR" ] && [ -x "$LOADTEST" ] || die "build first: cargo build --release --workspace (make build)"
[ -f models/all-MiniLM-L6-v2/model.onnx ] || die "no model: make setup"

# ---- 1. haproxy --------------------------------------------------------------------------
if ! command -v haproxy > /dev/null; then
    [ "$(id -u)" = 0 ] || die "haproxy is missing: apt-get install haproxy (as root)"
    say "installing haproxy (Debian)"
    # policy-rc.d 101: the package must not start its own service; removed again right after
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
    fi
    apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy > /dev/null \
        || { [ "$made_policy" = 1 ] && rm -f "$policy"; die "apt-get install haproxy failed"; }
    [ "$made_policy" = 1 ] && rm -f "$policy"
fi
say "$(haproxy -v | head -n1)"

# ---- 2. replicas and the balancer --------------------------------------------------------
work=$(mktemp -d /tmp/concur-replicas.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
    if [ "${KEEP_WORK:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

read -r P1 P2 P3 LB STATS < <(python3 - << 'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
ports=("$P1" "$P2" "$P3")
rpids=()
for i in 0 1 2; do
    "$CONCUR" serve --config config/default.toml --listen "127.0.0.1:${ports[$i]}" \
        --set "server.shutdown_grace_ms=$GRACE_MS" --set chat.enabled=false \
        --set executor.parallelism=fixed --set "executor.sessions=$SESSIONS" --set executor.intra_op_threads=1 > "$work/replica$((i + 1)).log" 2>&1 &
    rpids+=($!)
    pids+=($!)
done
t0=$(date +%s.%N)
for i in 0 1 2; do
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null "http://127.0.0.1:${ports[$i]}/ready" 2> /dev/null && break
        kill -0 "${rpids[$i]}" 2> /dev/null || { tail -n 20 "$work/replica$((i + 1)).log" >&2; die "replica $((i + 1)) exited"; }
        sleep 0.1
    done
done
ready=1
for i in 0 1 2; do curl -fsS -o /dev/null "http://127.0.0.1:${ports[$i]}/ready" || ready=0; done
if [ "$ready" = 1 ]; then
    ok "3 replicas ready on 127.0.0.1:$P1,$P2,$P3 after $(ms_since "$t0") ms (sessions=$SESSIONS each)"
else
    die "replicas not ready within 60 s"
fi

cat > "$work/haproxy.cfg" << EOF
global
    maxconn 1024

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    # A request that meets a closing or draining replica (connection refused or reset, empty
    # response, 502/503/504) is sent again, to another replica on every retry.
    retries 3
    retry-on all-retryable-errors
    option redispatch 1

frontend api
    bind 127.0.0.1:$LB
    default_backend concur

backend concur
    balance leastconn
    # /ready is 503 from the moment a replica gets SIGTERM: out of rotation within ~0.5 s,
    # while its listener stays open for shutdown_grace_ms (GRACE_MS, 1 s by default).
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr host localhost
    http-check expect status 200
    default-server check inter 500ms fall 1 rise 2
    server r1 127.0.0.1:$P1
    server r2 127.0.0.1:$P2
    server r3 127.0.0.1:$P3

frontend stats
    bind 127.0.0.1:$STATS
    stats enable
    stats uri /stats
EOF
haproxy -c -q -f "$work/haproxy.cfg" || die "haproxy -c rejected the configuration"
haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
pids+=($!)

# stats: `server status stot wretr wredis` for the backend's servers
stats() {
    curl -fsS "http://127.0.0.1:$STATS/stats;csv" | python3 -c '
import csv, sys
rows = csv.DictReader(line.lstrip("# ") for line in sys.stdin)
for r in rows:
    if r["pxname"] == "concur" and r["svname"] in ("r1", "r2", "r3", "BACKEND"):
        print(r["svname"], r["status"].split()[0], r["stot"], r["wretr"] or 0, r["wredis"] or 0, r["econ"] or 0, r["eresp"] or 0)
'
}
up=0
for _ in $(seq 1 100); do
    up=$(stats 2> /dev/null | grep -c '^r[123] UP' || true)
    [ "$up" = 3 ] && break
    sleep 0.1
done
if [ "$up" = 3 ]; then ok "HAProxy on 127.0.0.1:$LB sees 3 replicas UP"; else die "HAProxy: $up of 3 replicas UP"; fi

# ---- 3. load, and a replica stopped in the middle -----------------------------------------
timeout $((WARMUP + DURATION + 30)) "$LOADTEST" run --url "http://127.0.0.1:$LB" --users "$USERS" \
    --warmup "$WARMUP" --duration "$DURATION" --no-progress --json "$work/run.json" \
    > "$work/loadtest.txt" 2>&1 &
lt=$!
pids+=("$lt")
sleep $((WARMUP + KILL_AFTER))
stats > "$work/stats-before.txt"
hwm2=$(awk '/VmHWM/ {print $2}' "/proc/${rpids[1]}/status")
kill -TERM "${rpids[1]}"
t_kill=$(date +%s.%N)
down_ms=""
for _ in $(seq 1 100); do
    if stats 2> /dev/null | grep -q '^r2 \(DOWN\|NOLB\|MAINT\)'; then
        down_ms=$(ms_since "$t_kill")
        break
    fi
    sleep 0.05
done
rc2=0
# the drain is bounded by shutdown_grace + drain_timeout (1 + 15 s); 30 s at most here
timeout 30 tail --pid="${rpids[1]}" -f /dev/null || kill -KILL "${rpids[1]}" 2> /dev/null || true
wait "${rpids[1]}" || rc2=$?
exit_ms=$(ms_since "$t_kill")
lt_rc=0
wait "$lt" || lt_rc=$?
stats > "$work/stats-after.txt"
hwm=()
for i in 0 2; do hwm+=("$(awk '/VmHWM/ {print $2}' "/proc/${rpids[$i]}/status")"); done

# ---- 4. checks -----------------------------------------------------------------------------
cat "$work/loadtest.txt"
[ "$lt_rc" = 0 ] || bad "loadtest exited $lt_rc"
read -r requests successes errors unsent rps p50 p99 max < <(python3 - "$work/run.json" << 'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
errs = ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "none"
l = r["latency"]
print(r["requests"], r["successes"], errs, r["unsent"], f"{r['throughput_rps']:.1f}",
      f"{l['p50_ms']:.1f}", f"{l['p99_ms']:.1f}", f"{l['max_ms']:.1f}")
EOF
)
if [ "$requests" -gt 0 ] && [ "$successes" = "$requests" ] && [ "$errors" = none ] && [ "$unsent" = 0 ]; then
    ok "loadtest through HAProxy: $successes/$requests requests answered 200, errors none ($rps req/s, p50 $p50 ms, p99 $p99 ms, max $max ms)"
else
    bad "loadtest: $successes of $requests ok, errors $errors, unsent $unsent"
fi
if [ "$rc2" = 0 ]; then
    ok "replica 2 drained and exited 0, ${exit_ms} ms after SIGTERM"
else
    bad "replica 2 exit status $rc2 after SIGTERM"; tail -n 20 "$work/replica2.log" >&2
fi
if [ -n "$down_ms" ]; then ok "HAProxy marked replica 2 DOWN ${down_ms} ms after SIGTERM"; else bad "HAProxy never marked replica 2 DOWN"; fi
read -r b1 b3 < <(awk '$1=="r1"{a=$3} $1=="r3"{b=$3} END{print a, b}' "$work/stats-before.txt")
read -r a1 a2 a3 retr redis econ eresp < <(awk '$1=="r1"{a=$3} $1=="r2"{b=$3} $1=="r3"{c=$3} $1=="BACKEND"{r=$4; d=$5; e=$6; f=$7} END{print a, b, c, r, d, e, f}' "$work/stats-after.txt")
if [ "$a2" -gt 0 ] && [ "$a1" -gt "$b1" ] && [ "$a3" -gt "$b3" ]; then
    ok "all replicas served (requests r1 $a1, r2 $a2, r3 $a3); r1 and r3 took $((a1 - b1 + a3 - b3)) after the stop"
else
    bad "request split r1 $a1 (before stop $b1), r2 $a2, r3 $a3 (before stop $b3)"
fi
grep -h 'concur/r2' "$work/haproxy.log" | head -n 3 | sed 's/^/replicas-test:   haproxy: /' || true
say "HAProxy: $retr retries on the same replica, $redis redispatched to another, $econ connection errors, $eresp response errors (a retried request reaches the client as a success)"
say "peak RSS (VmHWM): r1 $((hwm[0] / 1024)) MiB, r2 $((hwm2 / 1024)) MiB, r3 $((hwm[1] / 1024)) MiB (sessions=$SESSIONS, chat off)"
printf 'replicas-test: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
