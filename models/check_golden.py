#!/usr/bin/env python3
"""Check exported ONNX models against sentence-transformers' reference embeddings.

Tokenizes with the exported tokenizer.json using sentence-transformers' settings (truncate at
max_seq_length=256 word pieces, pad to the longest text in the batch, not to a fixed 128),
runs the model with onnxruntime, mean-pools over the attention mask, L2-normalises and compares
with ../shared/reference/minilm-golden.json by cosine similarity. Every item is checked twice:
all items padded together in one batch, and one by one without padding.

Thresholds: fp32 every item >= 0.9999; int8 (a graph with quantised ops, e.g. model_int8.onnx)
mean >= 0.99 and min >= 0.95. Token counts must equal the golden num_tokens. Exit status 1 on any failure.

golden file: --golden, else $MINILM_GOLDEN, else ../shared/reference/minilm-golden.json
(relative to the repository root).

usage: check_golden.py [--dir models/all-MiniLM-L6-v2] [--golden PATH] [MODEL.onnx ...]
       (no model given: model.onnx and model_int8.onnx from --dir)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "all-MiniLM-L6-v2"
DEFAULT_GOLDEN = Path(
    os.environ.get("MINILM_GOLDEN", HERE.parent.parent / "shared" / "reference" / "minilm-golden.json")
)

FP32_MIN = 0.9999
INT8_MEAN = 0.99
INT8_MIN = 0.95


def load_tokenizer(model_dir: Path, max_len: int) -> Tokenizer:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=max_len)  # tokenizer.json says 128
    tok.no_padding()  # tokenizer.json pads to a fixed 128; padding is done per batch below
    return tok


def encode_batch(tok: Tokenizer, texts: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    encs = tok.encode_batch(texts)
    lens = [len(e.ids) for e in encs]
    width = max(lens)
    ids = np.zeros((len(texts), width), dtype=np.int64)  # [PAD] = 0
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : lens[i]] = e.ids
        mask[i, : lens[i]] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, lens


def embed(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    names = {i.name for i in sess.get_inputs()}
    hidden = sess.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in names})[0]
    mask = feeds["attention_mask"].astype(np.float32)[:, :, None]
    pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def is_quantized(path: Path) -> bool:
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return bool(ops & {"DynamicQuantizeLinear", "MatMulInteger", "QAttention", "DynamicQuantizeMatMul"})


def check_model(path: Path, tok: Tokenizer, items: list[dict], int8: bool) -> bool:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    texts = [it["text"] for it in items]
    golden = np.array([it["embedding"] for it in items], dtype=np.float32)
    golden /= np.linalg.norm(golden, axis=1, keepdims=True)
    ok = True

    feeds, lens = encode_batch(tok, texts)
    label = "int8" if int8 else "fp32"
    print(f"{path.name} ({label}), {len(items)} items, batch width {feeds['input_ids'].shape[1]}:")
    bad_tok = [(i, lens[i], it["num_tokens"]) for i, it in enumerate(items) if lens[i] != it["num_tokens"]]
    for i, got, want in bad_tok:
        print(f"  FAIL item {i}: {got} tokens, golden {want}: {texts[i][:60]!r}")
        ok = False

    batched = embed(sess, feeds)
    single = np.concatenate([embed(sess, encode_batch(tok, [t])[0]) for t in texts])
    pad_diff = float(np.abs(batched - single).max())

    for mode, emb in (("batch", batched), ("single", single)):
        cos = (emb * golden).sum(axis=1)
        print(f"  {mode:6s}: cosine min {cos.min():.7f}  mean {cos.mean():.7f}  (item {int(cos.argmin())} lowest)")
        if int8:
            if cos.mean() < INT8_MEAN or cos.min() < INT8_MIN:
                print(f"  FAIL {mode}: int8 needs mean >= {INT8_MEAN} and min >= {INT8_MIN}")
                ok = False
        else:
            for i in np.nonzero(cos < FP32_MIN)[0]:
                print(f"  FAIL {mode} item {i}: cosine {cos[i]:.6f} < {FP32_MIN}: {texts[i][:60]!r}")
                ok = False
    agree = float((batched * single).sum(axis=1).min())
    print(f"  batch vs single: max abs diff {pad_diff:.2e}, min cosine {agree:.6f}")
    # Dynamic int8 picks one activation scale per tensor over the whole batch, so the batch a
    # text travels in moves its int8 embedding a little; both modes must meet the thresholds
    # above. fp32 must not depend on padding at all.
    if not int8 and agree < 0.99999:
        print("  FAIL: padding changes the embeddings")
        ok = False
    print(f"  {'OK' if ok else 'FAILED'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="exported model directory (tokenizer.json)")
    ap.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN)
    args = ap.parse_args()

    golden = json.loads(args.golden.read_text())
    if golden.get("pooling") != "mean" or not golden.get("normalize"):
        print(f"unexpected golden settings: pooling={golden.get('pooling')} normalize={golden.get('normalize')}")
        return 1
    tok = load_tokenizer(args.dir, int(golden["max_seq_length"]))
    models = args.models or [args.dir / "model.onnx", args.dir / "model_int8.onnx"]
    ok = True
    for m in models:
        if not m.is_file():
            print(f"{m}: missing")
            ok = False
            continue
        ok &= check_model(m, tok, golden["items"], int8=is_quantized(m))
    print("golden check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
