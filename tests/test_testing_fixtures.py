"""The database fixtures of the pytest plugin: fresh, migrated, isolated."""

from __future__ import annotations

import psycopg
import pytest

from feature_gates.migrate import MigrationSettings


def test_each_test_gets_a_migrated_database(db):
    row = db.execute("SELECT to_regclass('feature_usage') IS NOT NULL").fetchone()
    assert row == (True,)
    db.execute("SELECT increment_feature_usage_safe(1, 'isolation_probe', 5)")


def test_databases_are_isolated_between_tests(db):
    # The previous test wrote a row; this test's copy of the template has none.
    row = db.execute("SELECT count(*) FROM feature_usage").fetchone()
    assert row == (0,)


def test_factory_databases_can_be_empty(feature_gates_databases):
    url = feature_gates_databases.create(None)
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT to_regclass('feature_usage')").fetchone()
        assert row == (None,)
    finally:
        feature_gates_databases.drop(url)


def test_templates_are_made_once_per_settings(feature_gates_databases):
    settings = MigrationSettings(sets=("core",))
    first = feature_gates_databases.template(settings)
    assert feature_gates_databases.template(MigrationSettings(sets=("core",))) == first
    assert feature_gates_databases.template(MigrationSettings(user_id_type="uuid")) != first


@pytest.mark.parametrize("user_id", [7, 2**62])
def test_bigint_user_ids(db, user_id):
    row = db.execute("SELECT increment_feature_usage_safe(%s, 'big_ids', 2)", (user_id,)).fetchone()
    assert row == (2,)
