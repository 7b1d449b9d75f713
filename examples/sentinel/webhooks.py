"""Sentinel receives its own usage alerts: feature-gates POSTs each one, signed,
to /hooks/feature-gates (FEATURE_GATES_WEBHOOK_URL); the route checks the
signature with ``feature_gates.webhooks.verify`` and records the event once per
id (a delivery may come more than once). The admin dashboard lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from flask import Blueprint
from flask import current_app
from flask import request
from flask.typing import ResponseReturnValue
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from feature_gates.webhooks import HEADER
from feature_gates.webhooks import SignatureError
from feature_gates.webhooks import verify

from .state import sentinel

__all__ = ["ReceivedAlert", "bp", "received_alerts"]

bp = Blueprint("hooks", __name__)

RECORD_EVENT = """
INSERT INTO webhook_events AS w (event_id, feature, user_id, org_id, threshold, used,
                                 usage_limit, event)
VALUES (%(id)s, %(feature)s, %(user_id)s, %(org_id)s, %(threshold)s, %(used)s, %(limit)s,
        %(event)s)
ON CONFLICT (event_id) DO UPDATE SET deliveries = w.deliveries + 1
"""

RECENT_EVENTS = """
SELECT e.event_id, e.received_at, e.deliveries, e.feature, e.threshold, e.used, e.usage_limit,
       coalesce(u.name, o.name, 'user ' || e.user_id) AS who
FROM webhook_events e
LEFT JOIN users u ON u.id = e.user_id
LEFT JOIN organisations o ON o.id = e.org_id AND e.user_id IS NULL
ORDER BY e.received_at DESC
LIMIT %s
"""


@dataclass(frozen=True)
class ReceivedAlert:
    event_id: UUID
    received_at: datetime
    deliveries: int
    feature: str
    threshold: Decimal
    used: int
    usage_limit: int
    #: The user, or the organisation for a team pool.
    who: str


@bp.post("/hooks/feature-gates")
def receive() -> ResponseReturnValue:
    try:
        event = verify(
            request.get_data(),
            request.headers.get(HEADER),
            current_app.config["FEATURE_GATES_WEBHOOK_SECRET"],
        )
    except SignatureError as exc:
        return {"error": str(exc)}, 400
    if event.get("type") != "usage.threshold_crossed":
        return "", 204  # a type this version does not know: accepted, ignored
    params: dict[str, Any] = {**event, "event": Jsonb(event)}
    with sentinel().pool.connection() as conn:
        conn.execute(RECORD_EVENT, params)
    return "", 204


def received_alerts(limit: int = 10) -> list[ReceivedAlert]:
    """The alerts received most recently, newest first."""
    with sentinel().pool.connection() as conn:
        cursor = conn.cursor(row_factory=class_row(ReceivedAlert))
        return cursor.execute(RECENT_EVENTS, (limit,)).fetchall()
