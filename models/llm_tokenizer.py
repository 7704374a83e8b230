"""Hugging Face `tokenizers` JSON for a GGUF "gpt2" (byte-level BPE) vocabulary.

llama.cpp's `smollm` pre-tokenizer (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_SMOLLM) applies two
regexes in turn: "\\p{N}" (every digit its own piece), then GPT-2's
"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)". Its equivalent here
is Digits(individual_digits) followed by ByteLevel(use_regex), whose regex is GPT-2's plus a last
"\\s+" alternative that llama.cpp's hand-written GPT-2 splitter also has. Control tokens
(token_type 3) become special added tokens, so "<|im_start|>" in text is one token, as with
llama.cpp's parse_special. models/llm_tokenizer_reference.json holds llama.cpp's own ids for a
set of texts; check_llm.py compares.
"""

from __future__ import annotations

import re

CONTROL = 3  # llama_token_type: LLAMA_TOKEN_TYPE_CONTROL


def added_tokens(tokens: list[str], types: list[int]) -> list[dict]:
    return [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for i, (t, kind) in enumerate(zip(tokens, types))
        if kind == CONTROL
    ]  # fmt: skip


def tokenizer_json(tokens: list[str], types: list[int], merges: list[str], pre: str) -> dict:
    if pre != "smollm":
        raise SystemExit(f"tokenizer.ggml.pre={pre!r}: only llama.cpp's 'smollm' pre-tokenizer is mapped")
    if len(set(tokens)) != len(tokens):
        raise SystemExit("tokenizer.ggml.tokens has duplicates: a vocab map cannot hold them")
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]},
        # add_bos_token is false in the GGUF: nothing is added around the ids
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": list(merges),
        },
    }  # fmt: skip


def chat_defaults(template: str) -> str:
    """The system message the chat template inserts when the conversation has none."""
    found = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", template, re.S)
    if not found:
        raise SystemExit("chat template: no default system message found")
    return found.group(1)
