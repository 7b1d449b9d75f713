"""Counting rules: the catalogue's mapping form read into a rule, and the key a
use counts against, fixed when it happens."""

from __future__ import annotations

from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_gates.core._counting import Key
from feature_gates.core._counting import Rule
from feature_gates.core._counting import RuleError
from feature_gates.core._counting import parse_rule
from feature_gates.core._counting import zone_named
from feature_gates.core._periods import Window

UTC = timezone.utc
NOW = datetime(2026, 3, 29, 22, 30, tzinfo=UTC)  # 00:30 on the 30th in Paris (summer time)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("value", "rule", "per_user"),
    [
        ({"limit": 5}, Rule(zoned=True), None),
        ({"limit": 5, "period": "day"}, Rule(period="day", zoned=True), None),
        ({"limit": 5, "period": "lifetime"}, Rule(period="lifetime", zoned=True), None),
        (
            {"limit": 5, "period": "month", "anchor": "subscription"},
            Rule(anchored=True, zoned=True),
            None,
        ),
        ({"limit": 5, "scope": "org", "per_user": 2}, Rule(scope="org", zoned=True), 2),
    ],
)
def test_the_mapping_form_reads_into_a_rule(value, rule, per_user):
    assert parse_rule(value) == (rule, per_user)


def test_a_window_reads_into_a_rule_without_a_period():
    rule, _ = parse_rule({"limit": 5, "window": "90m", "scope": "org"})
    assert rule.window is not None and rule.window.seconds == 5400
    assert (rule.period, rule.scope, rule.label) == (None, "org", "90m window")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"period": "day"}, "the mapping form takes 'limit'"),
        ({"limit": 1, "per": "day"}, "the mapping form takes 'limit'"),
        ({"limit": 1, "period": "fortnight"}, "period must be one of hour, day, week"),
        ({"limit": 1, "period": "day", "window": "1h"}, "'period' and 'window' exclude each"),
        ({"limit": 1, "window": "1w"}, "a window is N minutes, hours or days"),
        ({"limit": 1, "anchor": "signup"}, "anchor must be 'subscription'"),
        ({"limit": 1, "period": "hour", "anchor": "subscription"}, "a hour has no anchor"),
        ({"limit": 1, "window": "5h", "anchor": "subscription"}, "a 5h window has no anchor"),
        ({"limit": 1, "scope": "team"}, "scope must be 'user' or 'org'"),
        ({"limit": 1, "per_user": 2}, "it needs scope = 'org'"),
        ({"limit": 1, "scope": "org", "per_user": 0}, "per_user must be a whole number"),
        ({"limit": 1, "scope": "org", "per_user": True}, "per_user must be a whole number"),
        ({"limit": 1, "carry": 10}, "the mapping form takes 'limit' and any of"),
    ],
)
def test_a_mapping_form_that_cannot_be_used_says_why(value, message):
    with pytest.raises(RuleError, match=message):
        parse_rule(value)


def key(rule, **subject):
    return rule.key("api", NOW, **{"user_id": 7, **subject})


def test_the_default_kind_is_the_utc_month_whatever_the_zone():
    assert key(Rule(), zone=PARIS) == Key(
        "user", 7, None, "api", "month", date(2026, 3, 1), 0, datetime(2026, 4, 1, tzinfo=UTC), None
    )


def test_a_zoned_period_counts_in_the_subjects_zone_and_records_it():
    found = key(Rule(period="day", zoned=True), zone=PARIS)
    assert (found.rule, found.period_start, found.period_offset) == (
        "day@Europe/Paris",
        date(2026, 3, 29),
        79200,  # midnight in Paris is 22:00 UTC in summer
    )
    assert found.period_end == datetime(2026, 3, 30, 22, tzinfo=UTC)
    # In UTC (under any of its names) it is the plain rule: the bare calendar day.
    assert key(Rule(period="day", zoned=True), zone=zone_named("Etc/UTC")).rule == "day"


def test_an_hour_and_a_lifetime_ignore_the_zone():
    assert key(Rule(period="hour", zoned=True), zone=PARIS).rule == "hour"
    lifetime = key(Rule(period="lifetime", zoned=True), zone=PARIS)
    assert (lifetime.rule, lifetime.period_start, lifetime.period_end) == (
        "lifetime",
        date(1970, 1, 1),
        None,
    )


def test_an_anchored_period_starts_at_the_anchor_in_its_zone():
    anchor = datetime(2026, 1, 31, 9, 0, tzinfo=PARIS)
    found = key(Rule(anchored=True, zoned=True), anchor=anchor)
    assert found.rule == "month+anchor"
    assert (found.period_start, found.period_offset) == (date(2026, 2, 28), 8 * 3600)
    assert found.period_end == datetime(2026, 3, 31, 7, tzinfo=UTC)


def test_a_pool_counts_under_the_organisation_with_the_user_as_its_member():
    found = key(Rule(scope="org", zoned=True), org_id=70)
    assert (found.scope, found.subject, found.member) == ("org", 70, 7)


def test_a_window_counts_in_the_bucket_of_the_use():
    rule, _ = parse_rule({"limit": 5, "window": "1h"})
    found = key(rule)
    assert (found.rule, found.period_start, found.period_offset) == (
        "window:3600",
        date(1970, 1, 1),
        0,
    )
    assert found.bucket == int(NOW.timestamp()) // 60


def test_a_zone_name_that_is_not_iana_is_refused_by_name():
    with pytest.raises(RuleError, match="'Mars/Olympus' is not an IANA time zone name"):
        zone_named("Mars/Olympus")


RULES = [
    Rule(),
    Rule(period="hour", zoned=True),
    Rule(period="day", zoned=True),
    Rule(period="week", zoned=True),
    Rule(period="year", zoned=True),
    Rule(period="lifetime", zoned=True),
    Rule(period="day", anchored=True, zoned=True),
    Rule(anchored=True, zoned=True),
    Rule(scope="org", zoned=True),
    Rule(period=None, window=Window(3600)),
    Rule(period=None, window=Window(90 * 60)),
]


@given(
    rule=st.sampled_from(RULES),
    zone=st.sampled_from([UTC, PARIS, ZoneInfo("America/Santiago"), ZoneInfo("Asia/Kolkata")]),
    base=st.datetimes(min_value=datetime(1, 1, 8), max_value=datetime(9999, 12, 20)),
    steps=st.lists(st.integers(-4 * 86400, 4 * 86400), min_size=1, max_size=12),
)
def test_a_rule_keys_each_use_as_if_it_were_its_first(rule, zone, base, steps):
    """A rule keeps the period it computed last; a use at any moment (later, earlier,
    past a boundary, in another zone or from another anchor) still gets the key a
    new rule gives it."""
    for seconds in steps:
        moment = base.replace(tzinfo=UTC) + timedelta(seconds=seconds)
        # The same instant as two anchors: periods advance in each anchor's own zone.
        paris, utc = datetime(2026, 1, 31, 9, tzinfo=PARIS), datetime(2026, 1, 31, 8, tzinfo=UTC)
        for subject_zone, subject_anchor in ((zone, paris), (PARIS, utc), (zone, None)):
            if rule.anchored and subject_anchor is None:
                continue
            fresh = Rule(rule.scope, rule.period, rule.window, rule.anchored, rule.zoned)
            given_now = moment if seconds % 2 else moment.replace(tzinfo=None)
            found = rule.key(
                "api", given_now, user_id=7, org_id=70, anchor=subject_anchor, zone=subject_zone
            )
            assert found == fresh.key(
                "api", moment, user_id=7, org_id=70, anchor=subject_anchor, zone=subject_zone
            )
