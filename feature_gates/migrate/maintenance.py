"""The maintenance jobs of the core set, for cron: archive, refresh and prune; and
the operations on usage alerts: list, count and replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from . import store
from .session import Session
from .settings import MigrationSettings
from .sources import MigrationError

__all__ = [
    "Alert",
    "AlertCounts",
    "ArchiveResult",
    "alert_counts",
    "archive",
    "prune",
    "prune_windows",
    "recent_alerts",
    "refresh",
    "replay_alerts",
]

#: The most months archive keeps (1,000 years: further back has no calendar).
MAX_KEEP_MONTHS = 12_000
#: The most days prune keeps (about 1,000 years).
MAX_KEEP_DAYS = 365_000


@dataclass(frozen=True)
class ArchiveResult:
    """How many rows moved to feature_usage_archive, and the first period kept."""

    moved: int
    kept_from: date
    #: Delivered and dead alerts moved to feature_usage_alerts_archive.
    alerts: int = 0


@dataclass(frozen=True)
class Alert:
    """A recorded usage alert and how its delivery stands (``feature-gates alerts``)."""

    event_id: UUID
    occurred_at: datetime
    #: The counted subject: the user, or the organisation (scope ``org``).
    subject: str
    scope: str
    #: The member whose share crossed its cap; None for the subject's own count.
    member: str | None
    feature: str
    period: str
    threshold: Decimal
    used: int
    limit: int
    #: ``pending``, ``sent`` or ``dead``.
    state: str
    attempts: int
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class AlertCounts:
    """Alerts by how their delivery stands."""

    pending: int
    sent: int
    #: Alerts that took more than one attempt (whatever became of them).
    retried: int
    dead: int


def archive(
    conninfo: str, settings: MigrationSettings | None = None, *, keep_months: int = 6
) -> ArchiveResult:
    """Move the usage rows of periods older than ``keep_months`` months into
    ``feature_usage_archive`` (one transaction); see ``archive_old_feature_usage``."""
    _check_count("keep months", keep_months, 0, MAX_KEEP_MONTHS)
    with Session(conninfo, settings or MigrationSettings()) as session:
        (row,) = session.query(store.ARCHIVE, {"keep": keep_months})
        ((installed,),) = session.query(store.HAS_ALERTS)
        alerts: object = 0
        if installed:
            ((alerts,),) = session.query(store.ARCHIVE_ALERTS, {"keep": keep_months})
    assert isinstance(alerts, int)
    return ArchiveResult(int(row[0]), row[1], alerts)  # type: ignore[call-overload, arg-type]


def refresh(conninfo: str, settings: MigrationSettings | None = None) -> int:
    """Refresh ``feature_usage_summary`` without blocking its readers; return its
    row count."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        session.query(store.REFRESH)
        ((rows,),) = session.query(store.SUMMARY_ROWS)
    assert isinstance(rows, int)
    return rows


def prune(conninfo: str, settings: MigrationSettings | None = None, *, keep_days: int = 30) -> int:
    """Delete idempotency keys and batch records older than ``keep_days`` days and
    return how many rows went; see ``prune_feature_usage_idempotency``."""
    _check_count("keep days", keep_days, 1, MAX_KEEP_DAYS)
    with Session(conninfo, settings or MigrationSettings()) as session:
        ((pruned,),) = session.query(store.PRUNE, {"keep": keep_days})
    assert isinstance(pruned, int)
    return pruned


def prune_windows(conninfo: str, settings: MigrationSettings | None = None) -> int:
    """Delete the rows of rolling windows whose every bucket has left them and
    return how many went; see ``prune_feature_usage_windows``."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        row = session.conn.execute(store.PRUNE_WINDOWS).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def audit_credits(conninfo: str, settings: MigrationSettings | None = None) -> list[str]:
    """Recompute every grant's remaining and every count's draws on grants from the
    ledger; one line per difference, naming the rows (none when all agree). See
    ``feature_usage_credits_audit``."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        rows = session.query(store.CREDITS_AUDIT)
    return [str(row[0]) for row in rows]


def recent_alerts(
    conninfo: str,
    settings: MigrationSettings | None = None,
    *,
    limit: int = 50,
    since: datetime | None = None,
) -> list[Alert]:
    """The ``limit`` most recent alerts (since ``since``), newest first."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        rows = session.query(store.RECENT_ALERTS, {"limit": limit, "since": since})
    return [Alert(*row) for row in rows]  # type: ignore[arg-type]


def alert_counts(conninfo: str, settings: MigrationSettings | None = None) -> AlertCounts:
    """How many alerts are pending, sent, were retried, are dead."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        (row,) = session.query(store.ALERT_STATS)
    return AlertCounts(*row)  # type: ignore[arg-type]


def replay_alerts(
    conninfo: str,
    settings: MigrationSettings | None = None,
    *,
    event_ids: Sequence[UUID] = (),
    since: datetime | None = None,
) -> int:
    """Deliver again (signal and webhook, under the same event ids) the alerts named
    by ``event_ids`` and those that occurred since ``since``; return how many."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        ((replayed,),) = session.query(
            store.REPLAY_ALERTS, {"ids": list(event_ids), "since": since}
        )
    assert isinstance(replayed, int)
    return replayed


def _check_count(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MigrationError(f"{name} must be between {low} and {high}, not {value!r}")
