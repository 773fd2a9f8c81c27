# The checks CI runs (.ci/run) and a developer runs before pushing: one place for both.
#
#   make setup   create .venv and install the service, the worker and the dev tools
#   make lint    ruff check, ruff format --check, mypy (strict) over all our code
#   make test    the test suite (warnings are errors: pyproject.toml)
#   make check   lint, then test
#   make format  apply ruff's fixes and formatting

VENV ?= .venv
BIN := $(VENV)/bin
# Everything we type-check and lint, tests and benchmarks included.
CODE := service workers migrations tests bench

.PHONY: setup lint test check format

setup:
	python3 -m venv $(VENV) && $(BIN)/pip install -q torch==2.13.0 -e '.[worker,dev]'

lint:
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/mypy $(CODE)

test:
	$(BIN)/python -m pytest

check: lint test

format:
	$(BIN)/ruff check --fix $(CODE)
	$(BIN)/ruff format $(CODE)
