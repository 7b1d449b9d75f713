"""An alert as its receivers see it: the JSON event of the webhook, and the data
of the ``usage-threshold-crossed`` signal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from .._denials import iso_utc

__all__ = ["EVENT_TYPE", "Claimed", "event_of"]

#: The ``type`` of every alert event.
EVENT_TYPE = "usage.threshold_crossed"


@dataclass(frozen=True)
class Claimed:
    """An alert a sender claimed for delivery (a row of feature_usage_alerts)."""

    id: int
    event_id: UUID
    user_id: str
    feature: str
    scope: str
    member: str | None
    period: str
    period_start: date
    period_offset: int
    threshold: Decimal
    used: int
    usage_limit: int
    plan: str | None
    period_end: datetime | None
    occurred_at: datetime
    #: Attempts so far, this one included.
    attempts: int
    signalled_at: datetime | None


def event_of(alert: Claimed, user_id: Any) -> dict[str, Any]:
    """The event of ``alert``; ``user_id`` turns an id read as text into the
    application's type (an int for bigint ids, a string for uuids).

    ``scope`` is ``"user"`` for a user's own count (``org_id`` None) and ``"org"``
    for an organisation's pool (``user_id`` None) or, with both ids, a member's
    share of it. ``period_start`` and ``reset_at`` are None for a rolling window
    and a lifetime count.
    """
    periodic = not alert.period.startswith("window:") and alert.period != "lifetime"
    start = None
    if periodic:
        start = datetime.combine(alert.period_start, time(), timezone.utc) + timedelta(
            seconds=alert.period_offset
        )
    member = None if alert.member is None else user_id(alert.member)
    return {
        "id": str(alert.event_id),
        "type": EVENT_TYPE,
        "feature": alert.feature,
        "scope": alert.scope,
        "user_id": user_id(alert.user_id) if alert.scope == "user" else member,
        "org_id": user_id(alert.user_id) if alert.scope == "org" else None,
        "plan": alert.plan,
        "threshold": float(alert.threshold),
        "used": alert.used,
        "limit": alert.usage_limit,
        "period_start": None if start is None else iso_utc(start),
        "reset_at": None if alert.period_end is None or not periodic else iso_utc(alert.period_end),
        "occurred_at": iso_utc(alert.occurred_at),
    }
