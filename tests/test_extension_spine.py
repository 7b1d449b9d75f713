"""The extension's foundation: settings, state per application, tracking wiring."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

import pytest
from flask import Flask

from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates.migrate import MigrationSettings


def make_app(**config):
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_state_lives_in_app_extensions_and_one_extension_serves_two_apps(
    feature_gates_database_url,
):
    gates = FeatureGates()
    first = make_app(FEATURE_GATES_DATABASE_URL=feature_gates_database_url)
    second = make_app(FEATURE_GATES_DATABASE_URL=feature_gates_database_url)
    gates.init_app(first)
    gates.init_app(second)
    assert first.extensions["feature_gates"] is not second.extensions["feature_gates"]
    assert not hasattr(gates, "app")
    for app in (first, second):
        app.extensions["feature_gates"].close()


def test_the_apps_own_gates_need_no_application_context(feature_gates_database_url):
    app = make_app(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url, FEATURE_GATES_TRACKING="sync"
    )
    gates = FeatureGates(app)
    state = app.extensions["feature_gates"]
    assert state.extension is gates
    try:
        state.track(1, "saved_searches", 2)
        state.flush()
        assert state.get_usage(1, "saved_searches") == 2
        with state.override(user_id=1, usage={"saved_searches": 5}):
            assert state.get_user_usage(1) == {"saved_searches": 5}
        # The extension's own methods work on current_app, and say where to look.
        with pytest.raises(RuntimeError, match=r"app.extensions\['feature_gates'\]"):
            gates.flush()
    finally:
        state.close()


def test_sync_tracking_reaches_the_database(feature_gates_database_url):
    app = make_app(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url, FEATURE_GATES_TRACKING="sync"
    )
    gates = FeatureGates(app)
    try:
        with app.app_context():
            gates.track(1, "saved_searches", 3)
            gates.track(1, "saved_searches")
            assert gates.get_usage(1, "saved_searches") == 4
            assert gates.get_user_usage(1) == {"saved_searches": 4}
    finally:
        app.extensions["feature_gates"].close()


def test_the_period_is_fixed_by_the_clock_when_tracking(feature_gates_database_url):
    last_second = datetime(2026, 10, 31, 23, 59, 59, tzinfo=timezone.utc)
    app = make_app(FEATURE_GATES_DATABASE_URL=feature_gates_database_url)
    gates = FeatureGates(app, clock=lambda: last_second)
    try:
        with app.app_context():
            gates.track(5, "route_analysis")
            gates.flush(timeout=30)
            assert gates.get_usage(5, "route_analysis", last_second.date().replace(day=1)) == 1
    finally:
        app.extensions["feature_gates"].close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"FEATURE_GATES_DATABASE_URL": "x", "FEATURE_GATES_FAIL_MODE": "maybe"},
            "FEATURE_GATES_FAIL_MODE",
        ),
        (
            {"FEATURE_GATES_DATABASE_URL": "x", "FEATURE_GATES_FLUSH_INTERVAL": -1},
            "FEATURE_GATES_FLUSH_INTERVAL",
        ),
        (
            {"FEATURE_GATES_DATABASE_URL": "x", "FEATURE_GATES_TRACKIN": "sync"},
            "FEATURE_GATES_TRACKIN",
        ),
        (
            {"FEATURE_GATES_DATABASE_URL": "x", "FEATURE_GATES_MIGRATION_LOCK_TIMEOUT": 0},
            "FEATURE_GATES_MIGRATION_LOCK_TIMEOUT",
        ),
        (
            {"FEATURE_GATES_DATABASE_URL": "x", "FEATURE_GATES_USER_ID_TYPE": "int"},
            "FEATURE_GATES_USER_ID_TYPE",
        ),
    ],
)
def test_bad_settings_name_the_key(config, message):
    """One parser per key: the migration keys are the runner's, the rest the extension's."""
    with pytest.raises(ConfigError, match=message):
        FeatureGates(make_app(**config))


def test_migration_keys_reach_the_runner_through_the_extension(feature_gates_database_url):
    app = make_app(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url,
        FEATURE_GATES_SCHEMA="gates",
        FEATURE_GATES_MIGRATION_SETS=["core", "counters"],
        FEATURE_GATES_MIGRATION_BATCH_SIZE=50,
    )
    FeatureGates(app)
    state = app.extensions["feature_gates"]
    try:
        migration = MigrationSettings.from_settings(state.settings)
        assert migration.sets == ("core", "counters")
        assert (migration.batch_size, migration.schema) == (50, "gates")
    finally:
        state.close()
