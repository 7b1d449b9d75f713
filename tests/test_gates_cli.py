"""`flask feature-gates routes` and `usage`."""

from __future__ import annotations

import json

from gates_sample import headers

from feature_gates.reports import gated_routes


def run(app, *args):
    result = app.test_cli_runner().invoke(args=["feature-gates", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_routes_lists_every_gate_with_its_limit_per_plan(app):
    found = {(route.rule, route.feature): route for route in gated_routes(app)}
    assert found[("/pdf", "can_export_pdf")].plans == {
        "free": False,
        "pro": True,
        "enterprise": True,
    }
    messages = found[("/messages", "chat_messages_monthly")]
    assert (messages.kind, messages.methods) == ("metered", ("POST",))
    assert messages.plans == {"free": 3, "pro": 10, "enterprise": None}
    assert found[("/intel", "analyst_intelligence")].plans == {
        "free": False,
        "pro": True,
        "enterprise": True,
    }
    assert (
        found[("/itineraries/<int:itinerary_id>/destinations", "itinerary_destinations")].kind
        == "stock"
    )
    assert ("/trips/pdf", "can_export_pdf") in found
    # both gates of the stacked view
    assert ("/reports", "reports") in found and ("/reports", "chat_messages_monthly") in found


def test_routes_command_table_and_json(app):
    table = run(app, "routes")
    header, *rows = table.splitlines()
    assert header.split() == [
        "rule",
        "methods",
        "endpoint",
        "kind",
        "feature",
        "free",
        "pro",
        "enterprise",
    ]
    messages = next(row for row in rows if row.startswith("/messages "))
    assert messages.split() == [
        "/messages",
        "POST",
        "post_message",
        "metered",
        "chat_messages_monthly",
        "3",
        "10",
        "unlimited",
    ]
    intel = next(row for row in rows if row.startswith("/intel "))
    assert intel.split()[3:] == ["tier>=pro", "analyst_intelligence", "no", "yes", "yes"]
    data = json.loads(run(app, "routes", "--json"))
    assert {"endpoint": "trips.trip_pdf", "feature": "can_export_pdf"}.items() <= data[-1].items()
    assert next(d for d in data if d["rule"] == "/messages")["plans"]["enterprise"] is None


def test_usage_lists_top_features_and_users_near_their_limit(app, db):
    db.execute("CREATE TABLE users (id bigint PRIMARY KEY, plan text NOT NULL)")
    db.execute("INSERT INTO users VALUES (1, 'free'), (2, 'pro'), (3, 'pro')")
    client = app.test_client()
    for user, plan, times in [(1, "free", 3), (2, "pro", 8), (3, "pro", 2)]:
        for _ in range(times):
            assert client.post("/messages", headers=headers(user, plan)).status_code == 201
    client.get("/pdf", headers=headers(2, "pro"))
    data = json.loads(run(app, "usage", "--near-limit", "80", "--json"))
    assert data["top"] == [
        {"feature": "chat_messages_monthly", "uses": 13, "users": 3},
        {"feature": "can_export_pdf", "uses": 1, "users": 1},
    ]
    near = [(n["user_id"], n["plan"], n["used"], n["limit"]) for n in data["near_limit"]]
    assert near == [(1, "free", 3, 3), (2, "pro", 8, 10)]
    text = run(app, "usage", "--top", "1", "--near-limit", "90")
    assert "chat_messages_monthly  13    3" in text
    assert "can_export_pdf" not in text
    assert "1     free  chat_messages_monthly  3     3      100%" in text


def test_usage_explains_a_wrong_plan_query(app):
    app.test_client().post("/messages", headers=headers(1, "free"))
    result = app.test_cli_runner().invoke(args=["feature-gates", "usage", "--near-limit", "10"])
    assert result.exit_code == 1
    assert "FEATURE_GATES_USER_PLAN_SQL failed" in result.output
    assert "Traceback" not in result.output
