"""How a feature counts, and what one use counts against.

A feature's *counting rule* says who counts (each user, or an organisation's
pool) and over what (a period of the calendar or from a subscription's anchor,
a rolling window, or the whole lifetime). The rule is part of the key of every
count, so two rules never share a count: a feature whose rule changes starts
counting afresh, and usage carries over between plans that count it the same
way.

A *key* is what one use counts against, fixed when the use happens: the
subject (the user, or the organisation for its pool, with the member whose
share it is), the feature, the rule as ``feature_usage.period`` records it, the
start of the period (or the window's bucket).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import tzinfo
from typing import Any
from typing import Literal
from typing import NamedTuple
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from ._periods import ANCHORED_PERIODS
from ._periods import EPOCH
from ._periods import PERIODS
from ._periods import UTC
from ._periods import PeriodKind
from ._periods import Span
from ._periods import Window
from ._periods import anchored_span
from ._periods import calendar_span
from ._periods import split_start

__all__ = ["SCOPES", "Key", "Rule", "parse_rule", "zone_named"]

Scope = Literal["user", "org"]
SCOPES: tuple[Scope, ...] = ("user", "org")

#: The keys of a feature's mapping form in the catalogue.
MAPPING_KEYS = (
    "limit",
    "period",
    "window",
    "anchor",
    "scope",
    "per_user",
    "alerts",
    "rollover",
)
#: Keys that later releases give a meaning; refused until then rather than ignored.
NOT_YET: tuple[str, ...] = ()
#: Zones that are UTC under another name: their periods are UTC's, and so is their key.
UTC_NAMES = frozenset(
    [
        "UTC",
        "Etc/UTC",
        "UCT",
        "Etc/UCT",
        "Universal",
        "Etc/Universal",
        "Zulu",
        "Etc/Zulu",
        "GMT",
        "Etc/GMT",
        "GMT0",
        "Etc/GMT0",
        "GMT+0",
        "Etc/GMT+0",
        "GMT-0",
        "Etc/GMT-0",
        "Greenwich",
        "Etc/Greenwich",
    ]
)


class RuleError(ValueError):
    """A feature's counting rule cannot be used; the message says why."""


#: Periods a rule keeps computed (one per zone, or per anchor): beyond it, it
#: starts afresh, so that many subjects' anchors cannot grow it for ever.
_SPANS_MAX = 4096


class _Counted(NamedTuple):
    """A computed period (or a window's bucket): what every use from ``start`` until
    ``end`` (None: never) counts against, the subject and feature aside."""

    start: datetime
    end: datetime | None
    rule: str
    period_start: date
    period_offset: int
    period_end: datetime | None
    bucket: int | None

    def holds(self, now: datetime) -> bool:
        return self.start <= now and (self.end is None or now < self.end)


@functools.lru_cache(maxsize=512)
def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name``.

    :raises RuleError: naming it, when there is no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise RuleError(
            f"{name!r} is not an IANA time zone name (like 'UTC' or 'Europe/Paris')"
        ) from None


@dataclass(frozen=True)
class Rule:
    """How a feature counts.

    :param scope: ``"user"``: each user's own count; ``"org"``: one pool per
        organisation, with each member's share counted beside it.
    :param period: the period of the count (for a window: None).
    :param window: a rolling window, instead of a period.
    :param anchored: periods start at the subject's ``period_anchor`` instead of
        the calendar's.
    :param zoned: calendar periods follow the subject's (or the application's)
        time zone; the catalogue's bare integer counts UTC months.
    """

    scope: Scope = "user"
    period: PeriodKind | None = "month"
    window: Window | None = None
    anchored: bool = False
    zoned: bool = False
    #: The period last computed, by zone (or anchor): the key of every tracked use
    #: is asked for, and a period holds until it ends, so it is computed once per
    #: period instead of once per use. Reads and writes of a dict are atomic: no lock.
    _spans: dict[Any, _Counted] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def label(self) -> str:
        """The rule in words, for messages: "month", "day from the subscription's
        anchor", "5h window", "lifetime"."""
        if self.window is not None:
            return f"{self.window.label} window"
        assert self.period is not None
        return f"{self.period} from the subscription's anchor" if self.anchored else self.period

    def span(self, now: datetime, *, zone: tzinfo = UTC, anchor: datetime | None = None) -> Span:
        """The period holding ``now`` (not for a window)."""
        assert self.period is not None
        if self.anchored:
            assert anchor is not None
            return anchored_span(self.period, now, anchor)
        return calendar_span(self.period, now, zone)

    def key(
        self,
        feature: str,
        now: datetime,
        *,
        user_id: Any,
        org_id: Any = None,
        anchor: datetime | None = None,
        zone: tzinfo = UTC,
    ) -> Key:
        """What a use of ``feature`` by this subject at ``now`` counts against.

        ``zone`` is the subject's zone (or the application's); it counts only for
        the calendar periods of a zoned rule. ``org_id`` and ``anchor`` must be
        given for an organisation's pool and an anchored period: the caller says
        which subject lacks them.
        """
        subject, member = (user_id, None) if self.scope == "user" else (org_id, user_id)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if self.window is not None:
            memo: Any = None
        elif self.anchored:
            assert anchor is not None
            # Equal instants in two zones are equal datetimes, but not equal anchors.
            memo = (anchor, anchor.tzinfo)
        elif self.period in ("hour", "lifetime") or not self.zoned:
            memo = zone = UTC
        else:
            memo = zone
        counted = self._spans.get(memo)
        if counted is None or not counted.holds(now):
            counted = self._counted(now, zone, anchor)
            if len(self._spans) >= _SPANS_MAX:
                self._spans.clear()
            self._spans[memo] = counted
        return Key(self.scope, subject, member, feature, *counted[2:])

    def _counted(self, now: datetime, zone: tzinfo, anchor: datetime | None) -> _Counted:
        """The period (or the window's bucket) holding ``now``."""
        if self.window is not None:
            bucket = self.window.bucket(now)
            start = self.window.bucket_start(bucket)
            assert start is not None  # now is in it
            return _Counted(
                start,
                self.window.bucket_start(bucket + 1),
                self.window.key,
                EPOCH.date(),
                0,
                None,
                bucket,
            )
        assert self.period is not None
        span = self.span(now, zone=zone, anchor=anchor)
        if self.anchored:
            text = f"{self.period}+anchor"
        elif zone is UTC or zone_key(zone) in UTC_NAMES:
            text = self.period
        else:
            text = f"{self.period}@{zone_key(zone)}"
        day, offset = split_start(span.start)
        return _Counted(span.start, span.end, text, day, offset, span.end, None)


def zone_key(zone: tzinfo) -> str:
    """The IANA name a zone is recorded under."""
    key = getattr(zone, "key", None)
    if not isinstance(key, str):
        raise RuleError(f"{zone!r} is not an IANA time zone: use zoneinfo.ZoneInfo")
    return key


@dataclass(frozen=True)
class Key:
    """What one use counts against, fixed when it happens.

    ``subject`` is the user, or the organisation for its pool (``scope`` "org"),
    whose member is ``member``. ``rule`` is the counting rule as
    ``feature_usage.period`` records it; ``period_start`` and ``period_offset``
    the instant its period starts (for a lifetime or a window: 1970-01-01, and
    ``bucket`` is the window's bucket of the use); ``period_end`` when it ends
    (None: never, or after 9999).
    """

    scope: Scope
    subject: Any
    member: Any
    feature: str
    rule: str
    period_start: date
    period_offset: int
    period_end: datetime | None
    bucket: int | None


def parse_rule(value: Mapping[str, Any]) -> tuple[Rule, int | None]:
    """The rule and the ``per_user`` cap of a feature's mapping form.

    :raises RuleError: saying what is wrong (the caller names plan and feature).
    """
    _check_keys(value)
    scope = value.get("scope", "user")
    if scope not in SCOPES:
        raise RuleError(f"scope must be 'user' or 'org', got {scope!r}")
    window = _window_of(value)
    period = value.get("period", "month")
    if window is None and period not in PERIODS:
        raise RuleError(f"period must be one of {', '.join(PERIODS)}; got {period!r}")
    anchored = _anchored(value.get("anchor"), period, window)
    rule = Rule(
        scope=scope,
        period=None if window else period,
        window=window,
        anchored=anchored,
        zoned=window is None,
    )
    return rule, _per_user(value.get("per_user"), scope)


def _check_keys(value: Mapping[str, Any]) -> None:
    unknown = sorted(set(value) - set(MAPPING_KEYS))
    later = [key for key in unknown if key in NOT_YET]
    if later:
        raise RuleError(f"{later[0]!r} is not supported yet")
    if unknown or "limit" not in value:
        raise RuleError(
            "the mapping form takes 'limit' and any of 'period', 'window', 'anchor', 'scope', "
            f"'per_user', 'alerts', 'rollover', like {{'limit': 50, 'period': 'day'}}; "
            f"got {dict(value)!r}"
        )


def _window_of(value: Mapping[str, Any]) -> Window | None:
    if "window" not in value:
        return None
    if "period" in value:
        raise RuleError("'period' and 'window' exclude each other: give one")
    try:
        return Window.parse(value["window"])
    except ValueError as exc:
        raise RuleError(str(exc)) from None


def _anchored(anchor: Any, period: Any, window: Window | None) -> bool:
    if anchor is None:
        return False
    if anchor != "subscription":
        raise RuleError(f"anchor must be 'subscription', got {anchor!r}")
    if window is not None or period not in ANCHORED_PERIODS:
        counted = f"{window.label} window" if window else period
        raise RuleError(
            "anchor = 'subscription' counts days, weeks, months or years from the "
            f"subject's period_anchor; a {counted} has no anchor"
        )
    return True


def _per_user(per_user: Any, scope: str) -> int | None:
    if per_user is None:
        return None
    if scope != "org":
        raise RuleError(
            "per_user caps a member's share of an organisation's pool: it needs scope = 'org'"
        )
    if isinstance(per_user, bool) or not isinstance(per_user, int) or per_user < 1:
        raise RuleError(f"per_user must be a whole number of 1 or more, got {per_user!r}")
    return per_user
