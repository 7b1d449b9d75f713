"""manage.py feature_gates: the CLI's commands on a database with Django's own tables,
and the MigrateFeatureGates operation under manage.py migrate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

PROJECT = Path(__file__).parent


def manage(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "GATED_SITE_GATES_URL": database,
        "GATED_SITE_DJANGO_URL": database,
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


@pytest.fixture
def database(feature_gates_databases):
    url = feature_gates_databases.create(None)
    yield url
    feature_gates_databases.drop(url)


def test_feature_gates_migrate_beside_djangos_own_tables(database):
    django = manage(database, "migrate", "auth")
    assert django.returncode == 0, django.stderr
    assert {"auth_user", "django_migrations"} <= tables(database)

    pending = manage(database, "feature_gates", "status", "--check")
    assert pending.returncode == 1
    assert "pending" in pending.stdout

    migrated = manage(database, "feature_gates", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "feature_usage" in tables(database)
    assert manage(database, "feature_gates", "status", "--check").returncode == 0
    verified = manage(database, "feature_gates", "verify")
    assert verified.returncode == 0, verified.stderr

    # Django's own migrate runs the operation too: nothing left to apply.
    assert manage(database, "migrate").returncode == 0
    assert "auth_user" in tables(database)


def test_manage_py_migrate_applies_feature_gates_through_the_operation(database):
    migrated = manage(database, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert {"feature_usage", "auth_user"} <= tables(database)
    assert manage(database, "feature_gates", "status", "--check").returncode == 0
    assert "feature-gates" in manage(database, "sqlmigrate", "gated_site", "0001").stdout


def test_the_commands_help_and_errors_speak_django(database):
    helped = manage(database, "feature_gates", "--help")
    assert helped.returncode == 0
    assert "migrate" in helped.stdout and "rollback" in helped.stdout
    refused = manage(database, "feature_gates", "--schema", "other", "status")
    assert refused.returncode == 1
    assert 'FEATURE_GATES["SCHEMA"]' in refused.stderr
