"""/me/usage and the admin dashboard show the figures feature-gates recorded."""

from __future__ import annotations

from datetime import date

import pytest

from examples.sentinel.state import gates


def record(app, user, feature: str, amount: int, period: date | None = None) -> None:
    """``amount`` uses of ``feature`` by ``user``: now, as their plan counts it (per
    day, in the team's pool...); or in the calendar month of ``period``."""
    with app.app_context():
        if period is None:
            gates.track_use(feature, amount, subject=user.subject())
        else:
            gates.track(user.id, feature, amount, period=period)
        gates.flush()


@pytest.fixture
def people(make_caller, sentinel_app):
    free, pro, admin = (
        make_caller("free"),
        make_caller("pro"),
        make_caller("enterprise", admin=True),
    )
    record(sentinel_app, free.user, "chat_messages_monthly", 48)
    record(sentinel_app, free.user, "route_analysis", 1)
    record(sentinel_app, pro.user, "chat_messages_monthly", 100)
    record(sentinel_app, pro.user, "custom_reports", 9)
    record(sentinel_app, pro.user, "chat_messages_monthly", 70, date(2020, 1, 1))
    return free, pro, admin


def test_my_usage_says_how_much_is_left(people):
    free, _, _ = people
    body = free.get("/me/usage").get_json()
    rows = {row["feature"]: row for row in body["features"]}
    assert len(rows) == 14
    assert rows["chat_messages_monthly"]["summary"] == "2 of 50 left this month"
    assert rows["route_analysis"]["summary"] == "2 of 3 left today"
    assert (rows["route_analysis"]["scope"], rows["route_analysis"]["period"]) == ("user", "day")
    assert rows["can_export_pdf"]["summary"] == "not in your plan"
    assert rows["analyst_intelligence"]["summary"] == "needs the pro plan"
    assert rows["api_access_tokens"]["summary"] == "1 held, 0 of 1 left"
    html = free.get("/me/usage", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert '<span class="near">2 of 50 left this month</span>' in html
    assert 'aria-label="48 of 50"' in html
    assert '<th scope="row">Chat messages</th>' in html
    for hidden in ("chat_messages_monthly", "metered", "stock"):  # keys and gate kinds
        assert hidden not in html


def test_the_dashboard_shows_this_months_figures(people):
    free, pro, admin = people
    body = admin.get("/admin/usage").get_json()
    features = {f["feature"]: (f["uses"], f["users"]) for f in body["features"]}
    assert features["chat_messages_monthly"] == (148, 2)
    assert features["custom_reports"] == (9, 1)
    near = [(n["email"], n["feature"], n["used"], n["limit"]) for n in body["near_limits"]]
    # Users' own counts only: custom reports count in the team's pool.
    assert near[:2] == [
        (free.user.email, "chat_messages_monthly", 48, 50),
        (free.user.email, "route_analysis", 1, 3),
    ]
    assert body["trend"][-1]["uses"] == 158
    assert body["trend"][-1]["active_users"] == 2
    html = admin.get("/admin/usage", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "<svg" in html and "<script" not in html
    assert "Chat messages: 148" in html  # the bar's tooltip: features by their display names
    assert "chat_messages_monthly" not in html
    assert "48 / 50" in html and "1 / 3" in html
    assert ">158<" in html  # uses this month


def test_closest_to_their_limits_lists_monthly_quotas_only(people, sentinel_app):
    free, _, admin = people
    # A stock limit's monthly count (here 5 of 5 destinations added) says nothing
    # about how close the user is: it stays off the list.
    record(sentinel_app, free.user, "itinerary_destinations", 5)
    near = admin.get("/admin/usage").get_json()["near_limits"]
    # (custom_reports counts in a team's pool, not in a user's count.)
    assert {n["feature"] for n in near} == {"chat_messages_monthly", "route_analysis"}
    assert [n["used"] for n in near if n["feature"] == "route_analysis"] == [1]


def test_tracked_usage_shows_up_at_once(people, sentinel_app):
    _, pro, admin = people
    thread = pro.post("/threads", json={"title": "t"}).get_json()["id"]
    pro.post(f"/threads/{thread}/messages", json={"messages": [{"content": "x"}] * 3})
    pro.get("/intel")
    with sentinel_app.app_context():
        gates.flush()
    features = {f["feature"]: f["uses"] for f in admin.get("/admin/usage").get_json()["features"]}
    assert features["chat_messages_monthly"] == 151
    assert features["analyst_intelligence"] == 1


def test_the_dashboard_is_for_admins(people, sentinel_app):
    free, _, _ = people
    assert free.get("/admin/usage").status_code == 403
    assert sentinel_app.test_client().get("/admin/usage").status_code == 401


def test_stock_limits_show_what_is_held_not_this_months_uses(make_caller, sentinel_app):
    free = make_caller("free")  # holds one token: its test token, all the plan allows
    denied = free.post("/tokens", json={"name": "laptop"})
    assert denied.status_code == 429 and "1 are used" in denied.get_json()["detail"]
    # An itinerary of 3 made before this month (not tracked), then 2 added: this
    # month's count says 2, the itinerary holds 5.
    manager = sentinel_app.extensions["sentinel"].itinerary_manager
    waypoints = [{"name": name} for name in ("Nairobi", "Mombasa", "Cairo")]
    old = manager.create_itinerary(free.user.id, {"waypoints": waypoints})
    added = free.post(
        f"/itineraries/{old.id}/destinations", json={"waypoints": [{"name": "A"}, {"name": "B"}]}
    )
    assert added.status_code == 201
    for n in range(2):
        free.post("/searches", json={"name": f"s{n}", "query": "q"})
    first = free.get("/searches").get_json()["searches"][0]["id"]
    assert free.delete(f"/searches/{first}").status_code == 204

    me = free.get("/me").get_json()["features"]
    assert me["api_access_tokens"] == {"allowed": False, "limit": 1, "used": 1, "remaining": 0}
    assert me["itinerary_destinations"] == {
        "allowed": False,
        "limit": 5,
        "used": 5,
        "remaining": 0,
    }
    assert me["saved_searches"] == {"allowed": True, "limit": 3, "used": 1, "remaining": 2}
    assert me["chat_messages_monthly"]["used"] == 0  # metered: this month's uses

    rows = {row["feature"]: row for row in free.get("/me/usage").get_json()["features"]}
    assert rows["api_access_tokens"]["summary"] == "1 held, 0 of 1 left"
    assert rows["itinerary_destinations"]["summary"] == "5 in your largest itinerary, 0 of 5 left"
    assert (rows["saved_searches"]["used"], rows["saved_searches"]["remaining"]) == (1, 2)
