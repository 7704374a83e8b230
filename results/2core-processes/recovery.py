#!/usr/bin/env python3
"""Throughput over time around a SIGKILL of one `processes` child under 16 closed-loop users.

    python3 results/2core-processes/recovery.py      # needs target/release/{concur,loadtest}

Starts the server (config/processes.toml), runs `loadtest run --users 16 --duration 24`,
kills one child 10 s in, and samples concur_requests_total{route="embeddings",status="200"}
every 250 ms; prints throughput per 500 ms window and when it was back to the median of
the 5 s before the kill (within 10%).
"""
import os, re, signal, statistics, subprocess, time, urllib.request

PORT = 18095
URL = f"http://127.0.0.1:{PORT}"

def ok_count():
    text = urllib.request.urlopen(URL + "/metrics", timeout=2).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(
        r'^concur_requests_total\{[^}]*route="embeddings"[^}]*status="200"[^}]*\} (\S+)$', text, re.M))

def children(pid):
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids

server = subprocess.Popen(["target/release/concur", "serve", "--config", "config/processes.toml",
                           "--listen", f"127.0.0.1:{PORT}"], stderr=subprocess.DEVNULL)
try:
    for _ in range(240):
        try:
            if urllib.request.urlopen(URL + "/ready", timeout=1).status == 200:
                break
        except Exception:
            time.sleep(0.25)
    load = subprocess.Popen(["target/release/loadtest", "run", "--url", URL, "--users", "16",
                             "--warmup", "0", "--duration", "24", "--no-progress"],
                            stdout=subprocess.PIPE, text=True)
    start = time.monotonic()
    samples, killed_at = [], None
    while time.monotonic() - start < 23:
        t = time.monotonic() - start
        samples.append((t, ok_count()))
        if killed_at is None and t >= 10:
            victim = children(server.pid)[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = t
        time.sleep(0.25)
    print(load.communicate()[0])
    rates = []
    for (t0, c0), (t1, c1) in zip(samples[::2], samples[2::2]):
        rates.append((t0, (c1 - c0) / (t1 - t0)))
    before = statistics.median(r for t, r in rates if killed_at - 5 <= t < killed_at - 0.5)
    print(f"killed child at {killed_at:.2f} s; median throughput over the 5 s before: {before:.1f} req/s")
    for t, r in rates:
        mark = " <- kill" if t <= killed_at < t + 0.5 else ""
        print(f"{t:6.2f} s  {r:7.1f} req/s{mark}")
    back = next((t for t, r in rates if t >= killed_at and r >= 0.9 * before), None)
    if back is None:
        print("throughput did not come back within 10% of before")
    else:
        print(f"back within 10% of before in the window starting {back - killed_at:.2f} s after the kill")
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
