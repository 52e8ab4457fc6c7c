# Spektron: `make run` (set up + main job) and `make test` (set up + tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned here, not in pyproject: torch==2.13.0 is the CPU build on
# these machines' local disk (seconds to install); an unpinned torch pulls a multi-GB CUDA build.
# GPU users: make TORCH_SPEC="torch" (or the CUDA build they need).
TORCH_SPEC ?= torch==2.13.0
PRESET ?= quick
OUT ?= runs

.PHONY: run test lint setup clean

# --no-compile: pip byte-compiles every .py file of every package it installs (~40 s of the
# ~90 s set-up, most of it torch); Python compiles the modules it imports on first use instead.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile "$(TORCH_SPEC)"
	$(BIN)/pip install -q --no-compile -e ".[test]"
	touch $@

setup: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/spektron run-all --preset $(PRESET) --out $(OUT)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
