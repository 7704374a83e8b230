#!/usr/bin/env python3
"""Check the exported SmolLM2 decoder and tokenizer; exit status 1 on any failure.

Model: an independent numpy forward pass of the dequantized GGUF (llm_reference.py) against
model.onnx, run the way the Rust engine runs it: onnxruntime IOBinding with one buffer per layer
bound as both past and present (GroupQueryAttention updates it in place), 2 intra-op threads.
  1. whole-prompt prefill (batch 1)
  2. chunked prefill, chunks of 7 tokens, earlier chunks already in the cache
  3. batched decode: rows prefilled to different lengths in one buffer, then decode steps of
     all rows together until the longest prompt ends
  4. greedy generation of 20 tokens after "The capital of France is" (must mention Paris)
Each logits row is compared with the reference at the same position: top-1 must agree unless
the reference's own top two are within TIE of each other, and the largest absolute logit
difference must stay under the limit of the weights mode named in generation.json.

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

# largest |logit - reference| allowed, by weights mode: "map" differs only by float rounding;
# "requant" re-quantizes every 4-bit block
MAX_ABS = {"map": 0.01, "requant": 3.0}
MIN_AGREE = {"map": 1.0, "requant": 0.9}
TIE = {"map": 0.02, "requant": 0.0}  # a pick within TIE of the reference's top logit is a tie
CHUNK = 7
DECODE_LENGTHS = (3, 7, 20)

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

    def __init__(self, weights: str) -> None:
        self.weights = weights
        self.ok = True

    def compare(self, label: str, got: list[np.ndarray], want: list[np.ndarray]) -> None:
        got_top = [int(g.argmax()) for g in got]
        strict = np.mean([g == int(w.argmax()) for g, w in zip(got_top, want)])
        agree = np.mean([w.max() - w[g] <= TIE[self.weights] for g, w in zip(got_top, want)])
        diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        bad = agree < MIN_AGREE[self.weights] or diff > MAX_ABS[self.weights]
        ties = f" ({agree * 100:.2f}% with ties)" if agree != strict else ""
        print(f"  {label:42s} positions {len(got):3d}  top-1 {strict * 100:6.2f}%{ties}  "
              f"max |diff| {diff:.4f}  {'FAIL' if bad else 'ok'}")
        self.ok &= not bad


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


def check_decode(eng: Engine, ref: dict, prompts: list[list[int]], tally: Tally) -> None:
    """Rows start at DECODE_LENGTHS, then all decode together (teacher-forced) to the longest."""
    rows = [p for p in prompts if len(p) >= max(DECODE_LENGTHS)][: len(DECODE_LENGTHS)]
    if len(rows) < len(DECODE_LENGTHS):
        sys.exit(f"need {len(DECODE_LENGTHS)} prompts of >= {max(DECODE_LENGTHS)} tokens")
    cache = eng.new_cache(len(rows), 64)
    lengths = [n - 1 for n in DECODE_LENGTHS]
    for r, (ids, n) in enumerate(zip(rows, lengths)):
        prefill(eng, cache, r, ids[:n], CHUNK)
    got, want = [], []
    first = True
    while max(lengths) < min(len(p) for p in rows):
        ids = np.array([[p[n]] for p, n in zip(rows, lengths)])
        lengths = [n + 1 for n in lengths]
        logits = eng.step(cache, slice(0, len(rows)), ids, lengths)
        for r, p in enumerate(rows):
            got.append(logits[r])
            want.append(ref[tuple(p)][lengths[r] - 1])
        if first:
            tally.compare(f"batched decode, rows at {list(DECODE_LENGTHS)} tokens", got, want)
            first = False
    tally.compare(f"batched decode, {len(got) // len(rows)} steps", got, want)


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
    ref = {tuple(p): reference.logits(p) for p in prompts}
    print(f"model.onnx (weights={gen['weights']}, accuracy_level={gen['accuracy_level']}) against numpy:")
    tally = Tally(gen["weights"])
    check_prefill(eng, ref, prompts, tally)
    check_decode(eng, ref, prompts, tally)
    check_generate(eng, reference, tok, tally)
    ok &= tally.ok
    print("llm check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
