"""``verify`` and ``repair-counters``: is the database as the migrations left it?

``verify`` checks the runner's own records (files edited after they were
applied, migrations not applied yet), every INVALID index, and runs the audit
query of each fully applied set (``verify.sql``, or that of its newest
migration that ships one): functions present, indexes valid, constraints
validated. It checks every counter of the registry (``core/0009``), whichever
set installed it: its column, triggers and index, and its values against the
truth, in batches. With the ``counters`` set it also compares the
application's legacy ``chat_threads.message_count`` with the truth, in
batches, which ``repair-counters`` sets right too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
        if _has_registry(session):
            problems += [Problem(str(c), str(d)) for c, d in session.query(store.COUNTER_PROBLEMS)]
            for counter, table in _counters(session, auditable=True):
                total, examples = _pass(session, _counter_batch(counter), repair=False)
                problems += [
                    Problem(
                        "counter",
                        f"{counter} {example} ({total} rows of {table} differ; "
                        "run repair-counters)",
                    )
                    for example in examples
                ]
        if "counters" in complete_sets and _has_legacy_count(session):
            total, examples = _pass(session, _legacy_count_batch, repair=False)
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
    """Recompute the counter columns that drifted from the truth: every counter
    of the registry, and the legacy ``chat_threads.message_count``.

    Works in batches by primary key (one short transaction each, only rows whose
    value differs). Returns, per counter, the rows fixed, or with ``dry_run``
    the rows that differ now (changing nothing).
    """
    settings = settings or MigrationSettings()
    with Session(conninfo, settings) as session:
        counters = [name for name, _ in _counters(session)] if _has_registry(session) else []
        former = _former_counters(session)
        legacy = _has_legacy_count(session)
        if not counters and not former and not legacy:
            raise MigrationError(
                "no counter is installed in this database: add one to your tables with "
                "'feature-gates counter add' (docs/counters.md), or add 'counters' to "
                "FEATURE_GATES_MIGRATION_SETS, and run migrate"
            )
        batches = {name: _counter_batch(name) for name in counters}
        if legacy:
            batches[LEGACY_COUNTER] = _legacy_count_batch
        if dry_run:
            drift = (
                {name: int(str(n)) for name, n in session.query(store.FORMER_DRIFT)}
                if former
                else {}
            )
            return {
                **{name: drift[name] for name in former},
                **{name: _pass(session, batch, repair=False)[0] for name, batch in batches.items()},
            }
        fixed: dict[str, int] = {}
        with session.migration_lock():
            for name in former:
                fixed[name] = _former_repair(session, name)
            for name, batch in batches.items():
                fixed[name] = _pass(session, batch, repair=True)[0]
            for name, rows in fixed.items():
                logger.info("%s: %d rows fixed", name, rows)
    return fixed


def _former_counters(session: Session) -> list[str]:
    ((present,),) = session.query(store.FORMER_PRESENT)
    if not present:
        return []
    query = store.FORMER_COUNTERS if _has_registry(session) else store.FORMER_ALL
    return [str(r[0]) for r in session.query(query)]


def _former_repair(session: Session, name: str) -> int:
    """Repairs a counter of the bundled set as counters/0001 made it, before
    counters/0005 registered it (its migrations stopped in between)."""
    session.query(store.FORMER_RESET, (name,))
    total = 0
    while True:
        row = session.with_retries(f"repair of {name}", partial(_former_batch, session, name))
        scanned, changed = (int(str(v or 0)) for v in row)
        total += changed
        if not scanned:
            break
    session.query(store.FORMER_RESET, (name,))
    return total


def _former_batch(session: Session, name: str) -> tuple[object, ...]:
    with session.transaction(bounded=True) as conn:
        row = conn.execute(store.FORMER_STEP, (name,)).fetchone()
    return row or (0, 0)


#: One batch of an audit or repair: (session, after, repair) -> (rows looked
#: at, last key, rows that differ or were fixed, up to 20 of them described).
Batch = Callable[[Session, "str | None", bool], "tuple[int, str | None, int, list[str]]"]


def _has_registry(session: Session) -> bool:
    ((present,),) = session.query(store.REGISTRY_EXISTS)
    return bool(present)


def _counters(session: Session, *, auditable: bool = False) -> list[tuple[str, str]]:
    """The registered counters and their tables; with ``auditable``, only those
    whose tables and column are there to be read."""
    rows = session.query(store.REGISTERED_COUNTERS)
    return [(str(name), str(table)) for name, table, ok in rows if ok or not auditable]


def _has_legacy_count(session: Session) -> bool:
    ((present,),) = session.query(store.LEGACY_COUNT_PRESENT)
    return bool(present)


def _pass(session: Session, batch: Batch, *, repair: bool) -> tuple[int, list[str]]:
    """One pass over a table in batches: the rows that differ from the truth
    (set right with ``repair``), and the first of them described."""
    after: str | None = None
    total = 0
    examples: list[str] = []
    while True:
        scanned, after, differing, found = session.with_retries(
            "repair" if repair else "audit", partial(batch, session, after, repair)
        )
        if not scanned:
            return total, examples
        total += differing
        examples += found[: NAMED_ROWS - len(examples)]


def _counter_batch(counter: str) -> Batch:
    def batch(
        session: Session, after: str | None, repair: bool
    ) -> tuple[int, str | None, int, list[str]]:
        return _batch(session, store.COUNTER_BATCH, (counter, after, repair), repair)

    return batch


def _legacy_count_batch(
    session: Session, after: str | None, repair: bool
) -> tuple[int, str | None, int, list[str]]:
    return _batch(session, store.LEGACY_COUNT_BATCH, (after, repair), repair)


def _batch(
    session: Session, statement: str, params: tuple[object, ...], repair: bool
) -> tuple[int, str | None, int, list[str]]:
    # A repair's batch is a step of a migration: bounded by its statement
    # timeout. An audit's is a read.
    with session.transaction(bounded=repair) as conn:
        row = conn.execute(statement, params).fetchone()
    assert row is not None
    scanned, last_key, differing, examples = row
    assert isinstance(scanned, int) and isinstance(differing, int)
    assert isinstance(examples, list)
    return scanned, str(last_key) if last_key is not None else None, differing, examples
