# Two commands do everything on a fresh machine: `make profile` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: profile demo test bench bench-quick bench-methods clean-venv

# torch==2.13.0 first: it is the CPU build on this machine's disk; the project's range is then already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	# litert-torch converts blocks to .tflite (~1 GB with jax); torch stays pinned so pip keeps the CPU build
	$(BIN)/python -m pip install -q -e '.[tflite]' torch==2.13.0
	touch $(STAMP)

profile: $(STAMP)
	$(BIN)/profile --device local

# demo: the whole main job on the local device: profile (or reuse a fresh LUT), validate, train, search, verify
demo: $(STAMP)
	$(BIN)/python -m search.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

# issue 18: plain warm loop vs the agent's interleaved and steady methods on the same 30 networks, passes alternating
bench-methods: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --only=bench_methods.py

clean-venv:
	rm -rf $(VENV)
