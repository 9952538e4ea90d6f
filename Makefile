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
	$(BIN)/mypy core webhook workers sandbox

clean:
	rm -rf $(VENV) var
