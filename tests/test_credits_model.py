"""Holds and credits against a plain-Python model.

A sequential stateful test: random reserves, commits, releases, expiries, grants,
metered uses, refunds, resets and period changes for several subjects; after every step
each subject's balance equals the model's, and at the end the audit finds the
ledger in agreement. Then the same operations from threads, checking only the
invariant: no count passes its allowance plus what it drew on grants, and no
grant gives more than it had.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import psycopg
from credits_support import Clock
from flask import Flask
from flask import request
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.stateful import invariant
from hypothesis.stateful import precondition
from hypothesis.stateful import rule
from psycopg import sql

from feature_gates import FeatureGates
from feature_gates import FeatureLimitExceeded
from feature_gates import Hold
from feature_gates import HoldExpired
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates.migrate import audit_credits

UTC = timezone.utc
ALLOWANCE = 20
TTL = 600
PLANS = {"free": {"tokens": ALLOWANCE}}
SUBJECTS = (1, 2)


def make_app(url: str, clock: Clock) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_TRACKING="sync",
        FEATURE_GATES_COMMAND_NAME="",
        FEATURE_GATES_HOLD_TTL=TTL,
    )
    gates = FeatureGates(clock=clock)

    @gates.subject_loader
    def load() -> Subject:
        return Subject(int(request.headers["X-User"]), "free")

    @app.post("/use")
    @feature_limit("tokens", cost=lambda: int(request.args["cost"]))
    def use() -> tuple[str, int]:
        return "", int(request.args.get("status", 200))

    gates.init_app(app)
    return app, gates


# -- the model ---------------------------------------------------------------------------------


@dataclass
class GrantModel:
    order: int
    amount: int
    remaining: int
    expires: datetime | None

    def live(self, now: datetime) -> bool:
        return self.expires is None or self.expires > now


@dataclass
class HoldModel:
    subject: int
    period: int
    amount: int
    expires: datetime
    hold: Hold
    present: bool = True


@dataclass
class SubjectModel:
    counts: dict[int, int] = field(default_factory=dict)  # period -> count, holds included
    drawn: dict[int, int] = field(default_factory=dict)  # period -> drawn on grants
    grants: list[GrantModel] = field(default_factory=list)

    def take(self, period: int, amount: int, now: datetime, holds: list[HoldModel]) -> bool:
        """The metered check: the allowance, then reclaimed holds, then grants."""
        count = self.counts.get(period, 0)
        if count + amount <= ALLOWANCE:
            self.counts[period] = count + amount
            return True
        reclaimed = [h for h in holds if h.present and h.period == period and h.expires <= now]
        for hold in reclaimed:
            hold.present = False
            self.give_back(period, hold.amount, now)
        count = self.counts.get(period, 0)
        if reclaimed and count + amount <= ALLOWANCE:
            self.counts[period] = count + amount
            return True
        drawn = self.drawn.get(period, 0)
        need = count + amount - (ALLOWANCE + drawn)
        if need > 0:
            for grant in self.grants:
                if not grant.live(now):
                    grant.remaining = 0
            if sum(g.remaining for g in self.grants) < need:
                return False
            left = need
            for grant in self.in_order():
                take = min(left, grant.remaining)
                grant.remaining -= take
                left -= take
            self.drawn[period] = drawn + need
        self.counts[period] = count + amount
        return True

    def in_order(self) -> list[GrantModel]:
        never = datetime.max.replace(tzinfo=UTC)
        return sorted(self.grants, key=lambda g: (g.expires or never, g.order))

    def give_back(self, period: int, amount: int, now: datetime) -> None:
        self.counts[period] = max(self.counts.get(period, 0) - amount, 0)
        drawn = self.drawn.get(period, 0)
        if drawn == 0:
            return
        left = min(drawn, amount)
        self.drawn[period] = drawn - left
        for grant in reversed(self.in_order()):
            if grant.live(now) and grant.remaining < grant.amount:
                back = min(left, grant.amount - grant.remaining)
                grant.remaining += back
                left -= back

    def available(self, period: int, now: datetime) -> int:
        room = ALLOWANCE + self.drawn.get(period, 0) - self.counts.get(period, 0)
        return max(room, 0) + sum(g.remaining for g in self.grants if g.live(now))


class HoldsAndCredits(RuleBasedStateMachine):
    url: str

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
        self.period = 0
        self.app, self.gates = make_app(self.url, self.clock)
        self.context = self.app.app_context()
        self.context.push()
        self.subjects = {s: SubjectModel() for s in SUBJECTS}
        self.holds: list[HoldModel] = []
        self.grants = 0

    def teardown(self) -> None:
        try:
            assert audit_credits(self.url) == []
        finally:
            self.context.pop()
            self.gates.close(self.app)
            with self.gates_db() as conn:
                for table in (
                    "feature_usage_ledger",
                    "feature_usage_grants",
                    "feature_usage_holds",
                    "feature_usage",
                ):
                    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))

    def gates_db(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    @rule(subject=st.sampled_from(SUBJECTS), up_to=st.integers(1, 12))
    def reserve(self, subject: int, up_to: int) -> None:
        model = self.subjects[subject]
        try:
            hold = self.gates.reserve("tokens", up_to=up_to, subject=Subject(subject, "free"))
        except FeatureLimitExceeded:
            assert not model.take(self.period, up_to, self.clock.now, self.holds)
            return
        assert model.take(self.period, up_to, self.clock.now, self.holds)
        expires = self.clock.now + timedelta(seconds=TTL)
        self.holds.append(HoldModel(subject, self.period, up_to, expires, hold))

    @precondition(lambda self: any(not h.hold.settled for h in self.holds))
    @rule(data=st.data(), release=st.booleans())
    def settle(self, data: st.DataObject, release: bool) -> None:
        open_holds = [h for h in self.holds if not h.hold.settled]
        held = data.draw(st.sampled_from(open_holds))
        actual = 0 if release else data.draw(st.integers(0, held.amount))
        model = self.subjects[held.subject]
        expired = held.expires <= self.clock.now
        try:
            if release:
                held.hold.release()
            else:
                held.hold.commit(actual)
            assert release or not expired
        except HoldExpired:
            assert expired and not release
        if held.present:
            held.present = False
            model.give_back(
                held.period, held.amount if expired else held.amount - actual, self.clock.now
            )

    @rule(subject=st.sampled_from(SUBJECTS), cost=st.integers(1, 8), fails=st.booleans())
    def use(self, subject: int, cost: int, fails: bool) -> None:
        """A metered use; one that fails is refunded."""
        response = self.app.test_client().post(
            "/use",
            query_string={"cost": cost, "status": 500 if fails else 200},
            headers={"X-User": str(subject)},
        )
        model = self.subjects[subject]
        allowed = model.take(self.period, cost, self.clock.now, self.holds)
        assert response.status_code == ((500 if fails else 200) if allowed else 429)
        if allowed and fails:
            model.give_back(self.period, cost, self.clock.now)

    @rule(
        subject=st.sampled_from(SUBJECTS),
        amount=st.integers(1, 15),
        days=st.one_of(st.none(), st.integers(1, 60)),
    )
    def grant(self, subject: int, amount: int, days: int | None) -> None:
        expires = None if days is None else self.clock.now + timedelta(days=days)
        self.gates.grant("tokens", amount, subject=Subject(subject, "free"), expires_at=expires)
        self.grants += 1
        self.subjects[subject].grants.append(GrantModel(self.grants, amount, amount, expires))

    @rule(subject=st.sampled_from(SUBJECTS))
    def reset(self, subject: int) -> None:
        """reset_usage: the count starts afresh but for its live holds' uses, and so
        do its draws on grants (but for what those holds drew)."""
        self.gates.reset_usage("tokens", subject=Subject(subject, "free"))
        model = self.subjects[subject]
        held = sum(
            h.amount
            for h in self.holds
            if h.subject == subject and h.present and h.period == self.period
        )
        model.counts[self.period] = held
        model.drawn[self.period] = min(model.drawn.get(self.period, 0), held)

    @rule(minutes=st.sampled_from([1, 11, 30]))
    def time_passes(self, minutes: int) -> None:
        """Minutes pass; 11 of them expire every hold (ttl 10 minutes)."""
        self.clock.now += timedelta(minutes=minutes)

    @rule()
    def next_period(self) -> None:
        first = self.clock.now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        self.clock.now = (first + timedelta(days=32)).replace(day=1, hour=0, minute=5)
        self.period += 1

    @invariant()
    def balances_equal_the_model(self) -> None:
        for subject, model in self.subjects.items():
            balance = self.gates.balance("tokens", subject=Subject(subject, "free"))
            # The balance reclaims the key's expired holds first, as the model does.
            for held in self.holds:
                if (
                    held.subject == subject
                    and held.present
                    and held.period == self.period
                    and held.expires <= self.clock.now
                ):
                    held.present = False
                    model.give_back(held.period, held.amount, self.clock.now)
            live = [g for g in model.in_order() if g.live(self.clock.now) and g.remaining > 0]
            assert [g.remaining for g in balance.grants] == [g.remaining for g in live]
            held = sum(
                h.amount
                for h in self.holds
                if h.subject == subject and h.present and h.period == self.period
            )
            assert balance.held == held
            assert balance.used == model.counts.get(self.period, 0) - held
            assert balance.available == model.available(self.period, self.clock.now)


def test_holds_and_credits_follow_the_model(feature_gates_database_url, request):
    HoldsAndCredits.url = feature_gates_database_url
    steps = 50 if request.config.getoption("--long") else 20
    HoldsAndCredits.TestCase.settings = settings(stateful_step_count=steps)
    HoldsAndCredits.TestCase().runTest()


def test_from_threads_no_count_passes_its_allowance_and_grants(feature_gates_database_url, request):
    clock = Clock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    app, gates = make_app(feature_gates_database_url, clock)
    steps = 2_000 if request.config.getoption("--long") else 150
    failures: list[str] = []
    subject = Subject(9, "free")

    def work(seed: int) -> None:
        rng = random.Random(seed)
        with app.app_context():
            holds: list[Hold] = []
            for _ in range(steps):
                action = rng.choice(["reserve", "settle", "grant", "use"])
                try:
                    if action == "reserve":
                        holds.append(
                            gates.reserve("tokens", up_to=rng.randint(1, 9), subject=subject)
                        )
                    elif action == "settle" and holds:
                        hold = holds.pop(rng.randrange(len(holds)))
                        hold.commit(
                            rng.randint(0, hold.up_to)
                        ) if rng.random() < 0.7 else hold.release()
                    elif action == "grant":
                        gates.grant("tokens", rng.randint(1, 4), subject=subject)
                    else:
                        with gates.reserve("tokens", up_to=rng.randint(1, 5), subject=subject):
                            pass
                except FeatureLimitExceeded:
                    pass
                with gates_connection(feature_gates_database_url) as conn:
                    broken = conn.execute(
                        "SELECT usage_count, credit_used FROM feature_usage "
                        "WHERE usage_count > %s + credit_used",
                        (ALLOWANCE,),
                    ).fetchall()
                if broken:
                    failures.append(f"{broken}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gates.close(app)
    assert failures == []
    assert audit_credits(feature_gates_database_url) == []


def gates_connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)
