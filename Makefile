# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_BASE := $(VENV)/.stamp-base
STAMP_DEV := $(VENV)/.stamp-dev
STAMP_BENCH := $(VENV)/.stamp-bench
STAMP_DEMO := $(VENV)/.stamp-demo
DEMO_PLOT ?= build/demo-timeline.png

.PHONY: demo demo-replay test lint typecheck docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_BASE) $(STAMP_DEMO)

$(STAMP_DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

$(STAMP_BENCH): pyproject.toml $(STAMP_DEV)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

# The whole library on a payments service under stress, on 127.0.0.1 (about 25 s).
demo: $(STAMP_DEMO)
	mkdir -p $(dir $(DEMO_PLOT))
	$(BIN)/resilience demo --plot $(DEMO_PLOT)

# The rate limiters compared on a recorded traffic log.
demo-replay: $(STAMP_BASE)
	$(BIN)/resilience replay examples/boundary-burst.log \
		--policy 'fixed-window:100/minute' \
		--policy 'sliding-log:100/minute' \
		--policy 'sliding-counter:100/minute' \
		--policy 'gcra:100/minute,burst=10' \
		--policy 'leaky-shape:100/minute,capacity=20' \
		--key ip

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check resilience adapters
	$(BIN)/mypy

typecheck: lint

# The documentation site (mkdocs.yml): strict, so a broken link or reference fails the build;
# offline (no fonts or plugins fetched), so it runs in CI on a fresh clone.
docs: $(STAMP_DEV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs
	$(BIN)/python -m pytest -q

bench: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist site .mypy_cache .ruff_cache .pytest_cache .hypothesis
