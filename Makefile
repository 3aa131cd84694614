# Two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-slow test-reliability reliability-figures lint docs services install bench bench-full results clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# Install the CPU build of torch first unless some torch already imports, so that the
	# project's torch range is satisfied without pulling a CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/prunetune run examples/minilm.yaml --out runs/minilm

lint: $(STAMP)
	$(BIN)/ruff check prunetune tests benchmarks
	$(BIN)/mypy
	cd benchmarks && $(abspath $(BIN))/mypy --config-file ../pyproject.toml *.py
	$(BIN)/lint-imports  # the layer contracts in pyproject.toml

# The documentation site into site/; --strict fails on any warning (a broken link or
# anchor, a page outside the navigation, a docstring mkdocstrings cannot read).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# PostgreSQL up and chromium installed (tools/test-services.sh), so `make test` alone works.
services:
	bash tools/test-services.sh

test: $(STAMP) lint docs services
	$(BIN)/python -m pytest -m "not slow and not reliability" -q --durations=15

# The longest tests (the whole deployment as processes, full searches and exports, the
# benchmark scripts' resumes): `make test` leaves them out to stay near 15 minutes on 2
# cores; CI runs them after it.
test-slow: $(STAMP) services
	$(BIN)/python -m pytest -m "slow and not reliability" -q --durations=15

# Fault injection, fuzzing, schemathesis (CI runs it after `test`; it restarts the local
# PostgreSQL, so on a shared machine run it alone). Figures: benchmarks/results/reliability.json.
test-reliability: $(STAMP) services
	$(BIN)/python -m pytest -m "reliability and not slow" -q

# The same fault and security tests, recording their figures for the README table.
reliability-figures: $(STAMP)
	PRUNETUNE_RECORD=1 $(BIN)/python -m pytest -q tests/reliability tests/security tests/workers/test_ray_faults.py
	$(BIN)/python tests/reliability/figures.py

# The CPU benchmark set (30 to 40 min on 2 cores; 38 min measured), then the results pages (docs/results.md, README).
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --set cpu

# What does not fit in bench: 3 seeds, 256 evaluations, Pareto mode (hours on 2 cores).
# Resumable: a second call runs only the steps not yet finished in run_all-full.json
# (delete that file to start over).
bench-full: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --set full --resume

# Regenerate docs/results.md and the README's headline table from benchmarks/results/*.json only.
results: $(STAMP)
	$(BIN)/python benchmarks/readme_tables.py

clean:
	rm -rf runs site .pytest_cache .mypy_cache .ruff_cache
