"""Every endpoint of Sentinel on every plan, the limits, refunds and ownership."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from examples.sentinel.state import gates
from examples.sentinel.state import itinerary_manager
from feature_gates import UnknownFeature

PLANS = ("free", "pro", "enterprise")
TRIP = {
    "title": "Kenya",
    "waypoints": [
        {"name": "Nairobi", "country": "KE", "lat": -1.29, "lon": 36.82},
        {"name": "Cairo", "country": "EG"},
    ],
}


def usage(app, user, feature: str) -> int:
    """What ``user`` has used of ``feature``, as their plan counts it (per day, from
    their subscription, in their team's pool...); a user's calendar month in UTC for
    a name no plan lists (a tier's)."""
    with app.app_context():
        try:
            return gates.get_usage(feature, subject=user.subject()).used
        except UnknownFeature:
            return gates.get_usage(user.id, feature)


@pytest.fixture
def world(make_caller):
    """One caller per plan, each with a thread and an itinerary of their own."""
    callers = {}
    for plan in PLANS:
        caller = make_caller(plan)
        caller.thread = caller.post("/threads", json={"title": "Trip"}).get_json()["id"]
        caller.itinerary = caller.post("/itineraries", json={"data": TRIP}).get_json()["id"]
        callers[plan] = caller
    return callers


THREE = {**TRIP, "waypoints": [*TRIP["waypoints"], {"name": "Lamu", "country": "KE"}]}

# (method, path, body, expected status on free, pro, enterprise)
ENDPOINTS = [
    ("post", "/threads/{t}/messages", {"messages": [{"content": "hi"}]}, (201, 201, 201)),
    ("get", "/threads/{t}/export.pdf", None, (403, 200, 200)),
    ("post", "/itineraries", {"data": TRIP}, (201, 201, 201)),
    ("patch", "/itineraries/{i}", {"data": THREE, "alerts_config": {"sms": 1}}, (200, 200, 200)),
    ("post", "/itineraries/{i}/destinations", {"waypoints": [{"name": "Lamu"}]}, (201, 201, 201)),
    ("get", "/itineraries/{i}/export.pdf", None, (403, 200, 200)),
    ("post", "/itineraries/{i}/route-analysis", None, (200, 200, 200)),
    ("post", "/itineraries/{i}/briefing", None, (403, 200, 200)),
    ("get", "/briefings/monthly", None, (403, 200, 200)),
    ("post", "/reports", {"kind": "destinations_by_country"}, (403, 200, 200)),
    ("get", "/itineraries/{i}/safe-zones", None, (200, 200, 200)),
    ("get", "/itineraries/{i}/alerts.csv", None, (403, 200, 200)),
    ("post", "/team/invites", {"email": "kim@example.com"}, (403, 201, 201)),
    ("post", "/tokens", {"name": "ci"}, (429, 201, 201)),
    ("get", "/intel", None, (403, 200, 200)),
    ("post", "/searches", {"name": "Kenya", "query": "country:KE"}, (201, 201, 201)),
    ("post", "/itineraries/{i}/leg-analysis", None, (200, 200, 200)),
]
FEATURES = [
    "chat_messages_monthly", "can_export_pdf", "itinerary_destinations", "itinerary_destinations",
    "itinerary_destinations", "can_export_pdf", "route_analysis", "briefing_package",
    "monthly_briefing", "custom_reports", "safe_zones", "alerts_export", "team_invite",
    "api_access_tokens", "analyst_intelligence", "saved_searches", "route_legs",
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "expected", "feature"),
    [(*e, f) for e, f in zip(ENDPOINTS, FEATURES, strict=True)],
    ids=[f"{e[0]} {e[1]}" for e in ENDPOINTS],
)
def test_every_endpoint_on_every_plan(world, sentinel_app, method, path, body, expected, feature):
    for plan, status in zip(PLANS, expected, strict=True):
        caller = world[plan]
        before = usage(sentinel_app, caller.user, feature)
        url = path.format(t=caller.thread, i=caller.itinerary)
        response = getattr(caller, method)(url, json=body)
        assert response.status_code == status, (plan, response.get_json())
        after = usage(sentinel_app, caller.user, feature)
        if status < 400:
            assert after > before, f"{feature} on {plan} was not counted"
        else:
            assert response.mimetype == "application/problem+json"
            assert response.get_json()["feature"] == feature
            assert after == before, f"a denied {feature} on {plan} was counted"


def test_the_gates_cover_all_fourteen_features(sentinel_app):
    from feature_gates.reports import gated_routes

    assert {route.feature for route in gated_routes(sentinel_app)} == set(FEATURES)
    assert len(set(FEATURES)) == 14


def test_pdf_exports_are_pdf_documents(world):
    pro = world["pro"]
    exports = {f"/threads/{pro.thread}/export.pdf": "Trip",
               f"/itineraries/{pro.itinerary}/export.pdf": "1. Nairobi"}  # fmt: skip
    for path, words in exports.items():
        response = pro.get(path)
        assert response.mimetype == "application/pdf"
        assert response.data.startswith(b"%PDF-") and response.data.rstrip().endswith(b"%%EOF")
        assert words in PdfReader(io.BytesIO(response.data)).pages[0].extract_text()


def test_alerts_csv_marks_stops_at_or_above_the_threshold(world):
    caller = world["pro"]
    caller.patch(f"/itineraries/{caller.itinerary}", json={"alerts_config": {"min_level": 3}})
    lines = caller.get(f"/itineraries/{caller.itinerary}/alerts.csv").get_data(as_text=True)
    rows = [line.split(",") for line in lines.strip().split("\r\n")]
    assert rows[0][:5] == ["stop", "country", "advisory_level", "advice", "alert"]
    assert {r[0]: r[4] for r in rows[1:]} == {"Nairobi": "no", "Cairo": "yes"}


def test_route_analysis_measures_the_legs(world):
    caller = world["free"]
    analysis = caller.post(f"/itineraries/{caller.itinerary}/route-analysis").get_json()
    (leg,) = analysis["legs"]
    assert (leg["from"], leg["to"], leg["risk_level"]) == ("Nairobi", "Cairo", 3)
    assert 3400 < leg["distance_km"] < 3600  # Nairobi to Cairo is about 3,500 km


def test_a_leg_analysis_holds_a_leg_per_stop_and_is_charged_the_legs_it_computed(
    world, sentinel_app
):
    caller = world["free"]  # 20 legs a month
    path = f"/itineraries/{caller.itinerary}/destinations"
    stops = {"waypoints": [{"name": "Nowhere"}, {"name": "Mombasa", "country": "KE"}]}
    assert caller.post(path, json=stops).status_code == 201
    analysis = caller.post(f"/itineraries/{caller.itinerary}/leg-analysis").get_json()
    # 3 legs held; the two that touch the stop with no position have no distance.
    assert (len(analysis["legs"]), analysis["legs_charged"]) == (3, 1)
    assert usage(sentinel_app, caller.user, "route_legs") == 1


def test_a_top_up_adds_legs_once_per_idempotency_key_and_shows_on_the_dashboard(world):
    caller = world["free"]
    key = {"Idempotency-Key": "order-77"}
    first = caller.post("/billing/top-up", json={"legs": 30}, headers=key)
    again = caller.post("/billing/top-up", json={"legs": 30}, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["available"] == again.get_json()["available"] == 50
    credits = caller.get("/me/usage").get_json()["credits"]
    assert (credits["allowance"], credits["granted"], credits["available"]) == (20, 30, 50)
    assert caller.post("/billing/top-up", json={"legs": 0}).status_code == 400


# -- limits ---------------------------------------------------------------------------


def test_free_plan_gets_exactly_fifty_messages_a_month(world, sentinel_app):
    caller = world["free"]
    path = f"/threads/{caller.thread}/messages"
    batch = {"messages": [{"content": f"m{n}"} for n in range(25)]}
    assert caller.post(path, json=batch).status_code == 201
    response = caller.post(path, json=batch)
    assert response.status_code == 201
    assert response.headers["X-Feature-Remaining"] == "0"
    denied = caller.post(path, json={"messages": [{"content": "one more"}]})
    assert denied.status_code == 429
    body = denied.get_json()
    assert (body["limit"], body["used"], body["remaining"]) == (50, 50, 0)
    assert int(denied.headers["Retry-After"]) > 0
    assert usage(sentinel_app, caller.user, "chat_messages_monthly") == 50
    thread = caller.get(f"/threads/{caller.thread}").get_json()["thread"]
    assert thread["messages"] == 50


def test_enterprise_is_unlimited(world):
    caller = world["enterprise"]
    path = f"/threads/{caller.thread}/messages"
    for _ in range(2):
        batch = {"messages": [{"content": "x"}] * 50}
        assert caller.post(path, json=batch).status_code == 201


def test_metered_route_analysis_stops_at_three_on_free(world):
    caller = world["free"]
    path = f"/itineraries/{caller.itinerary}/route-analysis"
    assert [caller.post(path).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_destinations_stock_limit_counts_what_the_itinerary_holds(world, sentinel_app):
    caller = world["free"]  # 5 destinations per itinerary; this one has 2
    path = f"/itineraries/{caller.itinerary}/destinations"
    three = {"waypoints": [{"name": "A"}, {"name": "B"}, {"name": "C"}]}
    assert caller.post(path, json=three).status_code == 201
    denied = caller.post(path, json={"waypoints": [{"name": "D"}]})
    assert denied.status_code == 429
    assert denied.get_json()["limit"] == 5
    assert caller.get(f"/itineraries/{caller.itinerary}").get_json()["destinations_count"] == 5
    # Tracked by the number added: 2 at creation, then 3.
    assert usage(sentinel_app, caller.user, "itinerary_destinations") == 5
    six = {"data": {"waypoints": [{"name": str(n)} for n in range(6)]}}
    assert caller.post("/itineraries", json=six).status_code == 429
    patch = caller.patch(f"/itineraries/{caller.itinerary}", json=six)
    assert patch.status_code == 429
    fewer = caller.patch(f"/itineraries/{caller.itinerary}", json={"data": {"waypoints": []}})
    assert fewer.status_code == 200 and fewer.get_json()["destinations_count"] == 0


def test_an_itinerary_over_the_limit_can_be_edited_and_trimmed(world, sentinel_app):
    # Eight destinations kept from a larger plan; free allows 5.
    caller = world["free"]
    eight = [{"name": f"stop {n}"} for n in range(8)]
    with sentinel_app.app_context():
        itinerary_manager.update_itinerary(caller.itinerary, caller.user.id, {"waypoints": eight})
    path = f"/itineraries/{caller.itinerary}"
    renamed = caller.patch(path, json={"data": {"title": "Renamed", "waypoints": eight}})
    assert renamed.status_code == 200, renamed.get_json()
    trimmed = caller.patch(path, json={"data": {"waypoints": eight[:7]}})
    assert trimmed.status_code == 200 and trimmed.get_json()["destinations_count"] == 7
    grown = caller.patch(path, json={"data": {"waypoints": eight}})
    assert grown.status_code == 429
    assert grown.get_json()["title"] == "Feature limit reached"
    assert (grown.get_json()["limit"], grown.get_json()["used"]) == (5, 7)


def test_saved_searches_and_tokens_are_limited_by_what_is_held(world):
    caller = world["free"]
    made = [caller.post("/searches", json={"name": f"s{n}", "query": "q"}) for n in range(4)]
    assert [r.status_code for r in made] == [201, 201, 201, 429]
    assert caller.delete(f"/searches/{made[0].get_json()['id']}").status_code == 204
    assert caller.post("/searches", json={"name": "again", "query": "q"}).status_code == 201

    pro = world["pro"]  # 5 tokens; the test token is one
    statuses = [pro.post("/tokens", json={"name": f"t{n}"}).status_code for n in range(5)]
    assert statuses == [201, 201, 201, 201, 429]
    token = pro.post("/tokens", json={"name": "x"})
    assert token.status_code == 429
    listed = pro.get("/tokens").get_json()["tokens"]
    assert len(listed) == 5 and all("token" not in t for t in listed)


def test_a_new_token_works_and_is_shown_once(world, sentinel_app):
    made = world["pro"].post("/tokens", json={"name": "laptop"}).get_json()
    client = sentinel_app.test_client()
    me = client.get("/me", headers={"Authorization": f"Bearer {made['token']}"})
    assert me.status_code == 200 and me.get_json()["user"]["id"] == world["pro"].user.id


def test_failed_calls_give_their_uses_back(world, sentinel_app, make_caller):
    caller = world["pro"]
    stranger = make_caller("pro")
    stranger_thread = stranger.post("/threads", json={"title": "mine"}).get_json()["id"]
    denied = caller.post(
        f"/threads/{stranger_thread}/messages", json={"messages": [{"content": "x"}]}
    )
    assert denied.status_code == 404
    assert caller.post("/team/invites", json={"email": "a@example.com"}).status_code == 201
    assert caller.post("/team/invites", json={"email": "a@example.com"}).status_code == 409
    assert usage(sentinel_app, caller.user, "chat_messages_monthly") == 0
    assert usage(sentinel_app, caller.user, "team_invite") == 1


def test_a_full_thread_refuses_and_refunds(make_caller, feature_gates_database_url):
    from examples.sentinel import create_app

    app = create_app(
        {
            "FEATURE_GATES_DATABASE_URL": feature_gates_database_url,
            "FEATURE_GATES_TRACKING": "sync",
            "SENTINEL_DEMO_DATA": False,
            "SENTINEL_THREAD_MESSAGE_LIMIT": 3,
        }
    )
    try:
        accounts = app.extensions["sentinel"].accounts
        user = accounts.create_user("full@example.com", "Full", "pro")
        accounts.add_token(user.id, "t", "full-token")
        client = app.test_client()
        headers = {"Authorization": "Bearer full-token"}
        thread = client.post("/threads", json={"title": "t"}, headers=headers).get_json()["id"]
        path = f"/threads/{thread}/messages"
        two = {"messages": [{"content": "a"}, {"content": "b"}]}
        assert client.post(path, json=two, headers=headers).status_code == 201
        full = client.post(path, json=two, headers=headers)
        assert full.status_code == 409
        assert full.get_json()["limit"] == 3
        assert usage(app, user, "chat_messages_monthly") == 2
    finally:
        gates.close(app)
        app.extensions["sentinel"].close()


# -- ownership ------------------------------------------------------------------------


def test_nobody_reads_or_changes_another_users_things(world, sentinel_app):
    owner, other = world["pro"], world["enterprise"]
    t, i = owner.thread, owner.itinerary
    attempts = [
        ("get", f"/threads/{t}", None),
        ("post", f"/threads/{t}/messages", {"messages": [{"content": "x"}]}),
        ("get", f"/threads/{t}/export.pdf", None),
        ("get", f"/itineraries/{i}", None),
        ("patch", f"/itineraries/{i}", {"alerts_config": {"x": 1}}),
        ("patch", f"/itineraries/{i}", {"data": {"waypoints": []}}),
        ("post", f"/itineraries/{i}/destinations", {"waypoints": [{"name": "X"}]}),
        ("get", f"/itineraries/{i}/export.pdf", None),
        ("post", f"/itineraries/{i}/route-analysis", None),
        ("post", f"/itineraries/{i}/briefing", None),
        ("get", f"/itineraries/{i}/safe-zones", None),
        ("get", f"/itineraries/{i}/alerts.csv", None),
    ]
    for method, path, body in attempts:
        response = getattr(other, method)(path, json=body)
        assert response.status_code == 404, (method, path)
        assert response.mimetype == "application/problem+json"
        # Same answer as for an id that does not exist at all: nothing leaks.
        missing = getattr(other, method)(
            path.replace(f"/{t}", "/999999").replace(f"/{i}", "/999999"), json=body
        )
        assert missing.status_code == 404
        assert response.get_json()["title"] == missing.get_json()["title"]
    token = owner.get("/tokens").get_json()["tokens"][0]["id"]
    search = owner.post("/searches", json={"name": "n", "query": "q"}).get_json()["id"]
    assert other.delete(f"/tokens/{token}").status_code == 404
    assert other.delete(f"/searches/{search}").status_code == 404
    assert owner.get(f"/itineraries/{i}").get_json()["alerts_config"] == {}
    assert owner.get(f"/itineraries/{i}").get_json()["destinations_count"] == 2
    assert owner.get(f"/threads/{t}").get_json()["messages"] == []
    assert len(owner.get("/searches").get_json()["searches"]) == 1
    assert other.get("/threads").get_json()["threads"][0]["id"] != t


def test_healthz_needs_no_token(sentinel_app):
    response = sentinel_app.test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"] == "up"
    # What the gates see, shown for operators (sync tracking: nothing waits).
    assert body["gates_database"] == "up" and body["usage_pending"] == 0
