# concur: the two commands a newcomer needs.
#   make run   set up what is missing, build in release mode, serve config/default.toml on 127.0.0.1:8080
#   make test  the same setup (plus test tools), then every test
# Setup is idempotent and cached: a second run takes a second or two.

CONFIG ?= config/default.toml
CARGO ?= cargo
# `make test` fuzzes each request parser this long; `make fuzz` runs one target or all.
FUZZ_SMOKE_SECONDS ?= 20
TARGET ?= all
SECONDS ?= 600

.PHONY: setup test-setup peer-setup run build test docs-check bench sweep lint fmt clean-models

setup:
	@bash scripts/setup.sh

# Test-only tools: promtool and a Prometheus server (Debian's prometheus package) for the
# metrics tests; schemathesis and openapi-spec-validator (.venv-contract), cargo-fuzz and the
# fuzz targets for the API contract; Debian's chromium and playwright-core (tests/browser/)
# for the live page's browser test; remark-cli (scripts/docs-check/) for the documentation check.
test-setup: setup
	@bash scripts/test-setup.sh

# The peers the sweep measures concur against (docs/loadtest.md): the Python one in .venv-peer,
# and llama.cpp's llama-server built from source with its GGUF model in .peer/.
peer-setup: setup
	@bash scripts/peer-setup.sh

build: setup
	$(CARGO) build --release --workspace

run: build
	@echo "concur: once it logs 'ready', open the live page it names (http://127.0.0.1:8080/ with the default config)"
	./target/release/concur serve --config $(CONFIG)

test: test-setup
	@bash scripts/check-docs.sh
	$(CARGO) test --workspace --all-targets
	@bash scripts/fuzz.sh all $(FUZZ_SMOKE_SECONDS)

# Every relative link and #anchor in the Markdown files resolves; README.md at most 350 lines.
docs-check:
	@bash scripts/test-setup.sh docs-check
	@bash scripts/check-docs.sh

# The raw engine ceiling (no HTTP) for the default config.
bench: build
	./target/release/concur bench --config $(CONFIG) --corpus loadtest/corpus/chat.jsonl --seconds 20

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-models:
	rm -rf models/all-MiniLM-L6-v2 models/SmolLM2-135M-Instruct lib

# Packaging and scale-out (deploy/README.md); not part of `make test`.
.PHONY: docker-check deploy-check replicas-test

# The Dockerfile without a Docker engine: hadolint, then its stages replayed here (1-2 min).
docker-check:
	@bash scripts/check-docker.sh

# deploy/kubernetes/: yamllint, schema validation, cross-checks against the config and image.
deploy-check:
	@bash scripts/check-deploy.sh

# Three replicas behind HAProxy, one stopped under load: no request may fail (about 30 s).
replicas-test: build
	@bash scripts/replicas-test.sh

# Coverage-guided fuzzing of the request parsers (fuzz/): `make fuzz TARGET=chat_body SECONDS=600`.
# TARGET=all (the default) runs each target in turn; `scripts/fuzz.sh list` names them.
.PHONY: fuzz
fuzz: test-setup
	@if [ "$(TARGET)" = all ]; then bash scripts/fuzz.sh all $(SECONDS); \
	else bash scripts/fuzz.sh run $(TARGET) $(SECONDS); fi
