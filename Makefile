# The two commands of the README:  `make build`  and  `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# OpenMP threads that spin-wait slow llama.cpp and torch 10-100x on a shared machine.
export OMP_WAIT_POLICY := PASSIVE

# The toolchain is an input of the build. requirements.lock pins every package `make setup`
# installs, with hashes, except torch: requirements-torch.txt pins it, installed first. With
# TORCH_INDEX_URL empty, pip's own configuration gives torch alone (the CPU build on disk here;
# its requirements come from the lock); a GPU site sets its CUDA index, and torch then brings
# its CUDA libraries (README: "Your toolchain"). `make lock` is the one way versions change.
LOCK := requirements.lock
BUILD_LOCK := requirements-build.lock
TORCH_PIN := requirements-torch.txt
TORCH_VERSION := $(shell sed -n 's/^torch==//p' $(TORCH_PIN))
TORCH_INDEX_URL ?=

# llama-cpp-python is compiled here from its hash-checked sdist. On x86-64 the build is portable
# (AVX2/FMA/F16C/BMI2, no AVX-512, no AMX): the native build crashes in llama.cpp's AMX kernels on
# CPUs that have AMX (README: "llama.cpp on every x86 CPU"). A GPU site sets LLAMA_CMAKE_ARGS,
# e.g. "-DGGML_CUDA=ON $(LLAMA_CMAKE_ARGS)". The wheel is kept in a cache keyed by the sdist's
# hash, these flags and the Python, so a warm machine can never reuse a wheel built otherwise.
X86_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64 amd64,$(shell uname -m)),$(X86_CMAKE_ARGS))
WHEEL_CACHE ?= $(HOME)/.cache/labmake/wheels
# One entry of the lock (its name==version line, hashes and comments): `$(call lock_entry,NAME,1)`
# prints it, `$(call lock_entry,NAME,0)` prints the lock without it.
lock_entry = awk -v name='$(1)' -v keep=$(2) '/^[^ \#]/ { inside = index($$0, name "==") == 1 } \
	(keep && inside) || (!keep && !inside)' $(LOCK)

.PHONY: setup lock check-toolchain build repro test test-slow test-slurm conformance lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(LOCK) $(BUILD_LOCK) $(TORCH_PIN)
	$(PIP) install $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),--no-deps) -r $(TORCH_PIN)
	$(PIP) install --no-deps --require-hashes -r $(BUILD_LOCK)
	@# llama-cpp-python: built (or taken from the keyed cache), then installed on its own.
	@set -euo pipefail; \
	entry=$$($(call lock_entry,llama-cpp-python,1)); \
	key=$$(printf '%s\n%s\n%s' "$$entry" "$(LLAMA_CMAKE_ARGS)" \
		"$$($(BIN)/python -c 'import sys, sysconfig; print(sys.version, sysconfig.get_platform())')" \
		| sha256sum | cut -c1-16); \
	dir="$(WHEEL_CACHE)/llama-cpp-python-$$key"; \
	if ! ls "$$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python from source, CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' (minutes)"; \
		rm -rf "$$dir.tmp"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-build-isolation --no-cache-dir \
			--require-hashes -w "$$dir.tmp" -r <(printf '%s\n' "$$entry"); \
		mv "$$dir.tmp" "$$dir"; \
	fi; \
	$(PIP) install --no-deps --force-reinstall "$$dir"/llama_cpp_python-*.whl
	$(PIP) install --no-deps --require-hashes --no-build-isolation -r <($(call lock_entry,llama-cpp-python,0))
	$(PIP) install --no-deps --no-build-isolation -e .
	$(BIN)/labmake toolchain check
	touch $@

setup: $(VENV)/.installed

# Re-resolve every pin from pyproject.toml's ranges (the newest releases that fit), with hashes,
# for Python 3.11+ on every platform. torch itself stays out of the lock (requirements-torch.txt);
# its own requirements are resolved as its CPU build declares them, so no CUDA libraries enter.
TORCH_CPU_WHEEL ?= $(or $(firstword $(wildcard /opt/wheels/torch-$(TORCH_VERSION)+cpu-*.whl)),\
	https://download.pytorch.org/whl/cpu/torch-$(TORCH_VERSION)%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl)
# `make lock LOCK_UPGRADE=` resolves only what pyproject.toml gained and keeps every other pin.
LOCK_UPGRADE ?= --upgrade
UV_COMPILE = $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"
# Locking needs only uv (its pin is in the lock): a venv whose packages no longer match a changed
# pyproject.toml must still be able to lock it.
$(BIN)/uv: | $(BIN)/python
	$(PIP) install --no-deps --require-hashes -r <($(call lock_entry,uv,1))

lock: $(BIN)/uv
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; wheel="$(TORCH_CPU_WHEEL)"; \
	case "$$wheel" in /*) ;; *) curl -fsSL -o "$$tmp/torch.whl" "$$wheel"; wheel="$$tmp/torch.whl";; esac; \
	unzip -p "$$wheel" '*.dist-info/METADATA' | sed -n 's/^Requires-Dist: \([^;]*\)$$/\1/p' \
		> $(VENV)/torch-requires.txt; \
	echo "torch ; python_version < '0'" > "$$tmp/no-torch.txt"; \
	$(UV_COMPILE) pyproject.toml $(VENV)/torch-requires.txt --extra test --group build --group lock \
		--override "$$tmp/no-torch.txt" $(LOCK_UPGRADE) -o $(LOCK); \
	$(UV_COMPILE) --group build -c $(LOCK) -o $(BUILD_LOCK)
	@echo "regenerated $(LOCK) and $(BUILD_LOCK): run 'make setup' and 'make test', then commit both"

# The installed packages are exactly the lock (CI runs this: a warm machine cannot hide a drift).
check-toolchain: setup
	$(BIN)/labmake toolchain check

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
