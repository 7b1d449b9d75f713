"""What a browser gets from Sentinel, and what API clients keep getting.

A browser (a client that prefers HTML) is sent to the sign-in page and back,
sees errors and denials as pages, opens the downloads with its cookie, and sends
a CSRF token with every form; curl, requests and JSON clients get problem+json.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import quote
from urllib.parse import urlsplit

import psycopg
import pytest

from examples.sentinel.auth import safe_next
from feature_gates import StorageUnavailable

#: What Chromium sends when it opens a page.
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


class Browser:
    """The test client as a browser: a browser's Accept, a cookie jar, the pages' forms."""

    def __init__(self, app) -> None:
        self.client = app.test_client()

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers={"Accept": BROWSER}, **kwargs)

    def post(self, path: str, data: dict[str, str], **kwargs):
        return self.client.post(path, data=data, headers={"Accept": BROWSER}, **kwargs)

    def form(self, page, **fields: str) -> dict[str, str]:
        """The hidden fields of the page's last form, with ``fields`` filled in."""
        html = page.get_data(as_text=True)
        hidden = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html)
        return {**dict(hidden), **fields}

    def sign_in(self, token: str, next: str | None = None):
        page = self.get("/login" + (f"?next={quote(next, safe='')}" if next is not None else ""))
        return self.post("/login", self.form(page, token=token))


def token_of(caller) -> str:
    return caller.headers["Authorization"].split()[1]


@pytest.fixture
def browser(sentinel_app):
    return Browser(sentinel_app)


@pytest.mark.parametrize("page", ["/me/usage", "/admin/usage"])
def test_a_signed_out_browser_signs_in_and_comes_back(make_caller, browser, page):
    admin = make_caller("enterprise", admin=True)
    sent = browser.get(page + "?format=html")
    assert sent.status_code == 302
    location = urlsplit(sent.headers["Location"])
    assert (location.path, parse_qs(location.query)) == (
        "/login",
        {"next": [page + "?format=html"]},
    )
    assert "Accept" in sent.headers["Vary"]
    login = browser.get(sent.headers["Location"])
    assert browser.form(login)["next"] == page + "?format=html"
    signed_in = browser.post("/login", browser.form(login, token=token_of(admin)))
    assert (signed_in.status_code, signed_in.headers["Location"]) == (303, page + "?format=html")
    assert browser.get(signed_in.headers["Location"]).status_code == 200


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
     "evil.example", "/me/usage\r\nSet-Cookie: x=1", ""],
)  # fmt: skip
def test_next_takes_only_a_path_on_this_site(make_caller, browser, target):
    user = make_caller("pro")
    signed_in = browser.sign_in(token_of(user), next=target)
    assert signed_in.headers["Location"] == "/me/usage"
    assert safe_next(target) is None
    assert safe_next("/itineraries/1/export.pdf?x=1") == "/itineraries/1/export.pdf?x=1"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
@pytest.mark.parametrize("page", ["/me/usage", "/admin/usage"])
def test_api_clients_keep_their_401_problem(sentinel_app, accept, page):
    headers = {"Accept": accept} if accept else {}
    refused = sentinel_app.test_client().get(page, headers=headers)
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="sentinel"'
    assert "Accept" in refused.headers["Vary"]


def test_a_wrong_bearer_token_is_an_api_client_whatever_it_accepts(sentinel_app):
    refused = sentinel_app.test_client().get(
        "/me/usage", headers={"Accept": BROWSER, "Authorization": "Bearer nope"}
    )
    assert refused.status_code == 401  # no redirect: signing in would not fix its token
    assert refused.mimetype == "text/html"


def test_the_usage_pages_are_private_and_vary_on_accept(make_caller, browser):
    admin = make_caller("enterprise", admin=True)
    browser.sign_in(token_of(admin))
    for page in ("/admin/usage", "/me/usage"):
        html = browser.get(page)
        json = admin.get(page)
        assert (html.mimetype, json.mimetype) == ("text/html", "application/json")
        for response in (html, json):
            assert response.headers["Cache-Control"] == "private, no-store"
            assert "Accept" in response.headers["Vary"]


def test_a_free_user_gets_a_page_saying_the_dashboard_is_for_administrators(make_caller, browser):
    free = make_caller("free")
    browser.sign_in(token_of(free))
    page = browser.get("/admin/usage")
    assert (page.status_code, page.mimetype) == (403, "text/html")
    assert "This page is for administrators." in page.get_data(as_text=True)
    assert free.get("/admin/usage").mimetype == "application/problem+json"


def test_forms_without_their_csrf_token_are_refused(make_caller, browser):
    user = make_caller("pro")
    token = token_of(user)
    forged = browser.post("/login", {"token": token})
    assert (forged.status_code, forged.mimetype) == (403, "text/html")
    assert "security token" in forged.get_data(as_text=True)
    browser.get("/login")  # the browser now holds a token cookie, but the form does not
    assert browser.post("/login", {"token": token, "csrf_token": "x" * 43}).status_code == 403
    assert browser.sign_in(token).status_code == 303

    page = browser.get("/me/usage")
    assert browser.post("/logout", {}).status_code == 403
    assert browser.get("/me/usage").status_code == 200  # still signed in
    assert browser.post("/logout", browser.form(page)).status_code == 303
    assert browser.get("/me/usage").status_code == 302  # signed out


def test_the_cookie_opens_the_downloads_and_never_a_change(make_caller, browser, sentinel_app):
    pro = make_caller("pro")
    thread = pro.post("/threads", json={"title": "Trip"}).get_json()["id"]
    trip = {"data": {"title": "Kenya", "waypoints": [{"name": "Nairobi", "country": "KE"}]}}
    itinerary = pro.post("/itineraries", json=trip).get_json()["id"]
    browser.sign_in(token_of(pro))
    page = browser.get("/me/usage").get_data(as_text=True)
    links = re.findall(r'href="(/(?:threads|itineraries)/[^"]+)"', page)
    assert links == [
        f"/threads/{thread}/export.pdf",
        f"/itineraries/{itinerary}/export.pdf",
        f"/itineraries/{itinerary}/alerts.csv",
    ]
    for link in links:
        download = browser.get(link)
        assert download.status_code == 200
        assert download.headers["Content-Disposition"].startswith("attachment")
    assert browser.get(links[0]).data.startswith(b"%PDF-")
    # The cookie counts on the pages and downloads only, and never on a request
    # that changes state: another site could make the browser send it.
    assert browser.get("/threads").status_code == 401
    message = {"messages": [{"content": "hi"}]}
    posted = browser.client.post(f"/threads/{thread}/messages", json=message)
    assert posted.status_code == 401


def test_a_free_user_sees_why_an_export_is_refused(make_caller, browser):
    free = make_caller("free")
    thread = free.post("/threads", json={"title": "Trip"}).get_json()["id"]
    browser.sign_in(token_of(free))
    denied = browser.get(f"/threads/{thread}/export.pdf")
    assert (denied.status_code, denied.mimetype) == (403, "text/html")
    html = denied.get_data(as_text=True)
    assert "PDF export is not in your plan" in html
    assert "the Pro and Enterprise plans include it" in html
    assert "can_export_pdf" not in html
    api = free.get(f"/threads/{thread}/export.pdf")
    assert api.mimetype == "application/problem+json"
    assert api.get_json()["feature"] == "can_export_pdf"


def test_limit_and_tier_denials_as_pages(make_caller):
    free = make_caller("free")
    itinerary = free.post("/itineraries", json={"data": {"waypoints": []}}).get_json()["id"]
    for _ in range(3):
        free.post(f"/itineraries/{itinerary}/route-analysis")
    fourth = free.post(f"/itineraries/{itinerary}/route-analysis", headers={"Accept": BROWSER})
    assert (fourth.status_code, fourth.mimetype) == (429, "text/html")
    assert "Retry-After" in fourth.headers
    html = fourth.get_data(as_text=True)
    assert "Route analyses: limit reached" in html
    assert "Your Free plan allows 3 a day and 3 are used; more are available from " in html
    intel = free.get("/intel", headers={"Accept": BROWSER}).get_data(as_text=True)
    assert "Analyst intelligence comes with the Pro plan and above; you are on Free." in intel


def test_not_found_and_server_errors_as_pages(sentinel_app, browser, caplog):
    def broken() -> str:
        raise RuntimeError("a bug")

    def database_gone() -> str:
        raise psycopg.OperationalError("connection refused")

    def usage_unreadable() -> str:
        raise StorageUnavailable("a usage read: the database is unreachable")

    sentinel_app.add_url_rule("/broken", view_func=broken)
    sentinel_app.add_url_rule("/database-gone", view_func=database_gone)
    sentinel_app.add_url_rule("/usage-unreadable", view_func=usage_unreadable)
    missing = browser.get("/nowhere")
    assert (missing.status_code, missing.mimetype) == (404, "text/html")
    assert "Page not found" in missing.get_data(as_text=True)
    assert sentinel_app.test_client().get("/nowhere").mimetype == "application/problem+json"

    failed = browser.get("/broken")
    assert (failed.status_code, failed.mimetype) == (500, "text/html")
    assert "Something went wrong" in failed.get_data(as_text=True)
    assert "a bug" not in failed.get_data(as_text=True)
    assert "unhandled error on GET /broken" in caplog.text
    away = browser.get("/database-gone")
    assert (away.status_code, away.headers["Retry-After"]) == (503, "1")
    assert "the database does not answer" in away.get_data(as_text=True).lower()
    unread = sentinel_app.test_client().get("/usage-unreadable")
    assert (unread.status_code, unread.mimetype) == (503, "application/problem+json")
    assert sentinel_app.test_client().get("/broken").mimetype == "application/problem+json"
