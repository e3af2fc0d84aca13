# tlbench: `make bench` runs the main job, `make test` the tests. Both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
SUITE  ?= suites/default.toml
ARGS   ?=
STAMP  := $(VENV)/.installed

.PHONY: install bench quick test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

bench: install  ## run a suite (default: suites/default.toml), write results/, print the summary
	$(BIN)/tlbench run $(SUITE) $(ARGS)

quick: install
	$(BIN)/tlbench run suites/quick.toml $(ARGS)

lint: install
	$(BIN)/ruff check bench tests

test: install lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
