"""What the tests of holds, credits and the ledger share: a clock the test moves,
and the ``clock`` fixture (a pytest plugin, listed in conftest.py)."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

import pytest


class Clock:
    """The application's clock, moved by the tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A clock stopped at noon UTC on 10 March 2026, a Tuesday mid-month."""
    return Clock(datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc))
