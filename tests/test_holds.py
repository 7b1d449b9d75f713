"""Holds: capacity reserved before work whose cost is known only when it ends.

A reserve takes ``up_to`` uses at every level the feature counts against (an
organisation pool and the member's cap included), or raises the metered check's
denial; a commit keeps what was used, a release keeps nothing, and a hold left
unsettled past its ttl gives its capacity back inside the next statement that
needs it, with no job. Exact under concurrency; a killed holder's capacity
returns after its ttl.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import pytest
from credits_support import Clock
from flask import Flask
from flask import request

import feature_gates
from feature_gates import FeatureGates
from feature_gates import FeatureLimitExceeded
from feature_gates import HoldExpired
from feature_gates import Subject
from feature_gates import feature_limit

UTC = timezone.utc
PLANS = {
    "free": {
        "tokens": 1000,
        "daily": {"limit": 10, "period": "day"},
        "recent": {"limit": 10, "window": "1h"},
        "reports": {"limit": 10, "period": "month", "scope": "org", "per_user": 4},
        "endless": None,
    },
}
USER = Subject(7, "free")


def make_app(url: str, clock: Clock | None = None, **config: object) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_COMMAND_NAME="",
        FEATURE_GATES_HOLD_TTL=60,
    )
    app.config.update(config)
    gates = FeatureGates(clock=clock) if clock is not None else FeatureGates()

    @gates.subject_loader
    def load() -> Subject | None:
        user = request.headers.get("X-User")
        return None if user is None else Subject(int(user), "free")

    @app.post("/generate")
    @feature_limit("tokens", reserve=lambda **kw: int(request.args.get("up_to", 400)))
    def generate() -> tuple[dict[str, int], int]:
        used = request.args.get("used", type=int)
        if request.args.get("fail"):
            raise RuntimeError("the model failed")
        if used is not None:
            feature_gates.current_hold().commit(used)
        return {"used": used or -1}, request.args.get("status", type=int, default=200)

    gates.init_app(app)
    return app, gates


@pytest.fixture
def app_and_gates(feature_gates_database_url, clock):
    app, gates = make_app(feature_gates_database_url, clock)
    with app.app_context():
        yield app, gates
    gates.close(app)


def used(gates: FeatureGates, feature: str = "tokens", subject: Subject = USER) -> int:
    return gates.get_usage(feature, subject=subject).used


def holds(db) -> int:
    return db.execute("SELECT count(*) FROM feature_usage_holds").fetchone()[0]


# -- reserve, commit, release -------------------------------------------------------------


def test_a_commit_counts_what_was_used_and_frees_the_rest(app_and_gates, db):
    _, gates = app_and_gates
    hold = gates.reserve("tokens", up_to=400, subject=USER)
    assert (hold.up_to, hold.state, hold.key.period_start.isoformat()) == (
        400,
        "held",
        "2026-03-01",
    )
    assert used(gates) == 400  # held: nobody else can take it
    hold.commit(123)
    assert (hold.state, hold.committed, used(gates), holds(db)) == ("committed", 123, 123, 0)
    with pytest.raises(RuntimeError, match="settles once"):
        hold.release()


def test_a_release_frees_everything(app_and_gates, db):
    _, gates = app_and_gates
    hold = gates.reserve("tokens", up_to=400, subject=USER)
    hold.release()
    assert (hold.state, used(gates), holds(db)) == ("released", 0, 0)


def test_a_commit_outside_0_to_up_to_is_refused_and_the_hold_kept(app_and_gates):
    _, gates = app_and_gates
    hold = gates.reserve("tokens", up_to=10, subject=USER)
    for wrong in (-1, 11):
        with pytest.raises(ValueError, match="commits between 0 and 10"):
            hold.commit(wrong)
    hold.commit(0)
    assert used(gates) == 0


def test_as_a_context_manager_it_commits_all_on_success_and_releases_on_an_error(app_and_gates):
    _, gates = app_and_gates
    with gates.reserve("tokens", up_to=100, subject=USER) as hold:
        pass
    assert (hold.state, used(gates)) == ("committed", 100)
    with pytest.raises(KeyError):
        with gates.reserve("tokens", up_to=100, subject=USER) as hold:
            raise KeyError("boom")
    assert (hold.state, used(gates)) == ("released", 100)
    with gates.reserve("tokens", up_to=100, subject=USER) as hold:
        hold.commit(7)
    assert (hold.state, used(gates)) == ("committed", 107)


def test_a_reserve_over_what_is_left_raises_the_metered_denial(app_and_gates):
    _, gates = app_and_gates
    gates.reserve("tokens", up_to=900, subject=USER)
    with pytest.raises(FeatureLimitExceeded) as denied:
        gates.reserve("tokens", up_to=200, subject=USER)
    assert (denied.value.limit, denied.value.used, denied.value.cost) == (1000, 900, 200)
    with pytest.raises(FeatureLimitExceeded):
        gates.reserve("tokens", up_to=1001, subject=USER)
    assert gates.reserve("tokens", up_to=100, subject=USER).up_to == 100


def test_a_hold_takes_from_the_pool_and_the_members_cap(app_and_gates):
    _, gates = app_and_gates
    alice, bob = Subject(1, "free", org_id=50), Subject(2, "free", org_id=50)
    held = gates.reserve("reports", up_to=4, subject=alice)
    with pytest.raises(FeatureLimitExceeded) as denied:
        gates.reserve("reports", up_to=1, subject=alice)
    assert denied.value.scope == "user"
    gates.reserve("reports", up_to=4, subject=bob).commit(4)
    usage = gates.get_usage("reports", subject=alice)
    assert (usage.used, usage.member_used) == (8, 4)
    held.commit(1)
    usage = gates.get_usage("reports", subject=alice)
    assert (usage.used, usage.member_used) == (5, 1)


def test_a_rolling_windows_hold_gives_back_to_the_bucket_it_took_from(app_and_gates, clock):
    _, gates = app_and_gates
    hold = gates.reserve("recent", up_to=8, subject=USER, ttl=600)
    clock.now += timedelta(minutes=5)
    hold.commit(3)
    assert used(gates, "recent") == 3
    clock.now += timedelta(minutes=56)
    assert used(gates, "recent") == 0


def test_an_unlimited_plan_holds_nothing_and_counts_what_is_committed(app_and_gates, db):
    _, gates = app_and_gates
    hold = gates.reserve("endless", up_to=10**6, subject=USER)
    assert holds(db) == 0
    hold.commit(42)
    assert used(gates, "endless") == 42


def test_the_period_is_fixed_when_reserved(app_and_gates, clock):
    _, gates = app_and_gates
    clock.now = datetime(2026, 3, 10, 23, 59, 30, tzinfo=UTC)
    hold = gates.reserve("daily", up_to=5, subject=USER, ttl=600)
    clock.now += timedelta(minutes=1)  # the next day
    hold.commit(2)
    assert used(gates, "daily") == 0
    clock.now -= timedelta(minutes=1)
    assert used(gates, "daily") == 2


# -- expiry with no job ----------------------------------------------------------------------


def test_an_expired_hold_is_reclaimed_by_the_check_that_needs_its_room(app_and_gates, db, clock):
    app, gates = app_and_gates
    gates.reserve("tokens", up_to=1000, subject=USER, ttl=30)
    with pytest.raises(FeatureLimitExceeded):
        gates.reserve("tokens", up_to=1, subject=USER)
    clock.now += timedelta(seconds=31)
    # Nothing ran in between: the metered check itself reclaims the hold.
    response = app.test_client().post("/generate?up_to=600&used=10", headers={"X-User": "7"})
    assert response.status_code == 200
    assert (used(gates), holds(db)) == (10, 0)


def test_committing_an_expired_hold_counts_nothing_and_says_so(app_and_gates, db, clock):
    _, gates = app_and_gates
    hold = gates.reserve("tokens", up_to=100, subject=USER)
    clock.now += timedelta(seconds=61)  # FEATURE_GATES_HOLD_TTL
    with pytest.raises(HoldExpired, match="longer ttl="):
        hold.commit(50)
    assert (hold.state, used(gates), holds(db)) == ("expired", 0, 0)
    hold.release()  # nothing more to do


def test_a_sigkilled_holders_capacity_returns_after_its_ttl(feature_gates_database_url, tmp_path):
    script = tmp_path / "holder.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {os.path.dirname(__file__)!r})
            from test_holds import make_app, USER
            app, gates = make_app({feature_gates_database_url!r})
            with app.app_context():
                gates.reserve("tokens", up_to=1000, subject=USER, ttl=1.5)
                print("held", flush=True)
                time.sleep(60)
            """
        )
    )
    command = [sys.executable, str(script)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
        finally:
            os.kill(holder.pid, signal.SIGKILL)
    app, gates = make_app(feature_gates_database_url)
    with app.app_context():
        try:
            with pytest.raises(FeatureLimitExceeded):
                gates.reserve("tokens", up_to=1, subject=USER)
            deadline = time.monotonic() + 10
            while True:
                try:
                    gates.reserve("tokens", up_to=1000, subject=USER).commit(1)
                    break
                except FeatureLimitExceeded:
                    assert time.monotonic() < deadline, "the holder's capacity never came back"
                    time.sleep(0.2)
            assert used(gates) == 1
        finally:
            gates.close(app)


# -- in a view -------------------------------------------------------------------------------


def test_a_view_commits_what_it_used(app_and_gates, db):
    app, gates = app_and_gates
    client = app.test_client()
    assert client.post("/generate?used=37", headers={"X-User": "7"}).status_code == 200
    assert (used(gates), holds(db)) == (37, 0)


def test_a_view_that_fails_releases_its_hold(app_and_gates, db):
    app, gates = app_and_gates
    client = app.test_client()
    with pytest.raises(RuntimeError):
        client.post("/generate?fail=1", headers={"X-User": "7"})
    assert client.post("/generate?status=500", headers={"X-User": "7"}).status_code == 500
    assert (used(gates), holds(db)) == (0, 0)


def test_a_view_that_succeeds_without_settling_commits_all_it_held(app_and_gates):
    app, gates = app_and_gates
    assert app.test_client().post("/generate", headers={"X-User": "7"}).status_code == 200
    assert used(gates) == 400


def test_a_view_whose_reserve_is_over_what_is_left_is_denied_before_it_runs(app_and_gates):
    app, gates = app_and_gates
    gates.reserve("tokens", up_to=700, subject=USER)
    response = app.test_client().post("/generate?used=1", headers={"X-User": "7"})
    assert response.status_code == 429
    assert response.get_json()["remaining"] == 300
    assert used(gates) == 700


def test_reserve_excludes_cost_and_current_hold_needs_a_reserving_view(app_and_gates):
    with pytest.raises(ValueError, match="reserve= or cost="):
        feature_limit("tokens", cost=2, reserve=10)
    with pytest.raises(RuntimeError, match="reserve="):
        feature_gates.current_hold()


# -- exact under concurrency -----------------------------------------------------------------


def test_32_threads_reserving_100_against_1000_get_exactly_10_holds(feature_gates_database_url, db):
    # Enough connections and patience that no reserve meets an empty pool on a slow
    # machine: this test is about exactness, not about outages.
    app, gates = make_app(
        feature_gates_database_url,
        FEATURE_GATES_POOL_MAX_SIZE=8,
        FEATURE_GATES_DB_TIMEOUT=30,
        FEATURE_GATES_FAIL_MODE="closed",
    )
    start = threading.Barrier(32)
    outcomes: list[str] = []
    lock = threading.Lock()

    def reserve() -> None:
        with app.app_context():
            start.wait()
            try:
                gates.reserve("tokens", up_to=100, subject=USER)
                outcome = "held"
            except FeatureLimitExceeded:
                outcome = "denied"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=reserve) for _ in range(32)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gates.close(app)
    assert (outcomes.count("held"), outcomes.count("denied")) == (10, 22)
    assert holds(db) == 10
    assert db.execute("SELECT usage_count FROM feature_usage").fetchall() == [(1000,)]


def test_many_operations_leak_nothing(feature_gates_database_url, db, request):
    """Reserve, commit, release and expire from threads: no hold and no use is left
    behind that was not committed (100,000 operations with --long)."""
    total = 100_000 if request.config.getoption("--long") else 2_000
    threads = 4
    app, gates = make_app(feature_gates_database_url)
    committed = [0] * threads

    def work(index: int) -> None:
        subject = Subject(100 + index % 2, "free")
        with app.app_context():
            for step in range(total // threads):
                try:
                    hold = gates.reserve("tokens", up_to=50, subject=subject, ttl=60)
                except FeatureLimitExceeded:
                    continue
                if step % 3 == 0:
                    hold.release()
                else:
                    hold.commit(step % 2)
                    committed[index] += step % 2

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        gates.close(app)
    assert holds(db) == 0
    counted = db.execute("SELECT coalesce(sum(usage_count), 0) FROM feature_usage").fetchone()
    assert counted[0] == sum(committed)
