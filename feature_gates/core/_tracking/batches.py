"""A batch: the uses one statement writes, under one id."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from typing import Any

__all__ = ["Batch", "Key", "OnceKey", "cut"]

#: (user_id, feature, period_start): what usage is counted under.
Key = tuple[Any, str, date]
#: An idempotent use: (user_id, feature, idempotency_key).
OnceKey = tuple[Any, str, str]
#: (key, value, idempotent) of both maps, to cut them into batches.
_Item = tuple[Any, Any, bool]
#: User ids as text, joined by commas, that need no quoting in an array literal:
#: numbers and uuids (anything else is sent as a list, quoted by psycopg).
_PLAIN_IDS = re.compile(r"[0-9A-Za-z,-]*")


@dataclass
class Batch:
    """Uses sent in one statement, under one id the database records with them."""

    counts: dict[Key, int]
    once: dict[OnceKey, tuple[date, int]]
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def size(self) -> int:
        """Keys."""
        return len(self.counts) + len(self.once)

    @property
    def amount(self) -> int:
        """Uses."""
        return sum(self.counts.values()) + sum(amount for _, amount in self.once.values())

    def split(self) -> tuple[Batch, Batch]:
        """Two halves (new ids): to find the one use the database refuses."""
        items = _items(self.counts, self.once)
        half = len(items) // 2
        return _batch_of(items[:half]), _batch_of(items[half:])

    def first(self) -> tuple[Any, str, date, int]:
        """(user_id, feature, period_start, amount) of the batch's first use."""
        if self.counts:
            ((user_id, feature, period), amount) = next(iter(self.counts.items()))
        else:
            ((user_id, feature, _), (period, amount)) = next(iter(self.once.items()))
        return user_id, feature, period, amount

    def parameters(self, forget: list[uuid.UUID]) -> tuple[Any, ...]:
        """The parameters of the batch statement, ``forget`` being the ids of batches
        seen committed (their records are deleted).

        The arrays travel as array literals joined here: the writer's own time goes
        to the statement, not to quoting a thousand values one by one. Feature names
        are checked at ``track()`` and need only their quotes.
        """
        # User ids travel as text and are cast by the database to its own type
        # (bigint or uuid): one array type whatever Python type the caller used.
        user_ids = [str(k[0]) for k in self.counts] + [str(k[0]) for k in self.once]
        joined_ids = ",".join(user_ids)
        ids: str | list[str] = user_ids
        if _PLAIN_IDS.fullmatch(joined_ids):
            ids = "{" + joined_ids + "}"
        features = [k[1] for k in self.counts] + [k[1] for k in self.once]
        amounts = list(self.counts.values()) + [a for _, a in self.once.values()]
        periods = [k[2] for k in self.counts] + [p for p, _ in self.once.values()]
        keys: list[str | None] | None = None
        if self.once:
            keys = [None] * len(self.counts) + [k[2] for k in self.once]
        return (
            self.id,
            forget,
            ids,
            '{"' + '","'.join(features) + '"}',
            "{" + ",".join(map(str, amounts)) + "}",
            "{" + ",".join(map(str, periods)) + "}",
            keys,
        )


def _items(counts: dict[Key, int], once: dict[OnceKey, tuple[date, int]]) -> list[_Item]:
    items: list[_Item] = [(k, v, False) for k, v in counts.items()]
    items += [(k, v, True) for k, v in once.items()]
    return items


def _batch_of(items: list[_Item]) -> Batch:
    return Batch(
        counts={k: v for k, v, once in items if not once},
        once={k: v for k, v, once in items if once},
    )


def cut(counts: dict[Key, int], once: dict[OnceKey, tuple[date, int]], size: int) -> list[Batch]:
    """The map in batches of at most ``size`` keys."""
    if not once:  # the usual case, a pass of tens of thousands of keys: no sorting out
        pairs = list(counts.items())
        return [
            Batch(dict(pairs[start : start + size]), {}) for start in range(0, len(pairs), size)
        ]
    items = _items(counts, once)
    return [_batch_of(items[start : start + size]) for start in range(0, len(items), size)]
