"""Shared fixtures. The PostgreSQL ones come from feature-gates' own pytest plugin
(feature_gates.pytest_plugin): every test that needs a database gets a fresh copy
of a migrated template on one throwaway server per session.

``--long`` runs the chaos suite (tests/chaos) at full length: minutes of soak,
longer outages, bigger databases and many more hypothesis examples. Without it
the suite runs a short version of every scenario.
"""

from __future__ import annotations

import os

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings
from pytest_flask.fixtures import client  # noqa: F401
from pytest_flask.fixtures import live_server  # noqa: F401

from feature_gates.pgserver import LocalPostgres
from feature_gates.pgserver import PostgresNotFound
from feature_gates.pgserver import find_bindir
from feature_gates.pgserver import server_major_version
from feature_gates.testing import DatabaseFactory

# tests/htmlapp is an application with its own suite, run by test_html_app.py in a
# pytest of its own (plain pytest, as an application's suite runs).
collect_ignore = ["htmlapp"]

# pytest-flask and pytest-django (the Django adapter's tests, tests/django_project) both
# name a fixture client and live_server: here they are pytest-flask's, imported above.
# pytester runs sample test suites; gates_sample holds the gated sample app's fixtures;
# pooler runs a real PgBouncer in front of the test server; credits_support holds the
# clock of the tests of holds, credits and the ledger.
pytest_plugins = ["pytester", "gates_sample", "pooler", "credits_support"]

# Property-based tests: a few examples by default, many with --long; in CI the
# examples are derived from each test's name (derandomize), so a run is repeatable.
_HYPOTHESIS = {
    "deadline": None,
    "derandomize": os.environ.get("CI") == "true",
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile("short", max_examples=30, **_HYPOTHESIS)
settings.register_profile("long", max_examples=600, **_HYPOTHESIS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the chaos suite (tests/chaos) at full length: minutes instead of seconds",
    )


def pytest_report_header(config: pytest.Config) -> str:
    """Which PostgreSQL the throwaway servers run (make test-matrix runs each version)."""
    if os.environ.get("FEATURE_GATES_TEST_DATABASE_URL"):
        return "PostgreSQL: the server of FEATURE_GATES_TEST_DATABASE_URL"
    try:
        bindir = find_bindir()
    except PostgresNotFound as exc:
        return f"PostgreSQL: none found ({exc})"
    return f"PostgreSQL: {server_major_version(bindir)} from {bindir}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: soak, fault and hostile-input tests (short unless --long)"
    )
    settings.load_profile("long" if config.getoption("--long") else "short")


@pytest.fixture(autouse=True)
def _live_server_helper():
    """In place of pytest-django's helper of the same name, which would open Django's
    test database for any test using a fixture named live_server: here that is
    pytest-flask's (the Django tests serve their project under gunicorn)."""
    yield


@pytest.fixture
def db(feature_gates_database_url: str):
    """An autocommit connection to the test's fresh, migrated database."""
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def empty_url(feature_gates_databases):
    """A fresh database with nothing migrated: the state of an application's
    database before its first `feature-gates migrate`."""
    url = feature_gates_databases.create(None)
    yield url
    feature_gates_databases.drop(url)


@pytest.fixture(scope="module")
def own_server():
    """A PostgreSQL of the test module's own: its tests may halt and start it."""
    with LocalPostgres() as server:
        yield server


@pytest.fixture(scope="module")
def own_databases(own_server):
    """Fresh databases on :func:`own_server`."""
    factory = DatabaseFactory(own_server.url())
    yield factory
    own_server.start()  # a failed test may have left it halted
    factory.close()
