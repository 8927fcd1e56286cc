# Two set-up commands: `make up` and `make test`. Everything else is a detail of those.
PYTHON ?= python3
SHELL  := /bin/bash
VENV   := .venv
BIN    := $(VENV)/bin
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

# llama.cpp is compiled from source (about 5-10 minutes on 2 cores), for a stated CPU
# baseline rather than for the building machine: x86-64-v3 (AVX2, FMA, F16C, BMI2), which
# every x86 server CPU since 2013-2015 has (Intel Haswell, AMD Zen). GGML_NATIVE=OFF stops
# it from using the builder's own features (AVX-512 is absent on many EPYCs), and the AMX
# kernels stay off: their weight repacking crashed decode on Sapphire Rapids machines.
# The flags are part of the stamp's name, so changing them rebuilds; pip's wheel cache
# is bypassed for this one package, since it does not key wheels by CMAKE_ARGS.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_CURL=OFF
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_VERSION)-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)

.PHONY: up test lint types unit install install-dev bench clean

$(BIN)/python:
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(LLAMA_STAMP): | $(BIN)/python
	@echo "==> compiling llama.cpp $(LLAMA_VERSION) for x86-64-v3 (5-10 minutes on 2 cores; full log in $(VENV)/llama-build.log)"
	@rm -f $(VENV)/.llama-*
	@set -o pipefail; CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --no-cache-dir --no-binary llama-cpp-python -v \
		'llama-cpp-python[server]==$(LLAMA_VERSION)' 2>&1 | tee $(VENV)/llama-build.log \
		| sed -u -n -E 's/^\s*\[([0-9]+\/[0-9]+)\] .* -c .*\/([^ /]+)$$/    llama.cpp \1  \2/p; /Successfully installed/p' \
		|| { echo "llama.cpp failed to build; see $(VENV)/llama-build.log (a C/C++ compiler and cmake are needed)"; exit 1; }
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	@echo "==> installing sovereign and its dependencies into $(VENV)"
	$(BIN)/pip install --progress-bar on -e '.[embedded]' | grep -v -E '^(Requirement already satisfied|  Using cached)'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	@echo "==> installing the test tools into $(VENV)"
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

up: install
	$(BIN)/sovereign up

lint: install-dev
	$(BIN)/ruff check arbiter tasks workers sovereign tests bench
	$(BIN)/ruff format --check arbiter tasks workers sovereign tests bench

types: install-dev
	$(BIN)/mypy

unit: install-dev
	$(BIN)/pytest -q

test: lint types unit

bench: install-dev
	$(BIN)/python bench/arb_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/dispatch_bench.py
	$(BIN)/python bench/local_overhead_bench.py
	$(BIN)/python bench/bound_bench.py
	$(BIN)/python bench/economics_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
