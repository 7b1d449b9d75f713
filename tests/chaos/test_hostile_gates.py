"""Hostile input to the decorators: any feature name, any cost a client can send,
user ids at the ends of bigint, unknown plans, clocks anywhere from year 1 to
9999 (naive or not). Every answer is right (checked against a model) or a 4xx;
never a 500."""

from __future__ import annotations

import re
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import psycopg
import pytest
from flask import Flask
from flask import abort
from flask import request
from hypothesis import given
from hypothesis import strategies as st

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier
from feature_gates.core import month_start
from feature_gates.migrate import MigrationSettings

pytestmark = pytest.mark.chaos

#: What the database accepts as a feature name (feature_usage_check_args).
FEATURE_NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
BIGINT_MAX = 2**63 - 1
PLANS = {
    "free": {"uses": 5},
    "pro": {"uses": 1000},
    "most": {"uses": 2**31 - 1},  # the most one call can consume
    "open": {"uses": None},
}
USERS = [1, BIGINT_MAX, -(2**63)]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def url(feature_gates_databases):
    url = feature_gates_databases.create(MigrationSettings())
    yield url
    feature_gates_databases.drop(url)


@given(name=st.one_of(st.text(), st.from_regex(FEATURE_NAME, fullmatch=True)))
def test_a_feature_name_is_taken_exactly_when_the_database_would_take_it(name):
    valid = FEATURE_NAME.fullmatch(name) is not None

    def view():
        return "ok"

    for decorate in (
        lambda: feature_required(name)(view),
        lambda: feature_limit(name)(view),
        lambda: feature_tier("pro", feature=name)(view),
    ):
        if valid:
            decorate()
        else:
            with pytest.raises(ValueError, match="is not a valid feature name"):
                decorate()


#: Costs a client may send: small, at the edges of integer and bigint, beyond.
costs = st.one_of(
    st.integers(0, 8),
    st.sampled_from([2**31 - 1, 2**31, 2**40, BIGINT_MAX, 2**63, 10**30]),
    st.integers(-3, -1),
)
calls = st.lists(
    st.tuples(st.sampled_from(USERS), st.sampled_from([*PLANS, "nope"]), costs), max_size=12
)
offsets = st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23)))
clocks = st.datetimes(
    datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.one_of(st.none(), offsets)
)


@given(calls=calls, moment=clocks)
def test_metered_gates_answer_any_call_right_or_with_a_4xx(url, calls, moment):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM feature_usage")
    app, gates = hostile_app(url, lambda: moment)
    model = dict.fromkeys(USERS, 0)
    period = month_start(moment)
    try:
        client = app.test_client()
        for user, plan, n in calls:
            reply = client.post(f"/use?n={n}", headers={"X-User": str(user), "X-Plan": plan})
            limit = PLANS.get(plan, {"uses": 0})["uses"]
            if limit == 0:
                expected = 403
            elif n < 0:
                expected = 400
            elif limit is None:
                expected = 200
                if model[user] + n <= BIGINT_MAX:  # beyond, the database refuses it
                    model[user] += n
            elif n == 0 or model[user] + n <= limit:
                expected = 200  # nothing to consume is never refused
                model[user] += n
            else:
                expected = 429
            assert reply.status_code == expected, (user, plan, n, reply.get_data())
            if expected in (403, 429):
                assert reply.mimetype == PROBLEM
                assert reply.get_json()["feature"] == "uses"
            if expected == 200 and limit is not None and n > 0:
                assert int(reply.headers["X-Feature-Remaining"]) == limit - model[user]
                assert int(reply.headers["X-Feature-Reset"]) >= 0
            if expected == 429:
                assert int(reply.headers["Retry-After"]) >= 1
    finally:
        gates.close(app, timeout=30)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT user_id, period_start, usage_count FROM feature_usage"
        ).fetchall()
    assert {(u, p, n) for u, p, n in rows if n} == {(u, period, n) for u, n in model.items() if n}


def hostile_app(url: str, clock) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_HEADERS_ENABLED=True,
    )
    gates = FeatureGates(clock=clock)

    @gates.subject_loader
    def caller():
        return Subject(int(request.headers["X-User"]), request.headers["X-Plan"])

    def cost():
        # What a client asks for, as an app reads it: a whole number, not negative.
        n = request.args.get("n", type=int)
        if n is None or n < 0:
            abort(400)
        return n

    @app.post("/use")
    @feature_limit("uses", cost=cost)
    def use():
        return {"used": True}

    gates.init_app(app)
    return app, gates


def call(app, n: int, plan: str = "free", user: int = 1):
    return app.test_client().post(f"/use?n={n}", headers={"X-User": str(user), "X-Plan": plan})


def test_a_cost_above_the_limit_is_refused_whatever_its_size(url):
    app, gates = hostile_app(url, lambda: datetime(2026, 5, 17, tzinfo=timezone.utc))
    try:
        # Larger than the database's integer amounts: refused, not a 500.
        assert call(app, 2**40).status_code == 429
        assert call(app, 2**31, plan="most").status_code == 429
        assert call(app, 6).get_json()["used"] == 0
        assert call(app, 2**31 - 1, plan="most").status_code == 200
    finally:
        gates.close(app, timeout=30)


def test_the_last_month_there_is_never_resets(url):
    app, gates = hostile_app(url, lambda: datetime(9999, 12, 31, 12, tzinfo=timezone.utc))
    try:
        assert call(app, 5, user=2).status_code == 200
        refused = call(app, 1, user=2)
        assert refused.status_code == 429
        # No period starts after 9999: nothing to wait for.
        assert refused.get_json()["reset_at"] is None
        assert "Retry-After" not in refused.headers
    finally:
        gates.close(app, timeout=30)


def test_a_naive_clock_tells_utc(url):
    app, gates = hostile_app(url, lambda: datetime(2026, 3, 31, 23, 59, 59))
    try:
        allowed = call(app, 1, user=3)
        assert allowed.status_code == 200
        assert allowed.headers["X-Feature-Reset"] == "1"
        assert call(app, 5, user=3).status_code == 429
    finally:
        gates.close(app, timeout=30)


def test_a_count_at_the_largest_bigint_is_over_every_limit(url):
    app, gates = hostile_app(url, lambda: datetime(2026, 5, 17, tzinfo=timezone.utc))
    try:
        assert call(app, BIGINT_MAX, plan="open", user=4).status_code == 200
        refused = call(app, 1, plan="free", user=4)
        assert refused.status_code == 429
        assert refused.mimetype == PROBLEM
    finally:
        gates.close(app, timeout=30)
