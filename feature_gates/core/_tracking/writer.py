"""One write pass of the usage tracker: settle batches in doubt, then write what is
pending, one statement per batch, each at most once.

Each batch carries an id that the database records in the batch's own
transaction. When a connection dies before the reply arrives, the batch is *in
doubt*: the next pass asks the database (``resolve_feature_usage_batch``) whether
that id was written, which also makes sure it never will be later; only then are
its uses sent again or forgotten.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from datetime import timezone
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.rows import scalar_row

from .._storage import Connection
from .._storage import NoAnswer
from .._storage import Outcome
from .._storage import Storage
from .._storage import classify
from .._storage import describe
from .._storage.rows import Written
from .batches import Batch
from .batches import cut
from .batches import dropped
from .pending import PendingMap

__all__ = ["Signals", "WriteFailed", "Writer"]

logger = logging.getLogger("feature_gates.tracking")

#: Signals to send once the pass is over, outside its locks: (name, data).
Signals = list[tuple[str, dict[str, Any]]]

#: SQLSTATE classes of an error in the data itself: the same batch fails the same
#: way, so it is split until the one use the database refuses is alone.
_BAD_DATA_CLASSES = ("22", "23")


class WriteFailed(Exception):
    """A write pass failed; ``__cause__`` is what the database (or the driver) raised,
    ``outcome`` what it means."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


def _outcome_known(conn: Connection, error: psycopg.Error) -> bool:
    """Whether a failed batch surely did not commit: the server answered with an
    error and the connection still works. A lost connection may have lost the reply
    of a commit, and a server going away may not have reported its outcome."""
    state = error.sqlstate
    return (
        state is not None
        and not conn.broken
        and classify(error) is not Outcome.OUTAGE
        and state[:2] != "XX"
    )


class Writer:
    """Writes the pending map through the storage, in batches of ``batch_keys`` keys.

    :param listening: whether a signal has receivers; the ``usage-recorded`` rows
        (one per key written) are read back only when it does.
    """

    def __init__(
        self,
        storage: Storage,
        pending: PendingMap,
        *,
        batch_keys: int,
        listening: Callable[[str], bool],
    ) -> None:
        self.storage = storage
        self.pending = pending
        self.batch_keys = batch_keys
        self._listening = listening
        #: Batches whose reply was lost; their uses are in the map meanwhile.
        self.in_doubt: list[Batch] = []
        #: Ids of batches seen committed; their records are deleted by the next batch.
        self.forget: list[uuid.UUID] = []
        self.batches = 0
        self.written = 0
        #: Failed attempts sent again at once, within a pass.
        self.retries = 0
        self.last_flush_at: datetime | None = None

    def write(self, timeout: float, signals: Signals, *, direct: bool = False) -> bool:
        """One pass: False when there was nothing to do.

        :param timeout: seconds to wait for a connection.
        :param direct: on a connection of its own (interpreter exit: no pool threads).
        :raises WriteFailed: what the pass took is back in the map.
        """
        if self.pending.empty() and not self.in_doubt:
            return False
        for first in (True, False):
            todo: deque[Batch] = deque()
            conn: Connection | None = None
            try:
                with self.storage.connection(timeout, direct=direct) as conn:
                    # First: a batch in doubt may have to be taken out of the map.
                    self._settle_in_doubt(conn)
                    counts, once = self.pending.take()
                    # Held whole until cut, so that a failure in between merges it back.
                    todo.append(Batch(counts, once))
                    todo = deque(cut(counts, once, self.batch_keys))
                    while todo:
                        self._write_batch(conn, todo, signals)
            except Exception as exc:
                self.pending.merge_back(todo)
                outcome = classify(exc)
                if first and self._again(outcome, exc, conn):
                    self.retries += 1
                    continue
                raise WriteFailed(outcome) from exc
            except BaseException:
                self.pending.merge_back(todo)
                raise
            self.storage.health.succeeded()
            return True
        raise AssertionError("unreachable")

    def _again(self, outcome: Outcome, error: BaseException, conn: Connection | None) -> bool:
        """Whether the pass goes once more at once: after an answered "try again", and
        on a new connection when its connection broke under it (a restart closes every
        pooled connection; what was sent is in doubt, settled first)."""
        if outcome is Outcome.RETRY:
            return True
        broke = conn is not None and conn.broken and not isinstance(error, NoAnswer)
        return outcome is Outcome.OUTAGE and broke and self.storage.pool.opened

    def _settle_in_doubt(self, conn: Connection) -> None:
        while self.in_doubt:
            batch = self.in_doubt[0]
            (answer,) = self.storage.execute(
                conn, self.storage.statements.resolve_batch, (batch.id,), scalar_row
            )
            applied = bool(answer)
            if applied:
                # Its uses were merged back meanwhile: take them out again.
                self.pending.unmerge(batch)
                self.forget.append(batch.id)
                self.batches += 1
                self.written += batch.amount
            self.in_doubt.pop(0)
            logger.info(
                "a batch whose reply was lost was %s (%d uses)",
                "written" if applied else "not written; its uses are sent again",
                batch.amount,
            )

    def _write_batch(self, conn: Connection, todo: deque[Batch], signals: Signals) -> None:
        batch = todo[0]
        self.pending.absorb(batch)
        forget = self.forget[:]
        recorded = self._listening("usage-recorded")
        statements = self.storage.statements
        try:
            if recorded:
                rows = self.storage.execute(
                    conn, statements.write_batch, batch.parameters(forget), class_row(Written)
                )
                # A member's share repeats its pool's uses: each use counts once.
                written = sum(row.increment for row in rows if row.member is None)
            else:
                (total,) = self.storage.execute(
                    conn, statements.write_batch_total, batch.parameters(forget), scalar_row
                )
                written, rows = int(total), []
        except psycopg.Error as exc:
            if not _outcome_known(conn, exc):
                # Written or not: the database knows. Settled by the next pass.
                self.in_doubt.append(batch)
            elif exc.sqlstate is not None and exc.sqlstate[:2] in _BAD_DATA_CLASSES:
                todo.popleft()
                if batch.size > 1:
                    todo.extendleft(reversed(batch.split()))
                else:
                    signals.append(self._reject(batch, exc))
                return
            raise
        except BaseException:
            self.in_doubt.append(batch)
            raise
        todo.popleft()
        del self.forget[: len(forget)]
        self.forget.append(batch.id)
        self.pending.written(batch, written)
        self.written += written
        self.batches += 1
        self.last_flush_at = datetime.now(timezone.utc)
        for row in rows:
            org = row.scope == "org"
            signals.append(
                (
                    "usage-recorded",
                    {
                        "user_id": row.member if org else row.subject,
                        "feature": row.feature,
                        "amount": row.increment,
                        "period_start": row.period_start,
                        "count": row.usage_count,
                        "scope": row.scope,
                        "period": row.period,
                        "org_id": row.subject if org else None,
                        "share": org and row.member is not None,
                    },
                )
            )

    def _reject(self, batch: Batch, error: psycopg.Error) -> tuple[str, dict[str, Any]]:
        """Count and log the one use of ``batch``, which the database refused."""
        key, amount = batch.first()
        self.pending.rejected_one(amount)
        logger.error(
            "usage of %r by %r (%d) refused by the database and not recorded: %s",
            key[1],
            key[0],
            amount,
            describe(error),
        )
        return ("usage-dropped", dropped(key, amount, self.pending.dropped, "rejected", error))
