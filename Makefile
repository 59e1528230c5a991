# Tilesmith — the two commands are `make setup` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
PY := $(BIN)/python
# torch first, pinned: the registry's newest torch is a CUDA build with several GB of dependencies.
TORCH := torch==2.13.0

.PHONY: setup test lint format proto bench-tiling bench-diffusion bench-pipeline bench tiling diffusion captioning bridge models tiny-models demo up clean

setup: $(VENV)/.installed
	@bash scripts/install-system-packages.sh

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check $(TORCH)
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[all]"
	touch $@

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the committed stubs in sdk/tilesmith/v1 from protos/ (tests fail when they are stale).
proto: setup
	$(PY) protos/generate.py

bench-tiling: setup
	$(PY) bench/bench_tiling.py

bench-diffusion: setup
	$(PY) bench/bench_diffusion.py

# A job through the embedded stack vs the same pipeline calls in-process, and 1 vs 2 diffusion replicas
# (about 15 minutes on 2 cores; `$(PY) bench/bench_pipeline.py --quick` is a 1-minute smoke run).
bench-pipeline: setup
	$(PY) bench/bench_pipeline.py

bench: bench-tiling bench-diffusion

# Production weights (needs the Hugging Face hub; HF_TOKEN for gated repos) into $(MODELS_DIR).
MODELS_DIR ?= models
models: setup
	$(PY) -m services.diffusion.fetch $(MODELS_DIR)

# The tiny random-weight models (offline; tests build them on demand).
tiny-models: setup
	$(PY) -m services.diffusion.tiny

# Run the diffusion service in the foreground, e.g. `make diffusion PROFILE=tiny`.
PROFILE ?= production
diffusion: setup
	TILESMITH_DIFFUSION_PROFILE=$(PROFILE) TILESMITH_DIFFUSION_MODELS_DIR=$${TILESMITH_DIFFUSION_MODELS_DIR:-$(if $(filter tiny,$(PROFILE)),.cache/tiny-models,$(MODELS_DIR))} $(PY) -m services.diffusion

# Run the tiling service in the foreground (Ctrl-C stops it).
tiling: setup
	$(PY) -m services.tiling

# Run the captioning service in the foreground, e.g. `make captioning PROFILE=tiny`.
captioning: setup
	TILESMITH_CAPTIONING_PROFILE=$(PROFILE) TILESMITH_CAPTIONING_MODELS_DIR=$${TILESMITH_CAPTIONING_MODELS_DIR:-$(if $(filter tiny,$(PROFILE)),.cache/tiny-models,$(MODELS_DIR))} $(PY) -m services.captioning

# Run the bridge service in the foreground (keys from FAL_KEY, ZAI_API_KEY, REPLICATE_API_TOKEN, OPENROUTER_API_KEY).
bridge: setup
	$(PY) -m services.bridge

# One upscale of assets/sample_sprite.png through the embedded stack with the tiny models (offline;
# builds them if missing): writes demo-output/ and prints a timing summary. The pixels are noise by design.
demo: setup
	$(PY) -m gateway.demo

# The whole stack in one process (gateway + tiling + diffusion on :50051) and the UI on :8501, in the foreground,
# e.g. `make up PROFILE=tiny` (offline); Ctrl-C stops it.
up: setup
	TILESMITH_DIFFUSION_PROFILE=$(PROFILE) $(PY) -m gateway.stack --ui 8501

# Kubernetes (deploy/README.md): render an overlay (dev, gpu, gpu-hpa), apply it, watch it.
OVERLAY ?= dev
.PHONY: render deploy-apply deploy-status
render: setup
	$(PY) -m deploy render --overlay $(OVERLAY)

deploy-apply: setup
	$(PY) -m deploy apply --overlay $(OVERLAY) --wait

deploy-status: setup
	$(PY) -m deploy status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis bench/results .cache
