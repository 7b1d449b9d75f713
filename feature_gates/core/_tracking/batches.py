"""A batch: the uses one statement writes, under one id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from typing import Any

from .._counting import Key as CountedKey

__all__ = ["Batch", "Key", "Once", "OnceKey", "cut", "dropped", "pending_key"]

#: What usage is counted under (the counted key, :class:`~.._counting.Key`, as a
#: tuple: cheap to hash on every use): (subject, feature, period_start, scope,
#: rule, period_offset, member, bucket). The default kind, a user's calendar
#: month in UTC, is (user_id, feature, first day, "user", "month", 0, None, None).
Key = tuple[Any, str, date, str, str, int, Any, "int | None"]
#: An idempotent use: (subject, feature, scope, idempotency_key).
OnceKey = tuple[Any, str, str, str]
#: The uses kept under an idempotency key: (the key they count under, amount).
Once = tuple[Key, int]
#: (key, value, idempotent) of both maps, to cut them into batches.
_Item = tuple[Any, Any, bool]
#: User ids as text, joined by commas, that need no quoting in an array literal:
#: numbers and uuids (anything else is sent as a list, quoted by psycopg).
_PLAIN_IDS = re.compile(r"[0-9A-Za-z,-]*")


@dataclass
class Batch:
    """Uses sent in one statement, under one id the database records with them."""

    counts: dict[Key, int]
    once: dict[OnceKey, Once]
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

    def first(self) -> tuple[Key, int]:
        """(key, amount) of the batch's first use."""
        if self.counts:
            return next(iter(self.counts.items()))
        return next(iter(self.once.values()))

    def keys(self) -> list[Key]:
        """The key of every use, in the order of the statement's rows."""
        return list(self.counts) + [key for key, _ in self.once.values()]

    def parameters(self, forget: list[uuid.UUID]) -> tuple[Any, ...]:
        """The parameters of the batch statement, ``forget`` being the ids of batches
        seen committed (their records are deleted).

        The arrays travel as array literals joined here: the writer's own time goes
        to the statement, not to quoting a thousand values one by one. Feature names
        and rules are checked when they are tracked and need only their quotes.
        """
        keys = self.keys()
        amounts = list(self.counts.values()) + [a for _, a in self.once.values()]
        idempotency: list[str | None] | None = None
        if self.once:
            idempotency = [None] * len(self.counts) + [k[3] for k in self.once]
        # One pass over the keys, column by column, in C (zip, map, join).
        subjects, features, starts, scopes, rules, offsets, members, buckets = (
            zip(*keys, strict=True) if keys else ((),) * 8
        )
        # A batch holds a few periods: each date is written once.
        days = {start: str(start) for start in set(starts)}
        return (
            self.id,
            forget,
            _ids(subjects),
            _quoted(features),
            _quoted(scopes),
            _quoted(rules),
            _array(map(days.__getitem__, starts)),
            _array(map(str, offsets)),
            _ids(members),
            _numbers(buckets),
            _array(map(str, amounts)),
            idempotency,
        )


def pending_key(key: CountedKey) -> Key:
    """The tuple the pending map keeps ``key`` under."""
    return (
        key.subject,
        key.feature,
        key.period_start,
        key.scope,
        key.rule,
        key.period_offset,
        key.member,
        key.bucket,
    )


def dropped(key: Key, amount: int, total: int, reason: str, error: Any = None) -> dict[str, Any]:
    """The data of a ``usage-dropped`` signal for uses of ``key``."""
    return {
        "user_id": key[6] if key[6] is not None else key[0],
        "feature": key[1],
        "amount": amount,
        "period_start": key[2],
        "scope": key[3],
        "period": key[4],
        "org_id": key[0] if key[3] == "org" else None,
        "dropped": total,
        "reason": reason,
        "error": error,
    }


def _quoted(values: Iterable[str]) -> str:
    """An array literal of names that need only their quotes (checked before)."""
    return '{"' + '","'.join(values) + '"}'


def _array(texts: Iterable[str]) -> str:
    """An array literal of values that need no quoting."""
    return "{" + ",".join(texts) + "}"


def _numbers(values: tuple[int | None, ...]) -> str:
    """An array literal of integers and NULLs (NULLs only, usually: one check)."""
    if values.count(None) == len(values):
        return _array(["NULL"] * len(values))
    return _array("NULL" if value is None else str(value) for value in values)


def _ids(values: tuple[Any, ...]) -> str | list[str | None]:
    """Subjects (user or organisation ids) as text, cast by the database to its own
    type (bigint or uuid): one array literal when they need no quoting (numbers,
    uuids, NULLs), else a list psycopg quotes."""
    nulls = values.count(None)
    if nulls == len(values):  # no member in the batch: the usual case
        return _array(["NULL"] * nulls)
    if nulls:
        joined = ",".join("NULL" if value is None else str(value) for value in values)
    else:
        joined = ",".join(map(str, values))
    if _PLAIN_IDS.fullmatch(joined):
        return "{" + joined + "}"
    return [None if value is None else str(value) for value in values]


def _items(counts: dict[Key, int], once: dict[OnceKey, Once]) -> list[_Item]:
    items: list[_Item] = [(k, v, False) for k, v in counts.items()]
    items += [(k, v, True) for k, v in once.items()]
    return items


def _batch_of(items: list[_Item]) -> Batch:
    return Batch(
        counts={k: v for k, v, once in items if not once},
        once={k: v for k, v, once in items if once},
    )


def cut(counts: dict[Key, int], once: dict[OnceKey, Once], size: int) -> list[Batch]:
    """The map in batches of at most ``size`` keys."""
    if not once:  # the usual case, a pass of tens of thousands of keys: no sorting out
        pairs = list(counts.items())
        return [
            Batch(dict(pairs[start : start + size]), {}) for start in range(0, len(pairs), size)
        ]
    items = _items(counts, once)
    return [_batch_of(items[start : start + size]) for start in range(0, len(items), size)]
