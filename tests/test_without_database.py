"""An application factory called without a database (a test of the factory, a
command run before the URL is known) starts: feature and tier gates decide from
the plans, nothing is recorded, and what needs the database says which key to set."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from flask import request

from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier

PLANS = {
    "free": {"can_export_pdf": False, "posts_monthly": 3},
    "pro": {"can_export_pdf": True, "posts_monthly": None},
}


def create_app(**config):
    app = Flask(__name__)
    app.config.update(TESTING=True, FEATURE_GATES_PLANS=PLANS, **config)
    gates = FeatureGates()

    @gates.subject_loader
    def load():
        return Subject(7, request.headers.get("X-Plan", "free"))

    @app.post("/pdf")
    @feature_required("can_export_pdf")
    def pdf():
        return {"pdf": True}

    @app.get("/intel")
    @feature_tier("pro", feature="intel")
    def intel():
        return {"intel": True}

    @app.post("/posts")
    @feature_limit("posts_monthly")
    def post():
        return {"posted": True}, 201

    gates.init_app(app)
    return app


def test_the_factory_starts_without_a_database_url_and_says_so_at_the_first_request(caplog):
    with caplog.at_level(logging.WARNING, logger="feature_gates"):
        app = create_app()
        assert app.extensions["feature_gates"].settings.tracking == "off"
        assert caplog.text == ""  # the application's commands need no warning
        client = app.test_client()
        client.post("/pdf")
        client.post("/pdf")
    (record,) = caplog.records
    assert record.getMessage().startswith("FEATURE_GATES_DATABASE_URL is not set")


def test_tracking_off_on_purpose_needs_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="feature_gates"):
        create_app(FEATURE_GATES_TRACKING="off").test_client().post("/pdf")
    assert caplog.text == ""


def test_feature_and_tier_gates_decide_from_the_plans():
    client = create_app().test_client()
    assert client.post("/pdf", headers={"X-Plan": "free"}).status_code == 403
    assert client.post("/pdf", headers={"X-Plan": "pro"}).status_code == 200
    assert client.get("/intel", headers={"X-Plan": "free"}).status_code == 403
    assert client.get("/intel", headers={"X-Plan": "pro"}).status_code == 200
    # An unlimited plan needs no count either.
    assert client.post("/posts", headers={"X-Plan": "pro"}).status_code == 201


def test_a_metered_limit_names_the_missing_key_when_it_runs():
    app = create_app()
    with pytest.raises(ConfigError, match="'posts_monthly' needs FEATURE_GATES_DATABASE_URL"):
        app.test_client().post("/posts", headers={"X-Plan": "free"})


def test_a_usage_read_names_the_missing_key():
    gates = create_app().extensions["feature_gates"]
    with pytest.raises(ConfigError, match="FEATURE_GATES_DATABASE_URL is not set"):
        gates.get_usage(7, "posts_monthly")
    gates.track(7, "posts_monthly")  # recorded nowhere, and no error
    assert gates.tracking_stats().pending == 0
