"""Hostile input to the SQL functions, called as an application calls them (with
the documented parameter types): any feature name, SQL injection strings,
amounts and limits of 0, negative, huge or NULL, user ids at and beyond the
ends of bigint, any period. Each call either fails with a clear data error
(22023 for a value the rules refuse, 22003 for one its type cannot hold) or
returns what a model of the rules says; the table never holds a row that breaks
them, and nothing but the table changes.

Each example runs in a transaction that is rolled back, each call in a
savepoint of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from datetime import date

import psycopg
import pytest
from hypothesis import event
from hypothesis import given
from hypothesis import strategies as st

from feature_gates.migrate import MigrationSettings

pytestmark = pytest.mark.chaos

FEATURE_NAME = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
INJECTIONS = [
    "x'; DROP TABLE feature_usage; --",
    "chat_messages_monthly' OR '1'='1",
    "a); DELETE FROM feature_usage; --",
    "'||(SELECT version())||'",
    "a$$; SELECT pg_sleep(5); $$",
    "chat_messages_monthly\n",
    "Chat_messages_monthly",
    "a" * 65,
    "",
]

CALLS = {
    "increment": "SELECT increment_feature_usage_safe(%s::bigint, %s::text, %s::integer, %s::date)",
    "consume": (
        "SELECT consume_feature_usage(%s::bigint, %s::text, %s::integer, %s::bigint, %s::date)"
    ),
    "refund": "SELECT refund_feature_usage(%s::bigint, %s::text, %s::integer, %s::date)",
    "get": "SELECT get_feature_usage(%s::bigint, %s::text, %s::date)",
    "user_usage": "SELECT feature, usage_count FROM get_user_feature_usage(%s::bigint, %s::date)",
    "bulk": """
        SELECT user_id, feature, period_start, increment, usage_count
        FROM increment_feature_usage_safe(%s::bigint[], %s::text[], %s::bigint[], %s::date[],
                                          %s::text[])
        ORDER BY 1, 2, 3
    """,
    "archive": "SELECT archive_old_feature_usage(%s::integer)",
}

ROWS = "SELECT user_id, feature, period_start, usage_count FROM feature_usage"
ARCHIVED = "SELECT user_id, feature, period_start, usage_count FROM feature_usage_archive"
BROKEN_ROWS = """
SELECT count(*) FILTER (WHERE usage_count < 0 OR feature !~ '^[a-z][a-z0-9_.:-]{0,63}$'),
       count(*) - count(DISTINCT (user_id, feature, period_start))
FROM feature_usage
"""
TABLES = (
    "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
    "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'm', 'v')"
)


@pytest.fixture(scope="module")
def conn(feature_gates_databases):
    url = feature_gates_databases.create(MigrationSettings())
    with psycopg.connect(url) as conn:
        yield conn
    feature_gates_databases.drop(url)


# -- what can be sent ------------------------------------------------------------------

users = st.one_of(
    st.sampled_from([1, 2, -7, BIGINT_MAX, -(2**63)]),
    st.sampled_from([None, 2**63, -(2**63) - 1, 10**30]),
)
valid_features = st.one_of(
    st.sampled_from(["chat_messages_monthly", "a", "x.y:z-1", "a" * 64]),
    st.from_regex(FEATURE_NAME, fullmatch=True),
)
features = st.one_of(
    valid_features,
    st.sampled_from([None, *INJECTIONS]),
    # Any text PostgreSQL can receive: no NUL, no lone surrogate (not encodable).
    st.text(
        alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
        max_size=80,
    ),
)
amounts = st.one_of(
    st.integers(1, 5),
    st.sampled_from([None, 0, -1, -(2**31), INT_MAX, 2**31, BIGINT_MAX, 2**64]),
)
limits = st.one_of(st.integers(0, 12), st.sampled_from([None, -1, INT_MAX, BIGINT_MAX, 2**63]))
periods = st.one_of(
    st.sampled_from([date(2026, 11, 1), date(2026, 10, 1), date(2020, 2, 29)]),
    st.sampled_from([None, date.min, date.max]),
    st.dates(),
)
keep_months = st.one_of(
    st.integers(-2, 400), st.sampled_from([None, -(2**31), 12_000, 12_001, 100_000, INT_MAX, 2**31])
)
bulk_rows = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([1, 2]), users),
        st.one_of(st.sampled_from(["a", "b"]), features),
        st.one_of(st.integers(1, 3), st.sampled_from([None, 0, -2, 2**62, 2**63])),
        st.one_of(st.just(date(2026, 11, 1)), periods),
        st.one_of(st.none(), st.sampled_from(["job-1", "job-2", "", "k" * 256])),
    ),
    max_size=5,
)

calls = st.lists(
    st.one_of(
        st.tuples(st.just("increment"), users, features, amounts, periods),
        st.tuples(st.just("consume"), users, features, amounts, limits, periods),
        st.tuples(st.just("refund"), users, features, amounts, periods),
        st.tuples(st.just("get"), users, features, periods),
        st.tuples(st.just("user_usage"), users, periods),
        st.tuples(st.just("bulk"), bulk_rows),
        st.tuples(st.just("archive"), keep_months),
    ),
    max_size=15,
)


# -- the rules -------------------------------------------------------------------------


class Refused(Exception):
    """The call must fail with this SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def fits(value, low: int, high: int) -> bool:
    return value is None or low <= value <= high


def check_types(*pairs) -> None:
    """22003 when a value does not fit its parameter's type (the cast refuses it)."""
    for value, bits in pairs:
        if not fits(value, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1):
            raise Refused("22003")


def check_args(user, feature, period) -> None:
    if user is None or feature is None or period is None:
        raise Refused("22023")
    if not FEATURE_NAME.fullmatch(feature):
        raise Refused("22023")


def check_amount(amount) -> None:
    if amount is None or amount < 1:
        raise Refused("22023")


def months_back(period: date, months: int) -> date | None:
    """The first day of the month ``months`` before ``period``; None before year 1."""
    index = period.year * 12 + period.month - 1 - months
    return date(index // 12, index % 12 + 1, 1) if index >= 12 else None


@dataclass
class Model:
    """What the tables hold, by the rules."""

    current: date
    usage: dict[tuple, int] = field(default_factory=dict)
    archive: dict[tuple, int] = field(default_factory=dict)
    keys: set[tuple] = field(default_factory=set)

    def increment(self, user, feature, amount, period):
        check_types((user, 64), (amount, 32))
        check_args(user, feature, period)
        check_amount(amount)
        key = (user, feature, period)
        self.usage[key] = max(self.usage.get(key, 0), 0) + amount
        return [(self.usage[key],)]

    def consume(self, user, feature, amount, limit, period):
        check_types((user, 64), (amount, 32), (limit, 64))
        check_args(user, feature, period)
        check_amount(amount)
        if limit is None or limit < 0:
            raise Refused("22023")
        key = (user, feature, period)
        new = max(self.usage.get(key, 0), 0) + amount
        if amount > limit or new > limit:
            return [(None,)]
        self.usage[key] = new
        return [(new,)]

    def refund(self, user, feature, amount, period):
        check_types((user, 64), (amount, 32))
        check_args(user, feature, period)
        check_amount(amount)
        key = (user, feature, period)
        if key not in self.usage:
            return [(0,)]
        self.usage[key] = max(self.usage[key] - amount, 0)
        return [(self.usage[key],)]

    def get(self, user, feature, period):
        check_types((user, 64))
        check_args(user, feature, period)
        return [(self.usage.get((user, feature, period), 0),)]

    def user_usage(self, user, period):
        check_types((user, 64))
        check_args(user, "x", period)
        mine = [(f, n) for (u, f, p), n in self.usage.items() if u == user and p == period]
        return sorted(mine)

    def bulk(self, rows):
        for user, _, increment, _, _ in rows:
            check_types((user, 64), (increment, 64))
        for user, feature, increment, period, key in rows:
            check_args(user, feature, period)
            check_amount(increment)
            if key is not None and not 1 <= len(key) <= 255:
                raise Refused("22023")
        added: dict[tuple, int] = {}
        fresh = set()
        for user, feature, increment, period, key in rows:
            if key is not None:
                once = (user, feature, key)
                if once in self.keys or once in fresh:
                    continue
                fresh.add(once)
            added[(user, feature, period)] = added.get((user, feature, period), 0) + increment
        after = {k: max(self.usage.get(k, 0), 0) + n for k, n in added.items()}
        if any(n > BIGINT_MAX for n in [*added.values(), *after.values()]):
            raise Refused("22003")
        self.usage.update(after)
        self.keys |= fresh
        return sorted((*k, added[k], after[k]) for k in added)

    def archive_rows(self, keep):
        check_types((keep, 32))
        if keep is None or not 0 <= keep <= 12_000:
            raise Refused("22023")
        cutoff = months_back(self.current, keep)
        old = [k for k in self.usage if cutoff is not None and k[2] < cutoff]
        for key in old:
            self.archive[key] = self.archive.get(key, 0) + self.usage.pop(key)
        return [(len(old),)]


def params(name, args):
    if name != "bulk":
        return args
    (rows,) = args
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[], [], [], [], []]


@given(calls=calls)
def test_the_functions_refuse_clearly_or_answer_as_the_rules_say(conn, calls):
    with conn.transaction(force_rollback=True):
        tables = conn.execute(TABLES).fetchone()
        model = Model(conn.execute("SELECT feature_usage_current_period()").fetchone()[0])
        for name, *args in calls:
            method = model.archive_rows if name == "archive" else getattr(model, name)
            try:
                expected = method(*args)
            except Refused as refused:
                expected = refused
            try:
                with conn.transaction():
                    got = conn.execute(CALLS[name], params(name, args)).fetchall()
            except psycopg.Error as error:
                assert isinstance(expected, Refused), (name, args, error)
                assert error.sqlstate == expected.sqlstate, (name, args, error)
                event(f"{name}: refused with {error.sqlstate}")
                continue
            assert not isinstance(expected, Refused), (name, args, got)
            assert got == expected, (name, args)
            event(f"{name}: answered")

            assert conn.execute(BROKEN_ROWS).fetchone() == (0, 0)
            rows = {(u, f, p): n for u, f, p, n in conn.execute(ROWS)}
            assert rows == model.usage
            archived = {(u, f, p): n for u, f, p, n in conn.execute(ARCHIVED)}
            assert archived == model.archive
        # Injected text never ran: the same tables, nothing else.
        assert conn.execute(TABLES).fetchone() == tables
