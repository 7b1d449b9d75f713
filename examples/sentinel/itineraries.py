"""The itinerary manager: travel itineraries, their destinations and alert settings.

An itinerary's ``data`` holds its title and its waypoints (``data["waypoints"]``);
``destinations_count`` is the number of waypoints, set by the ``counters`` set's
trigger whenever ``data`` is written (by this manager or anyone else), so it can
never drift from the data it counts; the manager never writes it. Adding
destinations reserves the room first with :func:`feature_gates.counters.reserve`,
one conditional statement that locks the itinerary. Every statement returns
``destinations_count`` with the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.abc import Params
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from feature_gates.counters import reserve

from .database import Pool

__all__ = ["DestinationLimitReached", "Itinerary", "ItineraryManager"]

INSERT_ITINERARY = """
INSERT INTO travel_itineraries (user_id, data, alerts_config)
VALUES (%(user_id)s, %(data)s, %(alerts_config)s)
RETURNING id, user_id, data, alerts_config, destinations_count, created_at, updated_at
"""

SELECT_ITINERARY = """
SELECT id, user_id, data, alerts_config, destinations_count, created_at, updated_at
FROM travel_itineraries WHERE id = %s AND user_id = %s
"""

SELECT_ITINERARIES = """
SELECT id, user_id, data, alerts_config, destinations_count, created_at, updated_at
FROM travel_itineraries WHERE user_id = %s ORDER BY id
"""

# data replaces the stored data when given (and the trigger recounts it);
# alerts_config is merged key by key into the stored one (|| keeps every key
# not named in the update). A NULL parameter leaves its column alone.
# max_destinations (NULL: no limit) refuses data with more waypoints.
UPDATE_ITINERARY = """
UPDATE travel_itineraries
SET data = coalesce(%(data)s, data),
    alerts_config = CASE WHEN %(alerts_config)s::jsonb IS NULL THEN alerts_config
                         ELSE alerts_config || %(alerts_config)s END,
    updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s
  -- Above the limit only if it does not grow: after a downgrade, the itinerary
  -- can still be edited and trimmed.
  AND (%(data)s::jsonb IS NULL OR %(max)s::integer IS NULL
       OR waypoint_count(%(data)s) <= greatest(%(max)s, destinations_count))
RETURNING id, user_id, data, alerts_config, destinations_count, created_at, updated_at
"""

# Appends in the database, not in Python: two requests adding destinations at
# once both land (no lost update); the limit was checked by reserve() in the
# same transaction, against the count the previous one left, under the row
# lock. Waypoints that are not an array (legacy rows) count as none, as the
# counter says, and are replaced.
ADD_DESTINATIONS = """
UPDATE travel_itineraries
SET data = jsonb_set(data, '{waypoints}',
                     CASE WHEN jsonb_typeof(data -> 'waypoints') = 'array'
                          THEN data -> 'waypoints' ELSE '[]'::jsonb END || %(waypoints)s),
    updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id, user_id, data, alerts_config, destinations_count, created_at, updated_at
"""

DESTINATIONS_COUNT = (
    "SELECT destinations_count FROM travel_itineraries WHERE id = %s AND user_id = %s"
)

# Answered from the (user_id, destinations_count) index of the counters set.
LARGEST_DESTINATIONS_COUNT = (
    "SELECT coalesce(max(destinations_count), 0) FROM travel_itineraries WHERE user_id = %s"
)


@dataclass(frozen=True)
class Itinerary:
    id: int
    user_id: int
    data: dict[str, Any]
    alerts_config: dict[str, Any]
    destinations_count: int
    created_at: datetime
    updated_at: datetime

    @property
    def title(self) -> str:
        return str(self.data.get("title") or f"Itinerary {self.id}")

    @property
    def waypoints(self) -> list[dict[str, Any]]:
        waypoints = self.data.get("waypoints")
        return waypoints if isinstance(waypoints, list) else []

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "data": self.data,
            "alerts_config": self.alerts_config,
            "destinations_count": self.destinations_count,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class DestinationLimitReached(Exception):
    """The change would give an itinerary more destinations than allowed; nothing changed."""

    def __init__(self, itinerary_id: int, held: int, count: int, limit: int) -> None:
        super().__init__(
            f"itinerary {itinerary_id} would have {count} destinations (it has {held}); "
            f"at most {limit} are allowed"
        )
        self.itinerary_id = itinerary_id
        self.held = held
        self.count = count
        self.limit = limit


def _jsonb(value: dict[str, Any] | list[Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class ItineraryManager:
    """Creates and changes itineraries of one owner at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def _one(self, query: str, params: Params) -> Itinerary | None:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Itinerary))
            return cur.execute(query, params).fetchone()

    def create_itinerary(
        self,
        user_id: int,
        data: dict[str, Any],
        alerts_config: dict[str, Any] | None = None,
    ) -> Itinerary:
        """A new itinerary; ``destinations_count`` is computed from ``data["waypoints"]``."""
        itinerary = self._one(
            INSERT_ITINERARY,
            {"user_id": user_id, "data": Jsonb(data), "alerts_config": Jsonb(alerts_config or {})},
        )
        assert itinerary is not None
        return itinerary

    def get_itinerary(self, itinerary_id: int, user_id: int) -> Itinerary | None:
        """The itinerary, or None when it does not exist or belongs to someone else."""
        return self._one(SELECT_ITINERARY, (itinerary_id, user_id))

    def list_itineraries(self, user_id: int) -> list[Itinerary]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Itinerary))
            return cur.execute(SELECT_ITINERARIES, (user_id,)).fetchall()

    def destinations_count(self, itinerary_id: int, user_id: int) -> int | None:
        """The itinerary's destinations_count, or None when it is not ``user_id``'s."""
        with self.pool.connection() as conn:
            row = conn.execute(DESTINATIONS_COUNT, (itinerary_id, user_id)).fetchone()
        return None if row is None else int(row[0])

    def largest_destinations_count(self, user_id: int) -> int:
        """The destinations_count of ``user_id``'s fullest itinerary (0 without any)."""
        with self.pool.connection() as conn:
            row = conn.execute(LARGEST_DESTINATIONS_COUNT, (user_id,)).fetchone()
        return int(row[0]) if row else 0

    def update_itinerary(
        self,
        itinerary_id: int,
        user_id: int,
        data: dict[str, Any] | None = None,
        alerts_config: dict[str, Any] | None = None,
        *,
        max_destinations: int | None = None,
    ) -> Itinerary | None:
        """Replace ``data`` (recounting its destinations) and merge ``alerts_config``
        into the stored settings, keeping the keys it does not name.

        Returns None when the itinerary is not ``user_id``'s. Raises
        :class:`DestinationLimitReached` when ``data`` has more than
        ``max_destinations`` waypoints and more than the itinerary holds now.
        """
        params = {
            "id": itinerary_id,
            "user_id": user_id,
            "data": _jsonb(data),
            "alerts_config": _jsonb(alerts_config),
            "max": max_destinations,
        }
        itinerary = self._one(UPDATE_ITINERARY, params)
        if itinerary is None and data is not None and max_destinations is not None:
            held = self.destinations_count(itinerary_id, user_id)
            if held is not None:
                count = len(data.get("waypoints") or [])
                raise DestinationLimitReached(itinerary_id, held, count, max_destinations)
        return itinerary

    def add_destinations(
        self,
        itinerary_id: int,
        user_id: int,
        waypoints: list[dict[str, Any]],
        limit: int | None,
    ) -> Itinerary | None:
        """Append ``waypoints`` if the itinerary then holds at most ``limit`` (None:
        no limit). Returns None when it is not ``user_id``'s; raises
        :class:`DestinationLimitReached` when they do not fit.
        """
        params = {"id": itinerary_id, "user_id": user_id, "waypoints": Jsonb(waypoints)}
        with self.pool.connection() as conn, conn.transaction():
            n = len(waypoints)
            if limit is not None and not reserve(
                conn, "travel_itineraries", "destinations_count", itinerary_id, n, limit
            ):
                row = conn.execute(DESTINATIONS_COUNT, (itinerary_id, user_id)).fetchone()
                if row is None:
                    return None
                count = int(row[0])
                raise DestinationLimitReached(itinerary_id, count, count + n, limit)
            cur = conn.cursor(row_factory=class_row(Itinerary))
            return cur.execute(ADD_DESTINATIONS, params).fetchone()
