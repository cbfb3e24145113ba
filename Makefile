# The two entry points the README promises: `make demo` and `make test`.
# Both build the virtualenv they need. torch is pinned to the CPU build that CI has on disk;
# the package itself only asks for torch>=2.4 so users keep their CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fixtures bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh $(BIN)

lint: $(STAMP)
	$(BIN)/ruff check ckpttool tests fixtures benchmarks
	$(BIN)/ruff format --check ckpttool tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

fixtures: $(STAMP)
	$(BIN)/python fixtures/make_fixtures.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_inspect.py
	$(BIN)/python benchmarks/bench_diff.py
	$(BIN)/python benchmarks/bench_migrate.py
	$(BIN)/python benchmarks/bench_verify.py
	$(BIN)/python benchmarks/bench_sharded.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
