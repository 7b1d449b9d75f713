"""The maintenance jobs of the core set, for cron: archive and refresh."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from . import store
from .session import Session
from .settings import MigrationSettings
from .sources import MigrationError

__all__ = ["ArchiveResult", "archive", "refresh"]


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
    if isinstance(keep_months, bool) or not isinstance(keep_months, int) or keep_months < 0:
        raise MigrationError(f"keep months must be 0 or more, not {keep_months!r}")
    with Session(conninfo, settings or MigrationSettings()) as session:
        row = session.conn.execute(store.ARCHIVE, {"keep": keep_months}).fetchone()
    assert row is not None
    return ArchiveResult(int(row[0]), row[1])  # type: ignore[call-overload, arg-type]


def refresh(conninfo: str, settings: MigrationSettings | None = None) -> int:
    """Refresh ``feature_usage_summary`` without blocking its readers; return its
    row count."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        session.conn.execute(store.REFRESH)
        row = session.conn.execute(store.SUMMARY_ROWS).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]
