"""pytest fixtures for applications that use feature-gates.

Registered through the ``pytest11`` entry point, so installing feature-gates makes
them available; nothing starts until a test asks for one.

``feature_gates_database_url``
    A fresh database for one test, with the migrations of
    ``feature_gates_migration_settings`` applied. Dropped after the test.
``feature_gates_migration_settings``
    Which sets to apply (``core`` by default). Override it in your conftest.py to
    add your own folders or the ``counters`` set.
``feature_gates_databases``
    The session's :class:`~feature_gates.testing.DatabaseFactory`.
``feature_gates_server_url``
    The session's PostgreSQL server: ``FEATURE_GATES_TEST_DATABASE_URL`` when set,
    otherwise a throwaway server started for the session (root-safe).

With an ``app`` fixture of yours (your application, as pytest-flask names it;
pytest-flask itself is not needed):

``feature_gates``
    The application's feature-gates, ``app.extensions["feature_gates"]`` (an
    :class:`~feature_gates.flask.AppGates`): ``override()``, ``flush()``,
    ``get_usage()``, ``check()``, ... bound to the app, so they work from a plain
    test, without an application context.
``feature_gates_parallel``
    ``feature_gates_parallel("POST", "/messages", n=32, headers=...)`` serves the
    application on a threaded loopback server, sends the requests at once and
    returns a :class:`~feature_gates.testing.ParallelResult`.
``@pytest.mark.feature_gates(plan="pro", user_id=7, usage={"chat_messages_monthly": 49})``
    Runs the test inside ``gates.override(...)`` with those arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from typing import TYPE_CHECKING
from typing import Any

import pytest

from .migrate import MigrationSettings
from .testing import DatabaseFactory
from .testing import ParallelResult
from .testing import fire_concurrently
from .testing import start_test_server

if TYPE_CHECKING:
    from flask import Flask

    from .flask import AppGates

MARKER = "feature_gates"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(plan=None, user_id=None, usage=None): run the test inside "
        "gates.override(...) on the app fixture's FeatureGates",
    )


@pytest.fixture(scope="session")
def feature_gates_server_url() -> Iterator[str]:
    url, server = start_test_server()
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def feature_gates_databases(feature_gates_server_url: str) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(feature_gates_server_url)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def feature_gates_migration_settings() -> MigrationSettings:
    return MigrationSettings(sets=("core",))


@pytest.fixture
def feature_gates_database_url(
    feature_gates_databases: DatabaseFactory,
    feature_gates_migration_settings: MigrationSettings,
) -> Iterator[str]:
    url = feature_gates_databases.create(feature_gates_migration_settings)
    try:
        yield url
    finally:
        feature_gates_databases.drop(url)


def _gates_of(app: Flask) -> AppGates:
    from .flask import EXTENSION_KEY

    state: AppGates | None = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError("the app fixture's application has no FeatureGates: call init_app")
    return state


@pytest.fixture
def feature_gates(app: Flask) -> AppGates:
    return _gates_of(app)


@pytest.fixture
def feature_gates_parallel(app: Flask) -> Callable[..., ParallelResult]:
    def fire(method: str, path: str, **options: Any) -> ParallelResult:
        return fire_concurrently(app, method, path, **options)

    return fire


@pytest.fixture(autouse=True)
def _feature_gates_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        yield
        return
    if marker.args:
        raise TypeError(f"@pytest.mark.{MARKER} takes keyword arguments: plan=, user_id=, usage=")
    app: Flask = request.getfixturevalue("app")
    with _gates_of(app).override(**marker.kwargs):
        yield
