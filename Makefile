# Quick start: `make benchmark` (set up + run the default benchmark), `make test` (set up + run the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/fairser: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned to the CPU wheel; an unpinned torch pulls a multi-GB GPU build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,llm,audformat,hf,robustness]'
	touch $(BIN)/fairser

setup: $(BIN)/fairser

benchmark: setup
	$(BIN)/fairser benchmark --config configs/default.yaml

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -n 2 --durations=15 -ra

.PHONY: setup benchmark test
