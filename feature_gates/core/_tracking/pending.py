"""The pending map: uses waiting to be written, keys on their way, and the bound."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .batches import Batch
from .batches import Key
from .batches import Once
from .batches import OnceKey

__all__ = ["Counts", "Drop", "PendingMap"]


@dataclass(frozen=True)
class Drop:
    """Uses the map could not keep: its running total of drops, and whether this drop
    begins an overflow (the first since the map last had room)."""

    total: int
    first: bool


@dataclass(frozen=True)
class Counts:
    """A snapshot of the map's counters, in uses (amounts) unless said otherwise."""

    tracked: int
    pending: int
    pending_keys: int
    dropped: int
    rejected: int
    duplicates: int


class PendingMap:
    """Uses waiting to be written, by counted key and by idempotency key.

    One lock guards it, held only for dictionary updates. Keys the writer has taken
    stay counted towards ``max_keys`` until they are written, rejected or merged
    back, so the bound holds while a batch is on its way (and after it fails).
    """

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.lock = threading.Lock()
        self.counts: dict[Key, int] = {}
        self.once: dict[OnceKey, Once] = {}
        #: The map the writer took last: a use of one of its keys is no new key, for
        #: the bound as for the early write.
        self.taken: dict[Key, int] = {}
        #: Keys added since the writer last took the map, other than the ones it took.
        self.new_keys = 0
        self.amount = 0
        self.in_flight = 0
        self.tracked = self.dropped = self.rejected = self.duplicates = 0
        #: The drop count when the current overflow began; None while there is room.
        self.dropped_before_overflow: int | None = None

    def _held(self) -> int:
        # Under the lock: keys pending, and keys on their way to the database.
        return len(self.counts) + len(self.once) + self.in_flight

    def _overflow(self, amount: int) -> Drop:
        self.dropped += amount
        first = self.dropped_before_overflow is None
        if first:
            self.dropped_before_overflow = self.dropped - amount
        return Drop(self.dropped, first)

    def add(self, key: Key, amount: int) -> Drop | None:
        """Keep ``amount`` uses of ``key``; a :class:`Drop` when the bound is full.

        On every tracked use: acquire() and release() cost half a ``with`` here.
        """
        self.lock.acquire()
        try:
            counts = self.counts  # read under the lock: take() swaps it
            self.tracked += amount
            count = counts.get(key)
            if count is not None:
                counts[key] = count + amount
            elif key in self.taken:
                counts[key] = amount
            elif self._held() < self.max_keys:
                counts[key] = amount
                self.new_keys += 1
            else:
                return self._overflow(amount)
            self.amount += amount
            return None
        finally:
            self.lock.release()

    def add_once(self, once: OnceKey, key: Key, amount: int) -> Drop | None:
        """Keep ``amount`` uses under an idempotency key, once; a :class:`Drop` when the
        bound is full. A key already pending counts as a duplicate."""
        with self.lock:
            self.tracked += amount
            if once in self.once:
                self.duplicates += amount
                return None
            if self._held() >= self.max_keys:
                return self._overflow(amount)
            self.once[once] = (key, amount)
            self.new_keys += 1
            self.amount += amount
            return None

    def add_dropped(self, amount: int) -> int:
        """Count ``amount`` uses tracked and dropped at once; the running total."""
        with self.lock:
            self.tracked += amount
            self.dropped += amount
            return self.dropped

    def empty(self) -> bool:
        return not (self.counts or self.once)

    def take(self) -> tuple[dict[Key, int], dict[OnceKey, Once]]:
        """Everything pending, for the writer; it stays counted until settled."""
        with self.lock:
            counts, self.counts = self.counts, {}
            once, self.once = self.once, {}
            self.in_flight += len(counts) + len(once)
            self.taken = counts
            self.new_keys = 0
        return counts, once

    def absorb(self, batch: Batch) -> None:
        """Fold into ``batch``, taken and not sent yet, the uses of its keys tracked
        since it was taken: written with it, instead of once more by the next pass."""
        with self.lock:
            counts = self.counts
            if not counts:
                return
            for key in batch.counts:
                later = counts.pop(key, None)
                if later is not None:
                    batch.counts[key] += later

    def written(self, batch: Batch, written: int) -> None:
        """``batch`` reached the database; ``written`` of its uses counted (the others'
        idempotency keys were recorded before)."""
        with self.lock:
            self.amount -= batch.amount
            self.duplicates += batch.amount - written
            self.in_flight -= batch.size

    def rejected_one(self, amount: int) -> None:
        """The database refused a batch of one key and ``amount`` uses."""
        with self.lock:
            self.amount -= amount
            self.rejected += amount
            self.in_flight -= 1

    def merge_back(self, batches: Iterable[Batch]) -> None:
        """Batches that were not written go back into the map."""
        with self.lock:
            for batch in batches:
                self.in_flight -= batch.size
                for key, amount in batch.counts.items():
                    self.counts[key] = self.counts.get(key, 0) + amount
                for once, value in batch.once.items():
                    # The batch's use came first; one tracked since with the same
                    # key is the duplicate.
                    later = self.once.get(once)
                    self.once[once] = value
                    if later is not None:
                        self.amount -= later[1]
                        self.duplicates += later[1]

    def unmerge(self, batch: Batch) -> None:
        """``batch`` was merged back but turned out written: take its uses out again."""
        with self.lock:
            for key, amount in batch.counts.items():
                left = self.counts[key] - amount
                if left:
                    self.counts[key] = left
                else:
                    del self.counts[key]
            for once in batch.once:
                del self.once[once]
            self.amount -= batch.amount

    def room_again(self) -> int | None:
        """When an overflow is over (the map has room): the uses it dropped; else None."""
        with self.lock:
            before = self.dropped_before_overflow
            if before is None or self._held() >= self.max_keys:
                return None
            self.dropped_before_overflow = None
            return self.dropped - before

    def snapshot(self) -> Counts:
        with self.lock:
            return Counts(
                tracked=self.tracked,
                pending=self.amount,
                pending_keys=self._held(),
                dropped=self.dropped,
                rejected=self.rejected,
                duplicates=self.duplicates,
            )
