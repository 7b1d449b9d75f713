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


def test_routes_lists_every_gate_of_the_urlconf_with_its_methods_and_plans(database):
    listed = manage(database, "feature_gates", "routes")
    assert listed.returncode == 0, listed.stderr
    lines = {" ".join(line.split()) for line in listed.stdout.splitlines()}
    views = "gated_site.views"
    metered = "metered chat_messages_monthly 3 10 unlimited"
    assert "rule methods endpoint kind feature free pro enterprise" in lines
    assert f"/messages * {views}.send_message {metered}" in lines
    assert f"/messages/form POST {views}.message_form {metered}" in lines
    assert f"/cbv/messages POST {views}.MessagesView {metered}" in lines
    assert f"/api/trips/share/ POST trip-share {metered}" in lines
    assert "/api/trips/ GET trip-list tier>=pro trip_list no yes yes" in lines
    assert f"/cbv/export * {views}.ExportView feature can_export_pdf no yes yes" in lines


def test_usage_reads_the_projects_database_and_plans(database):
    assert manage(database, "feature_gates", "migrate").returncode == 0
    shown = manage(database, "feature_gates", "usage")
    assert shown.returncode == 0, shown.stderr
    assert "no usage recorded this month" in shown.stdout
    with psycopg.connect(database, autocommit=True) as conn:
        # USER_PLAN_SQL's default reads users (id, plan).
        conn.execute("CREATE TABLE users (id bigint PRIMARY KEY, plan text)")
        conn.execute("INSERT INTO users VALUES (7, 'free'), (8, 'pro')")
        conn.execute("SELECT increment_feature_usage_safe(7, 'chat_messages_monthly', 3)")
        conn.execute("SELECT increment_feature_usage_safe(8, 'chat_messages_monthly', 1)")
    near = manage(database, "feature_gates", "usage", "--near-limit", "80")
    assert near.returncode == 0, near.stderr
    lines = {" ".join(line.split()) for line in near.stdout.splitlines()}
    assert "chat_messages_monthly 4 2" in lines
    assert "7 free chat_messages_monthly 3 3 100%" in lines
