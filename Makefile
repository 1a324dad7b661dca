# Two entry points: `make demo` runs the whole pipeline, `make test` runs the test suite.
# Both create the Python 3.10 virtual environment (.venv) when it is missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The real PneumoniaMNIST archive, when present beside the repo; never copied into it.
NEUROCXR_DATA ?= $(if $(wildcard ../shared/data/pneumoniamnist.npz),$(abspath ../shared/data/pneumoniamnist.npz),)
export NEUROCXR_DATA
# Two cores here: keep torch from oversubscribing them.
export OMP_NUM_THREADS ?= 2

.PHONY: env demo test bench clean

env:
	@bash scripts/setup_env.sh

demo: env
	$(VENV)/bin/neurocxr demo --out runs/demo

test: env
	$(PY) -m pytest -q tests

bench: env
	$(PY) benchmarks/accuracy.py
	$(PY) benchmarks/emulator_vs_lava.py
	$(PY) benchmarks/energy.py

clean:
	rm -rf runs .pytest_cache .hypothesis
