#!/usr/bin/env python3
"""Check how well the chat knowledge base retrieves with all-MiniLM-L6-v2.

Embeds every example question of config/knowledge_base.toml and every message
of tests/data/chat_paraphrases.json the same way the server does (tokenizer.json
with its own truncation/padding settings overridden: truncation at 256 word
pieces, no padding; mean pooling of `last_hidden_state` over the attention
mask; L2 normalisation), one text per run by default, and scores each message against each entry as the
MAX cosine over that entry's example questions, and reports:

  * paraphrase top-1 accuracy (without and with a threshold),
  * the score distributions of on-topic paraphrases and off-topic messages,
  * a suggested similarity threshold separating the two,
  * the most confusable pairs of entries.

Usage (from the repository root):

    .venv/bin/python config/tools/kb_check.py [--threshold 0.47] [--verbose]
    .venv/bin/python config/tools/kb_check.py --model-file model_int8.onnx

Needs onnxruntime, tokenizers and numpy, and models/all-MiniLM-L6-v2/ with
model.onnx (or --model-file) and tokenizer.json. Runs on one thread (--threads).

Exit status is 1 when, at the threshold used (given or suggested), accuracy is
below --min-accuracy (default 0.95) or an off-topic message reaches the threshold,
or when a paraphrase repeats an example question word for word.
"""

import argparse
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
MAX_TOKENS = 256


class Embedder:
    def __init__(self, model_dir: Path, threads: int = 1,
                 model_file: str = "model.onnx", batch_size: int = 1):
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.enable_truncation(max_length=MAX_TOKENS)
        self.tok.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(
            str(model_dir / model_file), opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.sess.get_inputs()}
        outs = [o.name for o in self.sess.get_outputs()]
        self.output = "last_hidden_state" if "last_hidden_state" in outs else outs[0]
        self.batch_size = batch_size

    def embed(self, texts) -> np.ndarray:
        # Batch size 1 by default, like the server's per-request path: with a
        # dynamically quantised model, padding and batch-mates change the scores.
        batch_size = self.batch_size
        vecs = []
        for start in range(0, len(texts), batch_size):
            encs = self.tok.encode_batch(list(texts[start:start + batch_size]))
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(encs), width), dtype=np.int64)
            mask = np.zeros((len(encs), width), dtype=np.int64)
            for row, e in enumerate(encs):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.sess.run([self.output], feed)[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            vecs.append(pooled.astype(np.float32))
        return np.concatenate(vecs, axis=0)


def pct(values, q):
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def describe(name, values):
    v = np.asarray(values)
    print(
        f"  {name:<28} n={len(v):3d}  min={v.min():.3f}  p5={pct(v, 5):.3f}  "
        f"p10={pct(v, 10):.3f}  p25={pct(v, 25):.3f}  median={pct(v, 50):.3f}  max={v.max():.3f}"
    )


def histogram(values, lo=0.0, hi=1.0, step=0.05):
    edges = np.arange(lo, hi + 1e-9, step)
    counts, _ = np.histogram(values, bins=edges)
    return [(edges[i], edges[i + 1], int(c)) for i, c in enumerate(counts)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", type=Path, default=ROOT / "config/knowledge_base.toml")
    ap.add_argument("--data", type=Path, default=ROOT / "tests/data/chat_paraphrases.json")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models/all-MiniLM-L6-v2")
    ap.add_argument("--model-file", default="model.onnx", help="ONNX file inside --model-dir")
    ap.add_argument("--threshold", type=float, help="threshold to evaluate (default: suggested one)")
    ap.add_argument("--min-accuracy", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--verbose", action="store_true", help="print every paraphrase with its score")
    args = ap.parse_args()

    entries = tomllib.loads(args.kb.read_text(encoding="utf-8"))["entries"]
    data = json.loads(args.data.read_text(encoding="utf-8"))
    paraphrases, off_topic = data["paraphrases"], data["off_topic"]
    ids = [e["id"] for e in entries]
    known = set(ids)
    problems = []

    unknown = sorted({p["expected"] for p in paraphrases} - known)
    if unknown:
        problems.append(f"paraphrases expect unknown entry ids: {unknown}")
    examples = {q.strip().lower().rstrip("?!. ") for e in entries for q in e["questions"]}
    copies = [p["question"] for p in paraphrases if p["question"].strip().lower().rstrip("?!. ") in examples]
    if copies:
        problems.append(f"paraphrases copied from example questions: {copies}")

    emb = Embedder(args.model_dir, args.threads, args.model_file, args.batch_size)
    q_texts = [q for e in entries for q in e["questions"]]
    owner = np.array([i for i, e in enumerate(entries) for _ in e["questions"]])
    q_vecs = emb.embed(q_texts)

    def entry_scores(vecs):
        sims = vecs @ q_vecs.T  # (n, total questions)
        out = np.full((len(vecs), len(entries)), -1.0, dtype=np.float32)
        for i in range(len(entries)):
            out[:, i] = sims[:, owner == i].max(axis=1)
        return out

    p_scores = entry_scores(emb.embed([p["question"] for p in paraphrases]))
    o_scores = entry_scores(emb.embed(off_topic))
    expected = np.array([ids.index(p["expected"]) if p["expected"] in known else -1 for p in paraphrases])
    best = p_scores.argmax(axis=1)
    best_score = p_scores.max(axis=1)
    correct = best == expected
    off_best = o_scores.max(axis=1)
    off_max = float(off_best.max())

    print(f"knowledge base: {len(entries)} entries, {len(q_texts)} example questions")
    print(f"paraphrases: {len(paraphrases)} covering {len(set(expected.tolist()))} entries; off-topic: {len(off_topic)}")
    print(f"\ntop-1 accuracy (no threshold): {correct.mean():.3f} ({correct.sum()}/{len(correct)})")

    # Suggested threshold: midway between the highest off-topic score and the
    # lowest correctly retrieved paraphrase score above it.
    above = np.sort(best_score[correct & (best_score > off_max)])
    suggested = round(float((off_max + above[0]) / 2), 2) if len(above) else round(off_max + 0.01, 2)
    threshold = args.threshold if args.threshold is not None else suggested
    hit = correct & (best_score >= threshold)
    acc = hit.mean()
    off_above = int((off_best >= threshold).sum())

    print("\nscore distributions (max cosine over an entry's example questions):")
    describe("paraphrase, expected entry", p_scores[np.arange(len(expected)), expected])
    describe("paraphrase, best entry", best_score)
    describe("off-topic, best entry", off_best)
    print("\n  histogram      para-best  off-best")
    pb, ob = histogram(best_score), histogram(off_best)
    for (lo, hi, a), (_, _, b) in zip(pb, ob):
        if a or b:
            print(f"  [{lo:.2f},{hi:.2f})   {a:5d}     {b:5d}")

    print("\naccuracy at thresholds (paraphrase counts only if top-1 is right and >= threshold):")
    for t in np.arange(0.30, 0.71, 0.05):
        print(f"  {t:.2f}: accuracy {(correct & (best_score >= t)).mean():.3f}, "
              f"off-topic at/above {(off_best >= t).sum()}")

    print(f"\nsuggested threshold: {suggested:.2f} (off-topic max {off_max:.3f})")
    print(f"evaluated threshold: {threshold:.2f} -> accuracy {acc:.3f} ({hit.sum()}/{len(hit)}), "
          f"off-topic at/above threshold: {off_above}")

    misses = [i for i in range(len(paraphrases)) if not hit[i]]
    if misses:
        print("\nmisses:")
    for i in misses:
        top = np.argsort(-p_scores[i])[:3]
        alts = ", ".join(f"{ids[j]} {p_scores[i, j]:.3f}" for j in top)
        print(f"  {paraphrases[i]['question']!r}\n    expected {paraphrases[i]['expected']}; got {alts}")

    print("\noff-topic messages, highest first:")
    for i in np.argsort(-off_best)[:8]:
        print(f"  {off_best[i]:.3f}  {ids[int(o_scores[i].argmax())]:<28} {off_topic[i]!r}")

    if args.verbose:
        print("\nall paraphrases:")
        for i in np.argsort(best_score):
            mark = "ok " if hit[i] else "MISS"
            print(f"  {mark} {best_score[i]:.3f} {ids[best[i]]:<28} {paraphrases[i]['question']!r}")

    # Most similar pairs of entries (max cosine between their example questions).
    sims = q_vecs @ q_vecs.T
    pair = np.full((len(entries), len(entries)), -1.0)
    for i in range(len(entries)):
        for j in range(i + 1, len(entries)):
            pair[i, j] = sims[np.ix_(owner == i, owner == j)].max()
    print("\nmost confusable entry pairs (max cosine between example questions):")
    flat = np.dstack(np.unravel_index(np.argsort(-pair, axis=None)[:8], pair.shape))[0]
    for i, j in flat:
        print(f"  {pair[i, j]:.3f}  {ids[i]} <-> {ids[j]}")

    if acc < args.min_accuracy:
        problems.append(f"accuracy {acc:.3f} below {args.min_accuracy}")
    if off_above:
        problems.append(f"{off_above} off-topic message(s) at or above the threshold")
    for p in problems:
        print(f"\nFAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
