"""Limits are exact under real concurrency: a threaded HTTP server, requests sent at once."""

from __future__ import annotations

from collections import Counter

import pytest
from gates_sample import headers

from feature_gates import feature_limit
from feature_gates.testing import fire_concurrently

# Enough connections and patience that no request falls back to the fail mode:
# these tests are about exactness, not about outages.
ROOMY = {
    "FEATURE_GATES_POOL_MAX_SIZE": 8,
    "FEATURE_GATES_DB_TIMEOUT": 30,
    "FEATURE_GATES_FAIL_MODE": "closed",
}


@pytest.fixture
def app(make_app):
    """pytest-flask's application (for live_server), roomy as above."""
    return make_app(**ROOMY)


def count(db, feature="chat_messages_monthly"):
    row = db.execute(
        "SELECT coalesce(sum(usage_count), 0) FROM feature_usage WHERE feature = %s", (feature,)
    ).fetchone()
    return row[0]


def test_32_concurrent_requests_against_a_limit_of_10_grant_exactly_10(make_app, db):
    app = make_app(**ROOMY)
    result = fire_concurrently(app, "POST", "/messages", n=32, headers=headers(7, "pro"))
    assert result.statuses == Counter({201: 10, 429: 22})
    assert result.allowed == 10
    assert count(db) == 10


def test_concurrent_costs_never_overshoot(make_app, db):
    app = make_app(**ROOMY)

    @app.post("/bulk")
    @feature_limit("chat_messages_monthly", cost=3)
    def bulk():
        return "ok"

    result = fire_concurrently(app, "POST", "/bulk", n=16, headers=headers(7, "pro"))
    assert (result.allowed, result.denied, result.failed) == (3, 13, 0)
    assert count(db) == 9


def test_concurrent_failures_are_all_refunded(make_app, db):
    app = make_app(**ROOMY)
    result = fire_concurrently(app, "POST", "/messages?status=500", n=16, headers=headers(7, "pro"))
    assert result.failed + result.denied == 16
    assert count(db) == 0


def test_the_limit_holds_on_pytest_flasks_live_server(live_server, db):
    # live_server runs the app in a process of its own, as a deployment would.
    result = fire_concurrently(
        live_server.url(), "POST", "/messages", n=32, headers=headers(8, "pro")
    )
    assert result.statuses == Counter({201: 10, 429: 22})
    assert count(db) == 10
