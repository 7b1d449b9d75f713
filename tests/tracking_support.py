"""A usage tracker on its own storage, as the engine builds one, for the tracker tests."""

from __future__ import annotations

from typing import Any

from feature_gates.core import Settings
from feature_gates.core import Storage
from feature_gates.core._tracking import UsageTracker


def storage_for(url: str | None, emit: Any = None, **settings: Any) -> Storage:
    """A storage for ``url`` with ``settings`` (fields of Settings); no statement
    timeout unless given."""
    settings.setdefault("statement_timeout", 0)
    return Storage(Settings(database_url=url, **settings), emit=emit or (lambda name, **data: None))


def tracker_for(
    url: str | None, *, emit: Any = None, storage: dict[str, Any] | None = None, **options: Any
) -> UsageTracker:
    """A tracker writing to ``url``; ``storage`` holds settings of its storage, and
    ``emit`` receives the signals of both."""
    return UsageTracker(storage_for(url, emit, **(storage or {})), emit=emit, **options)
