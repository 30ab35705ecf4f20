# Everything runs from a local virtual environment built from scratch by `make venv`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv quickstart test test-oldest lint typecheck check bench clean

$(BIN)/saescope: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 first: where a local CPU wheel is on pip's find-links path it is used, and
	# the rest of the install is then satisfied by it instead of pulling the CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[default,formats,plots,serve,dev]"
	touch $@

venv: $(BIN)/saescope

quickstart: venv
	$(BIN)/saescope quickstart

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

# The lower bound pyproject.toml declares for transformers, tested in a venv of its own.
OLDEST_TRANSFORMERS := $(shell sed -n 's/.*"transformers>=\([0-9.]*\),.*/\1/p' pyproject.toml)
OLDEST := .venv-oldest

$(OLDEST)/bin/saescope: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install -q --upgrade pip
	$(OLDEST)/bin/pip install -q "torch==2.13.0" || $(OLDEST)/bin/pip install -q torch
	$(OLDEST)/bin/pip install -q -e ".[default,formats,plots,serve,dev]" "transformers==$(OLDEST_TRANSFORMERS)"
	touch $@

test-oldest: $(OLDEST)/bin/saescope
	$(OLDEST)/bin/python -m pytest -q -p no:cacheprovider

bench: venv
	$(BIN)/python benchmarks/capture_throughput.py

clean:
	rm -rf $(VENV) $(OLDEST) .mypy_cache .ruff_cache .pytest_cache
