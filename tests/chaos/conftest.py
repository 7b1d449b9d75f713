"""Fixtures of the chaos suite: its budget, the Sentinel app on a database of its
own, and the figures each test reports at the end of the run (``pytest --long
tests/chaos`` prints them under "chaos figures")."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from chaos_support import LONG
from chaos_support import SENTINEL_SETTINGS
from chaos_support import SHORT
from chaos_support import Budget

from examples.sentinel import create_app
from examples.sentinel.state import gates
from feature_gates.migrate import MigrationSettings

_FIGURES: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture(scope="session")
def budget(request: pytest.FixtureRequest) -> Budget:
    return LONG if request.config.getoption("--long") else SHORT


@pytest.fixture
def report(request: pytest.FixtureRequest):
    """``report(**figures)``: figures shown under "chaos figures" at the end of the run."""

    def add(**figures: Any) -> None:
        _FIGURES.append((request.node.nodeid, figures))

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("chaos figures")
    for nodeid, figures in _FIGURES:
        terminalreporter.write_line(f"{nodeid}: {json.dumps(figures, sort_keys=True)}")


@pytest.fixture
def feature_gates_migration_settings() -> MigrationSettings:
    return SENTINEL_SETTINGS


@pytest.fixture
def make_sentinel():
    """Builds Sentinel apps on given (migrated) databases; closes them after."""
    made = []

    def make(url: str, **config: Any):
        app = create_app({"FEATURE_GATES_DATABASE_URL": url, **config})
        made.append(app)
        return app

    yield make
    for app in made:
        gates.close(app, timeout=60)
        app.extensions["sentinel"].close()


@pytest.fixture
def quiet_server_log():
    """The development server logs each request at INFO: keep a soak's out of memory."""
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
