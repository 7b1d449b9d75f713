"""When a use counts, and when its count starts again: timestamps in, timestamps out.

A use counts in the period in which it happens: the period is fixed when the
use is recorded, not when it is written. The default period is the calendar
month in UTC; counts reset at the first instant of the next.

The arithmetic of every period is here, pure (no clock, no database), so that
every boundary can be checked against a plain reference. Instants are aware
datetimes; a naive one is taken as UTC.

A *period* is a half-open span ``[start, end)`` holding a moment: an hour (in
UTC), a day, an ISO week (from Monday), a month or a year, either of the
calendar in a time zone or counted from an anchor (a subscription's start) in
the anchor's own zone; or the whole lifetime. A day is from one local midnight
to the next, so around a DST change it lasts 23 or 25 hours; it is never
skipped or doubled. A wall time the clocks jump over (a midnight inside a DST
gap) starts its period at the jump.

A *window* counts uses of the last N minutes, hours or days in 61 buckets of
1/60 of the window each: a use stops counting when the bucket after the one
that is a whole window older than its own begins, so between one window and
one window plus one bucket after it happened, never before.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import MAXYEAR
from datetime import MINYEAR
from datetime import date
from datetime import datetime
from datetime import time as wall_time
from datetime import timedelta
from datetime import timezone
from datetime import tzinfo
from typing import Literal

__all__ = [
    "ANCHORED_PERIODS",
    "EPOCH",
    "FIRST_INSTANT",
    "PERIODS",
    "Clock",
    "MonthClock",
    "PeriodKind",
    "Span",
    "Window",
    "anchored_span",
    "calendar_span",
    "join_start",
    "month_start",
    "period_end",
    "split_start",
    "utc_clock",
    "utc_now",
]

#: Returns the current time (aware; a naive time is taken as UTC).
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_clock(clock: Clock) -> Clock:
    """``clock`` with a naive time taken as UTC, as :func:`month_start` takes it."""

    def now() -> datetime:
        moment = clock()
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)

    return now


def month_start(moment: datetime) -> date:
    """The first day of ``moment``'s calendar month in UTC (naive means UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return date(moment.year, moment.month, 1)


def _next_month(start: date) -> date:
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def period_end(moment: datetime) -> datetime:
    """The start of the next calendar month (UTC) after ``moment``: when counts reset."""
    start = month_start(moment)
    if (start.year, start.month) == (MAXYEAR, 12):
        return datetime.max.replace(tzinfo=timezone.utc)  # no month after it to reset in
    following = _next_month(start)
    return datetime(following.year, following.month, 1, tzinfo=timezone.utc)


def _timestamp(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


class MonthClock:
    """The period of a use happening now, by ``clock``: with the system clock, a
    float comparison per call instead of a datetime (the tracker asks on every use)."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        #: The current month: (its first second, the next month's, its first day).
        self._month: tuple[float, float, date] = (0.0, 0.0, date.min)

    def period(self) -> date:
        if self.clock is not utc_now:
            return month_start(self.clock())
        now = time.time()
        begins, ends, period = self._month
        if begins <= now < ends:
            return period
        period = month_start(datetime.fromtimestamp(now, timezone.utc))
        self._month = (_timestamp(period), _timestamp(_next_month(period)), period)
        return period


# -- every period ------------------------------------------------------------------

PeriodKind = Literal["hour", "day", "week", "month", "year", "lifetime"]

#: Every period a limit can be counted over.
PERIODS: tuple[PeriodKind, ...] = ("hour", "day", "week", "month", "year", "lifetime")
#: The periods that can count from a subscription's anchor.
ANCHORED_PERIODS: tuple[PeriodKind, ...] = ("day", "week", "month", "year")

UTC = timezone.utc
#: The origin of window buckets, and the start recorded for lifetime and window counts.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The earliest instant a period is said to start at: one starting before it
#: (a local year 1 east of Greenwich) is counted from it.
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Span:
    """The period holding a moment: ``start <= moment < end``.

    ``end`` is None when the period never ends (``lifetime``) or would end after
    the last instant a datetime holds (9999-12-31).
    """

    start: datetime
    end: datetime | None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- wall times ---------------------------------------------------------------------


def _first_instant(wall: datetime, zone: tzinfo) -> datetime:
    """The first instant at which the clocks of ``zone`` read ``wall`` or later.

    A wall time that happens twice (clocks set back) is its first occurrence;
    one the clocks jump over (clocks set forward) is the jump itself.

    :raises OverflowError: when that instant is before year 1 or after 9999.
    """
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap: fold=0 reads the offset from before the jump (a later instant),
    # fold=1 the one after it (an earlier one); the jump lies between them.
    # Transitions fall on whole seconds, so a search of the seconds finds it.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = instant
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        middle -= timedelta(microseconds=middle.microsecond)
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high


def _instant(wall: datetime | None, zone: tzinfo, *, early: bool) -> datetime | None:
    """The instant a period beginning at ``wall`` starts: :func:`_first_instant`,
    or, for a wall time (None when it is not even a date) or an instant outside
    the years a datetime holds, :data:`FIRST_INSTANT` when it is ``early`` (before
    year 1) and None (never) when it is late (after 9999)."""
    if wall is not None:
        try:
            return _first_instant(wall, zone)
        except OverflowError:
            early = wall.year < 5000
    return FIRST_INSTANT if early else None


def _span(moment: datetime, guess: int, start_of: Callable[[int], datetime | None]) -> Span:
    """The period holding ``moment`` of a sequence whose ``n``-th period starts at
    ``start_of(n)`` (None: never, after 9999); the search starts at ``guess``."""
    start = start_of(guess)
    while start is None or start > moment:
        guess -= 1
        start = start_of(guess)
    end = start_of(guess + 1)
    while end is not None and end <= moment:
        guess += 1
        start, end = end, start_of(guess + 1)
    return Span(start, end)


def _local(moment: datetime, zone: tzinfo) -> datetime:
    """``moment``'s wall time in ``zone`` (naive); the first or last a datetime
    holds when it falls outside years 1 to 9999."""
    try:
        return moment.astimezone(zone).replace(tzinfo=None)
    except OverflowError:
        return datetime.min if moment.year == MINYEAR else datetime.max


# -- calendar periods ------------------------------------------------------------------


def _calendar_index(kind: PeriodKind, day: date) -> int:
    """The number of the calendar period holding ``day``: consecutive periods
    have consecutive numbers."""
    if kind == "day":
        return day.toordinal()
    if kind == "week":
        return (day.toordinal() - 1) // 7  # ordinal 1, 0001-01-01, is a Monday
    if kind == "month":
        return day.year * 12 + day.month - 1
    return day.year


def _calendar_first_day(kind: PeriodKind, index: int) -> date | None:
    """The first day of calendar period number ``index``; None outside the calendar."""
    try:
        if kind == "day":
            return date.fromordinal(index)
        if kind == "week":
            return date.fromordinal(index * 7 + 1)
        if kind == "month":
            year, month = divmod(index, 12)
            return date(year, month + 1, 1)
        return date(index, 1, 1)
    except (OverflowError, ValueError):
        return None


def calendar_span(kind: PeriodKind, moment: datetime, zone: tzinfo = UTC) -> Span:
    """The calendar period of ``kind`` holding ``moment``, in ``zone``.

    An ``hour`` is a UTC hour whatever the zone; ``lifetime`` starts at the epoch
    and never ends.
    """
    moment = _utc(moment)
    if kind == "lifetime":
        return Span(EPOCH, None)
    if kind == "hour":
        start = moment.replace(minute=0, second=0, microsecond=0)
        end = None if start.date() == date.max and start.hour == 23 else start + timedelta(hours=1)
        return Span(start, end)
    if kind not in ANCHORED_PERIODS:
        raise ValueError(f"unknown period {kind!r}; the periods are {', '.join(PERIODS)}")
    if zone is UTC:
        # The default kind, on every tracked use: UTC has no wall time to search.
        index = _calendar_index(kind, moment.date())
        first, following = _calendar_first_day(kind, index), _calendar_first_day(kind, index + 1)
        assert first is not None  # a day of a UTC moment is in the calendar
        end = None if following is None else datetime.combine(following, wall_time(), UTC)
        return Span(datetime.combine(first, wall_time(), UTC), end)
    first_index = _calendar_index(kind, date.min)

    def start_of(index: int) -> datetime | None:
        first = _calendar_first_day(kind, index)
        wall = None if first is None else datetime.combine(first, wall_time())
        return _instant(wall, zone, early=index < first_index)

    return _span(moment, _calendar_index(kind, _local(moment, zone).date()), start_of)


# -- anchored periods ------------------------------------------------------------------


def _advance(anchor: datetime, kind: PeriodKind, count: int) -> datetime | None:
    """The anchor's wall time ``count`` periods later (or earlier); a day of the
    month the month lacks is its last day. None outside years 1 to 9999."""
    try:
        if kind == "day":
            return anchor + timedelta(days=count)
        if kind == "week":
            return anchor + timedelta(weeks=count)
        if kind == "month":
            years, month = divmod(anchor.month - 1 + count, 12)
            year, month = anchor.year + years, month + 1
        else:
            year, month = anchor.year + count, anchor.month
        if not MINYEAR <= year <= MAXYEAR:
            return None
        day = min(anchor.day, calendar.monthrange(year, month)[1])
        return anchor.replace(year=year, month=month, day=day)
    except OverflowError:
        return None


def _periods_between(anchor: datetime, wall: datetime, kind: PeriodKind) -> int:
    """About how many periods of ``kind`` separate two wall times: a guess that
    may be one period off, which :func:`_span` corrects."""
    if kind == "month":
        return (wall.year - anchor.year) * 12 + wall.month - anchor.month
    if kind == "year":
        return wall.year - anchor.year
    days = (wall.date() - anchor.date()).days
    return days if kind == "day" else days // 7


def anchored_span(kind: PeriodKind, moment: datetime, anchor: datetime) -> Span:
    """The period of ``kind`` holding ``moment``, counted from ``anchor``.

    Periods start at the anchor's wall time (to the second) in the anchor's own
    zone, every day, week, month or year: anchored on 31 January, a month starts
    on 28 or 29 February, 31 March, 30 April; anchored on 29 February, a year
    starts on 28 February when there is no 29th. Periods before the anchor count
    back from it the same way.
    """
    if kind not in ANCHORED_PERIODS:
        raise ValueError(f"a {kind!r} period cannot be anchored; anchor a day, week, month or year")
    zone = anchor.tzinfo
    if zone is None or anchor.utcoffset() is None:
        raise ValueError("an anchor must be an aware datetime (with its time zone)")
    moment = _utc(moment)
    wall_anchor = anchor.replace(tzinfo=None, microsecond=0, fold=0)

    def start_of(count: int) -> datetime | None:
        return _instant(_advance(wall_anchor, kind, count), zone, early=count < 0)

    guess = _periods_between(wall_anchor, _local(moment, zone), kind)
    return _span(moment, guess, start_of)


# -- the key of a period -----------------------------------------------------------------


def split_start(start: datetime) -> tuple[date, int]:
    """How ``feature_usage`` records a period's start: its UTC date, and the
    seconds after that date's midnight (``period_start``, ``period_offset``)."""
    start = _utc(start)
    return start.date(), start.hour * 3600 + start.minute * 60 + start.second


def join_start(day: date, offset: int) -> datetime:
    """The instant :func:`split_start` recorded."""
    return datetime.combine(day, wall_time(), UTC) + timedelta(seconds=offset)


# -- rolling windows ---------------------------------------------------------------------

_WINDOW = re.compile(r"(?P<count>[1-9][0-9]{0,5})(?P<unit>[mhd])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
#: The longest window: about 27 years, so that its bucket always fits a datetime.
MAX_WINDOW_SECONDS = 10_000 * 86400


@dataclass(frozen=True)
class Window:
    """A rolling window of ``seconds`` (a whole number of minutes), counted in
    :attr:`BUCKETS` buckets of :attr:`bucket_seconds` each."""

    seconds: int

    #: The ring of a window's counts: 60 buckets of the window, and the current one.
    BUCKETS = 61

    def __post_init__(self) -> None:
        if self.seconds % 60 or not 60 <= self.seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"a window is a whole number of minutes from 1 minute to 10000 days, "
                f"got {self.seconds} seconds"
            )

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"90m"``, ``"24h"``, ``"30d"``: N minutes, hours or days."""
        match = _WINDOW.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"a window is N minutes, hours or days, like '90m', '24h' or '30d'; got {text!r}"
            )
        return cls(int(match["count"]) * _UNIT_SECONDS[match["unit"]])

    @property
    def bucket_seconds(self) -> int:
        return self.seconds // 60

    @property
    def key(self) -> str:
        """The counting rule as ``feature_usage.period`` records it."""
        return f"window:{self.seconds}"

    @property
    def label(self) -> str:
        """The window as the catalogue writes it, in its largest whole unit."""
        for unit in "dhm":
            if self.seconds % _UNIT_SECONDS[unit] == 0:
                return f"{self.seconds // _UNIT_SECONDS[unit]}{unit}"
        raise AssertionError("a window is whole minutes")

    def bucket(self, moment: datetime) -> int:
        """The bucket a use at ``moment`` is counted in."""
        return (_utc(moment) - EPOCH) // timedelta(seconds=self.bucket_seconds)

    def bucket_start(self, bucket: int) -> datetime | None:
        """When ``bucket`` begins; None after 9999 (or before year 1)."""
        try:
            return EPOCH + timedelta(seconds=bucket * self.bucket_seconds)
        except OverflowError:
            return None

    def leaves_at(self, bucket: int) -> datetime | None:
        """When the uses counted in ``bucket`` stop counting."""
        return self.bucket_start(bucket + self.BUCKETS)

    def frees_at(self, counts: list[int], newest: int, need: int) -> datetime | None:
        """When at least ``need`` uses will have left the window.

        :param counts: the window's live counts, oldest bucket first, as the
            database returns them (``newest - 60`` to ``newest``).
        :returns: None when fewer than ``need`` are counted (they can never free
            enough) or past 9999.
        """
        if need <= 0:
            return self.bucket_start(newest + 1)
        freed = 0
        oldest = newest - len(counts) + 1
        for offset, count in enumerate(counts):
            freed += count
            if freed >= need:
                return self.leaves_at(oldest + offset)
        return None
