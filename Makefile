# Tilesmith — the two commands are `make setup` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
PY := $(BIN)/python
# torch first, pinned: the registry's newest torch is a CUDA build with several GB of dependencies.
TORCH := torch==2.13.0

.PHONY: setup test lint format proto bench-tiling bench tiling clean

setup: $(VENV)/.installed

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

bench: bench-tiling

# Run the tiling service in the foreground (Ctrl-C stops it).
tiling: setup
	$(PY) -m services.tiling

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis bench/results
