"""Every decorator and plan on function, class-based, DRF and async views."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import AsyncClient
from django.test import Client
from gates_sample import usage

from feature_gates.django import PROBLEM_CONTENT_TYPE
from feature_gates.django import Subject
from feature_gates.django import gates

pytestmark = pytest.mark.usefixtures("feature_gates_django")

FREE = {"X-User": "7", "X-Plan": "free"}
PRO = {"X-User": "7", "X-Plan": "pro"}


@pytest.fixture
def client():
    return Client()


@pytest.fixture
def db(feature_gates_django_url):
    import psycopg

    with psycopg.connect(feature_gates_django_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def feature_gates_django_url(feature_gates_database_url):
    return feature_gates_database_url


def problem(response):
    assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
    return json.loads(response.content)


def test_feature_required_lets_a_plan_with_the_feature_through(client):
    assert client.get("/trips/pdf", headers=PRO).status_code == 200


def test_feature_required_refuses_a_plan_without_it_with_a_problem(client):
    response = client.get("/trips/pdf", headers=FREE)
    assert response.status_code == 403
    body = problem(response)
    assert body["title"] == "Feature not in plan"
    assert body["feature"] == "can_export_pdf"
    assert body["plan"] == "free"


def test_an_anonymous_caller_gets_401(client):
    response = client.get("/trips/pdf")
    assert response.status_code == 401
    assert problem(response)["plan"] is None


def test_feature_tier_ranks_plans(client):
    assert client.get("/insights", headers=PRO).status_code == 200
    response = client.get("/insights", headers=FREE)
    assert response.status_code == 403
    assert problem(response)["required_tier"] == "pro"


def test_a_metered_limit_counts_each_use_and_refuses_past_the_limit(client, db):
    for _ in range(3):
        assert client.post("/messages", headers=FREE).status_code == 201
    response = client.post("/messages", headers=FREE)
    assert response.status_code == 429
    body = problem(response)
    assert (body["limit"], body["used"], body["remaining"]) == (3, 3, 0)
    assert int(response["Retry-After"]) > 0
    assert usage(db) == 3


def test_a_failed_call_gives_its_use_back(client, db):
    assert client.post("/messages?fail=400", headers=FREE).status_code == 400
    with pytest.raises(RuntimeError):
        client.post("/messages?fail=raise", headers=FREE)
    assert usage(db) == 0
    assert client.post("/messages", headers=FREE).status_code == 201
    assert usage(db) == 1


def test_a_cost_from_the_url(client, db):
    assert client.get("/messages/bulk/2", headers=FREE).status_code == 200
    response = client.get("/messages/bulk/2", headers=FREE)
    assert response.status_code == 429
    assert problem(response)["cost"] == 2
    assert usage(db) == 2


def test_a_reserving_gate_holds_and_the_view_commits_what_it_used(client, db):
    assert client.get("/messages/reserved/3?use=1", headers=FREE).status_code == 200
    assert usage(db) == 1
    with pytest.raises(RuntimeError):
        client.get("/messages/reserved/2?fail=raise", headers=FREE)
    assert usage(db) == 1  # a failing view releases its hold
    response = client.get("/messages/reserved/3", headers=FREE)
    assert response.status_code == 429
    assert problem(response)["cost"] == 3
    assert client.get("/messages/reserved/2", headers=FREE).status_code == 200
    assert usage(db) == 3


def test_gates_reserve_grant_and_balance_outside_a_decorator(db):
    subject = Subject(7, "free")
    with gates.reserve("chat_messages_monthly", up_to=2, subject=subject) as hold:
        hold.commit(1)
    assert usage(db) == 1
    first = gates.grant("chat_messages_monthly", 5, subject=subject, idempotency_key="k")
    again = gates.grant("chat_messages_monthly", 5, subject=subject, idempotency_key="k")
    assert (first.added, again.added) == (True, False)
    balance = gates.balance("chat_messages_monthly", subject=subject)
    assert (balance.allowance, balance.used, balance.held) == (3, 1, 0)
    assert balance.available == 2 + 5


def test_a_stock_limit_reads_the_applications_count(client):
    assert client.get("/itineraries/2/destinations", headers=FREE).status_code == 200
    assert client.get("/itineraries/1/destinations", headers=FREE).status_code == 200
    response = client.get("/itineraries/1/destinations", headers={**FREE, "X-User": "8"})
    assert response.status_code == 200
    # 4 held + 1 is the free plan's 5; a plan of 5 refuses a 6th.
    from gated_site import views

    views.DESTINATIONS[2] = 5
    try:
        response = client.get("/itineraries/2/destinations", headers=FREE)
    finally:
        views.DESTINATIONS[2] = 0
    assert response.status_code == 429
    assert problem(response)["used"] == 5


def test_stacked_gates_refund_the_outer_use_when_an_inner_gate_refuses(client, db):
    # The tier gate is outer: a free caller never reaches the metered one.
    assert client.get("/stacked", headers=FREE).status_code == 403
    assert usage(db) == 0
    assert client.get("/stacked", headers=PRO).status_code == 200
    assert usage(db) == 1


def test_method_decorator_on_dispatch_gates_a_class_based_view(client):
    assert client.get("/cbv/export", headers=PRO).status_code == 200
    assert client.get("/cbv/export", headers=FREE).status_code == 403


def test_method_decorator_on_a_handler_gates_only_that_method(client, db):
    for _ in range(3):
        assert client.post("/cbv/messages", headers=FREE).status_code == 201
    assert client.post("/cbv/messages", headers=FREE).status_code == 429
    assert client.get("/cbv/messages", headers=FREE).status_code == 200
    assert usage(db) == 3


def test_drf_handlers_are_gated_and_refunded(client, db):
    assert client.post("/api/messages", {"fail": "1"}, headers=FREE).status_code == 400
    assert usage(db) == 0
    for _ in range(3):
        assert client.post("/api/messages", headers=FREE).status_code == 201
    response = client.post("/api/messages", headers=FREE)
    assert response.status_code == 429
    assert problem(response)["limit"] == 3


def test_drf_api_view_and_viewset_actions(client, db):
    assert client.get("/api/pdf", headers=PRO).status_code == 200
    assert client.get("/api/pdf", headers=FREE).status_code == 403
    assert client.get("/api/trips/", headers=PRO).status_code == 200
    assert problem(client.get("/api/trips/", headers=FREE))["feature"] == "trip_list"
    assert client.post("/api/trips/share/", headers=FREE).status_code == 201
    assert usage(db) == 1


def test_async_views_are_gated_counted_and_refunded(db):
    async def requests():
        client = AsyncClient()
        statuses = [(await client.post("/async/messages?fail=1", headers=FREE)).status_code]
        for _ in range(4):
            statuses.append((await client.post("/async/messages", headers=FREE)).status_code)
        statuses.append((await client.get("/async/export", headers=PRO)).status_code)
        statuses.append((await client.get("/async/export", headers=FREE)).status_code)
        return statuses

    assert asyncio.run(requests()) == [400, 201, 201, 201, 429, 200, 403]
    assert usage(db) == 3


def test_methods_gates_and_counts_only_those_methods(client, db):
    assert client.get("/messages/form").status_code == 200  # anonymous, uncounted
    assert client.post("/messages/form").status_code == 401
    assert client.post("/messages/form", headers=FREE).status_code == 200
    assert usage(db) == 1


def test_options_requests_are_never_gated(client):
    assert client.options("/trips/pdf").status_code == 200


@pytest.mark.feature_gates(plan="pro", user_id=9)
def test_the_marker_pins_the_plan(client):
    assert client.get("/trips/pdf", headers=FREE).status_code == 200


@pytest.mark.feature_gates(plan="free", user_id=7, usage={"chat_messages_monthly": 3})
def test_the_marker_sets_usage(client):
    assert client.post("/messages", headers=FREE).status_code == 429


def test_on_denied_answers_with_a_page(client):
    response = client.get("/pages/pdf", headers=FREE)
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert b"Feature not in plan" in response.content


def test_template_tags(client, feature_gates_django):
    body = client.get("/pages/plan", headers=PRO).content.decode()
    assert "pdf:yes" in body and "tier:pro" in body and "left:10" in body
    body = client.get("/pages/plan", headers=FREE).content.decode()
    assert "pdf:no" in body and "tier:below" in body and "left:3" in body
    body = client.get("/pages/plan", headers={"X-User": "7", "X-Plan": "enterprise"})
    assert "left:unlimited" in body.content.decode()


def test_tracking_records_successful_calls(client, feature_gates_django, db):
    assert client.get("/trips/pdf", headers=PRO).status_code == 200
    feature_gates_django.flush()
    assert usage(db, feature="can_export_pdf") == 1


# -- the same answers as the Flask adapter ------------------------------------------------


@pytest.fixture
def flask_client(feature_gates_django_url):
    """A Flask application with the project's plans and gates, on the same database."""
    from django.conf import settings
    from flask import Flask
    from flask import request

    from feature_gates import FeatureGates
    from feature_gates import Subject
    from feature_gates import feature_limit as flask_limit
    from feature_gates import feature_required as flask_required
    from feature_gates import feature_tier as flask_tier

    app = Flask("same_answers")
    app.config.update(
        FEATURE_GATES_DATABASE_URL=feature_gates_django_url,
        FEATURE_GATES_PLANS=settings.PLANS,
        FEATURE_GATES_HEADERS_ENABLED=True,
    )
    flask_gates = FeatureGates(app)

    @flask_gates.subject_loader
    def load():
        user = request.headers.get("X-User")
        return None if user is None else Subject(int(user), request.headers["X-Plan"])

    @app.get("/trips/pdf")
    @flask_required("can_export_pdf")
    def trip_pdf():
        return {}

    @app.get("/insights")
    @flask_tier("pro")
    def insights():
        return {}

    @app.post("/messages")
    @flask_limit("chat_messages_monthly")
    def send_message():
        return {}, 201

    yield app.test_client()
    flask_gates.close(app)


def test_denials_are_the_flask_adapters_status_headers_and_body(client, flask_client):
    from django.conf import settings
    from django.test import override_settings

    config = {**settings.FEATURE_GATES, "HEADERS_ENABLED": True}
    with override_settings(FEATURE_GATES=config):
        cases = [("get", "/trips/pdf", {}), ("get", "/trips/pdf", FREE), ("get", "/insights", FREE)]
        for _ in range(3):
            assert client.post("/messages", headers=FREE).status_code == 201
        # The Flask app's user 8 uses up its 3 too: both see a full limit.
        for _ in range(3):
            flask_client.post("/messages", headers={**FREE, "X-User": "8"})
        for method, path, headers in cases:
            django_answer = getattr(client, method)(path, headers=headers)
            flask_answer = getattr(flask_client, method)(path, headers=headers)
            assert django_answer.status_code == flask_answer.status_code
            assert json.loads(django_answer.content) == flask_answer.get_json()
            assert django_answer["Content-Type"] == flask_answer.headers["Content-Type"]
        django_answer = client.post("/messages", headers=FREE)
        flask_answer = flask_client.post("/messages", headers={**FREE, "X-User": "8"})
    assert django_answer.status_code == flask_answer.status_code == 429
    django_body, flask_body = json.loads(django_answer.content), flask_answer.get_json()
    assert django_body == flask_body
    names = {"Content-Type", "Retry-After", "X-Feature-Limit", "X-Feature-Remaining"}
    for name in names:
        assert name in django_answer.headers, name
        if name != "Retry-After":  # seconds from now, a moment apart
            assert django_answer[name] == flask_answer.headers[name]


def test_denials_are_signalled_through_blinker_with_the_gates_as_sender(client):
    from feature_gates.django import gates
    from feature_gates.signals import access_denied
    from feature_gates.signals import limit_exceeded

    seen = []

    def receiver(sender, **data):
        seen.append((sender, data["feature"], data["denial"].status))

    with access_denied.connected_to(receiver, sender=gates):
        with limit_exceeded.connected_to(receiver, sender=gates):
            client.get("/trips/pdf", headers=FREE)
            client.get("/messages/bulk/4", headers=FREE)
    assert seen == [
        (gates, "can_export_pdf", 403),
        (gates, "chat_messages_monthly", 429),
        (gates, "chat_messages_monthly", 429),
    ]


def test_gates_reads_checks_tracks_and_resets_outside_a_decorator(feature_gates_django, db):
    from django.test import RequestFactory

    from feature_gates.django import Subject

    gates = feature_gates_django
    request = RequestFactory().get("/", headers=FREE)
    assert gates.current_subject(request) == Subject(7, "free")
    assert gates.has_feature(request, "can_export_pdf") is False
    assert gates.has_tier(request, "free") and not gates.has_tier(request, "pro")
    gates.track_use("chat_messages_monthly", 2, request=request)
    gates.flush()
    assert gates.get_usage("chat_messages_monthly", request).used == 2
    decision = gates.check("chat_messages_monthly", request)
    assert (decision.allowed, decision.remaining) == (True, 1)
    assert gates.entitlements(request)["can_export_pdf"].allowed is False
    assert gates.reset_usage("chat_messages_monthly", request) == 2
    assert usage(db) == 0
    with pytest.raises(ValueError, match="has no subject"):
        gates.get_usage("chat_messages_monthly")


def test_the_gates_never_use_djangos_connection(client, db, django_db_blocker):
    # pytest-django's blocker fails any use of Django's connections in the block.
    with django_db_blocker.block():
        assert client.post("/messages", headers=FREE).status_code == 201
        assert client.post("/messages?fail=400", headers=FREE).status_code == 400
    assert usage(db) == 1


@pytest.mark.parametrize(("fail_mode", "status"), [("open", 201), ("closed", 503)])
def test_the_fail_mode_applies_when_the_database_cannot_be_reached(client, fail_mode, status):
    from django.conf import settings
    from django.test import override_settings

    config = {
        **settings.FEATURE_GATES,
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",  # nothing listens
        "FAIL_MODE": fail_mode,
        "SHUTDOWN_FLUSH_TIMEOUT": 0,
    }
    with override_settings(FEATURE_GATES=config):
        response = client.post("/messages", headers=FREE)
    assert response.status_code == status
    if status == 503:
        assert problem(response)["title"] == "Feature check unavailable"
        assert response["Retry-After"]
