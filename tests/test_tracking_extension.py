"""Tracking through the extension: settings, reading back, closing an application."""

from __future__ import annotations

import pytest
from flask import Flask

from feature_gates import ConfigError
from feature_gates import FeatureGates


def make_app(**config):
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_tracked_usage_reads_back_after_a_flush(feature_gates_database_url):
    app = make_app(FEATURE_GATES_DATABASE_URL=feature_gates_database_url)
    gates = FeatureGates(app)
    try:
        with app.app_context():
            gates.track(8, "pdf_exports", 2)
            gates.track(8, "api_calls", idempotency_key="request-1")
            gates.track(8, "api_calls", idempotency_key="request-1")
            assert gates.get_usage(8, "pdf_exports") == 0  # still in memory
            gates.flush(timeout=30)
            assert gates.get_usage(8, "pdf_exports") == 2
            assert gates.get_user_usage(8) == {"api_calls": 1, "pdf_exports": 2}
            stats = gates.tracking_stats()
            assert (stats.tracked, stats.written, stats.duplicates) == (4, 3, 1)
    finally:
        gates.close(app)


def test_closing_an_application_writes_its_usage(feature_gates_database_url, db):
    app = make_app(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url, FEATURE_GATES_FLUSH_INTERVAL=3600
    )
    gates = FeatureGates(app)
    with app.app_context():
        gates.track(4, "pdf_exports", 3)
    gates.close(app)
    assert db.execute("SELECT usage_count FROM feature_usage").fetchall() == [(3,)]
    # Closed: no writer thread any more, so a late use is written at once.
    with app.app_context():
        gates.track(4, "pdf_exports")
    assert db.execute("SELECT usage_count FROM feature_usage").fetchall() == [(4,)]
    gates.close(app)


def test_off_needs_no_database():
    app = make_app(FEATURE_GATES_TRACKING="off")
    gates = FeatureGates(app)
    with app.app_context():
        gates.track(1, "pdf_exports")
        gates.flush()
        assert gates.tracking_stats().tracked == 0
    gates.close(app)


@pytest.mark.parametrize(
    "setting", ["FEATURE_GATES_FLUSH_MAX_BACKOFF", "FEATURE_GATES_SHUTDOWN_FLUSH_TIMEOUT"]
)
def test_bad_tracking_settings_name_the_key(setting):
    with pytest.raises(ConfigError, match=setting):
        FeatureGates(make_app(FEATURE_GATES_DATABASE_URL="x", **{setting: -1}))
