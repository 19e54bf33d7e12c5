# The two commands of the README:  `make build`  and  `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# OpenMP threads that spin-wait slow llama.cpp and torch 10-100x on a shared machine.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup build repro test test-slow test-slurm conformance lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test]'
	touch $@

setup: $(VENV)/.installed

build: setup
	$(BIN)/labmake build

# The same build through DVC (dvc.yaml); its command needs the venv's snakemake on PATH.
repro: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

test: setup
	$(BIN)/pytest -m "not slow and not slurm" -q

test-slow: setup
	$(BIN)/pytest -m slow -q

# The tiny build on a single-node SLURM cluster that tests/slurm/up.sh brings up from Debian's
# packages (as root; down.sh stops it afterwards). Skipped when not root.
test-slurm: setup
	$(BIN)/pytest -m slurm -q

conformance: setup
	$(BIN)/python ../shared/conformance/taxonomy/check_conformance.py \
		--corpus ../shared/conformance/taxonomy -j 2 -- $(BIN)/labmake validate
	$(BIN)/python ../shared/conformance/taxonomy/check_conformance.py \
		--corpus ../shared/conformance/taxonomy -j 2 --against ilab_valid -- $(BIN)/labmake validate --ilab-strict

lint: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks

format: setup
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/ruff check --fix src tests scripts benchmarks

clean:
	rm -rf build .snakemake
