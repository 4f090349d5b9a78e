# The two commands a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test unit lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/epochflow demo

test: $(BIN)/.installed
	$(BIN)/ruff check epochflow tests examples  # lint and import order (pyproject.toml)
	$(BIN)/python -m tests.fixtures.browser  # Debian's chromium for the dashboard's browser test (installed once)
	$(BIN)/pytest

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit tests/agents

lint: $(BIN)/.installed
	$(BIN)/ruff check epochflow tests examples

bench: $(BIN)/.installed
	$(BIN)/epochflow bench ingest
	$(BIN)/epochflow bench replay
	$(BIN)/epochflow bench fanout

clean:
	rm -rf $(VENV) .epochflow
