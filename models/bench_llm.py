#!/usr/bin/env python3
"""Time one decode step of the exported SmolLM2 decoder, the way the Rust engine runs it.

Every row has --context tokens in its cache after the step (sequence 1, seqlens_k = context-1),
the per-layer caches are bound as both past and present (IOBinding), and the session has
--threads intra-op threads. The same step is re-run: each run rewrites the same cache position,
and its cost does not depend on the cached values. Prints the median step time of each round;
several rounds show how noisy a shared machine is. To compare exports, run one process per
export in turn, several times (sessions sharing a process spin against each other's threads).
--cpu-time with --threads 1 measures the process's CPU time instead: much steadier on a busy
machine (other processes take turns on the core, not compute in the step).

usage: bench_llm.py [--dir models/SmolLM2-135M-Instruct] [--batch 1 16] [--context 200]
                    [--threads 2] [--steps 20] [--rounds 5] [--cpu-time]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

HERE = Path(__file__).resolve().parent


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def binding(sess: ort.InferenceSession, gen: dict, batch: int, context: int, max_context: int) -> ort.IOBinding:
    rng = np.random.default_rng(0)
    b = sess.io_binding()
    b.bind_cpu_input("input_ids", rng.integers(100, 40000, size=(batch, 1), dtype=np.int64))
    b.bind_cpu_input("seqlens_k", np.full(batch, context - 1, dtype=np.int32))
    b.bind_cpu_input("total_sequence_length", np.array(context, dtype=np.int32))
    b.bind_output("logits")
    shape = (batch, gen["num_kv_heads"], max_context, gen["head_dim"])
    for i in range(gen["num_layers"]):
        for kind in ("key", "value"):
            buf = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal(shape, dtype=np.float32))
            b.bind_ortvalue_input(f"past_key_values.{i}.{kind}", buf)
            b.bind_ortvalue_output(f"present.{i}.{kind}", buf)
    return b


def step_ms(sess: ort.InferenceSession, b: ort.IOBinding, steps: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(steps):
        t = clock()
        sess.run_with_iobinding(b)
        times.append(clock() - t)
    return float(np.median(times)) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=HERE / "SmolLM2-135M-Instruct")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--context", type=int, default=200)
    ap.add_argument("--max-context", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu-time", action="store_true", help="time the process's CPU time, not wall time")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    gen = json.loads((args.dir / "generation.json").read_text())
    sess = session(args.dir / "model.onnx", args.threads)
    name = f"{gen['weights']}, accuracy_level {gen['accuracy_level']}, head {gen['head_accuracy_level']}"
    for batch in args.batch:
        b = binding(sess, gen, batch, args.context, args.max_context)
        step_ms(sess, b, 3)  # warm-up: first runs allocate and fault in pages
        ms = [step_ms(sess, b, args.steps, clock) for _ in range(args.rounds)]
        what = "CPU time" if args.cpu_time else "decode step"
        print(f"{name}: batch {batch:2d}, {args.context} in cache, {args.threads} threads: {what} "
              f"{min(ms):.2f}-{max(ms):.2f} ms ({' '.join(f'{m:.2f}' for m in ms)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
