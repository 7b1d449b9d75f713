"""Period boundaries against a plain reference: every period kind, calendar and
anchored, in zones with DST changes both ways (at midnight too), anchors on the
28th to the 31st and on 29 February, year ends, and a clock anywhere from
0001-01-02 to 9999-12-30 UTC.

The reference knows nothing of folds or gaps: a period starts at the first
instant whose wall time reads its first wall time or later, found by walking
the instants minute by minute, then second by second.
"""

from __future__ import annotations

import calendar
import functools
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from feature_gates.core._periods import EPOCH
from feature_gates.core._periods import FIRST_INSTANT
from feature_gates.core._periods import Span
from feature_gates.core._periods import Window
from feature_gates.core._periods import anchored_span
from feature_gates.core._periods import calendar_span
from feature_gates.core._periods import join_start
from feature_gates.core._periods import split_start

UTC = timezone.utc
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)

ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",  # DST changes at midnight, both ways
    "America/Havana",  # DST changes at midnight
    "Australia/Lord_Howe",  # a half-hour DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kolkata",  # +05:30, no DST
    "Africa/Casablanca",  # DST set back during Ramadan
    "America/St_Johns",  # -03:30 / -02:30; in 1995 set back from 00:01 to 23:01
    "Pacific/Kiritimati",  # +14
    "Pacific/Apia",  # skipped 30 December 2011
    "Asia/Tokyo",  # +09:18:59 before 1888: a year 1 that began in year 0 UTC
]

# -- the reference -----------------------------------------------------------------------


def wall(instant: datetime, zone: ZoneInfo) -> datetime | None:
    """The zone's clock at ``instant``; None outside the years a datetime holds."""
    try:
        return instant.astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        return None


def reads_at_least(instant: datetime, zone: ZoneInfo, target: datetime) -> bool:
    reading = wall(instant, zone)
    if reading is None:  # before year 1, or after 9999
        return instant.year > 5000
    return reading >= target


@functools.lru_cache(maxsize=4096)
def first_reading(target: datetime, zone_name: str) -> datetime | None:
    """The first instant whose wall time in the zone is ``target`` or later: the
    first instant of the calendar (or None: never) when outside it."""
    zone = ZoneInfo(zone_name)
    try:
        instant = target.replace(tzinfo=UTC) - timedelta(hours=16)
    except OverflowError:
        instant = FIRST_INSTANT
    if reads_at_least(instant, zone, target):
        return instant
    step = timedelta(minutes=1)
    while True:
        try:
            following = instant + step
        except OverflowError:
            return None
        if reads_at_least(following, zone, target):
            break
        instant = following
    while not reads_at_least(instant, zone, target):
        instant += timedelta(seconds=1)
    return None if wall(instant, zone) is None else instant


def reference_span(walls, moment: datetime, zone_name: str, guess: int) -> Span:
    """The period holding ``moment`` of the periods starting at the wall times
    ``walls(n)`` (None: outside the calendar, before or after by ``n``)."""

    def start(n: int) -> datetime | None:
        target = walls(n)
        if target is None:
            return FIRST_INSTANT if n < guess else None
        return first_reading(target, zone_name)

    n = guess
    while (begins := start(n)) is None or begins > moment:
        n -= 1
    while (ends := start(n + 1)) is not None and ends <= moment:
        n += 1
        begins = ends
    return Span(begins, ends)


def calendar_walls(kind: str, day: date):
    """(first wall time of the n-th calendar period, n of ``day``'s period)."""

    def walls(n: int) -> datetime | None:
        if kind == "day":
            first = day + timedelta(days=n)
        elif kind == "week":
            first = day - timedelta(days=day.weekday()) + timedelta(weeks=n)
        elif kind == "month":
            year, month = day.year + (day.month - 1 + n) // 12, (day.month - 1 + n) % 12 + 1
            first = date(year, month, 1)
        else:
            first = date(day.year + n, 1, 1)
        return datetime.combine(first, time())

    def guarded(n: int) -> datetime | None:
        try:
            return walls(n)
        except (OverflowError, ValueError):
            return None

    return guarded, 0


def anchored_walls(kind: str, anchor: datetime, local: datetime):
    """The anchor's wall time advanced by n periods, the day of the month held
    back to the month's last day when the month is shorter."""
    base = anchor.replace(tzinfo=None, microsecond=0)

    def walls(n: int) -> datetime | None:
        try:
            if kind == "day":
                return base + timedelta(days=n)
            if kind == "week":
                return base + timedelta(weeks=n)
            months = n if kind == "month" else 12 * n
            year = base.year + (base.month - 1 + months) // 12
            month = (base.month - 1 + months) % 12 + 1
            last = calendar.monthrange(year, month)[1]
            return base.replace(year=year, month=month, day=min(base.day, last))
        except (OverflowError, ValueError):
            return None

    if kind in ("day", "week"):
        guess = (local.date() - base.date()).days // (1 if kind == "day" else 7)
    else:
        guess = (local.year - base.year) * 12 + local.month - base.month
        guess = guess if kind == "month" else guess // 12
    return walls, guess


# -- strategies ----------------------------------------------------------------------------

anywhen = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda moment: moment.replace(tzinfo=UTC)
)


@functools.cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """Instants (to the day) where the zone's offset changes, 1995 to 2035."""
    zone = ZoneInfo(zone_name)
    found = []
    day = datetime(1995, 1, 1, tzinfo=UTC)
    offset = day.astimezone(zone).utcoffset()
    while day.year < 2035:
        following = day + timedelta(days=1)
        changed = following.astimezone(zone).utcoffset()
        if changed != offset:
            found.append(day)
            offset = changed
        day = following
    return tuple(found) or (datetime(2020, 1, 1, tzinfo=UTC),)


@st.composite
def zone_and_moment(draw):
    """A zone, and a moment anywhere or within two days of one of its DST changes."""
    zone_name = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        return zone_name, draw(anywhen)
    change = draw(st.sampled_from(transitions(zone_name)))
    seconds = draw(st.integers(-2 * 86400, 3 * 86400))
    return zone_name, change + timedelta(seconds=seconds)


@st.composite
def anchors(draw):
    """An anchor on the 28th to the 31st, on 29 February, or anywhere; in a zone."""
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    year = draw(st.integers(1, 9999))
    choice = draw(st.sampled_from(["month end", "29 February", "any"]))
    if choice == "29 February":
        year = draw(st.sampled_from([y for y in range(1, 10000, 97) if calendar.isleap(y)]))
        day = date(year, 2, 29)
    else:
        month = draw(st.integers(1, 12))
        last = calendar.monthrange(year, month)[1]
        low = 28 if choice == "month end" else 1
        day = date(year, month, draw(st.integers(min(low, last), last)))
    clock = draw(st.times()).replace(tzinfo=None)
    return datetime.combine(day, clock, tzinfo=zone)


# -- calendar periods ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["day", "week", "month", "year"])
@given(case=zone_and_moment())
@example(case=("UTC", datetime(1, 1, 2, tzinfo=UTC)))
@example(case=("Pacific/Kiritimati", datetime(1, 1, 2, tzinfo=UTC)))
@example(case=("Pacific/Kiritimati", datetime(9999, 12, 30, 23, 59, tzinfo=UTC)))
@example(case=("America/Santiago", datetime(2024, 9, 8, 3, 59, 59, tzinfo=UTC)))
@example(case=("America/Santiago", datetime(2024, 4, 7, 3, 30, tzinfo=UTC)))
@example(case=("Pacific/Apia", datetime(2011, 12, 30, 12, tzinfo=UTC)))
@example(case=("Europe/Paris", datetime(2026, 12, 31, 23, 0, tzinfo=UTC)))
@example(case=("America/St_Johns", datetime(1995, 10, 29, 2, 31, tzinfo=UTC)))
def test_calendar_periods_match_the_reference(kind, case):
    zone_name, moment = case
    zone = ZoneInfo(zone_name)
    span = calendar_span(kind, moment, zone)
    local = wall(moment, zone) or (datetime.max if moment.year > 5000 else datetime.min)
    walls, guess = calendar_walls(kind, local.date())
    assert span == reference_span(walls, moment, zone_name, guess)
    assert span.start <= moment and (span.end is None or moment < span.end)


@pytest.mark.parametrize("kind", ["day", "week", "month", "year"])
@given(moment=anywhen)
@example(moment=datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC))
@example(moment=datetime(1, 1, 2, tzinfo=UTC))
def test_the_utc_calendar_counts_as_the_utc_zone_does(kind, moment):
    # timezone.utc, the default kind's zone, takes a path of its own.
    assert calendar_span(kind, moment, UTC) == calendar_span(kind, moment, ZoneInfo("UTC"))


@given(moment=anywhen)
@example(moment=datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC))
def test_an_hour_is_a_utc_hour_whatever_the_zone(moment):
    span = calendar_span("hour", moment, ZoneInfo("Asia/Kolkata"))
    assert span.start == moment.replace(minute=0, second=0, microsecond=0)
    assert span.end == span.start + timedelta(hours=1)


def test_the_last_hour_of_the_calendar_never_ends():
    assert calendar_span("hour", datetime(9999, 12, 31, 23, 30, tzinfo=UTC)).end is None


def test_a_lifetime_starts_at_the_epoch_and_never_ends():
    assert calendar_span("lifetime", datetime(2, 1, 1, tzinfo=UTC)) == Span(EPOCH, None)


@pytest.mark.parametrize("kind", ["day", "week", "month", "year"])
@given(case=zone_and_moment())
def test_calendar_periods_follow_each_other_without_gap_or_overlap(kind, case):
    zone_name, moment = case
    zone = ZoneInfo(zone_name)
    span = calendar_span(kind, moment, zone)
    if span.end is not None:
        assert calendar_span(kind, span.end, zone).start == span.end
    if span.start > FIRST_INSTANT:
        assert calendar_span(kind, span.start - timedelta(microseconds=1), zone).end == span.start


@pytest.mark.parametrize(
    ("zone_name", "day", "hours"),
    [
        ("Europe/Paris", date(2026, 3, 29), 23),
        ("Europe/Paris", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("America/Santiago", date(2024, 9, 8), 23),  # midnight does not exist
        ("America/Santiago", date(2024, 4, 6), 25),  # 23:00-24:00 happens twice
        ("Australia/Lord_Howe", date(2026, 4, 5), 24.5),
        ("Europe/Paris", date(2026, 7, 1), 24),
    ],
)
def test_a_dst_change_makes_a_day_23_or_25_hours_long(zone_name, day, hours):
    zone = ZoneInfo(zone_name)
    noon = datetime.combine(day, time(12), zone).astimezone(UTC)
    span = calendar_span("day", noon, zone)
    assert span.end is not None
    assert (span.end - span.start) == timedelta(hours=hours)
    assert span.start.astimezone(zone).date() == day


def test_a_day_whose_midnight_the_clocks_skip_starts_at_the_jump():
    santiago = ZoneInfo("America/Santiago")
    span = calendar_span("day", datetime(2024, 9, 8, 12, tzinfo=UTC), santiago)
    assert span.start == datetime(2024, 9, 8, 4, tzinfo=UTC)  # 00:00 -04 became 01:00 -03
    assert span.start.astimezone(santiago).time() == time(1)


def test_a_week_starts_on_monday_and_a_year_on_the_first_of_january():
    moment = datetime(2027, 1, 1, 12, tzinfo=UTC)  # a Friday
    assert calendar_span("week", moment).start == datetime(2026, 12, 28, tzinfo=UTC)
    assert calendar_span("year", moment).start == datetime(2027, 1, 1, tzinfo=UTC)
    paris = ZoneInfo("Europe/Paris")
    new_year = calendar_span("year", datetime(2026, 12, 31, 23, 30, tzinfo=UTC), paris)
    assert new_year.start == datetime(2026, 12, 31, 23, tzinfo=UTC)


def test_a_year_past_9999_never_comes():
    span = calendar_span("year", datetime(9999, 6, 1, tzinfo=UTC))
    assert span == Span(datetime(9999, 1, 1, tzinfo=UTC), None)
    assert calendar_span("month", datetime(9999, 12, 30, tzinfo=UTC)).end is None


def test_a_period_that_began_before_year_one_counts_from_its_first_instant():
    tokyo = ZoneInfo("Asia/Tokyo")  # +09:18:59 then
    span = calendar_span("month", datetime(1, 1, 2, tzinfo=UTC), tokyo)
    assert span.start == FIRST_INSTANT
    assert span.end == datetime(1, 1, 31, 14, 41, 1, tzinfo=UTC)  # 1 February, 00:00 +09:18:59


# -- anchored periods ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["day", "week", "month", "year"])
@given(anchor=anchors(), moment=anywhen, near=st.booleans())
def test_anchored_periods_match_the_reference(kind, anchor, moment, near):
    if near:
        # Next to the anchor, where its month ends and DST changes are likeliest.
        try:
            moment = anchor.astimezone(UTC) + (moment - datetime(5000, 1, 1, tzinfo=UTC)) / 2000
        except OverflowError:
            pass
    zone = anchor.tzinfo
    assert isinstance(zone, ZoneInfo)
    span = anchored_span(kind, moment, anchor)
    local = wall(moment, zone) or (datetime.max if moment.year > 5000 else datetime.min)
    walls, guess = anchored_walls(kind, anchor, local)
    assert span == reference_span(walls, moment, zone.key, guess)


@pytest.mark.parametrize(
    ("anchor_day", "starts"),
    [
        (date(2026, 1, 31), ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]),
        (date(2028, 1, 30), ["2028-01-30", "2028-02-29", "2028-03-30", "2028-04-30", "2028-05-30"]),
        (date(2026, 1, 29), ["2026-01-29", "2026-02-28", "2026-03-29", "2026-04-29", "2026-05-29"]),
        (date(2026, 1, 28), ["2026-01-28", "2026-02-28", "2026-03-28", "2026-04-28", "2026-05-28"]),
    ],
)
def test_an_anchor_on_a_late_day_falls_on_the_last_day_of_shorter_months_and_never_drifts(
    anchor_day, starts
):
    anchor = datetime.combine(anchor_day, time(17, 45), tzinfo=UTC)
    span = anchored_span("month", anchor, anchor)
    found = []
    for _ in starts:
        found.append(span.start.date().isoformat())
        assert span.start.time() == time(17, 45)
        assert span.end is not None
        span = anchored_span("month", span.end, anchor)
    assert found == starts


def test_a_29_february_anchor_renews_on_28_february_and_on_29_february_in_leap_years():
    anchor = datetime(2024, 2, 29, 8, tzinfo=UTC)
    starts = []
    span = anchored_span("year", anchor, anchor)
    for _ in range(5):
        starts.append(span.start.date().isoformat())
        assert span.end is not None
        span = anchored_span("year", span.end, anchor)
    assert starts == ["2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"]


def test_anchored_periods_advance_in_the_anchors_zone():
    paris = ZoneInfo("Europe/Paris")
    anchor = datetime(2026, 1, 15, 9, 30, tzinfo=paris)
    winter = anchored_span("month", datetime(2026, 2, 1, tzinfo=UTC), anchor)
    summer = anchored_span("month", datetime(2026, 4, 1, tzinfo=UTC), anchor)
    assert winter.start == datetime(2026, 1, 15, 8, 30, tzinfo=UTC)
    assert summer.start == datetime(2026, 3, 15, 8, 30, tzinfo=UTC)
    assert summer.end == datetime(2026, 4, 15, 7, 30, tzinfo=UTC)  # 09:30 in summer time


def test_a_period_before_the_anchor_counts_back_from_it():
    anchor = datetime(2026, 3, 31, tzinfo=UTC)
    span = anchored_span("month", datetime(2026, 3, 1, tzinfo=UTC), anchor)
    assert span == Span(datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))


def test_an_anchor_counts_to_the_second():
    anchor = datetime(2026, 1, 10, 8, 0, 5, 999_999, tzinfo=UTC)
    span = anchored_span("day", datetime(2026, 1, 12, 9, tzinfo=UTC), anchor)
    assert span.start == datetime(2026, 1, 12, 8, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["hour", "lifetime"])
def test_only_days_weeks_months_and_years_can_be_anchored(kind):
    with pytest.raises(ValueError, match="cannot be anchored"):
        anchored_span(kind, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_an_anchor_needs_its_time_zone():
    with pytest.raises(ValueError, match="aware datetime"):
        anchored_span("month", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1))


# -- the key -------------------------------------------------------------------------------


@given(moment=anywhen)
def test_a_start_is_recorded_as_its_utc_date_and_the_seconds_after_its_midnight(moment):
    start = moment.replace(microsecond=0)
    day, offset = split_start(start)
    assert 0 <= offset < 86400
    assert join_start(day, offset) == start


def test_the_default_month_is_recorded_as_its_first_day_and_no_offset():
    span = calendar_span("month", datetime(2026, 11, 17, 23, 59, tzinfo=UTC))
    assert split_start(span.start) == (date(2026, 11, 1), 0)


# -- windows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "bucket", "label"),
    [
        ("90m", 5400, 90, "90m"),
        ("60m", 3600, 60, "1h"),
        ("5h", 18000, 300, "5h"),
        ("24h", 86400, 1440, "1d"),
        ("30d", 2592000, 43200, "30d"),
        ("1m", 60, 1, "1m"),
    ],
)
def test_a_window_counts_in_buckets_of_a_sixtieth_of_it(text, seconds, bucket, label):
    window = Window.parse(text)
    assert (window.seconds, window.bucket_seconds, window.label) == (seconds, bucket, label)
    assert window.key == f"window:{seconds}"


@pytest.mark.parametrize("text", ["", "0m", "5", "5s", "1w", "1.5h", "-1h", "05h", 5, "10001d"])
def test_a_window_is_minutes_hours_or_days(text):
    with pytest.raises(ValueError, match="window"):
        Window.parse(text)


@given(moment=anywhen, text=st.sampled_from(["1m", "90m", "5h", "24h", "30d", "365d"]))
def test_a_use_leaves_a_window_after_it_and_at_most_one_bucket_later(moment, text):
    window = Window.parse(text)
    bucket = window.bucket(moment)
    begins = window.bucket_start(bucket)
    assert begins is not None and begins <= moment
    leaves = window.leaves_at(bucket)
    if leaves is not None:
        earliest = moment + timedelta(seconds=window.seconds)
        assert earliest < leaves <= earliest + timedelta(seconds=window.bucket_seconds)


def test_frees_at_is_when_enough_of_the_window_has_left():
    window = Window.parse("1h")  # one-minute buckets
    newest = window.bucket(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    counts = [0] * 61
    counts[2], counts[10], counts[60] = 3, 4, 5  # the buckets of 11:02, 11:10 and 12:00
    assert window.frees_at(counts, newest, 3) == datetime(2026, 1, 1, 12, 3, tzinfo=UTC)
    assert window.frees_at(counts, newest, 4) == datetime(2026, 1, 1, 12, 11, tzinfo=UTC)
    assert window.frees_at(counts, newest, 12) == datetime(2026, 1, 1, 13, 1, tzinfo=UTC)
    assert window.frees_at(counts, newest, 13) is None
