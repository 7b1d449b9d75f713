"""The rows the runtime's statements return, typed (psycopg's ``class_row``): each
field is a column of the statement, by name. A statement of one value is read with
``scalar_row``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from datetime import datetime
from typing import Any
from uuid import UUID

__all__ = [
    "BalanceRow",
    "Checked",
    "EndedPeriod",
    "FeatureCount",
    "FeatureMonth",
    "Granted",
    "KeyCount",
    "MonthUsers",
    "Reading",
    "Reserved",
    "TopFeature",
    "Written",
]


@dataclass(frozen=True)
class Checked:
    """A metered check: ``refused`` is None when the uses were taken, else the
    level that refused (``"org"``: the pool; ``"user"``: the user's own count or
    the member's share). The counts are after the use when taken, as they stand
    when refused (None where not read); a window's buckets run oldest first,
    ending at bucket ``newest_bucket``."""

    refused: str | None
    used: int | None
    member_used: int | None
    buckets: list[int] | None
    member_buckets: list[int] | None
    newest_bucket: int | None


@dataclass(frozen=True)
class Reserved:
    """A reserve: the metered check's answer, and the hold's id when it was taken."""

    hold_id: UUID | None
    refused: str | None
    used: int | None
    member_used: int | None
    buckets: list[int] | None
    member_buckets: list[int] | None
    newest_bucket: int | None

    def checked(self) -> Checked:
        return Checked(
            self.refused,
            self.used,
            self.member_used,
            self.buckets,
            self.member_buckets,
            self.newest_bucket,
        )


@dataclass(frozen=True)
class Reading:
    """One key's counts, as a read returns them (in the order asked)."""

    feature: str
    period: str
    used: int
    member_used: int | None
    buckets: list[int] | None
    member_buckets: list[int] | None
    newest_bucket: int | None


@dataclass(frozen=True)
class FeatureCount:
    feature: str
    usage_count: int


@dataclass(frozen=True)
class Written:
    """One row a batch wrote: a subject's count (``member`` None) or a member's
    share of a pool; what it added and the count now."""

    subject: Any
    member: Any
    feature: str
    scope: str
    period: str
    period_start: date
    period_offset: int
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


@dataclass(frozen=True)
class Granted:
    """A grant's id, and whether this call added it."""

    grant_id: int
    added: bool


@dataclass(frozen=True)
class BalanceRow:
    """A counted key's balance: its count (holds included) and what it drew on
    grants, its live holds, a member's share of both, and the level's live grants
    (one array per column, in the order they are drawn on)."""

    used: int
    credit_used: int
    held: int
    member_used: int | None
    member_held: int | None
    grant_ids: list[int]
    amounts: list[int]
    remainings: list[int]
    expiries: list[datetime | None]
    reasons: list[str]


@dataclass(frozen=True)
class EndedPeriod:
    """A counted row whose period ended, with the plan its last metered check recorded."""

    subject: Any
    feature: str
    scope: str
    period: str
    period_start: date
    period_offset: int
    period_end: datetime
    plan: str
