"""The helpers applications test with: the plugin's fixtures and marker, used by a
sample application's own test suite, and the parallel-limit harness."""

from __future__ import annotations

import http.client
from collections import Counter
from urllib.parse import urlsplit

from gates_sample import headers

from feature_gates.testing import ParallelResult
from feature_gates.testing import fire_concurrently
from feature_gates.testing import serve

SAMPLE_CONFTEST = """
import pytest
from flask import Flask, request

from feature_gates import FeatureGates, Subject, feature_limit, feature_required

gates = FeatureGates()


@gates.subject_loader
def load():
    user = request.headers.get("X-User")
    return None if user is None else Subject(int(user), request.headers.get("X-Plan", "free"))


@pytest.fixture
def app(feature_gates_database_url):
    app = Flask("sample")
    app.config.update(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_POOL_MAX_SIZE=8,
        FEATURE_GATES_DB_TIMEOUT=30,
        FEATURE_GATES_PLANS={
            "free": {"export": False, "messages": 2},
            "pro": {"export": True, "messages": 10},
        },
    )

    @app.get("/export")
    @feature_required("export")
    def export():
        return "exported"

    @app.post("/messages")
    @feature_limit("messages")
    def post_message():
        return "sent", 201

    gates.init_app(app)
    yield app
    app.extensions["feature_gates"].close()
"""

SAMPLE_TESTS = """
import pytest


def test_anonymous(client):
    assert client.get("/export").status_code == 401


@pytest.mark.feature_gates(plan="pro", user_id=1)
def test_marker_pins_the_plan(client):
    assert client.get("/export").status_code == 200


@pytest.mark.feature_gates(plan="free", user_id=2, usage={"messages": 2})
def test_marker_sets_usage(client, feature_gates):
    assert client.post("/messages").status_code == 429
    assert feature_gates.get_usage(2, "messages") == 2


def test_override_and_sync_tracking(client, feature_gates):
    with feature_gates.override(plan="pro", user_id=3):
        assert client.get("/export").status_code == 200
    assert feature_gates.get_usage(3, "export") == 1


@pytest.mark.feature_gates(plan="pro", user_id=4)
def test_parallel_limit(feature_gates_parallel, feature_gates):
    result = feature_gates_parallel("POST", "/messages", n=16)
    assert (result.allowed, result.denied) == (10, 6)
    assert feature_gates.get_usage(4, "messages") == 10
"""


def test_a_sample_apps_suite_uses_the_plugin(pytester, monkeypatch, feature_gates_server_url):
    # The sample suite runs in its own process, on this session's server.
    monkeypatch.setenv("FEATURE_GATES_TEST_DATABASE_URL", feature_gates_server_url)
    pytester.makeconftest(SAMPLE_CONFTEST)
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    # A Flask project's suite: without pytest-django, whose client fixture would
    # take the place of pytest-flask's.
    result = pytester.runpytest_subprocess(
        "-W", "error", "-p", "no:cacheprovider", "-p", "no:django"
    )
    result.assert_outcomes(passed=5)


def test_the_marker_is_registered(pytester):
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.feature_gates(plan=None, user_id=None, usage=None)*"]
    )


def test_fire_concurrently_counts_by_status(make_app):
    app = make_app(FEATURE_GATES_POOL_MAX_SIZE=8, FEATURE_GATES_DB_TIMEOUT=30)
    result = fire_concurrently(app, "POST", "/messages", n=8, headers=headers(7, "free"))
    assert result == ParallelResult(Counter({201: 3, 429: 5}))
    assert (result.allowed, result.denied, result.failed) == (3, 5, 0)


def test_fire_concurrently_at_a_running_server_with_json(make_app):
    app = make_app(FEATURE_GATES_POOL_MAX_SIZE=8, FEATURE_GATES_DB_TIMEOUT=30)
    with serve(app) as url:
        result = fire_concurrently(
            url,
            "POST",
            "/itineraries/2/destinations",
            n=4,
            json={"waypoints": [1, 2]},
            headers=headers(7, "free"),
        )
        # a stock limit reads the stock, which this sample never changes
        assert result.allowed == 4
        split = urlsplit(url)
        conn = http.client.HTTPConnection(split.hostname, split.port)
        try:
            conn.request("GET", "/pdf")
            assert conn.getresponse().status == 401
        finally:
            conn.close()
