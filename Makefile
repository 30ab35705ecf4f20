# Everything runs from a local virtual environment built from scratch by `make venv`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv quickstart test lint typecheck check bench clean

$(BIN)/saescope: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 first: where a local CPU wheel is on pip's find-links path it is used, and
	# the rest of the install is then satisfied by it instead of pulling the CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[default,formats,plots,dev]"
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

bench: venv
	$(BIN)/python benchmarks/capture_throughput.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
