"""Every decorator against every plan, anonymous callers, blueprints, async views,
stacking, OPTIONS, and the kill switch."""

from __future__ import annotations

import inspect

import pytest
from flask import abort
from flask import request
from gates_sample import PLANS
from gates_sample import headers

from feature_gates import FeatureGates
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier
from feature_gates.flask import gates_of

# (method, path, JSON body, the feature usage is recorded under, status per plan)
ENDPOINTS = [
    ("GET", "/pdf", None, "can_export_pdf", {"free": 403, "pro": 200, "enterprise": 200}),
    ("GET", "/trips/pdf", None, "can_export_pdf", {"free": 403, "pro": 200, "enterprise": 200}),
    (
        "POST",
        "/messages",
        None,
        "chat_messages_monthly",
        {"free": 201, "pro": 201, "enterprise": 201},
    ),
    (
        "POST",
        "/async-messages",
        None,
        "chat_messages_monthly",
        {"free": 200, "pro": 200, "enterprise": 200},
    ),
    (
        "POST",
        "/itineraries/1/destinations",
        {"waypoints": ["a", "b"]},
        "itinerary_destinations",
        {"free": 429, "pro": 201, "enterprise": 201},
    ),
    (
        "GET",
        "/intel",
        None,
        "analyst_intelligence",
        {"free": 403, "pro": 200, "enterprise": 200},
    ),
    ("POST", "/reports", None, "reports", {"free": 403, "pro": 200, "enterprise": 200}),
]
CASES = [
    pytest.param(method, path, body, feature, plan, statuses[plan], id=f"{path}-{plan}")
    for method, path, body, feature, statuses in ENDPOINTS
    for plan in PLANS
]


@pytest.mark.parametrize(("method", "path", "body", "feature", "plan", "status"), CASES)
def test_every_gate_against_every_plan(app, gates, method, path, body, feature, plan, status):
    response = app.test_client().open(path, method=method, json=body, headers=headers(7, plan))
    assert response.status_code == status
    allowed = status < 400
    if allowed:
        assert response.mimetype == "application/json"
    else:
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["plan"] == plan
    gates.flush()
    recorded = gates.get_user_usage(7)
    if allowed:
        assert recorded.get(feature, 0) >= 1
    else:
        assert recorded == {}


@pytest.mark.parametrize(("method", "path", "body"), [e[:3] for e in ENDPOINTS])
def test_anonymous_callers_get_401_on_every_gate(app, gates, method, path, body):
    response = app.test_client().open(path, method=method, json=body)
    assert response.status_code == 401
    assert response.get_json()["title"] == "Authentication required"
    gates.flush()
    with app.app_context():
        assert gates.tracking_stats().tracked == 0


def test_stacked_gates_check_outermost_first_and_count_each(app, gates, db):
    client = app.test_client()
    # free fails the outer tier gate: the inner metered limit never consumes.
    assert client.post("/reports", headers=headers(7, "free")).status_code == 403
    assert db.execute("SELECT count(*) FROM feature_usage").fetchone() == (0,)
    assert client.post("/reports", headers=headers(7, "pro")).status_code == 200
    assert gates.get_usage(7, "chat_messages_monthly") == 2  # cost=2, consumed once
    assert gates.get_usage(7, "reports") == 1  # the tier gate's record
    rules = gates_of(app.view_functions["stacked_report"])
    assert [rule.kind for rule in rules] == ["tier", "metered"]


def test_an_inner_denial_refunds_the_outer_consumption(make_app, db):
    app = make_app()

    @app.post("/double")
    @feature_limit("chat_messages_monthly")
    @feature_required("can_export_pdf")
    def double():
        return "ok"

    gates = app.extensions["feature_gates"].extension
    response = app.test_client().post("/double", headers=headers(7, "free"))
    assert response.status_code == 403
    with app.app_context():
        assert gates.get_usage(7, "chat_messages_monthly") == 0


def test_an_async_view_under_stacked_gates_runs_once_and_settles_by_its_outcome(make_app):
    # Each gate decides once, when it decorates, whether it wraps a coroutine
    # function: only the innermost one does here.
    app = make_app()
    runs = []

    @app.post("/async-stacked")
    @feature_required("can_export_pdf")
    @feature_limit("chat_messages_monthly")
    async def async_stacked():
        runs.append(request.args.get("outcome", "ok"))
        if request.args.get("outcome") == "abort":
            abort(503)
        if request.args.get("outcome") == "raise":
            raise LookupError("the view failed")
        return {"sent": "async"}

    gates = app.extensions["feature_gates"].extension
    client = app.test_client()
    assert client.post("/async-stacked", headers=headers(7, "pro")).get_json() == {"sent": "async"}
    response = client.post("/async-stacked?outcome=abort", headers=headers(7, "pro"))
    assert response.status_code == 503
    with pytest.raises(LookupError):
        client.post("/async-stacked?outcome=raise", headers=headers(7, "pro"))
    assert client.options("/async-stacked", headers=headers(7, "free")).status_code == 200
    assert runs == ["ok", "abort", "raise"]
    with app.app_context():
        # The failed calls gave their uses back and recorded nothing.
        assert gates.get_usage(7, "chat_messages_monthly") == 1
        assert gates.get_usage(7, "can_export_pdf") == 1
        assert gates.tracking_stats().tracked == 1


def test_decorators_keep_the_view_and_mark_it():
    @feature_limit("chat_messages_monthly", cost=2)
    def view(thread_id: int) -> str:
        """Posts a message."""
        return str(thread_id)

    assert view.__name__ == "view"
    assert view.__doc__ == "Posts a message."
    assert list(inspect.signature(view).parameters) == ["thread_id"]
    (rule,) = gates_of(view)
    assert (rule.kind, rule.feature, rule.cost) == ("metered", "chat_messages_monthly", 2)


def test_options_requests_are_never_gated_or_counted(app, gates):
    response = app.test_client().options("/pdf", headers=headers(7, "free"))
    assert response.status_code == 200
    with app.app_context():
        assert gates.tracking_stats().tracked == 0


def test_disabled_gates_pass_everything_through_read_per_request(app, gates):
    client = app.test_client()
    app.config["FEATURE_GATES_ENABLED"] = False
    assert client.get("/pdf").status_code == 200
    assert client.get("/intel", headers=headers(7, "free")).status_code == 200
    app.config["FEATURE_GATES_ENABLED"] = "true"
    assert client.get("/pdf").status_code == 401


def test_the_subject_loader_runs_once_per_request(make_app):
    gates = FeatureGates()
    calls = []
    app = make_app(gates=gates)
    original = gates.subject_loader_callback

    @gates.subject_loader
    def counting():
        calls.append(1)
        return original()

    assert app.test_client().post("/reports", headers=headers(7, "pro")).status_code == 200
    assert len(calls) == 1
    assert app.test_client().post("/reports", headers=headers(7, "pro")).status_code == 200
    assert len(calls) == 2


def test_the_subject_is_not_carried_between_requests_under_an_outer_context(app, client):
    # pytest-flask pushes one outer context for the whole test; the test client's
    # requests share its `g`, so the subject must be forgotten after each request.
    assert client.get("/pdf", headers=headers(7, "pro")).status_code == 200
    assert client.get("/pdf").status_code == 401


def test_tier_gate_feature_name_must_be_valid():
    with pytest.raises(ValueError, match="pass feature="):

        @feature_tier("pro")
        def CamelCase():  # noqa: N802
            return ""


@pytest.mark.parametrize("name", ["Upper", "", "has space", "9lives"])
def test_feature_names_are_checked_at_decoration(name):
    with pytest.raises(ValueError, match="not a valid feature name"):
        feature_required(name)
