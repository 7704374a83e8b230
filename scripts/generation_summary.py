#!/usr/bin/env python3
"""Summarises a generation sweep (scripts/generation-sweep.sh): one Markdown table per part,
every figure from the run's JSON files in the folder given (`loadtest stream --json`).

usage: generation_summary.py DIR > DIR/README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(d: Path, name: str) -> dict | None:
    p = d / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def ms(r: dict, key: str, q: str) -> str:
    v = r.get(key, {}).get(f"{q}_ms")
    return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def row(label: str, r: dict | None) -> str:
    if r is None:
        return f"| {label} | (not run) |||||||"
    errors = r.get("errors", {})
    n_err = sum(errors.values()) if isinstance(errors, dict) else errors
    return (f"| {label} | {r.get('output_tokens_per_s', 0):.1f} | {r.get('requests_per_s', 0):.2f} "
            f"| {ms(r, 'ttft', 'p50')} | {ms(r, 'ttft', 'p99')} | {ms(r, 'itl', 'p50')} | {ms(r, 'itl', 'p99')} "
            f"| {r.get('successes', 0)} / {n_err} / {r.get('rejected_429', 0)} |")


HEAD = ("| server | output tokens/s | streams/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms "
        "| done / errors / 429 |\n|---|---:|---:|---:|---:|---:|---:|---|")


def main() -> None:
    d = Path(sys.argv[1])
    servers = [("concur continuous", "concur-continuous"), ("concur static", "concur-static"),
               ("concur sequential", "concur-sequential"), ("llama-server", "llama")]
    print(f"# Generation sweep: `{d}`\n")
    print("Made by `scripts/generation-sweep.sh` (commands and settings at its top); each JSON here is one"
          " `loadtest stream` run, each `.txt` its printed summary. Greedy, max_tokens 128 unless said.\n")
    streams = sorted({int(p.stem.split("-")[-1]) for p in d.glob("llama-*.json") if p.stem.split("-")[-1].isdigit()})
    for n in streams:
        print(f"## {n} concurrent stream{'s' if n > 1 else ''} (closed loop)\n\n{HEAD}")
        for label, prefix in servers:
            print(row(label, load(d, f"{prefix}-{n}")))
        print()
    print(f"## 16 streams, max_tokens drawn from 16-256\n\n{HEAD}")
    for label, prefix in servers:
        print(row(label, load(d, f"{prefix}-16-mixed")))
    print(f"\n## Time to first token of a ~200-token prompt (one stream, max_tokens 8)\n\n{HEAD}")
    for label, prefix in servers:
        print(row(label, load(d, f"{prefix}-ttft200")))
    print(f"\n## Open loop (Poisson) at 70% of the continuous scheduler's 16-stream capacity\n\n{HEAD}")
    print(row("concur continuous", load(d, "concur-continuous-open70")))
    print(row("llama-server -np 16", load(d, "llama-open70")))
    print("\n## Resident memory after the runs (SLOTS slots of 2,048 tokens; see the sweep script)\n")
    for sched in ("continuous", "static", "sequential"):
        p = d / f"concur-{sched}-rss-kib.txt"
        if p.exists() and p.read_text().strip():
            print(f"- concur {sched}: {int(p.read_text()) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
