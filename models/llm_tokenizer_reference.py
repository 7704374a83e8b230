#!/usr/bin/env python3
"""Record llama.cpp's token ids for SmolLM2's GGUF vocabulary on a fixed set of texts.

Runs `llama-tokenize -m GGUF -f TEXT --ids --no-escape` (special tokens parsed, no BOS: the
GGUF says add_bos_token=false) on each text of TEXTS and writes llm_tokenizer_reference.json,
which check_llm.py compares with tokenizer.json through `tokenizers`. It is run once, by hand,
and its output committed, so that setup never needs llama.cpp.

usage: llm_tokenizer_reference.py --llama-tokenize PATH/llama-tokenize [--out models/llm_tokenizer_reference.json]
(llama.cpp as vendored in the llama-cpp-python 0.3.36 sdist, target llama-tokenize)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from llm_reference import gguf_path  # noqa: E402

TEXTS = [
    # digits: llama.cpp's smollm pre-tokenizer makes every digit its own piece
    "Hello world",
    "The year 2024 had 366 days; pi is 3.14159265358979 and 1,000,000 is a million.",
    "Call 555-0199 or +1 (800) 123-4567 before 12:30pm on 2025-01-31.",
    "12345678901234567890 0.000001 1e-10 0x1F 007 v2.3.4 A1B2C3",
    "Numerics beyond ASCII: ½ ¾ ² ³ ٣٤٥ ४२ 五 Ⅻ ①",
    # code and indentation
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!(\"{:?}\", v);\n}\n",
    '{"name": "concur", "ports": [8080, 9090], "nested": {"ok": true, "ratio": 0.75}}',
    "<div class=\"x\">\n  <p>Hi &amp; bye</p>\n</div>",
    "SELECT id, COUNT(*) FROM users WHERE age >= 18 GROUP BY id;  -- comment",
    # emoji, including joiners, variation selectors and flags
    "I ❤️ 🦀 and 🐍! 👩‍👩‍👧‍👦 family, 🇫🇷 flag, 👍🏽 thumbs",
    # CJK and other scripts
    "你好，世界！今天天气很好。",
    "東京タワーは333メートルです。カタカナとひらがな",
    "안녕하세요, 세계! 한국어 텍스트입니다.",
    "Привет, мир! Ёлка и ЁЖИК. Καλημέρα κόσμε. مرحبا بالعالم. नमस्ते दुनिया",
    # accented Latin
    "Ça va? Déjà vu, naïve café, Ångström, Straße, Łódź, ñandú, Žluťoučký kůň, İstanbul",
    # whitespace runs, tabs, newlines
    "a  b   c    d\t\te\n\n\nf \n g  \n",
    "   leading spaces and trailing   ",
    "\n\n",
    " \t \n \r\n x",
    "tabs\tin\t\tthe\t\t\tmiddle",
    "line one\r\nline two\rline three\u00a0nbsp\u2009thin\u3000ideographic",
    # contractions, in several cases
    "I'm sure they've said it's what we'd do, don't you think? I'LL SEE, You'Re right, she'D go.",
    "rock 'n' roll, the '90s, 'quoted', O'Neil's",
    # punctuation and mixed
    "Wait... what?!?! --- yes!!! (maybe) [no] {ok} <tag> @user #hash $5 %20 ^_^ ~*~",
    "https://example.com/path?query=1&x=y#frag user@example.org",
    "**bold** _italic_ `code` > quote\n- item 1\n- item 2\n\n| a | b |\n|---|---|",
    # ChatML: control tokens are parsed as single special tokens
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_end|><|im_start|>assistant\n4<|im_end|><|endoftext|>",
    "text<|endoftext|>more text <|im_start|> spaced <|im_end|> end",
    "not special: <|im_start <im_start|> <| im_end |> <repo_name>x<file_sep>",
    "Mixed 日本語 and English with 123 numbers and émojis 🎉 in one line.",
    " ",
    "x",
]


def tokenize(binary: Path, gguf: Path, text: str) -> list[int]:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt") as f:
        f.write(text.encode("utf-8"))  # -f reads the file byte for byte
        f.flush()
        cmd = [str(binary), "-m", str(gguf), "-f", f.name, "--ids", "--no-escape", "--log-disable"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    return next((line for line in (out.stdout + out.stderr).splitlines() if line.startswith("version")), "?")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-tokenize", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE / "llm_tokenizer_reference.json")
    args = ap.parse_args()
    gguf = gguf_path()
    items = [{"text": t, "ids": tokenize(args.llama_tokenize, gguf, t)} for t in TEXTS]
    data = {"source": f"llama.cpp llama-tokenize ({version(args.llama_tokenize)}), parse_special, no BOS",
            "gguf": gguf.name, "items": items}  # fmt: skip
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(items)} texts, {sum(len(i['ids']) for i in items)} ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
