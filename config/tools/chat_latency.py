#!/usr/bin/env python3
"""Sequential chat latency against a running server: one client, keep-alive, every
message of tests/data/chat_eval_{tune,holdout}.json in turn, after a warm-up round.

    .venv/bin/python config/tools/chat_latency.py http://127.0.0.1:8080 --rounds 3

Prints the client-side latency percentiles in milliseconds, and the server's time
outside the model: x-total-time minus tokenization, queue and inference, i.e. parsing,
the decision and the JSON reply. Compare two builds on the same machine, one after the
other, with the same config; on a busy machine the second figure is the steadier one.
"""

import argparse
import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    messages = []
    for part in ("tune", "holdout"):
        data = json.loads((ROOT / f"tests/data/chat_eval_{part}.json").read_text())
        messages += [c["message"] for c in data["on_topic"] + data["off_topic"]]
    u = urlparse(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port)

    def ask(text):
        body = json.dumps({"model": "all-MiniLM-L6-v2",
                           "messages": [{"role": "user", "content": text}]})
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        wall = (time.perf_counter() - start) * 1000
        model = sum(float(r.getheader(h)) for h in
                    ("x-tokenization-time", "x-queue-time", "x-inference-time"))
        return wall, float(r.getheader("x-total-time")) - model

    for m in messages:
        ask(m)
    samples = [ask(m) for _ in range(args.rounds) for m in messages]
    for name, values in (("client", [s[0] for s in samples]), ("outside the model", [s[1] for s in samples])):
        v = sorted(values)
        pct = lambda q: v[min(len(v) - 1, int(q * len(v)))]
        print(f"{name}: {len(v)} requests, mean {sum(v) / len(v):.3f} ms, p50 {pct(0.5):.3f}, "
              f"p90 {pct(0.9):.3f}, p99 {pct(0.99):.3f}")


if __name__ == "__main__":
    main()
