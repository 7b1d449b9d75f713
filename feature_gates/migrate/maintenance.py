"""The maintenance jobs of the core set, for cron: archive, refresh and prune."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from . import store
from .session import Session
from .settings import MigrationSettings
from .sources import MigrationError

__all__ = ["ArchiveResult", "archive", "prune", "prune_windows", "refresh"]

#: The most months archive keeps (1,000 years: further back has no calendar).
MAX_KEEP_MONTHS = 12_000
#: The most days prune keeps (about 1,000 years).
MAX_KEEP_DAYS = 365_000


@dataclass(frozen=True)
class ArchiveResult:
    """How many rows moved to feature_usage_archive, and the first period kept."""

    moved: int
    kept_from: date


def archive(
    conninfo: str, settings: MigrationSettings | None = None, *, keep_months: int = 6
) -> ArchiveResult:
    """Move the usage rows of periods older than ``keep_months`` months into
    ``feature_usage_archive`` (one transaction); see ``archive_old_feature_usage``."""
    _check_count("keep months", keep_months, 0, MAX_KEEP_MONTHS)
    with Session(conninfo, settings or MigrationSettings()) as session:
        (row,) = session.query(store.ARCHIVE, {"keep": keep_months})
    return ArchiveResult(int(row[0]), row[1])  # type: ignore[call-overload, arg-type]


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


def _check_count(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MigrationError(f"{name} must be between {low} and {high}, not {value!r}")
