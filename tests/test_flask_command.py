"""`flask --app APP feature-gates ...` in a shell, as a developer types it: the
database URL comes from the documented fallbacks, and errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from feature_gates.migrate import applied_migrations

#: An application factory whose configuration names no database (flaskr's shape).
FACTORY = """
from flask import Flask

from feature_gates import FeatureGates, feature_limit

gates = FeatureGates()


def create_app(test_config=None):
    app = Flask(__name__)
    app.config.from_mapping(FEATURE_GATES_PLANS={"free": {"posts_monthly": 3}})
    if test_config:
        app.config.update(test_config)

    @app.post("/create")
    @feature_limit("posts_monthly")
    def create():
        return "", 201

    gates.init_app(app)
    return app
"""


@pytest.fixture
def flask_command(tmp_path):
    (tmp_path / "factoryapp.py").write_text(textwrap.dedent(FACTORY))
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("FEATURE_GATES_", "FLASK_"))
    }
    environ.pop("DATABASE_URL", None)

    def run(*args, **env):
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "factoryapp", "feature-gates", *args],
            cwd=tmp_path,
            env={**environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_migrate_takes_the_url_from_database_url(flask_command, empty_url):
    result = flask_command("migrate", DATABASE_URL=empty_url)
    assert result.returncode == 0, result.stderr
    assert "applied core/0001_feature_usage_table" in result.stdout
    assert applied_migrations(empty_url)


def test_status_takes_the_url_from_the_option(flask_command, feature_gates_database_url):
    result = flask_command("--database-url", feature_gates_database_url, "status", "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("applied  core/0001_feature_usage_table")


def test_without_any_url_the_error_is_one_line_naming_every_source(flask_command):
    result = flask_command("status")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: no database: set --database-url, FEATURE_GATES_MIGRATION_DATABASE_URL, "
        "FEATURE_GATES_DATABASE_URL or DATABASE_URL to your PostgreSQL URL"
    )


def test_an_unreachable_database_is_one_line_naming_where_its_url_came_from(flask_command):
    result = flask_command("migrate", DATABASE_URL="postgresql://nobody@/none?host=/nonexistent")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot reach the database named by DATABASE_URL")
