"""The limit model through the gates: every way a limit counts (calendar periods
in a zone, anchors, rolling windows, organisation pools with a cap per member),
exact under concurrent requests, denials that say which level refused, refunds
to the period a use was taken from, plan changes, and the reads of every kind."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest
from flask import Flask
from flask import request

from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates.testing import fire_concurrently

UTC = timezone.utc
KINDS = {
    "monthly": 10,
    "daily": {"limit": 10, "period": "day"},
    "weekly": {"limit": 10, "period": "week"},
    "briefings": {"limit": 10, "period": "month", "anchor": "subscription"},
    "tokens": {"limit": 10, "window": "1h"},
    "forever": {"limit": 10, "period": "lifetime"},
    "reports": {"limit": 10, "period": "month", "scope": "org", "per_user": 4},
}
PLANS = {
    "free": {**KINDS, "shared_unlimited": {"limit": None, "scope": "org", "per_user": None}},
    "pro": {
        **KINDS,
        "daily": {"limit": 20, "period": "day"},
        "reports": {"limit": 40, "period": "month", "scope": "org", "per_user": 10},
        "shared_unlimited": {"limit": None, "scope": "org"},
    },
}
ANCHOR = datetime(2026, 1, 31, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))


class Clock:
    """The application's clock, moved by the tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def subject_from_headers() -> Subject | None:
    user = request.headers.get("X-User")
    if user is None:
        return None
    org = request.headers.get("X-Org")
    zone = request.headers.get("X-Zone")
    return Subject(
        int(user),
        request.headers.get("X-Plan", "free"),
        org_id=None if org is None else int(org),
        period_anchor=ANCHOR if request.headers.get("X-Anchored") else None,
        timezone=zone,
    )


def make_app(url: str, clock: Clock | None = None, **config: object) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_HEADERS_ENABLED=True,
        FEATURE_GATES_COMMAND_NAME="",
        # Patience for a pooled connection: 32 racing requests share 10 connections,
        # and on a slow machine a wait of 0.25 s would answer 503, not the limit.
        FEATURE_GATES_DB_TIMEOUT=30,
    )
    app.config.update(config)
    gates = FeatureGates(clock=clock) if clock is not None else FeatureGates()
    gates.subject_loader(subject_from_headers)
    for feature in [*KINDS, "shared_unlimited"]:

        def use(feature: str = feature) -> tuple[dict[str, str], int]:
            if request.args.get("later"):
                # The view runs past a boundary, then fails: the refund must still
                # go to the period the use was taken from.
                assert clock is not None
                clock.now += timedelta(seconds=float(request.args["later"]))
            return {"used": feature}, request.args.get("status", type=int, default=200)

        app.add_url_rule(
            f"/use/{feature}", f"use_{feature}", feature_limit(feature)(use), methods=["POST"]
        )

    @app.get("/export")
    @feature_required("daily")
    def export() -> str:
        return "ok"

    gates.init_app(app)
    return app, gates


@pytest.fixture
def app_and_gates(feature_gates_database_url):
    """The application and its gates, in an application context (as a test of the
    application's own code would be)."""
    app, gates = make_app(feature_gates_database_url)
    with app.app_context():
        yield app, gates
    gates.close(app)


def who(user=7, plan="free", org=None, anchored=False, zone=None):
    found = {"X-User": str(user), "X-Plan": plan}
    if org is not None:
        found["X-Org"] = str(org)
    if anchored:
        found["X-Anchored"] = "1"
    if zone is not None:
        found["X-Zone"] = zone
    return found


def rows(db, feature):
    return db.execute(
        "SELECT user_id, scope, period, usage_count FROM feature_usage WHERE feature = %s "
        "ORDER BY 1, 2, 3",
        (feature,),
    ).fetchall()


# -- exact under concurrency ------------------------------------------------------------------


@pytest.mark.parametrize(
    "feature", ["monthly", "daily", "weekly", "briefings", "tokens", "forever"]
)
def test_32_concurrent_requests_get_exactly_the_limit_of_10_for_every_kind(
    app_and_gates, db, feature
):
    app, _ = app_and_gates
    result = fire_concurrently(
        app, "POST", f"/use/{feature}", n=32, headers=who(anchored=True, zone="Asia/Kolkata")
    )
    assert (result.allowed, result.denied, result.failed) == (10, 22, 0)
    assert sum(count for *_, count in rows(db, feature)) == 10


def test_an_org_pool_of_10_with_per_user_4_and_8_members_racing_grants_exactly_10(
    feature_gates_database_url, db
):
    members = itertools.cycle(range(1, 9))
    lock = threading.Lock()
    app, gates = make_app(feature_gates_database_url)

    @gates.subject_loader
    def member() -> Subject:
        with lock:
            user = next(members)
        return Subject(user, "free", org_id=500)

    try:
        result = fire_concurrently(app, "POST", "/use/reports", n=32)
    finally:
        gates.close(app)
    assert (result.allowed, result.failed) == (10, 0)
    assert rows(db, "reports") == [(500, "org", "month", 10)]
    shares = db.execute("SELECT max(usage_count), sum(usage_count) FROM feature_usage_members")
    max_share, total = shares.fetchone()
    assert max_share <= 4 and total == 10


# -- denials --------------------------------------------------------------------------------


def test_a_denial_says_which_level_of_a_pool_refused_with_its_counts(app_and_gates):
    app, _ = app_and_gates
    client = app.test_client()
    for _ in range(4):
        assert client.post("/use/reports", headers=who(1, org=9)).status_code == 200
    member = client.post("/use/reports", headers=who(1, org=9))
    assert member.status_code == 429
    body = member.get_json()
    assert (body["scope"], body["period"], body["limit"], body["used"], body["remaining"]) == (
        "user",
        "month",
        4,
        4,
        0,
    )
    assert "allows each member 4 uses of 'reports' per month" in body["detail"]
    assert member.headers["X-Feature-Limit"] == "4"
    for user in (2, 3):
        for _ in range(3):
            client.post("/use/reports", headers=who(user, org=9))
    pool = client.post("/use/reports", headers=who(4, org=9)).get_json()
    assert (pool["scope"], pool["limit"], pool["used"], pool["remaining"]) == ("org", 10, 10, 0)
    assert "to your organisation" in pool["detail"]
    assert pool["reset_at"].endswith("-01T00:00:00Z")


def test_a_window_denial_says_when_enough_of_it_frees_up(feature_gates_database_url):
    clock = Clock(datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC))
    app, gates = make_app(feature_gates_database_url, clock)
    try:
        client = app.test_client()
        for minutes, uses in ((0, 6), (20, 4)):
            clock.now = datetime(2026, 3, 10, 12, minutes, 30, tzinfo=UTC)
            for _ in range(uses):
                assert client.post("/use/tokens", headers=who()).status_code == 200
        clock.now = datetime(2026, 3, 10, 12, 40, tzinfo=UTC)
        denied = client.post("/use/tokens", headers=who())
        body = denied.get_json()
        assert (body["scope"], body["window"], body["used"]) == ("user", "1h", 10)
        assert "period" not in body
        # The uses of 12:00 leave at 13:01 (a one-hour window in one-minute buckets).
        assert body["reset_at"] == "2026-03-10T13:01:00Z"
        assert denied.headers["Retry-After"] == str(21 * 60)
        clock.now = datetime(2026, 3, 10, 13, 1, tzinfo=UTC)
        assert client.post("/use/tokens", headers=who()).status_code == 200
    finally:
        gates.close(app)


# -- periods, zones, anchors ----------------------------------------------------------------


def test_a_day_ends_at_the_subjects_midnight_and_is_recorded_with_its_zone(
    feature_gates_database_url, db
):
    clock = Clock(datetime(2026, 3, 28, 23, 30, tzinfo=UTC))  # 00:30 on the 29th in Paris
    app, gates = make_app(feature_gates_database_url, clock)
    try:
        client = app.test_client()
        denied = None
        for _ in range(11):
            denied = client.post("/use/daily", headers=who(zone="Europe/Paris"))
        assert denied is not None and denied.status_code == 429
        # 29 March in Paris is 23 hours long: it ends at 22:00 UTC.
        assert denied.get_json()["reset_at"] == "2026-03-29T22:00:00Z"
        clock.now = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
        assert client.post("/use/daily", headers=who(zone="Europe/Paris")).status_code == 200
    finally:
        gates.close(app)
    assert db.execute(
        "SELECT DISTINCT period FROM feature_usage WHERE feature = 'daily'"
    ).fetchall() == [("day@Europe/Paris",)]


def test_the_application_zone_counts_for_subjects_without_one(feature_gates_database_url, db):
    clock = Clock(datetime(2026, 3, 28, 23, 30, tzinfo=UTC))
    app, gates = make_app(feature_gates_database_url, clock, FEATURE_GATES_TIMEZONE="Asia/Tokyo")
    try:
        assert app.test_client().post("/use/daily", headers=who()).status_code == 200
        assert app.test_client().post("/use/monthly", headers=who()).status_code == 200
    finally:
        gates.close(app)
    found = db.execute(
        "SELECT feature, period, period_start::text, period_offset FROM feature_usage ORDER BY 1"
    ).fetchall()
    # The bare integer stays the UTC month; the day is Tokyo's 29 March.
    assert found == [
        ("daily", "day@Asia/Tokyo", "2026-03-28", 54000),
        ("monthly", "month", "2026-03-01", 0),
    ]


def test_an_anchored_month_renews_on_the_anchors_day(feature_gates_database_url, db):
    clock = Clock(datetime(2026, 3, 10, tzinfo=UTC))
    app, gates = make_app(feature_gates_database_url, clock)
    try:
        client = app.test_client()
        assert client.post("/use/briefings", headers=who(anchored=True)).status_code == 200
        with app.app_context():
            decision = gates.check("briefings", Subject(7, "free", period_anchor=ANCHOR))
        # Anchored on 31 January 09:00 Paris: the month began on 28 February.
        assert decision.reset_at == datetime(2026, 3, 31, 7, tzinfo=UTC)
        assert (decision.period, decision.used) == ("month", 1)
    finally:
        gates.close(app)
    assert db.execute(
        "SELECT period, period_start::text, period_offset FROM feature_usage"
    ).fetchall() == [("month+anchor", "2026-02-28", 8 * 3600)]


# -- refunds ------------------------------------------------------------------------------------


def test_a_refund_after_the_day_ended_goes_back_to_that_day(feature_gates_database_url, db):
    clock = Clock(datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC))
    app, gates = make_app(feature_gates_database_url, clock)
    try:
        client = app.test_client()
        assert client.post("/use/daily", headers=who()).status_code == 200
        # This request begins on the 10th and fails on the 11th.
        assert client.post("/use/daily?later=2&status=500", headers=who()).status_code == 500
        assert client.post("/use/daily", headers=who()).status_code == 200
    finally:
        gates.close(app)
    found = db.execute(
        "SELECT period_start::text, usage_count FROM feature_usage ORDER BY 1"
    ).fetchall()
    assert found == [("2026-03-10", 1), ("2026-03-11", 1)]


def test_a_failed_request_on_a_pool_gives_back_to_the_pool_and_the_share(app_and_gates, db):
    app, _ = app_and_gates
    client = app.test_client()
    client.post("/use/reports", headers=who(1, org=9))
    assert client.post("/use/reports?status=503", headers=who(1, org=9)).status_code == 503
    assert rows(db, "reports") == [(9, "org", "month", 1)]
    assert db.execute("SELECT usage_count FROM feature_usage_members").fetchall() == [(1,)]


# -- plan changes -------------------------------------------------------------------------------


def test_an_upgrade_keeps_the_usage_and_raises_the_limit_at_once(app_and_gates):
    app, gates = app_and_gates
    client = app.test_client()
    for _ in range(10):
        client.post("/use/daily", headers=who(plan="free"))
    assert client.post("/use/daily", headers=who(plan="free")).status_code == 429
    assert client.post("/use/daily", headers=who(plan="pro")).status_code == 200
    assert gates.check("daily", Subject(7, "pro")).used == 11
    # The downgrade keeps it too: over the free limit, increases are refused...
    assert client.post("/use/daily", headers=who(plan="free")).status_code == 429
    assert gates.check("daily", Subject(7, "free")).remaining == 0
    # ... and a team that resets on plan changes says so.
    assert gates.reset_usage("daily", subject=Subject(7, "free")) == 11
    assert client.post("/use/daily", headers=who(plan="free")).status_code == 200


def test_reset_usage_also_reads_the_subject_first(app_and_gates):
    app, gates = app_and_gates
    app.test_client().post("/use/monthly", headers=who())
    assert gates.reset_usage(Subject(7, "free"), "monthly") == 1
    with pytest.raises(TypeError, match=r"gates.reset_usage\(feature, \*, subject=None\)"):
        gates.reset_usage(7, "monthly", "extra")


# -- reads ----------------------------------------------------------------------------------------


def test_check_entitlements_and_get_usage_show_every_kind(app_and_gates):
    app, gates = app_and_gates
    client = app.test_client()
    for feature in ("daily", "tokens", "forever"):
        client.post(f"/use/{feature}", headers=who())
    client.post("/use/reports", headers=who(org=9))
    client.post("/use/reports", headers=who(8, org=9))
    member = Subject(7, "free", org_id=9, period_anchor=ANCHOR)
    found = gates.entitlements(member)
    # What each shows is its tightest level's: for the pool, the member's share.
    assert {name: found[name].used for name in ("daily", "tokens", "forever", "reports")} == {
        "daily": 1,
        "tokens": 1,
        "forever": 1,
        "reports": 1,
    }
    reports = found["reports"]
    assert (reports.scope, reports.period, [level.scope for level in reports.levels]) == (
        "org",
        "month",
        ["org", "user"],
    )
    assert [(level.limit, level.used, level.remaining) for level in reports.levels] == [
        (10, 2, 8),
        (4, 1, 3),
    ]
    # The level shown is the one with the least left: the member's share.
    assert (reports.limit, reports.remaining) == (4, 3)
    assert (found["tokens"].window, found["tokens"].period) == ("1h", None)
    usage = gates.get_usage("reports", subject=member)
    assert (usage.scope, usage.used, usage.member_used) == ("org", 2, 1)
    assert gates.get_usage("tokens", subject=member).period_start is None
    # The older form reads a user's calendar month in UTC.
    assert gates.get_usage(7, "daily") == 0


def test_the_limit_headers_follow_the_tightest_level(app_and_gates):
    app, _ = app_and_gates
    response = app.test_client().post("/use/reports", headers=who(org=9))
    assert (response.headers["X-Feature-Limit"], response.headers["X-Feature-Remaining"]) == (
        "4",
        "3",
    )


def test_a_tracked_use_counts_under_the_features_rule(app_and_gates, db):
    app, _ = app_and_gates
    client = app.test_client()
    assert client.get("/export", headers=who()).status_code == 200
    assert rows(db, "daily") == [(7, "user", "day", 1)]
    # An unlimited pool is not checked but counted, pool and share.
    assert client.post("/use/shared_unlimited", headers=who(org=9)).status_code == 200
    assert rows(db, "shared_unlimited") == [(9, "org", "month", 1)]
    assert db.execute("SELECT user_id, usage_count FROM feature_usage_members").fetchall() == [
        (7, 1)
    ]


# -- configuration ------------------------------------------------------------------------------


def test_an_org_feature_without_an_org_id_is_a_configuration_error_naming_it(app_and_gates):
    _, gates = app_and_gates
    with pytest.raises(ConfigError, match="feature 'reports' counts per organisation"):
        gates.check("reports", Subject(7, "free"))
    with pytest.raises(ConfigError, match="feature 'briefings' counts from the subscription"):
        gates.check("briefings", Subject(7, "free"))


def test_an_org_id_of_the_wrong_type_names_the_user_id_type(app_and_gates):
    app, gates = app_and_gates

    @gates.subject_loader
    def wrong() -> Subject:
        return Subject(7, "free", org_id="acme")

    with pytest.raises(TypeError, match="org_id 'acme'.*FEATURE_GATES_USER_ID_TYPE"):
        app.test_client().post("/use/reports")


def test_a_subject_checks_its_anchor_and_zone():
    with pytest.raises(ValueError, match="period_anchor must be an aware datetime"):
        Subject(7, "free", period_anchor=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="'Mars/Base' is not an IANA time zone"):
        Subject(7, "free", timezone="Mars/Base")


def test_the_application_zone_must_be_an_iana_name(feature_gates_database_url):
    with pytest.raises(ConfigError, match="FEATURE_GATES_TIMEZONE must be an IANA time zone"):
        make_app(feature_gates_database_url, FEATURE_GATES_TIMEZONE="Paris")


def test_a_catalogue_error_names_the_plan_and_the_feature(feature_gates_database_url):
    with pytest.raises(ConfigError, match="plan 'free', feature 'daily': anchor = 'subscription'"):
        make_app(
            feature_gates_database_url,
            FEATURE_GATES_PLANS={
                "free": {"daily": {"limit": 1, "period": "hour", "anchor": "subscription"}}
            },
        )


def test_the_counts_of_every_kind_live_in_their_own_rows(db, app_and_gates):
    app, _ = app_and_gates
    client = app.test_client()
    for feature in KINDS:
        client.post(f"/use/{feature}", headers=who(org=9, anchored=True))
    kinds = {row[0] for row in db.execute("SELECT period FROM feature_usage").fetchall()}
    assert kinds == {"month", "day", "week", "month+anchor", "window:3600", "lifetime"}
    with psycopg.connect(db.info.dsn) as other:
        assert other.execute("SELECT count(*) FROM feature_usage").fetchone() == (7,)
