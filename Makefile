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

.PHONY: env demo test lint bench clean

env:
	@bash scripts/setup_env.sh

# runs/demo is the demo's own folder: a rerun replaces it (--force), other -o folders are never overwritten.
demo: env
	$(VENV)/bin/neurocxr demo --out runs/demo --force

# Lint first (seconds), then the suite; `$(PY) -m pytest -m "not slow and not lava"` is the inner loop.
test: env lint
	$(PY) -m pytest -q tests

LINTED := neurocxr exporters hardware_sims tests benchmarks scripts setup.py
lint: env
	$(VENV)/bin/ruff format --check --quiet $(LINTED)
	$(VENV)/bin/ruff check --quiet $(LINTED)
	$(VENV)/bin/mypy

# `make bench` trains once (accuracy.py writes the checkpoints) and passes those very files through
# export -> emulator-vs-Lava -> energy; every results JSON records commit, checkpoint hashes, data, threads.
BENCH := benchmarks/results
BENCH_CKPT := $(BENCH)/checkpoints
bench: env
	OMP_NUM_THREADS=1 $(PY) benchmarks/accuracy.py --checkpoint-dir $(BENCH_CKPT)
	$(VENV)/bin/neurocxr export $(BENCH_CKPT)/snn_conv.pt --target loihi -o $(BENCH)/loihi --force
	OMP_NUM_THREADS=1 $(PY) benchmarks/emulator_vs_lava.py --checkpoint $(BENCH_CKPT)/snn_conv.pt
	OMP_NUM_THREADS=1 $(PY) benchmarks/energy.py --checkpoint $(BENCH_CKPT)/snn_conv.pt \
		--baseline $(BENCH_CKPT)/cnn_small.pt --export-dir $(BENCH)/loihi --sweep $(BENCH)/pareto.json
	$(PY) benchmarks/readme_figures.py

clean:
	rm -rf runs .pytest_cache .hypothesis
