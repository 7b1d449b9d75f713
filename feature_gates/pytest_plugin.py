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
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .migrate import MigrationSettings
from .testing import DatabaseFactory
from .testing import start_test_server


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
