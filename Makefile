# The two commands: `make run` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test install install-test system-test-deps bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Real peers the tests use that pip cannot bring (Debian packages).
system-test-deps:
	bash tests/system-deps.sh

run: install
	$(BIN)/bidi up $(ARGS)

test: install-test system-test-deps
	$(BIN)/ruff check core storage channels agents actors serve bench tests
	$(BIN)/mypy
	$(BIN)/python -m pytest $(ARGS)

lint: install-test
	$(BIN)/ruff check core storage channels agents actors serve bench tests

bench: install-test
	$(BIN)/python bench/ingress.py

clean:
	rm -rf $(VENV) .pytest_cache
