#!/usr/bin/env python3
"""One loadtest run against a server, with the server's per-stage breakdown from /metrics deltas.

usage: measure.py PORT LABEL -- loadtest-run-args...
Prints one line: client figures, then server figures (queue wait, inference, batches by width).
"""
import json, subprocess, sys, urllib.request, re, collections, os, tempfile

port, label = sys.argv[1], sys.argv[2]
args = sys.argv[sys.argv.index("--") + 1:]
LOADTEST = os.environ.get("LOADTEST", "target/release/loadtest")


def scrape():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    series = collections.defaultdict(dict)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r'([a-zA-Z_:]+)(\{[^}]*\})?\s+(\S+)', line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        series[name][labels] = value
    return series


def delta(a, b, name):
    out = {}
    for k, v in b.get(name, {}).items():
        out[k] = v - a.get(name, {}).get(k, 0.0)
    return out


def hist(a, b, base, route=None):
    buckets = []
    for k, v in delta(a, b, base + "_bucket").items():
        if route and f'route="{route}"' not in k:
            continue
        le = re.search(r'le="([^"]+)"', k).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), v))
    buckets.sort()
    s = sum(v for k, v in delta(a, b, base + "_sum").items() if not route or f'route="{route}"' in k)
    c = sum(v for k, v in delta(a, b, base + "_count").items() if not route or f'route="{route}"' in k)
    return buckets, s, c


def quantile(buckets, q):
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return float("nan")
    target = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= target:
            if le == float("inf"):
                return prev_le
            frac = (target - prev_c) / max(c - prev_c, 1e-9)
            return prev_le + frac * (le - prev_le)
        prev_le, prev_c = le, c
    return prev_le


import time


def cpu_total():
    f = open("/proc/stat").readline().split()[1:]
    vals = list(map(int, f))
    idle = vals[3] + vals[4]
    return sum(vals[:8]) - idle  # busy ticks, all processes


def cpu_of(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except OSError:
        return 0


def server_pid():
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    m = re.search(r"pid=(\d+)", out)
    return m.group(1) if m else None


spid = server_pid()
c0, s0 = cpu_total(), cpu_of(spid)
before = scrape()
t0 = time.time()
with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    out = f.name
lt = subprocess.Popen([LOADTEST, "run", "--url", f"http://127.0.0.1:{port}", "--no-progress", "--json", out] + args,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
lt_cpu = 0
while lt.poll() is None:
    lt_cpu = max(lt_cpu, cpu_of(lt.pid))
    time.sleep(0.2)
after = scrape()
elapsed = time.time() - t0
hz = os.sysconf("SC_CLK_TCK")
c1, s1 = cpu_total(), cpu_of(spid)
others = ((c1 - c0) - (s1 - s0) - lt_cpu) / hz / elapsed
r = json.load(open(out))
lat = r["latency"]
qw, qs, qc = hist(before, after, "concur_queue_wait_seconds")
inf, isum, ic = hist(before, after, "concur_inference_seconds")
rq, rqs, rqc = hist(before, after, "concur_request_duration_seconds", route="embeddings")
tk, tks, tkc = hist(before, after, "concur_tokenization_seconds")
bs, bsum, bc = hist(before, after, "concur_batch_size")
_, tsum, _ = hist(before, after, "concur_batch_tokens")
_, psum, pc = hist(before, after, "concur_batch_padding_ratio")
widths = {re.search(r'width="(\d+)"', k).group(1): int(v)
          for k, v in delta(before, after, "concur_batches_total").items() if v}
busy = sum(delta(before, after, "concur_core_busy_seconds_total").values())
errs = sum(r["errors"].values()) if r["errors"] else 0
print(f"{label:<10} {r['mode']:<6} thr {r['throughput_rps']:6.1f}  p50 {lat['p50_ms']:7.1f} p90 {lat['p90_ms']:7.1f} "
      f"p99 {lat['p99_ms']:7.1f} err {errs} late {r['late_sends']} | "
      f"server p50 {1e3*quantile(rq,.5):5.1f} p99 {1e3*quantile(rq,.99):6.1f} tok {1e3*tks/max(tkc,1):4.2f} | "
      f"qwait mean {1e3*qs/max(qc,1):6.1f} p50 {1e3*quantile(qw,.5):6.1f} p99 {1e3*quantile(qw,.99):6.1f} | "
      f"inf mean {1e3*isum/max(ic,1):5.1f} p50 {1e3*quantile(inf,.5):5.1f} p99 {1e3*quantile(inf,.99):6.1f} | "
      f"batch mean {bsum/max(bc,1):4.1f} tok {tsum/max(bc,1):5.0f} pad {psum/max(pc,1):.2f} n {int(bc)} widths {widths} | core-busy {busy/elapsed/2:.2f} | server-cpu {(s1-s0)/hz/elapsed:.2f} lt-cpu {lt_cpu/hz/elapsed:.2f} others {others:.2f} cores",
      flush=True)
os.unlink(out)
