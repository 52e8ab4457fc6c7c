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

# --no-compile: pip byte-compiles every .py file one at a time (~40 s of the ~90 s set-up, most
# of it torch); compileall does the same on every core in about half that. The bytecode is
# needed: where PYTHONDONTWRITEBYTECODE is set (CI machines often set it) no process writes it,
# so every process of a run (run-all starts ~14: the pools' workers) and of the tests would
# recompile torch, SciPy and the rest from source, ~7 CPU s each. Its exit status is ignored:
# some packages ship files for newer Pythons that do not compile here and are never imported
# (torch/testing/_internal/py312_intrinsics.py); a file left uncompiled only costs time.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile "$(TORCH_SPEC)"
	$(BIN)/pip install -q --no-compile -e ".[test]"
	$(BIN)/python -m compileall -qq -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") src || true
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
