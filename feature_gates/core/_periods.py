"""When a use counts, and when its count starts again.

A use counts in the calendar month (UTC) in which it happens: the period is
fixed when the use is recorded, not when it is written. Counts reset at the
first instant of the next month.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import MAXYEAR
from datetime import date
from datetime import datetime
from datetime import timezone

__all__ = ["Clock", "MonthClock", "month_start", "period_end", "utc_clock", "utc_now"]

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
