#!/usr/bin/env python3
"""Check the exported SmolLM2 decoder and tokenizer; exit status 1 on any failure.

Model: an independent numpy forward pass of the dequantized GGUF (llm_reference.py) against
model.onnx, run the way the Rust engine runs it: onnxruntime IOBinding with one buffer per layer
bound as both past and present (GroupQueryAttention updates it in place), 2 intra-op threads.
  1. whole-prompt prefill (batch 1)
  2. chunked prefill, chunks of 7 tokens, earlier chunks already in the cache
  3. batched decode: rows prefilled to different lengths (3, 7, 20 tokens after the first
     step) in one buffer, then 12 decode steps of all rows together (the prompts and the
     tokenizer texts long enough: 18 rows)
  4. greedy generation of 20 tokens after "The capital of France is" (must mention Paris)
Each logits row is compared with the reference at the same position. Printed: top-1 agreement,
how far below the reference's top logit the worst top-1 pick lies (0 when all agree) and the
largest absolute logit difference. Limits (EXACT / APPROX below), by generation.json: a graph
with the GGUF's own weights and fp32 MatMulNBits must agree to rounding; with the 8-bit head on
int8 activations (the default) a pick may lie at most 0.25 below the reference's top logit and
no logit may move more than 1.0 (measured: 0.03 and 0.47; int8 activations in the 4-bit layers
too give 1.1 and 5.2, re-quantized weights 7.1 and 23: both fail).

Tokenizer: tokenizer.json through `tokenizers` must give exactly llama.cpp's ids for the texts
in llm_tokenizer_reference.json (made by llm_tokenizer_reference.py).

usage: check_llm.py [--dir models/SmolLM2-135M-Instruct]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# before numpy loads OpenBLAS: its threads spin against each other on a busy 2-core machine
# (a [38, 576] x [576, 1536] product took 20 ms with two, 1 ms with one)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from llm_reference import Reference, gguf_path  # noqa: E402

# Limits: (largest |logit - reference|, largest shortfall of a top-1 pick below the reference's
# top logit). Weights equal to the GGUF's with MatMulNBits in fp32 differ by rounding only; the
# 8-bit head on int8 activations (head accuracy_level 4) moves logits by up to about 0.5.
EXACT = (0.01, 0.02)
APPROX = (1.0, 0.25)


def limits(gen: dict) -> tuple[float, float]:
    exact = gen["weights"] in ("map", "offset") and gen["accuracy_level"] == 0 and gen["head_accuracy_level"] == 0
    return EXACT if exact else APPROX


CHUNK = 7
DECODE_LENGTHS = (3, 7, 20)  # tokens in each row's cache after the first batched decode step
DECODE_STEPS = 12

PROMPTS = [
    "The capital of France is",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "In 1969, Neil Armstrong and Buzz Aldrin landed on the Moon; 600 million people watched.",
]


class Engine:
    """model.onnx with per-layer caches bound as past and present, like the Rust engine."""

    def __init__(self, path: Path, layers: int, kv_heads: int, head_dim: int) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim

    def new_cache(self, slots: int, max_context: int) -> list[np.ndarray]:
        shape = (slots, self.kv_heads, max_context, self.head_dim)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * self.layers)]

    def step(self, cache: list[np.ndarray], rows: slice, ids: np.ndarray, lengths: list[int]) -> np.ndarray:
        """Run ids [batch, seq] for cache rows `rows`; lengths = tokens per row after the step."""
        b = self.sess.io_binding()
        b.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        b.bind_cpu_input("seqlens_k", np.array(lengths, dtype=np.int32) - 1)
        b.bind_cpu_input("total_sequence_length", np.array(max(lengths), dtype=np.int32))
        b.bind_output("logits")  # first, so that it is output 0 below
        for i in range(self.layers):
            for j, kind in enumerate(("key", "value")):
                # one OrtValue over the same memory for both: GQA writes the new rows in place
                buf = ort.OrtValue.ortvalue_from_numpy(cache[2 * i + j][rows])
                b.bind_ortvalue_input(f"past_key_values.{i}.{kind}", buf)
                b.bind_ortvalue_output(f"present.{i}.{kind}", buf)
        self.sess.run_with_iobinding(b)
        return b.copy_outputs_to_cpu()[0]


class Tally:
    """Top-1 agreement and largest logit difference against the reference, per scenario."""

    def __init__(self, gen: dict) -> None:
        self.max_abs, self.tie = limits(gen)
        self.ok = True
        self.picks: list[tuple[int, float, float]] = []  # (agrees, shortfall, max |diff|) per position

    def compare(self, label: str, got: list[np.ndarray], want: list[np.ndarray], count: bool = True) -> None:
        picks = [int(g.argmax()) for g in got]
        agree = np.mean([p == int(w.argmax()) for p, w in zip(picks, want)])
        # how far below the reference's top logit the worst pick lies: 0 when all picks agree
        gap = max(float(w.max() - w[p]) for p, w in zip(picks, want))
        diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        bad = gap > self.tie or diff > self.max_abs
        if count:
            self.picks += [(int(p == int(w.argmax())), float(w.max() - w[p]), float(np.abs(g - w).max()))
                           for p, g, w in zip(picks, got, want)]  # fmt: skip
        print(f"  {label:42s} positions {len(got):3d}  top-1 {agree * 100:6.2f}% (worst pick {gap:.3f} below)  "
              f"max |diff| {diff:.4f}  {'FAIL' if bad else 'ok'}")  # fmt: skip
        self.ok &= not bad

    def summary(self) -> None:
        agree, gap, diff = (np.array(c) for c in zip(*self.picks))
        print(f"  {'all':42s} positions {len(agree):3d}  top-1 {agree.mean() * 100:6.2f}% (worst pick "
              f"{gap.max():.3f} below)  max |diff| {diff.max():.4f}")  # fmt: skip


def prefill(eng: Engine, cache: list, row: int, ids: list[int], chunk: int) -> list[np.ndarray]:
    """Prefill ids into cache row `row` in chunks; the logits after each chunk."""
    out = []
    for start in range(0, len(ids), chunk):
        piece = ids[start : start + chunk]
        out.append(eng.step(cache, slice(row, row + 1), np.array([piece]), [start + len(piece)])[0])
    return out


def check_prefill(eng: Engine, ref: dict, prompts: list[list[int]], tally: Tally) -> None:
    whole, whole_ref, chunked, chunked_ref = [], [], [], []
    for ids in prompts:
        whole += prefill(eng, eng.new_cache(1, 128), 0, ids, len(ids))
        whole_ref.append(ref[tuple(ids)][-1])
        chunked += prefill(eng, eng.new_cache(1, 128), 0, ids, CHUNK)
        ends = list(range(CHUNK, len(ids), CHUNK)) + [len(ids)]
        chunked_ref += [ref[tuple(ids)][e - 1] for e in ends]
    tally.compare("whole-prompt prefill", whole, whole_ref)
    tally.compare(f"chunked prefill ({CHUNK} tokens)", chunked, chunked_ref)


def check_decode(eng: Engine, ref: dict, texts: list[list[int]], tally: Tally) -> None:
    """Rows start at DECODE_LENGTHS (in turn), then decode together, teacher-forced, DECODE_STEPS
    steps; the texts are the prompts and the tokenizer texts long enough for that."""
    starts = [DECODE_LENGTHS[r % len(DECODE_LENGTHS)] - 1 for r in range(len(texts))]
    cache = eng.new_cache(len(texts), 64)
    for r, (ids, n) in enumerate(zip(texts, starts)):
        prefill(eng, cache, r, ids[:n], CHUNK)
    got, want = [], []
    lengths = starts
    for step in range(DECODE_STEPS):
        ids = np.array([[p[n]] for p, n in zip(texts, lengths)])
        lengths = [n + 1 for n in lengths]
        logits = eng.step(cache, slice(0, len(texts)), ids, lengths)
        got += list(logits)
        want += [ref[tuple(p)][n - 1] for p, n in zip(texts, lengths)]
        if step == 0:
            tally.compare(f"batched decode, {len(texts)} rows at {list(DECODE_LENGTHS)}...", got, want, count=False)
    tally.compare(f"batched decode, {DECODE_STEPS} steps", got, want)


def check_generate(eng: Engine, reference: Reference, tok: Tokenizer, tally: Tally, n: int = 20) -> None:
    ids = tok.encode(PROMPTS[0]).ids
    cache = eng.new_cache(1, 64)
    logits = [prefill(eng, cache, 0, ids, len(ids))[-1]]
    out = list(ids)
    for _ in range(n - 1):
        out.append(int(logits[-1].argmax()))
        logits.append(eng.step(cache, slice(0, 1), np.array([[out[-1]]]), [len(out)])[0])
    out.append(int(logits[-1].argmax()))
    text = tok.decode(out[len(ids) :])
    print(f"  greedy: {PROMPTS[0]!r} -> {text!r}")
    want = reference.logits(out[:-1])[len(ids) - 1 :]
    tally.compare(f"greedy generation ({n} tokens)", logits, list(want))
    if "Paris" not in text:
        print("  FAIL: the greedy continuation does not mention Paris")
        tally.ok = False


def check_tokenizer(tok: Tokenizer, path: Path) -> bool:
    if not path.is_file():
        print(f"tokenizer: FAIL {path} missing")
        return False
    data = json.loads(path.read_text())
    bad = 0
    for item in data["items"]:
        got = tok.encode(item["text"], add_special_tokens=False).ids
        if got != item["ids"]:
            bad += 1
            print(f"  FAIL {item['text'][:50]!r}: {got[:12]}... != llama.cpp {item['ids'][:12]}...")
    print(f"tokenizer: {len(data['items']) - bad}/{len(data['items'])} texts give llama.cpp's ids ({data['source']})")
    return bad == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=HERE / "SmolLM2-135M-Instruct")
    ap.add_argument("--tokenizer-reference", type=Path, default=HERE / "llm_tokenizer_reference.json")
    args = ap.parse_args()
    gen = json.loads((args.dir / "generation.json").read_text())
    tok = Tokenizer.from_file(str(args.dir / "tokenizer.json"))
    ok = check_tokenizer(tok, args.tokenizer_reference)

    reference = Reference(gguf_path())
    eng = Engine(args.dir / "model.onnx", gen["num_layers"], gen["num_kv_heads"], gen["head_dim"])
    prompts = [tok.encode(p).ids for p in PROMPTS]
    need = max(DECODE_LENGTHS) - 1 + DECODE_STEPS
    texts = [i["ids"][:need] for i in json.loads(args.tokenizer_reference.read_text())["items"]]
    texts = [t for t in prompts + texts if len(t) >= need]
    ref = {tuple(p): reference.logits(p) for p in prompts + [t for t in texts if t not in prompts]}
    print(f"model.onnx (weights={gen['weights']}, accuracy_level={gen['accuracy_level']}, "
          f"head {gen['head_accuracy_level']}) against numpy:")
    tally = Tally(gen)
    check_prefill(eng, ref, prompts, tally)
    check_decode(eng, ref, texts, tally)
    check_generate(eng, reference, tok, tally)
    tally.summary()
    ok &= tally.ok
    print("llm check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
