"""Fixtures for the Sentinel example: each test gets a fresh database with the
app's base tables, feature-gates' core set and the counters set applied."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import MigrationSettings


@pytest.fixture
def feature_gates_migration_settings() -> MigrationSettings:
    return MigrationSettings(
        sets=("sentinel", "core", "counters"), folders={"sentinel": MIGRATION_FOLDER}
    )


@pytest.fixture
def pool(feature_gates_database_url: str) -> Iterator[ConnectionPool]:
    """A connection pool on the test's database, as the app makes one."""
    with ConnectionPool(
        feature_gates_database_url, min_size=1, max_size=20, kwargs={"autocommit": True}
    ) as pool:
        yield pool


@pytest.fixture
def db(feature_gates_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        yield conn
