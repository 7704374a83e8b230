# syntax=docker/dockerfile:1
# concur: CPU inference server image (deploy/README.md).
#   docker build -t concur:0.1.0 .
#   docker run --rm -p 8080:8080 --cpus 2 --memory 1g concur:0.1.0
# With the golden check of the exported model (needs BuildKit named contexts):
#   docker buildx build --build-context golden=../shared/reference -t concur:0.1.0 .
# Three stages: the Rust binary, the ONNX export + ONNX Runtime library (Python), and a slim
# runtime with only what the server reads. scripts/check-docker.sh replays the stages here.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- 1. the release binary ----------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# No line tables in the image's binary (Cargo.toml keeps them for local profiling): 1/3 the size.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
# Dependencies first, in their own layer: it is rebuilt only when a manifest or the lock
# file changes. The workspace needs every member's manifest and targets to resolve, so the
# sources are stubs here (loadtest's explicit [[test]] too).
COPY Cargo.toml Cargo.lock ./
COPY loadtest/Cargo.toml loadtest/Cargo.toml
RUN mkdir -p src loadtest/src loadtest/tests \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs loadtest/src/lib.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && echo 'fn main() {}' > loadtest/tests/sweep_fake.rs \
    && cargo build --release --locked -p concur \
    && rm -rf src loadtest/src loadtest/tests
COPY src src
# The live page and its vendored charting library, embedded by include_str! (no node needed).
COPY web web
COPY loadtest loadtest
# COPY keeps the files' own mtimes, which can be older than the stub build: touch the crate
# roots so cargo rebuilds concur itself (the dependencies stay cached).
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p concur \
    && install -D -m 0755 target/release/concur /out/concur

# ---- 2. ONNX export + ONNX Runtime library -------------------------------------------------
# An empty stage unless the build names a context `golden` (a directory holding
# minilm-golden.json): then setup.sh checks the export against it, as `make setup` does.
FROM ${PYTHON_IMAGE} AS golden

FROM ${PYTHON_IMAGE} AS model
WORKDIR /src
# The project's own setup script: venv, `pip install --no-deps -r models/requirements.txt`
# (the complete pinned closure), lib/libonnxruntime.so -> the wheel's library, models/export.py.
COPY scripts/setup.sh scripts/setup.sh
COPY models/requirements.txt models/export.py models/check_golden.py models/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,from=golden,target=/golden \
    MINILM_GOLDEN=/golden/minilm-golden.json bash scripts/setup.sh \
    && mkdir -p /out/lib /out/models \
    && cp -L lib/libonnxruntime.so /out/lib/libonnxruntime.so \
    && cp -R models/all-MiniLM-L6-v2 /out/models/all-MiniLM-L6-v2 \
    && rm -f /out/models/all-MiniLM-L6-v2/.export.sha256

# ---- 3. runtime ----------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="concur" \
      org.opencontainers.image.description="CPU inference server: all-MiniLM-L6-v2 embeddings and a retrieval chat bot, OpenAI-compatible" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# bookworm-slim already has what the binary and libonnxruntime.so link to (libc, libm,
# libgcc_s, libstdc++) and bash for the health check: nothing to install.
RUN groupadd --system --gid 10001 concur \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin concur
WORKDIR /app
# Owned by root and read-only to the server: it writes nothing at run time.
COPY --from=build /out/concur /app/concur
COPY --from=model /out/lib/libonnxruntime.so /app/lib/libonnxruntime.so
COPY --from=model /out/models/ /app/models/
COPY config/ /app/config/
COPY --chmod=0755 deploy/docker/healthcheck.sh /app/healthcheck
USER 10001:10001
EXPOSE 8080
# /ready: 200 once the model is loaded, 503 while draining. The model loads in a few seconds.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/app/healthcheck"]
STOPSIGNAL SIGTERM
CMD ["/app/concur", "serve", "--config", "/app/config/docker.toml"]
