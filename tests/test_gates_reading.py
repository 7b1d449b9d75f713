"""Reading without consuming: check, entitlements, template globals, resolve_user_id,
and the override used by tests."""

from __future__ import annotations

import pytest
from flask import render_template_string
from gates_sample import headers

from feature_gates import Decision
from feature_gates import Level
from feature_gates import Subject
from feature_gates import UnknownFeature


def test_check_reads_without_consuming(app, gates, db):
    client = app.test_client()
    client.post("/messages", headers=headers(7, "free"))
    free = Subject(7, "free")
    decision = gates.check("chat_messages_monthly", free)
    assert decision == Decision(
        True,
        None,
        "chat_messages_monthly",
        "free",
        3,
        1,
        2,
        decision.reset_at,
        scope="user",
        period="month",
        levels=(Level("user", 3, 1, 2, decision.reset_at),),
    )
    assert decision.reset_at is not None
    assert gates.check("chat_messages_monthly", free, cost=3).reason == "limit"
    assert gates.check("can_export_pdf", free) == Decision(
        False, "not-entitled", "can_export_pdf", "free", limit=0, remaining=0
    )
    assert gates.check("can_export_pdf", Subject(7, "pro")).allowed
    assert gates.check("can_export_pdf", None).reason == "anonymous"
    stock = gates.check("itinerary_destinations", free, used=5)
    assert (stock.allowed, stock.remaining, stock.reset_at) == (False, 0, None)
    assert db.execute("SELECT sum(usage_count) FROM feature_usage").fetchone() == (1,)


def test_entitlements_lists_every_feature_in_one_read(app, gates):
    app.test_client().post("/messages", headers=headers(7, "pro"))
    found = gates.entitlements(Subject(7, "pro"))
    assert set(found) == {"can_export_pdf", "chat_messages_monthly", "itinerary_destinations"}
    assert found["can_export_pdf"].allowed
    assert (found["chat_messages_monthly"].used, found["chat_messages_monthly"].remaining) == (1, 9)
    unlimited = gates.entitlements(Subject(7, "enterprise"))["chat_messages_monthly"]
    assert (unlimited.allowed, unlimited.limit, unlimited.used) == (True, None, 1)
    assert all(not d.allowed for d in gates.entitlements(None).values())


def test_template_globals(app):
    @app.get("/page")
    def page():
        return render_template_string(
            "{{ has_feature('can_export_pdf') }} {{ feature_remaining('chat_messages_monthly') }} "
            "{{ has_tier('pro') }}"
        )

    client = app.test_client()
    client.post("/messages", headers=headers(7, "pro"))
    assert client.get("/page", headers=headers(7, "pro")).text == "True 9 True"
    assert client.get("/page", headers=headers(8, "free")).text == "False 3 False"
    assert client.get("/page", headers=headers(7, "enterprise")).text == "True None True"
    assert client.get("/page").text == "False 0 False"


def test_has_tier_names_an_unknown_tier(app, gates):
    with app.test_request_context(headers=headers(7, "pro")):
        assert gates.has_tier("free") and not gates.has_tier("enterprise")
        with pytest.raises(UnknownFeature, match="tier 'gold' is not a plan"):
            gates.has_tier("gold")


def test_resolve_user_id_caches_answers(make_app, db):
    db.execute("CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE, plan text)")
    db.execute("INSERT INTO users VALUES (1, 'ada@example.com', 'pro')")
    app = make_app(FEATURE_GATES_USER_CACHE_TTL=300)
    gates = app.extensions["feature_gates"].extension
    with app.app_context():
        assert gates.resolve_user_id("ada@example.com") == 1
        assert gates.resolve_user_id("nobody@example.com") is None
        db.execute("UPDATE users SET id = 2")
        db.execute("INSERT INTO users VALUES (3, 'nobody@example.com', 'free')")
        # both answers, the unknown one too, come from the cache
        assert gates.resolve_user_id("ada@example.com") == 1
        assert gates.resolve_user_id("nobody@example.com") is None


def test_resolve_user_id_without_cache(make_app, db):
    db.execute("CREATE TABLE accounts (account_id bigint, mail text)")
    db.execute("INSERT INTO accounts VALUES (5, 'ada@example.com')")
    app = make_app(
        FEATURE_GATES_USER_CACHE_TTL=0,
        FEATURE_GATES_USER_LOOKUP_SQL="SELECT account_id FROM accounts WHERE mail = %s",
    )
    gates = app.extensions["feature_gates"].extension
    with app.app_context():
        assert gates.resolve_user_id("ada@example.com") == 5
        db.execute("UPDATE accounts SET account_id = 6")
        assert gates.resolve_user_id("ada@example.com") == 6


def test_override_pins_the_plan_and_sets_usage(app, gates, db):
    client = app.test_client()
    with gates.override(plan="pro", user_id=9, usage={"chat_messages_monthly": 9}):
        # anonymous callers become user 9 on pro; a free caller is moved to pro
        assert client.get("/pdf").status_code == 200
        assert client.get("/pdf", headers=headers(7, "free")).status_code == 200
        assert client.post("/messages").status_code == 201
        assert client.post("/messages").status_code == 429
    assert client.get("/pdf", headers=headers(7, "free")).status_code == 403
    assert client.get("/pdf").status_code == 401
    assert gates.get_usage(9, "chat_messages_monthly") == 10


def test_override_refuses_what_it_cannot_do(gates):
    with pytest.raises(ValueError, match="plan 'gold' is not in FEATURE_GATES_PLANS"):
        with gates.override(plan="gold"):
            pass
    with pytest.raises(ValueError, match="needs user_id="):
        with gates.override(usage={"chat_messages_monthly": 1}):
            pass


def test_a_loader_must_return_a_subject(make_app):
    app = make_app()
    gates = app.extensions["feature_gates"].extension
    gates.subject_loader(lambda: {"user_id": 1, "plan": "pro"})
    with pytest.raises(TypeError, match="must return a feature_gates.Subject or None"):
        app.test_client().get("/pdf")
