"""Shared fixtures. The PostgreSQL ones come from feature-gates' own pytest plugin
(feature_gates.pytest_plugin): every test that needs a database gets a fresh copy
of a migrated template on one throwaway server per session."""

from __future__ import annotations

import psycopg
import pytest

# pytester runs sample test suites; gates_sample holds the gated sample app's fixtures.
pytest_plugins = ["pytester", "gates_sample"]


@pytest.fixture
def db(feature_gates_database_url: str):
    """An autocommit connection to the test's fresh, migrated database."""
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        yield conn
