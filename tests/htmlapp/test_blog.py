"""The blog's own tests: the pattern of an HTML app gated by plan."""

from __future__ import annotations

import pytest
from blog import create_app
from blog.db import get_db

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def post(client, title="hello", accept=BROWSER):
    return client.post("/create", data={"title": title, "body": "text"}, headers={"Accept": accept})


def count_posts(app):
    with app.app_context():
        return get_db().execute("SELECT count(*) FROM post").fetchone()[0]


def test_the_factory_needs_no_database_url():
    assert not create_app().testing
    assert create_app({"TESTING": True}).testing


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_anonymous_visitor_is_sent_to_the_login_page(client, method):
    response = client.open("/create", method=method, headers={"Accept": BROWSER})
    assert response.headers["Location"] == "/auth/login"


def test_showing_the_form_uses_nothing(client, auth, feature_gates):
    auth.login()
    for _ in range(5):
        assert client.get("/create").status_code == 200
    assert feature_gates.get_usage(1, "posts_monthly") == 0


def test_the_fourth_post_of_a_free_user_is_refused(app, client, auth, feature_gates):
    auth.login()
    for n in range(3):
        assert post(client, f"post {n}").headers["Location"] == "/"
    refused = post(client, "one too many", accept=BROWSER)
    assert refused.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "You&#39;ve used all 3 posts this month; they renew on" in page
    assert count_posts(app) == 3
    assert feature_gates.get_usage(1, "posts_monthly") == 3


def test_a_form_with_an_error_gives_its_use_back(client, auth, feature_gates):
    auth.login()
    response = post(client, title="")
    assert response.status_code == 400
    assert b"Title is required." in response.data
    assert feature_gates.get_usage(1, "posts_monthly") == 0


def test_an_api_client_is_refused_with_problem_json(client, auth, feature_gates):
    auth.login()
    with feature_gates.override(user_id=1, usage={"posts_monthly": 3}):
        refused = post(client, accept="*/*")
    assert (refused.status_code, refused.mimetype) == (429, "application/problem+json")
    assert refused.get_json()["remaining"] == 0


def test_a_paid_plan_posts_without_limit(app, client, auth):
    auth.login("paid")
    for n in range(5):
        assert post(client, f"post {n}").status_code == 302
    assert count_posts(app) == 5
