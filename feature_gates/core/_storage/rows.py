"""The rows the runtime's statements return, typed (psycopg's ``class_row``): each
field is a column of the statement, by name. A statement of one value is read with
``scalar_row``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = [
    "Consumed",
    "FeatureCount",
    "FeatureMonth",
    "KeyCount",
    "MonthUsers",
    "TopFeature",
    "Written",
]


@dataclass(frozen=True)
class Consumed:
    """A metered check: the new count, or None when the limit refused, with the
    current count then."""

    count: int | None
    current: int | None


@dataclass(frozen=True)
class FeatureCount:
    feature: str
    usage_count: int


@dataclass(frozen=True)
class Written:
    """One key a batch wrote: what it added and the count now."""

    user_id: Any
    feature: str
    period_start: date
    increment: int
    usage_count: int


@dataclass(frozen=True)
class TopFeature:
    feature: str
    uses: int
    users: int


@dataclass(frozen=True)
class KeyCount:
    user_id: Any
    feature: str
    usage_count: int


@dataclass(frozen=True)
class FeatureMonth:
    period_start: date
    feature: str
    uses: int
    users: int


@dataclass(frozen=True)
class MonthUsers:
    period_start: date
    users: int
