# Two commands do everything on a fresh machine with only Python 3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-unit test-integration test-faults lint typecheck demo up bench clean

venv: $(STAMP)

# The virtualenv is rebuilt whenever a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The whole suite: lint, unit, integration and the fault suite, against real services it starts itself.
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-unit: venv
	$(BIN)/python -m pytest tests/unit

test-integration: venv
	$(BIN)/python -m pytest tests/integration

test-faults: venv
	$(BIN)/python -m pytest tests/faults -m faults

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy core webhook workers sandbox metrics

clean:
	rm -rf $(VENV) var

# The whole system with no external service: embedded Redis, SQLite in var/demo.db (fresh each run),
# sandbox bank, gunicorn, a worker, beat and Flower; a mixed batch of orders; a report. Exit 0 = all right.
demo: venv
	$(BIN)/python -m scripts.demo

# The same stack, kept running until Ctrl-C (SQLite in var/qpay.db unless DATABASE_URL says otherwise).
up: venv
	$(BIN)/python -m scripts.up

# Benchmarks (bench/); pass options with BENCH_ARGS="...".
bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)
