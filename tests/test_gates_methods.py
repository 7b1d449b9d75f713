"""``methods=`` on the three decorators: a form view shows its form on GET and saves
on POST, and only the POST is gated and counted."""

from __future__ import annotations

import functools

import pytest
from flask import Flask
from flask import g
from flask import redirect
from flask import request
from flask import session

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier
from feature_gates.reports import gated_routes

PLANS = {
    "free": {"posts_monthly": 3, "can_export_pdf": False},
    "pro": {"posts_monthly": 100, "can_export_pdf": True},
}


def login_required(view):
    """Like flaskr's: an anonymous browser is sent to the login page."""

    @functools.wraps(view)
    def wrapped(**kwargs):
        if session.get("user_id") is None:
            return redirect("/login")
        return view(**kwargs)

    return wrapped


@pytest.fixture
def app(feature_gates_database_url):
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test",
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
    )
    gates = FeatureGates()
    app.extensions["loader_calls"] = []

    @gates.subject_loader
    def load():
        app.extensions["loader_calls"].append(request.method)
        user_id = session.get("user_id")
        return None if user_id is None else Subject(user_id, session["plan"])

    @app.route("/login", methods=["GET", "POST"])
    def login():
        session["user_id"], session["plan"] = int(request.form["id"]), request.form["plan"]
        return redirect("/")

    @app.route("/create", methods=["GET", "POST"])
    @login_required
    @feature_limit("posts_monthly", methods=["POST"])
    def create():
        if request.method == "POST":
            if not request.form.get("title"):
                g.error = "Title is required."
                return "<p>Title is required.</p>", 400
            return redirect("/")
        return "<form method=post></form>"

    @app.route("/draft", methods=["GET", "POST"])
    @feature_limit("posts_monthly", methods=["POST"])
    @login_required
    def draft():
        return "", 201

    @app.route("/report", methods=["GET", "POST"])
    @feature_required("can_export_pdf", methods=["get"])
    def report():
        return {"method": request.method}

    @app.route("/intel", methods=["GET", "PUT"])
    @feature_tier("pro", feature="intel", methods=("put",))
    def intel():
        return {"method": request.method}

    gates.init_app(app)
    yield app
    app.extensions["feature_gates"].close()


def sign_in(client, user_id=7, plan="free"):
    client.post("/login", data={"id": user_id, "plan": plan})


def test_showing_the_form_is_never_gated_nor_counted(app):
    client = app.test_client()
    sign_in(client)
    app.extensions["loader_calls"].clear()
    for _ in range(5):
        assert client.get("/create").status_code == 200
    # Not even the subject was loaded: the GET never reached the gate.
    assert app.extensions["loader_calls"] == []
    assert app.extensions["feature_gates"].get_usage(7, "posts_monthly") == 0


def test_the_fourth_post_of_a_free_user_is_refused(app):
    client = app.test_client()
    sign_in(client)
    for _ in range(3):
        client.get("/create")
        assert client.post("/create", data={"title": "hello"}).status_code == 302
    refused = client.post("/create", data={"title": "one more"})
    assert refused.status_code == 429
    assert refused.get_json()["feature"] == "posts_monthly"
    # The form still shows: only POST is gated.
    assert client.get("/create").status_code == 200
    assert app.extensions["feature_gates"].get_usage(7, "posts_monthly") == 3


def test_a_validation_error_answering_400_gives_its_use_back(app):
    client = app.test_client()
    sign_in(client)
    for _ in range(4):
        response = client.post("/create", data={"title": ""})
        assert response.status_code == 400
        assert b"Title is required." in response.data
    assert app.extensions["feature_gates"].get_usage(7, "posts_monthly") == 0
    assert client.post("/create", data={"title": "at last"}).status_code == 302
    assert app.extensions["feature_gates"].get_usage(7, "posts_monthly") == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_anonymous_browser_gets_the_login_redirect_not_a_401(app, method):
    # The gate sits under login_required, so login_required answers first.
    response = app.test_client().open("/create", method=method, headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert app.extensions["loader_calls"] == []


def test_a_gate_above_login_required_answers_an_anonymous_caller_first_with_401(app):
    client = app.test_client()
    response = client.post("/draft", headers={"Accept": "text/html"})
    assert (response.status_code, response.mimetype) == (401, "application/problem+json")
    assert client.get("/draft").headers["Location"] == "/login"  # GET is not gated


def test_methods_are_case_insensitive_and_head_follows_get(app):
    client = app.test_client()
    sign_in(client)
    assert client.get("/report").status_code == 403
    assert client.head("/report").status_code == 403
    assert client.post("/report").get_json() == {"method": "POST"}
    assert client.get("/intel").status_code == 200
    assert client.put("/intel").status_code == 403
    sign_in(client, plan="pro")
    assert client.get("/report").status_code == 200
    assert client.put("/intel").status_code == 200


def test_routes_list_only_the_methods_each_gate_checks(app):
    found = {route.endpoint: route.methods for route in gated_routes(app)}
    assert found == {
        "create": ("POST",),
        "draft": ("POST",),
        "report": ("GET",),
        "intel": ("PUT",),
    }


@pytest.mark.parametrize(
    ("methods", "error", "message"),
    [
        ("POST", TypeError, "methods=['POST']"),
        ([], ValueError, "methods is empty"),
        (["POST", 1], TypeError, "got 1"),
    ],
)
def test_a_wrong_methods_argument_is_refused_where_it_is_written(methods, error, message):
    for decorator in (
        lambda: feature_limit("posts_monthly", methods=methods),
        lambda: feature_required("can_export_pdf", methods=methods),
        lambda: feature_tier("pro", methods=methods),
    ):
        with pytest.raises(error, match=message.replace("[", r"\[")):
            decorator()
