"""Holds: capacity reserved before work whose cost is known only when it ends.

A :class:`Hold` is what ``reserve`` returns: ``up_to`` uses taken from every level
the feature counts against, in the period fixed when it was reserved, until it is
committed (the uses it really took stay), released (none stay) or its ``ttl``
passes (none stay; the next metered check that needs the room reclaims it). No
I/O here: the engine settles it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from types import TracebackType
from typing import Literal
from uuid import UUID

from ._counting import Key
from ._subject import Subject

__all__ = ["Hold", "HoldExpired", "HoldState", "Settled", "current_hold", "holding"]

#: ``held`` until settled; then how it was settled.
HoldState = Literal["held", "committed", "released", "expired"]
#: What settling found: the hold was live and is settled, or it had expired.
Settled = Literal["settled", "expired"]


class HoldExpired(Exception):
    """A hold was committed after its ttl: its capacity had gone back, nothing was
    counted. Reserve with a longer ``ttl=`` (or FEATURE_GATES_HOLD_TTL)."""


@dataclass(eq=False)
class Hold:
    """Uses of ``feature`` reserved for ``subject`` until ``expires_at``.

    ``hold.commit(actual)`` keeps ``actual`` of them (0 <= actual <= up_to) and
    gives back the rest; ``hold.release()`` gives back all. As a context manager
    it releases on an exception and commits ``up_to`` on a normal exit, unless it
    was settled already.
    """

    feature: str
    subject: Subject
    up_to: int
    expires_at: datetime
    #: The counted key, fixed when reserved; None when nothing is counted (an
    #: unlimited plan, or the database could not be reached and the fail mode is open).
    key: Key | None
    hold_id: UUID | None
    _settle: Callable[[Hold, int], Settled] = field(repr=False)
    state: HoldState = "held"
    #: The uses committed (None until committed).
    committed: int | None = None

    @property
    def settled(self) -> bool:
        return self.state != "held"

    def commit(self, actual: int) -> None:
        """Count ``actual`` uses (0 <= actual <= up_to) and free the rest.

        :raises HoldExpired: the ttl passed first; nothing was counted.
        :raises RuntimeError: the hold was settled already.
        """
        if isinstance(actual, bool) or not isinstance(actual, int):
            raise TypeError(f"hold.commit() takes an int, got {type(actual).__name__}")
        if not 0 <= actual <= self.up_to:
            raise ValueError(
                f"a hold of {self.up_to} uses of {self.feature!r} commits between 0 and "
                f"{self.up_to}, got {actual}: reserve more with up_to="
            )
        self._finish(actual, "committed")
        self.committed = actual

    def release(self) -> None:
        """Free every use the hold took. Releasing an expired hold does nothing more."""
        if self.state in ("released", "expired"):
            return
        self._finish(0, "released")

    def _finish(self, actual: int, state: HoldState) -> None:
        if self.settled:
            raise RuntimeError(
                f"the hold of {self.feature!r} was {self.state} already: a hold settles once"
            )
        outcome = self._settle(self, actual)
        if outcome == "expired":
            self.state = "expired"
            if state == "committed":
                raise HoldExpired(
                    f"the hold of {self.up_to} uses of {self.feature!r} expired at "
                    f"{self.expires_at.isoformat()} before it was committed: nothing was "
                    "counted; reserve with a longer ttl= (or FEATURE_GATES_HOLD_TTL)"
                )
            return
        self.state = state

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.settled:
            return
        if kind is None:
            self.commit(self.up_to)
        else:
            self.release()


#: The hold of the reserving gate whose view runs now (views nest: the innermost).
_CURRENT_HOLD: ContextVar[Hold | None] = ContextVar("feature_gates_hold", default=None)


@contextmanager
def holding(current: Hold | None) -> Iterator[None]:
    """Make ``current`` the hold :func:`current_hold` returns while a view runs (an
    adapter's gate wraps its view in it)."""
    if current is None:
        yield
        return
    token = _CURRENT_HOLD.set(current)
    try:
        yield
    finally:
        _CURRENT_HOLD.reset(token)


def current_hold() -> Hold:
    """The hold of the view running now, gated by ``@feature_limit(..., reserve=...)``:
    the view settles it with ``.commit(n)`` (or ``.release()``).

    :raises RuntimeError: outside such a view.
    """
    found = _CURRENT_HOLD.get()
    if found is None:
        raise RuntimeError(
            "current_hold() has no hold: call it in a view gated by "
            "@feature_limit(feature, reserve=...)"
        )
    return found
