"""Denials: problem+json bodies, statuses, headers, errorhandlers, on_denied, the log."""

from __future__ import annotations

import logging
from datetime import datetime
from datetime import timezone

import pytest
from flask import redirect
from gates_sample import headers
from werkzeug.exceptions import TooManyRequests

from feature_gates import FeatureDenied
from feature_gates import FeatureGates
from feature_gates import FeatureLimitExceeded
from feature_gates import FeatureNotEntitled
from feature_gates import NotAuthenticated
from feature_gates import TierTooLow

DOCS = "https://github.com/feature-gates/feature-gates/blob/main/docs/errors.md"
MOMENT = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc)


@pytest.fixture
def app(make_app):
    return make_app(gates=FeatureGates(clock=lambda: MOMENT))


def exhaust(client, user=7, plan="free", times=3):
    for _ in range(times):
        assert client.post("/messages", headers=headers(user, plan)).status_code == 201


def test_not_entitled_body(app):
    response = app.test_client().get("/pdf", headers=headers(7, "free"))
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json() == {
        "type": f"{DOCS}#feature-not-entitled",
        "title": "Feature not in plan",
        "status": 403,
        "detail": "plan 'free' does not include 'can_export_pdf'; a plan that does is needed.",
        "message": "Your Free plan doesn't include export pdf.",
        "feature": "can_export_pdf",
        "plan": "free",
    }


def test_tier_body(app):
    body = app.test_client().get("/intel", headers=headers(7, "free")).get_json()
    assert body["type"] == f"{DOCS}#tier-too-low"
    assert (body["status"], body["required_tier"], body["plan"]) == (403, "pro", "free")
    assert body["feature"] == "analyst_intelligence"


def test_anonymous_body(app):
    body = app.test_client().get("/intel").get_json()
    assert body["type"] == f"{DOCS}#not-authenticated"
    assert (body["status"], body["plan"]) == (401, None)


def test_metered_limit_body_and_retry_after(app):
    client = app.test_client()
    exhaust(client)
    response = client.post("/messages", headers=headers(7, "free"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7200"
    assert response.get_json() == {
        "type": f"{DOCS}#feature-limit-exceeded",
        "title": "Feature limit reached",
        "status": 429,
        "detail": "plan 'free' allows 3 uses of 'chat_messages_monthly' per month and 3 are "
        "used; it resets at 2026-12-01T00:00:00Z.",
        "message": "You've used all 3 chat messages this month; they renew on 1 December.",
        "feature": "chat_messages_monthly",
        "plan": "free",
        "limit": 3,
        "used": 3,
        "remaining": 0,
        "cost": 1,
        "reset_at": "2026-12-01T00:00:00Z",
        "scope": "user",
        "period": "month",
    }


@pytest.mark.parametrize("status", [402, 403])
def test_the_limit_status_is_configurable(make_app, status):
    app = make_app(FEATURE_GATES_LIMIT_STATUS=status)
    client = app.test_client()
    exhaust(client)
    response = client.post("/messages", headers=headers(7, "free"))
    assert response.status_code == status
    assert response.get_json()["status"] == status


def test_the_applications_errorhandlers_see_denials_first(app):
    @app.errorhandler(403)
    def forbidden(error):
        assert isinstance(error, FeatureNotEntitled)
        return f"no {error.feature} on {error.plan}", 403

    @app.errorhandler(FeatureLimitExceeded)
    def limited(error):
        return {"left": error.remaining}, 429

    client = app.test_client()
    assert client.get("/pdf", headers=headers(7, "free")).text == "no can_export_pdf on free"
    exhaust(client)
    assert client.post("/messages", headers=headers(7, "free")).get_json() == {"left": 0}


def test_on_denied_may_answer_with_its_own_response(make_app):
    gates = FeatureGates()
    seen = []

    @gates.on_denied
    def answer(denial):
        seen.append(denial)
        if isinstance(denial, NotAuthenticated):
            return redirect("/login")
        if isinstance(denial, TierTooLow):
            return "<h1>Upgrade to pro</h1>", 403
        return None

    app = make_app(gates=gates)
    client = app.test_client()
    assert client.get("/intel").headers["Location"] == "/login"
    page = client.get("/intel", headers=headers(7, "free"))
    assert (page.status_code, page.mimetype, page.text) == (
        403,
        "text/html",
        "<h1>Upgrade to pro</h1>",
    )
    default = client.get("/pdf", headers=headers(7, "free"))
    assert default.mimetype == "application/problem+json"
    assert [type(d) for d in seen] == [NotAuthenticated, TierTooLow, FeatureNotEntitled]
    assert all(isinstance(d, FeatureDenied) for d in seen)


def test_every_denial_is_logged_as_an_event(app, caplog):
    caplog.set_level(logging.INFO, logger="feature_gates")
    app.test_client().get("/pdf", headers=headers(7, "free"))
    (record,) = [r for r in caplog.records if r.name == "feature_gates.denials"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("feature_denied feature=can_export_pdf user=7 plan=free")
    assert "reason=not-entitled check_ms=" in message
    assert record.feature_gates["reason"] == "not-entitled"
    assert record.feature_gates["check_ms"] >= 0


def test_the_denial_log_level_is_configurable(make_app, caplog):
    caplog.set_level(logging.DEBUG, logger="feature_gates")
    app = make_app(FEATURE_GATES_DENIAL_LOG_LEVEL="DEBUG")
    app.test_client().get("/pdf", headers=headers(7, "free"))
    (record,) = [r for r in caplog.records if r.name == "feature_gates.denials"]
    assert record.levelno == logging.DEBUG


def test_an_unknown_plan_is_not_entitled_to_anything(app):
    response = app.test_client().get("/pdf", headers=headers(7, "legacy"))
    assert response.status_code == 403
    tier = app.test_client().get("/intel", headers=headers(7, "legacy"))
    assert tier.status_code == 403


@pytest.mark.parametrize("status", [429, 403])
def test_handlers_registered_by_code_see_limit_denials_of_that_code(make_app, status):
    app = make_app(FEATURE_GATES_LIMIT_STATUS=status)

    @app.errorhandler(status)
    def handled(error):
        assert isinstance(error, FeatureLimitExceeded)
        return "handled", status

    client = app.test_client()
    exhaust(client)
    assert client.post("/messages", headers=headers(7, "free")).text == "handled"


@pytest.mark.parametrize("status", [429, 403, 402])
def test_a_handler_for_the_class_sees_limit_denials_of_every_status(make_app, status):
    app = make_app(FEATURE_GATES_LIMIT_STATUS=status)

    @app.errorhandler(FeatureLimitExceeded)
    def limited(error):
        return f"limited {error.code}", error.code

    @app.errorhandler(FeatureDenied)
    def denied(error):
        return f"denied {error.code}", error.code

    client = app.test_client()
    assert client.get("/pdf", headers=headers(7, "free")).text == "denied 403"
    assert client.get("/intel", headers=headers(7, "free")).text == "denied 403"
    assert client.get("/pdf").text == "denied 401"
    exhaust(client)
    response = client.post("/messages", headers=headers(7, "free"))
    assert (response.status_code, response.text) == (status, f"limited {status}")


def test_a_limit_denial_built_directly_is_a_429():
    denial = FeatureLimitExceeded(
        feature="x", subject=None, detail="over", limit=1, used=1, cost=1, reset_at=None
    )
    assert isinstance(denial, TooManyRequests) and denial.code == 429
    assert denial.get_response().status_code == 429
