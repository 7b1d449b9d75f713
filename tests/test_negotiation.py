"""feature_gates.prefers_html(): a browser gets a page, curl and API clients get JSON."""

from __future__ import annotations

import pytest
from flask import Flask
from flask import redirect
from flask import request

import feature_gates
from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_required
from feature_gates import prefers_html

#: What Chromium sends when it opens a page.
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("text/html, */*", True),
        ("text/*", True),
        ("*/*", False),  # curl, requests
        ("application/json", False),
        ("application/json, text/plain, */*", False),  # axios
        ("text/html, application/json", False),  # a tie goes to JSON
        ("text/html;q=0.5, application/json", False),
        (None, False),
    ],
)
def test_only_a_client_preferring_html_over_json_is_a_browser(accept, html):
    app = Flask(__name__)
    with app.test_request_context(headers={"Accept": accept} if accept else {}):
        assert prefers_html() is html


def test_a_response_chosen_by_accept_varies_on_accept_once():
    app = Flask(__name__)

    @app.get("/page")
    def page():
        prefers_html()
        return "page" if prefers_html() else {"json": True}

    @app.get("/plain")
    def plain():
        return "plain"

    client = app.test_client()
    assert client.get("/page").headers["Vary"] == "Accept"
    assert client.get("/page", headers={"Accept": BROWSER}).headers["Vary"] == "Accept"
    assert "Vary" not in client.get("/plain").headers


def test_the_docs_on_denied_sends_browsers_a_page_and_api_clients_problem_json(
    feature_gates_database_url,
):
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url,
        FEATURE_GATES_PLANS={"free": {"can_export_pdf": False}},
    )
    gates = FeatureGates(app)
    gates.subject_loader(lambda: Subject(7, "free"))

    @gates.on_denied
    def upgrade_page(denial):
        if feature_gates.prefers_html():
            return redirect("/pricing")
        return None

    @app.post("/pdf")
    @feature_required("can_export_pdf")
    def pdf():
        return {"pdf": request.path}

    client = app.test_client()
    browser = client.post("/pdf", headers={"Accept": BROWSER})
    assert (browser.status_code, browser.headers["Location"]) == (302, "/pricing")
    assert browser.headers["Vary"] == "Accept"
    for accept in ("*/*", "application/json"):
        api = client.post("/pdf", headers={"Accept": accept})
        assert (api.status_code, api.mimetype) == (403, "application/problem+json")
        assert api.headers["Vary"] == "Accept"
    app.extensions["feature_gates"].close()
