"""The usage ledger: every move of a count is a row of ``feature_usage_ledger``.

A use ('use', +n: a metered check's cost, a hold's commit of what it used, a
tracked use, one row per key, member and bucket per batch), a refund
('give_back', minus what it took off), a reset ('reset', minus the count; for a
pool one row per member share and one for the rest) and, for the counts that
existed before the ledger, the upgrade's 'opening' (+count). A reserve, a
release and an expiry write none: a hold's uses are ``held`` on the row until it
is settled. A pool's rows name the member whose share they also count on, a
rolling window's the bucket.

The audit recomputes every count from the ledger and the live holds (a period,
a member's share, a window bucket by bucket) and names each row that differs.
Alert thresholds are crossed by the committed count (used minus held): a
reserve never crosses one, a commit may.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from decimal import Decimal

import psycopg
import pytest
from credits_support import Clock
from flask import Flask
from flask import request

from feature_gates import FeatureGates
from feature_gates import HoldExpired
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import audit_credits
from feature_gates.migrate import migrate
from tests.released_schema import core_until

UTC = timezone.utc
MARCH = date(2026, 3, 1)
PLANS = {
    "free": {
        "tokens": 1000,
        "recent": {"limit": 10, "window": "1h"},
        "reports": {"limit": 20, "period": "month", "scope": "org", "per_user": 8},
        "endless": None,
        "quota": {"limit": 100, "alerts": [0.5]},
        # 0.25 and 0.5 of 200: room for a hold of 90 beside 100 uses of one's own.
        "wide": {"limit": 200, "alerts": [0.25, 0.5]},
    },
}
FEATURES = tuple(PLANS["free"])
USER = Subject(4242, "free")
ORG = 5150
ALICE = Subject(5151, "free", org_id=ORG)
BOB = Subject(5152, "free", org_id=ORG)
#: The kinds of ledger rows that move a count (the others are grants').
MOVES = ("use", "give_back", "reset", "opening")


def make_app(url: str, clock: Clock, **config: object) -> tuple[Flask, FeatureGates]:
    """POST /<feature>?cost=n&status=s is one metered check of ``cost`` (a status of
    500 refunds it) by the user of X-User (and X-Org's member when given)."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_HOLD_TTL=60,
    )
    app.config.update(config)
    gates = FeatureGates(clock=clock)

    @gates.subject_loader
    def load() -> Subject:
        org = request.headers.get("X-Org")
        user = int(request.headers.get("X-User", USER.user_id))
        return Subject(user, "free", org_id=None if org is None else int(org))

    def cost(**kwargs: object) -> int:
        return request.args.get("cost", type=int, default=1)

    for feature in FEATURES:

        def use(feature: str = feature) -> tuple[str, int]:
            return feature, request.args.get("status", type=int, default=200)

        app.add_url_rule(
            f"/{feature}", feature, feature_limit(feature, cost=cost)(use), methods=["POST"]
        )
    gates.init_app(app)
    return app, gates


@pytest.fixture
def app_and_gates(feature_gates_database_url, clock):
    app, gates = make_app(feature_gates_database_url, clock)
    with app.app_context():
        yield app, gates
    gates.close(app)


def post(app: Flask, feature: str, subject: Subject = USER, **query: object) -> int:
    headers = {"X-User": str(subject.user_id)}
    if subject.org_id is not None:
        headers["X-Org"] = str(subject.org_id)
    return app.test_client().post(f"/{feature}", query_string=query, headers=headers).status_code


def moves(db, feature: str | None = None) -> list[tuple[str, int]]:
    """The ledger's rows that move a count, (kind, amount), oldest first."""
    rows = db.execute(
        "SELECT kind, amount FROM feature_usage_ledger "
        "WHERE kind = ANY(%s) AND (%s::text IS NULL OR feature = %s) ORDER BY entry_id",
        [list(MOVES), feature, feature],
    )
    return rows.fetchall()


def keyed(db, feature: str) -> list[tuple]:
    """(user_id, scope, member, period, period_start, period_offset, bucket, kind, amount)
    of ``feature``'s moves, oldest first."""
    rows = db.execute(
        "SELECT user_id, scope, member, period, period_start, period_offset, bucket, kind, "
        "amount FROM feature_usage_ledger WHERE kind = ANY(%s) AND feature = %s "
        "ORDER BY entry_id",
        [list(MOVES), feature],
    )
    return rows.fetchall()


def held(db, feature: str) -> list[int]:
    rows = db.execute("SELECT held FROM feature_usage WHERE feature = %s ORDER BY 1", [feature])
    return [row[0] for row in rows]


# -- 1. every move of a count is a ledger row ------------------------------------------------


def test_a_metered_check_is_a_use_row_of_its_cost_on_the_counted_key(app_and_gates, db):
    app, _ = app_and_gates
    assert post(app, "tokens") == 200
    assert post(app, "tokens", cost=3) == 200
    assert keyed(db, "tokens") == [
        (USER.user_id, "user", None, "month", MARCH, 0, None, "use", 1),
        (USER.user_id, "user", None, "month", MARCH, 0, None, "use", 3),
    ]


def test_a_refund_is_a_give_back_of_what_it_took_off(app_and_gates, db):
    app, gates = app_and_gates
    assert post(app, "tokens", cost=3, status=500) == 500
    assert moves(db) == [("use", 3), ("give_back", -3)]
    assert gates.get_usage("tokens", subject=USER).used == 0


def test_a_reserve_writes_nothing_a_commit_its_actual_a_release_nothing(app_and_gates, db):
    _, gates = app_and_gates
    hold = gates.reserve("tokens", up_to=400, subject=USER)
    assert (moves(db), held(db, "tokens")) == ([], [400])
    hold.commit(30)
    assert (moves(db), held(db, "tokens")) == ([("use", 30)], [0])
    gates.reserve("tokens", up_to=100, subject=USER).release()
    gates.reserve("tokens", up_to=100, subject=USER).commit(0)
    assert (moves(db), held(db, "tokens")) == ([("use", 30)], [0])


def test_an_expired_hold_reclaimed_writes_nothing(app_and_gates, db, clock):
    _, gates = app_and_gates
    first = gates.reserve("tokens", up_to=1000, subject=USER, ttl=30)
    clock.now += timedelta(seconds=31)
    second = gates.reserve("tokens", up_to=1000, subject=USER)  # reclaims the first's room
    with pytest.raises(HoldExpired):
        first.commit(5)
    assert (moves(db), held(db, "tokens")) == ([], [1000])
    clock.now += timedelta(seconds=61)
    with pytest.raises(HoldExpired):
        second.commit(1)  # expired too
    assert (moves(db), held(db, "tokens"), gates.get_usage("tokens", subject=USER).used) == (
        [],
        [0],
        0,
    )


def test_a_tracked_use_of_an_unlimited_feature_is_a_use_row(app_and_gates, db):
    app, _ = app_and_gates
    assert post(app, "endless", cost=2) == 200
    assert moves(db, "endless") == [("use", 2)]


def test_the_writer_writes_one_use_row_per_key_and_member_per_batch(
    feature_gates_database_url, clock, db
):
    app, gates = make_app(
        feature_gates_database_url,
        clock,
        FEATURE_GATES_TRACKING="background",
        FEATURE_GATES_FLUSH_INTERVAL=3600,
    )
    with app.app_context():
        try:
            gates.track_use("endless", 2, subject=USER)
            gates.track_use("endless", 3, subject=USER)
            gates.track_use("reports", 1, subject=ALICE)
            gates.track_use("reports", 4, subject=ALICE)
            gates.track_use("reports", 2, subject=BOB)
            gates.flush(timeout=30)
        finally:
            gates.close(app)
    assert moves(db, "endless") == [("use", 5)]
    rows = sorted((row[0], row[2], row[7], row[8]) for row in keyed(db, "reports"))
    assert rows == [(ORG, ALICE.user_id, "use", 5), (ORG, BOB.user_id, "use", 2)]


def test_increment_feature_usage_safe_is_a_use_row(db):
    db.execute("SELECT increment_feature_usage_safe(%s, 'exports', 3, %s)", [USER.user_id, MARCH])
    assert keyed(db, "exports") == [(USER.user_id, "user", None, "month", MARCH, 0, None, "use", 3)]


def test_a_reset_is_minus_the_count_there_was(app_and_gates, db):
    app, gates = app_and_gates
    assert post(app, "tokens", cost=7) == 200
    assert gates.reset_usage("tokens", subject=USER) == 7
    assert moves(db) == [("use", 7), ("reset", -7)]


def test_an_org_pools_rows_name_the_member_whose_share_they_count_on(app_and_gates, db):
    app, gates = app_and_gates
    assert post(app, "reports", ALICE, cost=2) == 200
    gates.reserve("reports", up_to=5, subject=BOB).commit(3)
    assert keyed(db, "reports") == [
        (ORG, "org", ALICE.user_id, "month", MARCH, 0, None, "use", 2),
        (ORG, "org", BOB.user_id, "month", MARCH, 0, None, "use", 3),
    ]


def test_resetting_a_pool_is_a_row_per_member_share_and_one_for_the_rest(app_and_gates, db):
    app, gates = app_and_gates
    assert post(app, "reports", ALICE, cost=2) == 200
    assert post(app, "reports", BOB, cost=3) == 200
    assert gates.reset_usage("reports", subject=ALICE) == 5
    resets = [(row[2], row[8]) for row in keyed(db, "reports") if row[7] == "reset"]
    members = sorted((member, amount) for member, amount in resets if member is not None)
    assert members == [(ALICE.user_id, -2), (BOB.user_id, -3)]
    assert sum(amount for _, amount in resets) == -5
    assert [amount for member, amount in resets if member is None] in ([], [0])


def test_a_rolling_windows_rows_name_their_bucket(app_and_gates, db, clock):
    app, _ = app_and_gates
    assert post(app, "recent", cost=2) == 200
    clock.now += timedelta(minutes=5)
    assert post(app, "recent") == 200
    now_bucket = (clock.now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(minutes=1)
    buckets = [(row[6], row[8]) for row in keyed(db, "recent")]
    assert buckets == [(now_bucket - 5, 2), (now_bucket, 1)]


# -- 2. the audit ----------------------------------------------------------------------------


def mix(app: Flask, gates: FeatureGates, clock: Clock) -> None:
    """Uses, refunds, holds settled and live, a reset, over a period, a window and a pool."""
    assert post(app, "tokens", cost=5) == 200
    assert post(app, "tokens", cost=2, status=500) == 500
    gates.reserve("tokens", up_to=50, subject=USER).commit(20)
    gates.reserve("tokens", up_to=40, subject=USER)  # live
    assert post(app, "recent", cost=2) == 200
    clock.now += timedelta(minutes=3)
    assert post(app, "recent", cost=3) == 200
    assert post(app, "recent", status=500) == 500
    gates.reserve("recent", up_to=2, subject=USER)  # live, in the newest bucket
    assert post(app, "reports", ALICE, cost=2) == 200
    assert post(app, "reports", BOB, cost=4) == 200
    gates.reset_usage("reports", subject=BOB)
    assert post(app, "reports", ALICE, cost=3) == 200
    gates.reserve("reports", up_to=3, subject=BOB).commit(1)
    gates.reserve("reports", up_to=2, subject=ALICE)  # live
    assert post(app, "endless", cost=4) == 200


@pytest.fixture
def mixed(app_and_gates, clock):
    """An application whose database holds :func:`mix`; the audit is clean."""
    app, gates = app_and_gates
    mix(app, gates, clock)
    return app


def audit(app: Flask):
    return app.test_cli_runner().invoke(args=["feature-gates", "audit"])


def by_hand(db, statement: str) -> None:
    """An operator's change, past any trigger that guards the ledger."""
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        assert db.execute(statement).rowcount == 1


def test_the_audit_passes_after_uses_of_periods_windows_and_pools(
    mixed, db, feature_gates_database_url
):
    assert audit_credits(feature_gates_database_url) == []
    result = audit(mixed)
    assert result.exit_code == 0, result.output
    assert held(db, "tokens") == [40]
    assert db.execute(
        "SELECT user_id, held FROM feature_usage_members WHERE feature = 'reports' ORDER BY 1"
    ).fetchall() == [(ALICE.user_id, 2), (BOB.user_id, 0)]


CORRUPTIONS = {
    "a period's count": (
        "UPDATE feature_usage SET usage_count = usage_count + 1 WHERE feature = 'tokens'",
        USER.user_id,
        "tokens",
    ),
    "a use's amount": (
        "UPDATE feature_usage_ledger SET amount = amount + 1 WHERE entry_id = "
        "(SELECT min(entry_id) FROM feature_usage_ledger WHERE kind = 'use' "
        "AND feature = 'tokens')",
        USER.user_id,
        "tokens",
    ),
    "a deleted ledger row": (
        "DELETE FROM feature_usage_ledger WHERE entry_id = "
        "(SELECT max(entry_id) FROM feature_usage_ledger WHERE kind = 'use' "
        "AND feature = 'reports')",
        ORG,
        "reports",
    ),
    # One use moved from the newest bucket to the one before: the window's total is
    # unchanged, only its buckets differ.
    "a window bucket": (
        "UPDATE feature_usage SET window_buckets[61] = window_buckets[61] - 1, "
        "window_buckets[60] = window_buckets[60] + 1 WHERE feature = 'recent'",
        USER.user_id,
        "recent",
    ),
    "a member's share": (
        "UPDATE feature_usage_members SET usage_count = usage_count + 1 "
        "WHERE feature = 'reports' AND user_id = 5152",
        BOB.user_id,
        "reports",
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_the_audit_fails_naming_the_row_after_a_change_by_hand(
    mixed, db, feature_gates_database_url, corruption
):
    statement, subject, feature = CORRUPTIONS[corruption]
    by_hand(db, statement)
    problems = audit_credits(feature_gates_database_url)
    assert len(problems) >= 1
    assert any(str(subject) in line and feature in line for line in problems), problems
    result = audit(mixed)
    assert result.exit_code == 1
    assert str(subject) in result.output and feature in result.output, result.output


# -- 3. alerts at commit ---------------------------------------------------------------------


def crossings(db, feature: str = "quota") -> list[tuple[int, Decimal, int]]:
    """(subject, threshold, used) of ``feature``'s alerts, oldest first."""
    rows = db.execute(
        "SELECT user_id, threshold, used FROM feature_usage_alerts WHERE feature = %s ORDER BY id",
        [feature],
    )
    return rows.fetchall()


def test_a_reserve_never_crosses_a_threshold_the_commit_that_takes_the_committed_count_does(
    app_and_gates, db
):
    _, gates = app_and_gates
    hold = gates.reserve("quota", up_to=80, subject=USER)
    assert crossings(db) == []  # 80 of 100 held, none used
    hold.commit(10)
    assert crossings(db) == []
    hold = gates.reserve("quota", up_to=60, subject=USER)
    assert crossings(db) == []  # 10 used, 60 held
    hold.commit(45)
    assert crossings(db) == [(USER.user_id, Decimal("0.5"), 55)]


def test_a_released_or_expired_hold_crosses_nothing(app_and_gates, db, clock):
    _, gates = app_and_gates
    gates.reserve("quota", up_to=90, subject=USER).release()
    expiring = gates.reserve("quota", up_to=90, subject=USER, ttl=30)
    clock.now += timedelta(seconds=31)
    with pytest.raises(HoldExpired):
        expiring.commit(90)
    gates.reserve("quota", up_to=90, subject=USER, ttl=30)
    clock.now += timedelta(seconds=31)
    gates.reserve("quota", up_to=100, subject=USER).release()  # reclaims the expired one
    assert crossings(db) == []
    assert gates.get_usage("quota", subject=USER).used == 0


def test_checks_beside_a_live_hold_cross_only_by_their_own_uses(app_and_gates, db):
    app, gates = app_and_gates
    gates.reserve("wide", up_to=90, subject=USER)
    for _ in range(49):
        assert post(app, "wide") == 200
    assert crossings(db, "wide") == []  # 49 used (139 with the hold) of 200
    assert post(app, "wide") == 200
    assert crossings(db, "wide") == [(USER.user_id, Decimal("0.25"), 50)]
    for _ in range(50):
        assert post(app, "wide") == 200
    assert crossings(db, "wide") == [
        (USER.user_id, Decimal("0.25"), 50),
        (USER.user_id, Decimal("0.5"), 100),
    ]


# -- 4. the upgrade --------------------------------------------------------------------------

#: What an application had counted before the ledger, through 0042's statements: a
#: period (5 used, a live hold of 4), a window (3 in the current bucket) and an
#: organisation pool with member shares (2 and 3).
BEFORE_THE_LEDGER = """
SELECT * FROM feature_usage_take(4242, 'tokens', 'user', 'month', '2026-03-01', 0,
    '2026-04-01', 5, 1000, NULL, NULL, NULL, NULL, 'free', now());
SELECT * FROM feature_usage_reserve(4242, 'tokens', 'user', 'month', '2026-03-01', 0,
    '2026-04-01', 4, 1000, NULL, NULL, NULL, NULL, 'free', now(), now() + interval '1 day');
SELECT * FROM feature_usage_take(4242, 'recent', 'user', 'window:3600', '1970-01-01', 0,
    NULL, 3, 10, NULL, NULL, floor(extract(epoch FROM now()) / 60)::bigint, NULL, 'free', now());
SELECT * FROM feature_usage_take(5150, 'reports', 'org', 'month', '2026-03-01', 0,
    '2026-04-01', 2, 20, 5151, 8, NULL, NULL, 'free', now());
SELECT * FROM feature_usage_take(5150, 'reports', 'org', 'month', '2026-03-01', 0,
    '2026-04-01', 3, 20, 5152, 8, NULL, NULL, 'free', now());
"""


@pytest.fixture
def url_at_0042(feature_gates_databases):
    url = feature_gates_databases.create(core_until(42))
    yield url
    feature_gates_databases.drop(url)


def test_the_upgrade_opens_the_ledger_with_every_count_and_holds_what_is_held(url_at_0042):
    with psycopg.connect(url_at_0042, autocommit=True) as conn:
        conn.execute(BEFORE_THE_LEDGER)
    migrate(url_at_0042, MigrationSettings(sets=("core",)))
    assert audit_credits(url_at_0042) == []
    with psycopg.connect(url_at_0042, autocommit=True) as conn:
        assert conn.execute(
            "SELECT feature, usage_count, held FROM feature_usage ORDER BY feature"
        ).fetchall() == [("recent", 3, 0), ("reports", 5, 0), ("tokens", 9, 4)]
        assert conn.execute(
            "SELECT user_id, held FROM feature_usage_members ORDER BY user_id"
        ).fetchall() == [(5151, 0), (5152, 0)]
        openings = conn.execute(
            "SELECT user_id, feature, member, bucket IS NOT NULL, sum(amount) "
            "FROM feature_usage_ledger WHERE kind = 'opening' AND amount <> 0 "
            "GROUP BY 1, 2, 3, 4 ORDER BY 2, 3"
        ).fetchall()
        assert conn.execute(
            "SELECT count(*) FROM feature_usage_ledger WHERE kind <> 'opening'"
        ).fetchone() == (0,)
    assert openings == [
        (4242, "recent", None, True, 3),
        (5150, "reports", 5151, False, 2),
        (5150, "reports", 5152, False, 3),
        (4242, "tokens", None, False, 5),
    ]


def test_the_seeds_metered_check_keeps_the_alert_settings_a_gate_recorded(app_and_gates, db):
    # consume_feature_usage (the seed's form) names no plan: the thresholds and the
    # plan the gate recorded on the row stay, and its use is a ledger row too.
    app, _ = app_and_gates
    assert post(app, "quota") == 200
    db.execute("SELECT consume_feature_usage(%s, 'quota', 2, 100, %s)", [USER.user_id, MARCH])
    row = db.execute(
        "SELECT alert_thresholds, alert_plan, usage_count FROM feature_usage "
        "WHERE feature = 'quota'"
    ).fetchone()
    assert row == ([Decimal("0.5")], "free", 3)
    assert moves(db, "quota") == [("use", 1), ("use", 2)]
    assert audit_credits(app.config["FEATURE_GATES_DATABASE_URL"]) == []
