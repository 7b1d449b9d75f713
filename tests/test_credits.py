"""Credits: grants that add to a level's allowance, consumed after the period's
allowance in order of earliest expiry (then oldest), given back by refunds,
expiring with their remainder, added once per idempotency key; the balance that
shows them; the unused allowance that rolls over into the next period, once."""

from __future__ import annotations

import threading
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import psycopg
import pytest
from credits_support import Clock
from flask import Flask
from flask import request

from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates import FeatureLimitExceeded
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates.migrate import audit_credits

UTC = timezone.utc
PLANS = {
    "free": {
        "exports": 3,
        "reports": {"limit": 10, "period": "month", "scope": "org", "per_user": 4},
        "recent": {"limit": 10, "window": "1h"},
        "messages": {"limit": 10, "period": "month", "rollover": 5},
        "searches": {"limit": 10, "period": "day", "rollover": True},
    },
}
USER = Subject(7, "free")


def make_app(url: str, clock: Clock) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_COMMAND_NAME="",
    )
    gates = FeatureGates(clock=clock)

    @gates.subject_loader
    def load() -> Subject:
        return Subject(int(request.headers.get("X-User", "7")), "free")

    for feature in ("exports", "messages", "searches"):

        def use(feature: str = feature) -> tuple[str, int]:
            return feature, request.args.get("status", type=int, default=200)

        app.add_url_rule(f"/{feature}", feature, feature_limit(feature)(use), methods=["POST"])
    gates.init_app(app)
    return app, gates


@pytest.fixture
def app_and_gates(feature_gates_database_url, clock):
    app, gates = make_app(feature_gates_database_url, clock)
    with app.app_context():
        yield app, gates
    gates.close(app)


def use(app: Flask, feature: str, times: int = 1, **query: str) -> list[int]:
    client = app.test_client()
    return [client.post(f"/{feature}", query_string=query).status_code for _ in range(times)]


def remaining(gates: FeatureGates, feature: str = "exports") -> list[tuple[str, int]]:
    return [(g.reason, g.remaining) for g in gates.balance(feature, subject=USER).grants]


def ledger(db) -> list[tuple[str, int]]:
    """The ledger's rows of grants (the moves of counts are test_ledger.py's)."""
    rows = db.execute(
        "SELECT kind, amount FROM feature_usage_ledger "
        "WHERE kind IN ('grant', 'rollover', 'consume', 'refund', 'expire') ORDER BY entry_id"
    )
    return rows.fetchall()


# -- consumption order -----------------------------------------------------------------------


def test_a_grant_adds_to_the_allowance_which_is_used_first(app_and_gates, db):
    app, gates = app_and_gates
    gates.grant("exports", 2, subject=USER, reason="top-up")
    assert use(app, "exports", 3) == [200] * 3
    assert remaining(gates) == [("top-up", 2)]  # the allowance went first
    assert use(app, "exports", 3) == [200, 200, 429]
    assert remaining(gates) == []
    assert ledger(db) == [("grant", 2), ("consume", -1), ("consume", -1)]


def test_grants_are_drawn_by_earliest_expiry_then_oldest(app_and_gates, clock):
    app, gates = app_and_gates
    gates.grant("exports", 2, subject=USER, reason="never")
    gates.grant("exports", 2, subject=USER, reason="late", expires_at=clock.now + timedelta(days=9))
    gates.grant("exports", 2, subject=USER, reason="soon", expires_at=clock.now + timedelta(days=1))
    gates.grant("exports", 2, subject=USER, reason="soon too", expires_at=clock.now + timedelta(1))
    assert use(app, "exports", 3 + 5) == [200] * 8
    assert remaining(gates) == [("late", 1), ("never", 2)]


def test_an_expired_grants_remainder_is_gone(app_and_gates, db, clock):
    app, gates = app_and_gates
    gates.grant("exports", 5, subject=USER, expires_at=clock.now + timedelta(hours=1))
    assert use(app, "exports", 4) == [200] * 4
    clock.now += timedelta(hours=2)
    assert gates.balance("exports", subject=USER).available == 0
    assert use(app, "exports") == [429]
    assert ledger(db) == [("grant", 5), ("consume", -1), ("expire", -4)]


def test_a_refund_gives_back_to_the_grants_first(app_and_gates, db):
    app, gates = app_and_gates
    gates.grant("exports", 2, subject=USER)
    assert use(app, "exports", 3) == [200] * 3
    assert use(app, "exports", status="500") == [500]  # drew on the grant, then refunded
    assert remaining(gates) == [("", 2)]
    assert ledger(db)[-2:] == [("consume", -1), ("refund", 1)]


def test_a_hold_draws_on_grants_and_gives_back_what_it_did_not_use(app_and_gates):
    _, gates = app_and_gates
    gates.grant("exports", 10, subject=USER)
    hold = gates.reserve("exports", up_to=8, subject=USER)
    assert gates.balance("exports", subject=USER).granted == 5
    hold.commit(4)
    balance = gates.balance("exports", subject=USER)
    assert (balance.used, balance.held, balance.granted, balance.available) == (4, 0, 9, 9)


def test_a_reset_starts_the_allowance_afresh_and_the_grants_stay_drawn(
    app_and_gates, db, feature_gates_database_url
):
    app, gates = app_and_gates
    gates.grant("exports", 5, subject=USER)
    assert use(app, "exports", 5) == [200] * 5  # the allowance of 3, then 2 of the grant
    gates.reset_usage("exports", subject=USER)
    balance = gates.balance("exports", subject=USER)
    assert (balance.used, balance.granted, balance.available) == (0, 3, 6)
    assert use(app, "exports", 7) == [200] * 6 + [429]
    # The reset wrote the period's 2 draws off (a refund that names no grant).
    assert (
        ledger(db)
        == [("grant", 5), ("consume", -1), ("consume", -1), ("refund", 2)] + [("consume", -1)] * 3
    )
    assert audit_credits(feature_gates_database_url) == []


def test_a_reset_keeps_the_draws_of_live_holds_for_their_release_to_give_back(
    app_and_gates, feature_gates_database_url
):
    _, gates = app_and_gates
    gates.grant("exports", 5, subject=USER)
    gates.reserve("exports", up_to=4, subject=USER).commit(4)  # the allowance of 3, then 1
    hold = gates.reserve("exports", up_to=2, subject=USER)  # 2 more of the grant
    gates.reset_usage("exports", subject=USER)
    balance = gates.balance("exports", subject=USER)
    assert (balance.used, balance.held, balance.granted) == (0, 2, 2)
    hold.release()
    balance = gates.balance("exports", subject=USER)
    assert (balance.used, balance.held, balance.granted, balance.available) == (0, 0, 4, 7)
    assert audit_credits(feature_gates_database_url) == []


# -- levels ----------------------------------------------------------------------------------


def test_an_org_pools_grant_raises_the_pool_never_a_members_cap(app_and_gates):
    _, gates = app_and_gates
    alice, bob, carol = (Subject(n, "free", org_id=40) for n in (1, 2, 3))
    gates.grant("reports", 5, subject=alice)
    assert gates.balance("reports", subject=bob).granted == 5  # the organisation's
    for member in (alice, bob, carol):
        gates.reserve("reports", up_to=4, subject=member).commit(4)
    with pytest.raises(FeatureLimitExceeded) as capped:
        gates.reserve("reports", up_to=1, subject=alice)
    assert capped.value.scope == "user"
    balance = gates.balance("reports", subject=carol)
    assert (balance.scope, balance.used, balance.granted, balance.available) == ("org", 12, 3, 0)


def test_a_rolling_window_takes_no_grant(app_and_gates):
    _, gates = app_and_gates
    with pytest.raises(ConfigError, match="counts a rolling window"):
        gates.grant("recent", 5, subject=USER)


def test_the_balance_says_allowance_used_held_grants_and_available(app_and_gates, clock):
    app, gates = app_and_gates
    expiry = clock.now + timedelta(days=30)
    gates.grant("exports", 4, subject=USER, expires_at=expiry, reason="promo")
    use(app, "exports", 2)
    gates.reserve("exports", up_to=2, subject=USER)
    balance = gates.balance("exports", subject=USER)
    assert (balance.allowance, balance.used, balance.held, balance.available) == (3, 2, 2, 3)
    ((grant,),) = [balance.grants]
    assert (grant.amount, grant.remaining, grant.expires_at, grant.reason) == (
        4,
        3,
        expiry,
        "promo",
    )


# -- idempotency -----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_adds_once(app_and_gates):
    _, gates = app_and_gates
    first = gates.grant("exports", 5, subject=USER, idempotency_key="order-1")
    again = gates.grant("exports", 5, subject=USER, idempotency_key="order-1")
    assert (first.added, again.added, again.grant_id) == (True, False, first.grant_id)
    assert gates.balance("exports", subject=USER).granted == 5


def test_a_repeated_idempotency_key_adds_once_between_concurrent_callers(
    feature_gates_database_url, clock, db
):
    app, gates = make_app(feature_gates_database_url, clock)
    start = threading.Barrier(16)
    added: list[bool] = []

    def grant() -> None:
        with app.app_context():
            start.wait()
            added.append(gates.grant("exports", 5, subject=USER, idempotency_key="order-2").added)

    threads = [threading.Thread(target=grant) for _ in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gates.close(app)
    assert sorted(added) == [False] * 15 + [True]
    assert db.execute("SELECT sum(remaining) FROM feature_usage_grants").fetchone() == (5,)
    assert ledger(db) == [("grant", 5)]


def test_concurrent_first_uses_above_the_allowance_all_draw_on_the_grants(
    feature_gates_database_url, app_and_gates, db
):
    # Each first use of the period costs more than the whole allowance (3), so
    # none finds a row to wait on: they must still draw one after another.
    _, gates = app_and_gates
    gates.grant("exports", 40, subject=USER)
    start = threading.Barrier(8)
    refused: list[str | None] = []

    def take() -> None:
        with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
            start.wait()
            (answer,) = conn.execute(
                "SELECT refused FROM feature_usage_take(7, 'exports', 'user', 'month', "
                "'2026-03-01', 0, '2026-04-01', 4, 3, NULL, NULL, NULL, NULL, 'free', "
                "'2026-03-10 12:00+00', false)"
            ).fetchone()
            refused.append(answer)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused == [None] * 8
    assert gates.balance("exports", subject=USER).used == 32
    assert remaining(gates) == [("", 40 - 29)]


# -- rollover --------------------------------------------------------------------------------


def test_rollover_carries_the_unused_allowance_up_to_its_cap_once(app_and_gates, clock):
    app, gates = app_and_gates
    assert use(app, "messages", 3) == [200] * 3
    clock.now = datetime(2026, 4, 2, tzinfo=UTC)
    first = gates.balance("messages", subject=USER)
    again = gates.balance("messages", subject=USER)
    assert first == again
    ((carried,),) = [first.grants]
    assert (carried.amount, carried.expires_at) == (5, datetime(2026, 5, 1, tzinfo=UTC))
    assert first.available == 15


def test_rollover_is_computed_lazily_by_the_first_use_that_needs_it(app_and_gates, clock):
    app, gates = app_and_gates
    assert use(app, "searches", 4) == [200] * 4
    clock.now += timedelta(days=1)
    assert use(app, "searches", 17) == [200] * 16 + [429]
    assert gates.balance("searches", subject=USER).grants == ()
    clock.now += timedelta(days=1)  # nothing unused the day before
    assert gates.balance("searches", subject=USER).available == 10


def test_rollover_by_the_job_and_lazily_twice_gives_the_same_balance(
    feature_gates_database_url, clock
):
    balances = []
    for way in ("job", "lazily"):
        app, gates = _with_commands(feature_gates_database_url, clock)
        subject = Subject(70 if way == "job" else 71, "free")
        clock.now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        with app.app_context():
            gates.reserve("messages", up_to=8, subject=subject).commit(8)
            clock.now = datetime(2026, 4, 1, 0, 5, tzinfo=UTC)
            runner = app.test_cli_runner()
            for _ in range(2):
                if way == "job":
                    result = runner.invoke(args=["feature-gates", "close-periods"])
                    assert result.exit_code == 0, result.output
                balances.append(gates.balance("messages", subject=subject))
            assert runner.invoke(args=["feature-gates", "audit"]).exit_code == 0
        gates.close(app)
    seen = {(b.available, b.granted, tuple(g.expires_at for g in b.grants)) for b in balances}
    assert len(seen) == 1
    assert balances[0].granted == 2  # 10 - 8 unused, under the cap of 5


def _with_commands(url: str, clock: Clock) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
    )
    gates = FeatureGates(clock=clock)
    gates.init_app(app)
    return app, gates


# -- the ledger and its audit ----------------------------------------------------------------


def test_the_audit_catches_a_row_corrupted_on_purpose(feature_gates_database_url, clock, db):
    app, gates = _with_commands(feature_gates_database_url, clock)
    runner = app.test_cli_runner()
    with app.app_context():
        grant = gates.grant("exports", 5, subject=USER)
        gates.reserve("exports", up_to=6, subject=USER).commit(5)
        gates.reserve("exports", up_to=2, subject=USER).release()
        result = runner.invoke(args=["feature-gates", "audit"])
        assert (result.exit_code, result.output) == (
            0,
            "audit: every balance and count agrees with the ledger\n",
        )
        db.execute("UPDATE feature_usage_grants SET remaining = remaining + 1")
        db.execute("UPDATE feature_usage SET credit_used = 0")
        result = runner.invoke(args=["feature-gates", "audit"])
    gates.close(app)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"grant {grant.grant_id} of 7 (exports, user): remaining 4 of 5, ")
    # The grant's own entries (the commit's use between them is not the grant's).
    (entries,) = db.execute(
        "SELECT string_agg(entry_id::text, ', ' ORDER BY entry_id) FROM feature_usage_ledger "
        "WHERE grant_id = %s",
        [grant.grant_id],
    ).fetchone()
    assert len(entries.split(", ")) == 5
    assert f"the ledger says 3 and 5 (entries {entries})" in lines[0]
    assert lines[1].startswith("the count of 7 (exports, user, month from 2026-03-01 +0s): drew 0")
    assert "the ledger says 2" in lines[1]
    assert "audit: 2 differences with the ledger" in result.output
