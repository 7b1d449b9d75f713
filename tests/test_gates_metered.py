"""Metered and stock limits: counted once, denials not counted, refunds, periods."""

from __future__ import annotations

import logging
from datetime import date
from datetime import datetime
from datetime import timezone

import pytest
from gates_sample import PLANS
from gates_sample import headers
from gates_sample import usage

from feature_gates import FeatureGates
from feature_gates import feature_limit


def test_a_metered_call_is_counted_once_and_a_denied_call_not_at_all(app, gates, db):
    client = app.test_client()
    statuses = [client.post("/messages", headers=headers(7, "free")).status_code for _ in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    gates.flush()
    assert usage(db) == 3
    assert gates.tracking_stats().tracked == 0  # the consume was the record


@pytest.mark.parametrize(
    ("query", "refunded"),
    [
        ("raise=1", True),
        ("status=500", True),
        ("status=503", True),
        ("status=422", True),
        ("status=201", False),
        ("status=302", False),
    ],
)
def test_failed_calls_give_their_uses_back(app, db, query, refunded):
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.test_client().post(f"/messages?{query}", headers=headers(7, "free"))
    assert usage(db) == (0 if refunded else 1)


def test_an_exception_that_propagates_is_refunded(app, db):
    with pytest.raises(RuntimeError, match="the view failed"):
        app.test_client().post("/messages?raise=1", headers=headers(7, "free"))
    assert usage(db) == 0


def test_refunds_free_room_for_the_next_call(app, db):
    client = app.test_client()
    for _ in range(3):
        assert client.post("/messages", headers=headers(7, "free")).status_code == 201
    # a fourth call is refused; the three that succeeded stay counted
    assert client.post("/messages?status=500", headers=headers(7, "free")).status_code == 429
    assert usage(db) == 3


def test_unlimited_plans_skip_the_consume_and_are_tracked(app, gates, db):
    client = app.test_client()
    for _ in range(5):
        assert client.post("/messages", headers=headers(7, "enterprise")).status_code == 201
    assert gates.tracking_stats().tracked == 5
    assert usage(db) == 5


def test_cost_and_limit_accept_callables_of_the_view_arguments(make_app, db):
    app = make_app()

    @app.post("/threads/<int:size>/bulk")
    @feature_limit(
        "chat_messages_monthly", cost=lambda size: size, limit=lambda size: 6 if size < 5 else 0
    )
    def bulk(size):
        return "ok"

    client = app.test_client()
    assert client.post("/threads/4/bulk", headers=headers(7, "free")).status_code == 200
    assert client.post("/threads/3/bulk", headers=headers(7, "free")).status_code == 429
    assert client.post("/threads/2/bulk", headers=headers(7, "free")).status_code == 200
    assert client.post("/threads/9/bulk", headers=headers(7, "free")).status_code == 403
    assert usage(db) == 6


def test_a_limit_of_zero_is_not_entitled(make_app):
    plans = {plan: dict(features) for plan, features in PLANS.items()}
    plans["free"]["chat_messages_monthly"] = 0
    app = make_app(FEATURE_GATES_PLANS=plans)
    response = app.test_client().post("/messages", headers=headers(7, "free"))
    assert response.status_code == 403
    assert response.get_json()["title"] == "Feature not in plan"


def test_stock_limits_read_the_getter_and_track_the_cost(app, gates, db):
    client = app.test_client()
    add = "/itineraries/2/destinations"
    assert (
        client.post(add, json={"waypoints": [1, 2, 3]}, headers=headers(7, "free")).status_code
        == 201
    )
    assert gates.tracking_stats().tracked == 3
    assert usage(db, feature="itinerary_destinations") == 3
    # itinerary 1 holds 4 destinations: 4 + 2 > 5 on free
    denied = client.post(
        "/itineraries/1/destinations", json={"waypoints": [1, 2]}, headers=headers(7, "free")
    )
    assert denied.status_code == 429
    body = denied.get_json()
    assert (body["limit"], body["used"], body["cost"], body["reset_at"]) == (5, 4, 2, None)
    assert "Retry-After" not in denied.headers


def test_the_period_is_the_calendar_month_of_the_call_in_utc(make_app, db):
    moment = datetime(2026, 10, 31, 23, 59, 59, tzinfo=timezone.utc)
    app = make_app(gates=FeatureGates(clock=lambda: moment))
    client = app.test_client()
    assert client.post("/messages", headers=headers(7, "free")).status_code == 201
    rows = db.execute("SELECT period_start, usage_count FROM feature_usage").fetchall()
    assert rows == [(date(2026, 10, 1), 1)]
    for _ in range(2):
        client.post("/messages", headers=headers(7, "free"))
    denied = client.post("/messages", headers=headers(7, "free"))
    assert denied.get_json()["reset_at"] == "2026-11-01T00:00:00Z"
    assert denied.headers["Retry-After"] == "1"
    moment = datetime(2026, 11, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert client.post("/messages", headers=headers(7, "free")).status_code == 201


def test_limit_headers_on_allowed_and_denied_responses(make_app):
    moment = datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc)
    app = make_app(FEATURE_GATES_HEADERS_ENABLED=True, gates=FeatureGates(clock=lambda: moment))
    client = app.test_client()
    first = client.post("/messages", headers=headers(7, "free"))
    assert first.headers["X-Feature-Limit"] == "3"
    assert first.headers["X-Feature-Remaining"] == "2"
    assert first.headers["X-Feature-Reset"] == "3600"
    client.post("/messages", headers=headers(7, "free"))
    client.post("/messages", headers=headers(7, "free"))
    denied = client.post("/messages", headers=headers(7, "free"))
    assert denied.headers["X-Feature-Remaining"] == "0"
    assert denied.headers["Retry-After"] == "3600"
    stock = client.post(
        "/itineraries/2/destinations", json={"waypoints": [1]}, headers=headers(7, "free")
    )
    assert (stock.headers["X-Feature-Limit"], stock.headers["X-Feature-Remaining"]) == ("5", "4")
    assert "X-Feature-Reset" not in stock.headers
    assert "X-Feature-Limit" not in client.get("/pdf", headers=headers(7, "pro")).headers


def test_no_limit_headers_unless_enabled(app):
    response = app.test_client().post("/messages", headers=headers(7, "free"))
    assert "X-Feature-Limit" not in response.headers


def test_an_unlimited_stock_limit_does_not_read_the_stock(make_app):
    app = make_app()

    def unreadable(itinerary_id):
        raise AssertionError("the stock of an unlimited plan was read")

    @app.post("/trips/<int:itinerary_id>/stops")
    @feature_limit("itinerary_destinations", usage_getter=unreadable, cost=2)
    def add_stops(itinerary_id):
        return "ok", 201

    client = app.test_client()
    assert client.post("/trips/1/stops", headers=headers(7, "enterprise")).status_code == 201
    with pytest.raises(AssertionError, match="stock of an unlimited plan"):
        client.post("/trips/1/stops", headers=headers(7, "pro"))


def test_an_unmigrated_database_says_to_migrate(make_app, feature_gates_databases, caplog):
    empty = feature_gates_databases.create(None)
    try:
        app = make_app(empty, FEATURE_GATES_TRACKING="off")
        with caplog.at_level(logging.ERROR, logger="feature_gates"):
            response = app.test_client().post("/messages", headers=headers(7, "free"))
        # A missing function is an error, not an outage: no fail mode, a 503.
        assert response.status_code == 503
        assert response.get_json()["title"] == "Feature check failed"
        (line,) = [r.getMessage() for r in caplog.records if r.name == "feature_gates"]
        assert "SQLSTATE 42883" in line and "run 'flask feature-gates migrate'" in line
        with app.app_context():
            errors = app.extensions["feature_gates"].extension.storage_stats().errors
        assert errors == {"42883": 1}
        app.extensions["feature_gates"].close()
    finally:
        feature_gates_databases.drop(empty)
