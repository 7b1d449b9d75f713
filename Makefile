# Two commands set everything up on a fresh clone:
#   make demo   run the example app (embedded PostgreSQL unless DATABASE_URL is set)
#   make test   lint, type-check and run the whole test suite
# Both create .venv and install the project with its extras the first time,
# and again only when pyproject.toml or setup.cfg change. As root, the Debian
# packages the tests run (pgbouncer, chromium, the example's PDF font) are
# installed when missing (tools/system-packages).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint clean

$(INSTALLED): pyproject.toml setup.cfg tools/system-packages
	tools/system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/python -m examples.sentinel $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
