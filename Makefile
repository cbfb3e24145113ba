# The two entry points the README promises: `make demo` and `make test`.
# Both build the virtualenv they need. torch is pinned to the CPU build that CI has on disk (a constraint file
# keeps the dev extras, lightning and transformers among them, from replacing it); the package itself only asks
# for torch>=2.4 so users keep their CUDA build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fixtures bench clean gpt-sovits-deps test-gpt-sovits

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	printf 'torch==2.13.0\n' > $(VENV)/torch-pin.txt
	$(BIN)/pip install -q -c $(VENV)/torch-pin.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	@bash scripts/demo.sh $(BIN)

lint: $(STAMP)
	$(BIN)/ruff check ckpttool tests fixtures benchmarks
	$(BIN)/ruff format --check ckpttool tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# The optional packages of the GPT-SoVITS model runs, installed beside the pinned torch (a constraint keeps pip
# from replacing it). Then: make test-gpt-sovits GPT_SOVITS_ROOT=/path/to/GPT-SoVITS
gpt-sovits-deps: $(STAMP)
	printf 'torch==%s\n' "$$($(BIN)/python -c 'import torch; print(torch.__version__.split("+")[0])')" > $(VENV)/torch-pin.txt
	$(BIN)/pip install -q -c $(VENV)/torch-pin.txt -e ".[dev,gpt-sovits]"

test-gpt-sovits: $(STAMP)
	@test -n "$(GPT_SOVITS_ROOT)" || (echo "set GPT_SOVITS_ROOT to a GPT-SoVITS checkout" >&2; exit 2)
	GPT_SOVITS_ROOT="$(GPT_SOVITS_ROOT)" $(BIN)/python -m pytest -rs tests/test_gsv_real.py tests/test_model_run.py

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
