"""``verify`` and ``repair-counters``: is the database as the migrations left it?

``verify`` checks the runner's own records (files edited after they were
applied, migrations not applied yet), every INVALID index, and runs the audit
query (``verify.sql``) of each fully applied set: functions present, indexes
valid, constraints validated, counter columns equal to the truth. With the
``counters`` set it also compares the application's legacy
``chat_threads.message_count`` with the truth, in batches, which
``repair-counters`` sets right too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from . import store
from .runner import status
from .session import Session
from .settings import MigrationSettings
from .sources import MigrationError
from .sources import load_verify

__all__ = ["LEGACY_COUNTER", "Problem", "repair_counters", "verify"]

logger = logging.getLogger("feature_gates.migrate")

#: The application's own counter that verify and repair-counters also look at.
LEGACY_COUNTER = "chat_threads.message_count"
#: Rows of a drifted counter that verify names.
NAMED_ROWS = 20


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong: what was checked, and what is off."""

    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


def verify(conninfo: str, settings: MigrationSettings | None = None) -> list[Problem]:
    """Audit the database; return the problems found (none when all is well)."""
    settings = settings or MigrationSettings()
    problems: list[Problem] = []
    complete_sets = set(settings.sets)
    for row in status(conninfo, settings):
        if row.state == "applied":
            continue
        complete_sets.discard(row.label.split("/", 1)[0])
        detail = {
            "pending": "not applied; run migrate",
            "changed": "its file was changed after it was applied",
            "missing": "applied, but no migration file has it",
        }[row.state]
        problems.append(Problem("migration", f"{row.label}: {detail}"))
    with Session(conninfo, settings) as session:
        for index, table in session.query(store.INVALID_INDEXES):
            problems.append(
                Problem(
                    "index",
                    f"{index} on {table} is INVALID (a failed concurrent build); "
                    "migrate rebuilds the bundled ones, drop or rebuild others",
                )
            )
        for set_name in settings.sets:
            if set_name not in complete_sets:
                continue
            query = load_verify(set_name, (settings.folders or {}).get(set_name))
            if query is None:
                continue
            for found in session.query(query.encode()):
                problems.append(Problem(str(found[0]), str(found[1])))
        if "counters" in complete_sets and _has_legacy_count(session):
            total, examples = _legacy_count_pass(session, repair=False)
            problems += [
                Problem(
                    "legacy counter",
                    f"{LEGACY_COUNTER} {example} ({total} rows of chat_threads differ; "
                    "run repair-counters)",
                )
                for example in examples
            ]
    return problems


def repair_counters(
    conninfo: str, settings: MigrationSettings | None = None, *, dry_run: bool = False
) -> dict[str, int]:
    """Recompute the counter columns that drifted from the truth.

    Works in batches by primary key (one short transaction each, only rows whose
    value differs). Returns, per counter, the rows fixed, or with ``dry_run``
    the rows that differ now (changing nothing).
    """
    settings = settings or MigrationSettings()
    with Session(conninfo, settings) as session:
        ((installed,),) = session.query(store.COUNTERS_INSTALLED)
        if not installed:
            raise MigrationError(
                "the counters set is not installed in this database; "
                "add 'counters' to FEATURE_GATES_MIGRATION_SETS and run migrate"
            )
        legacy = _has_legacy_count(session)
        if dry_run:
            drift = {str(name): int(n) for name, n in session.query(store.COUNTER_DRIFT)}  # type: ignore[call-overload]
            if legacy:
                drift[LEGACY_COUNTER] = _legacy_count_pass(session, repair=False)[0]
            return drift
        fixed: dict[str, int] = {}
        with session.migration_lock():
            names = [str(r[0]) for r in session.query(store.COUNTER_NAMES)]
            for name in names:
                session.query(store.RESET_BACKFILL, (name,))
                total = 0
                while True:
                    scanned, changed = session.with_retries(
                        f"repair of {name}", partial(_repair_batch, session, name)
                    )
                    total += changed
                    if not scanned:
                        break
                session.query(store.RESET_BACKFILL, (name,))
                logger.info("%s: %d rows fixed", name, total)
                fixed[name] = total
            if legacy:
                fixed[LEGACY_COUNTER] = _legacy_count_pass(session, repair=True)[0]
                logger.info("%s: %d rows fixed", LEGACY_COUNTER, fixed[LEGACY_COUNTER])
    return fixed


def _repair_batch(session: Session, name: str) -> tuple[int, int]:
    with session.transaction(bounded=True) as conn:
        row = conn.execute(store.BACKFILL_STEP, (name,)).fetchone()
    if row is None:
        return (0, 0)
    return (int(row[0] or 0), int(row[1] or 0))  # type: ignore[call-overload]


def _has_legacy_count(session: Session) -> bool:
    ((present,),) = session.query(store.LEGACY_COUNT_PRESENT)
    return bool(present)


def _legacy_count_pass(session: Session, *, repair: bool) -> tuple[int, list[str]]:
    """One pass over chat_threads in batches: the rows whose message_count
    differs from the truth (set right with ``repair``), and the first of them
    described."""
    what = f"{'repair' if repair else 'audit'} of {LEGACY_COUNTER}"
    after: str | None = None
    total = 0
    examples: list[str] = []
    while True:
        with_after = partial(_legacy_count_batch, session, after, repair)
        scanned, after, differing, found = session.with_retries(what, with_after)
        if not scanned:
            return total, examples
        total += differing
        examples += found[: NAMED_ROWS - len(examples)]


def _legacy_count_batch(
    session: Session, after: str | None, repair: bool
) -> tuple[int, str | None, int, list[str]]:
    with session.transaction(bounded=repair) as conn:
        row = conn.execute(store.LEGACY_COUNT_BATCH, (after, repair)).fetchone()
    assert row is not None
    scanned, last_key, differing, examples = row
    assert isinstance(scanned, int) and isinstance(differing, int)
    assert isinstance(examples, list)
    return scanned, str(last_key) if last_key is not None else None, differing, examples
