# Two set-up commands on a fresh machine: `make run` and `make test` (README.md).
# The venv is built once from constraints.txt and rebuilt only when what it depends on changes.

PYTHON ?= $(shell pyenv prefix 3.10.13 2>/dev/null)/bin/python3.10
VENV := .venv
BIN := $(VENV)/bin
# `make install GPU=1` adds the `gpu` extra: the CUDA 12 libraries of the pinned TensorFlow
# (tensorflow[and-cuda]; docs/PIPELINE.md, "GPUs and multi-worker training").
GPU ?=
COMMA := ,
EXTRAS := test$(if $(filter 1 yes true,$(GPU)),$(COMMA)gpu)
STAMP := $(VENV)/.installed$(if $(filter 1 yes true,$(GPU)),-gpu)
PIP := $(BIN)/python -m pip --disable-pip-version-check
# Extra pytest flags, e.g. `make test PYTEST_ARGS='-k codec'`.
PYTEST_ARGS ?=

.PHONY: install run test test-fast bench clean

install: $(STAMP)

# The project is installed editable, so code changes need no reinstall; only the dependency
# definitions (setup.py, constraints.txt) trigger one.
$(STAMP): setup.py pyproject.toml constraints.txt
	@test -x "$(PYTHON)" || { echo "Python 3.10 not found at '$(PYTHON)'; pass PYTHON=/path/to/python3.10" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/entropy-coder pipeline run

# -rs lists every skip with its reason (conftest.py prints the count): a fresh clone skips none.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -rs $(PYTEST_ARGS)

# Everything but the slow end-to-end tests (marker `e2e`: pipeline runs, cross-CPU subprocesses):
# the quick loop while editing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -rs -m 'not e2e' $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_codec.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
