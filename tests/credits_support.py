"""What the tests of holds and credits share: a clock the test moves."""

from __future__ import annotations

from datetime import datetime


class Clock:
    """The application's clock, moved by the tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
