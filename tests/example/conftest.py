"""Fixtures for the Sentinel example: each test gets a fresh database with the
app's base tables, feature-gates' core set and the counters set applied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from examples.sentinel import create_app
from examples.sentinel.database import MIGRATION_FOLDER
from examples.sentinel.pdf import DEFAULT_FONT
from examples.sentinel.state import gates
from feature_gates.migrate import MigrationSettings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


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


@pytest.fixture
def sentinel_config() -> dict[str, object]:
    """Settings a test module adds to (or changes in) :func:`sentinel_app`'s."""
    return {}


@pytest.fixture
def sentinel_app(feature_gates_database_url: str, sentinel_config: dict[str, object]):
    """The Sentinel app on the test's database, recording usage synchronously.

    Named so that pytest-flask (which acts on a fixture called ``app``) leaves it alone.
    """
    app = create_app(
        {
            "FEATURE_GATES_DATABASE_URL": feature_gates_database_url,
            "FEATURE_GATES_TRACKING": "sync",
            "SENTINEL_DEMO_DATA": False,
            "TESTING": True,
            **sentinel_config,
        }
    )
    try:
        yield app
    finally:
        gates.close(app)
        app.extensions["sentinel"].close()


class Caller:
    """A test client bound to one user's token."""

    def __init__(self, client, user, token: str) -> None:
        self.client = client
        self.user = user
        self.headers = {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method: str):
        call = getattr(self.client, method)

        def request(path: str, **kwargs):
            headers = {**self.headers, **kwargs.pop("headers", {})}
            return call(path, headers=headers, **kwargs)

        return request


@pytest.fixture
def make_caller(sentinel_app):
    accounts = sentinel_app.extensions["sentinel"].accounts
    made = 0

    def make(plan: str, *, admin: bool = False) -> Caller:
        nonlocal made
        made += 1
        user = accounts.create_user(f"user{made}@example.com", f"User {made}", plan, is_admin=admin)
        token = f"test-token-{made}"
        accounts.add_token(user.id, "test", token)
        return Caller(sentinel_app.test_client(), user, token)

    return make


def _require_debian_file(path: str, package: str) -> None:
    """Skip, with the reason, when a Debian package the test needs is missing and
    this run is not root; as root (as in CI) a missing package is a failure, since
    tools/system-packages installs it."""
    if os.path.exists(path):
        return
    if os.geteuid() == 0:
        pytest.fail(f"{path} is missing: install Debian's {package} (tools/system-packages)")
    pytest.skip(f"{path} is missing and only root can install Debian's {package}")


@pytest.fixture(scope="session")
def pdf_font() -> Path:
    """The font the PDF exports embed (Debian's fonts-wqy-microhei)."""
    _require_debian_file(str(DEFAULT_FONT), "fonts-wqy-microhei")
    return DEFAULT_FONT


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Debian's Chromium and its ChromeDriver: (browser, driver)."""
    _require_debian_file(CHROMIUM, "chromium")
    _require_debian_file(CHROMEDRIVER, "chromium-driver")
    return CHROMIUM, CHROMEDRIVER
