# Two set-up commands: `make up` and `make test`. Everything else is a detail of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# llama.cpp compiles from source (about 5 minutes on 2 cores); pip caches the wheel after that.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: up test lint types unit install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
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

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
